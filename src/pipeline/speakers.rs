//! `--diarize`: the recording is transcribed through the windowed pipeline (one window in
//! memory), its speakers found in a second streaming pass, and the outputs written once at
//! the end with every word and segment labelled.

use std::path::Path;

use super::{collect_segments, write_whole, Mode, Outputs, PipelineOptions, Summary};
use crate::diarization::{assign_speakers, Diarizer};
use crate::engine::{Engine, Hooks};
use crate::{Result, Transcript};

/// The share of the progress bar the transcription takes (diarization is far faster).
const TRANSCRIPTION_SHARE: f32 = 0.9;

pub(super) fn transcribe(
    engine: &Engine,
    diarizer: &Diarizer,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    // Speakers are decided per word: the words' times are needed whatever the formats.
    let mut options = options.clone();
    options.transcribe.word_timestamps = true;
    let mode = Mode {
        channel: None,
        checkpoints: false,
    };
    let progress = |f: f32| f * TRANSCRIPTION_SHARE;
    let (segments, mut summary) =
        collect_segments(engine, path, outputs, &options, hooks, mode, &progress)?;
    let turns = diarizer.turns_of_file(path)?;
    if let Some(h) = hooks.on_progress.as_mut() {
        h(1.0);
    }
    let mut transcript = Transcript {
        language: summary.language.clone(),
        language_probability: summary.language_probability,
        duration: summary.duration,
        segments,
        ..Default::default()
    };
    assign_speakers(&mut transcript, &turns);
    summary.segments = transcript.segments.len();
    summary.rule_violations = write_whole(&transcript, outputs)?;
    Ok(summary)
}
