//! `--split-channels`: each input channel transcribed on its own through the windowed
//! pipeline (one window of one channel in memory at a time), the segments merged by time and
//! the outputs written once at the end.

use std::path::Path;

use super::{collect_segments, windowed, write_whole, Mode, Outputs, PipelineOptions, Summary};
use crate::audio::AudioStream;
use crate::engine::{Engine, Hooks};
use crate::{Result, Transcript};

pub(super) fn transcribe(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    // Opening the first channel says how many there are (and fails early on bad input).
    let count = AudioStream::open_channel(path, Some(0))?.channels();
    if count <= 1 {
        // Nothing to split: the ordinary (resumable) run, with unlabelled segments.
        let mode = Mode {
            channel: None,
            checkpoints: true,
        };
        return windowed(engine, path, None, outputs, options, hooks, mode);
    }

    let mut merged = Transcript::default();
    let mut summary = Summary::default();
    for channel in 0..count {
        let mode = Mode {
            channel: Some(channel),
            checkpoints: false,
        };
        let progress = |f: f32| (channel as f32 + f) / count as f32;
        let (collected, part) =
            collect_segments(engine, path, outputs, options, hooks, mode, &progress)?;
        if channel == 0 {
            merged.language = part.language.clone();
            merged.language_probability = part.language_probability;
            merged.duration = part.duration;
            summary.language = part.language;
            summary.language_probability = part.language_probability;
            summary.duration = part.duration;
        }
        summary.windows += part.windows;
        summary.warnings.extend(part.warnings);
        merged.segments.extend(collected);
    }
    merged.segments.sort_by(|a, b| a.start.total_cmp(&b.start));
    summary.segments = merged.segments.len();

    summary.rule_violations = write_whole(&merged, outputs)?;
    Ok(summary)
}
