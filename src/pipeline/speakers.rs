//! `--diarize`: the recording's speakers are found in a streaming pass (one 10 s window in
//! memory), then it is transcribed through the windowed pipeline (one window in memory), and
//! the outputs are written once at the end with every word and segment labelled. The
//! speakers come first so that their scratch memory is free again before whisper's grows.
//! The caller's segment hook gets the labelled segments at the end, not the unlabelled ones
//! as they are transcribed.

use std::path::Path;

use super::{collect_segments, write_whole, Mode, Outputs, PipelineOptions, Summary};
use crate::diarization::{assign_speakers, Diarizer};
use crate::engine::{Engine, Hooks};
use crate::{Result, Transcript};

/// The share of the progress bar diarization takes (it runs 30-40 times faster than
/// transcription).
const DIARIZATION_SHARE: f32 = 0.1;

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
    let turns = diarizer.turns_of_file(path)?;
    if let Some(h) = hooks.on_progress.as_mut() {
        h(DIARIZATION_SHARE);
    }
    let progress = |f: f32| DIARIZATION_SHARE + f * (1.0 - DIARIZATION_SHARE);
    let user_segment = hooks.on_segment.take();
    let collected = collect_segments(engine, path, outputs, &options, hooks, mode, &progress);
    hooks.on_segment = user_segment;
    let (segments, mut summary) = collected?;
    let mut transcript = Transcript {
        language: summary.language.clone(),
        language_probability: summary.language_probability,
        duration: summary.duration,
        segments,
        ..Default::default()
    };
    assign_speakers(&mut transcript, &turns);
    if let Some(h) = hooks.on_segment.as_mut() {
        for seg in &transcript.segments {
            h(seg);
        }
    }
    summary.segments = transcript.segments.len();
    summary.speakers = transcript.speakers.clone();
    summary.turns = transcript.turns.clone();
    summary.rule_violations = write_whole(&transcript, outputs)?;
    Ok(summary)
}
