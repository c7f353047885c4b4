//! `--split-channels`: each input channel transcribed on its own through the windowed
//! pipeline (one window of one channel in memory at a time), the segments merged by time and
//! the outputs written once at the end.

use std::path::Path;

use super::{windowed, Mode, Outputs, PipelineOptions, Summary};
use crate::audio::AudioStream;
use crate::engine::{Engine, Hooks};
use crate::output::write_atomic;
use crate::{Error, Result, Segment, Transcript};

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

    let no_files = Outputs {
        files: Vec::new(),
        ..outputs.clone()
    };
    let mut merged = Transcript::default();
    let mut summary = Summary::default();
    for channel in 0..count {
        let mut collected: Vec<Segment> = Vec::new();
        let mut user_segment = hooks.on_segment.take();
        let mut on_segment = |seg: &Segment| {
            collected.push(seg.clone());
            if let Some(h) = user_segment.as_mut() {
                h(seg);
            }
        };
        let mut user_progress = hooks.on_progress.take();
        let mut on_progress = |f: f32| {
            if let Some(h) = user_progress.as_mut() {
                h((channel as f32 + f) / count as f32);
            }
        };
        let mut channel_hooks = Hooks {
            on_segment: Some(&mut on_segment),
            on_progress: Some(&mut on_progress),
            cancel: hooks.cancel,
        };
        let mode = Mode {
            channel: Some(channel),
            checkpoints: false,
        };
        let result = windowed(
            engine,
            path,
            None,
            &no_files,
            options,
            &mut channel_hooks,
            mode,
        );
        hooks.on_segment = user_segment;
        hooks.on_progress = user_progress;
        let part = result?;
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

    if outputs.files.iter().any(|(f, _)| f.is_subtitle()) {
        summary.rule_violations = crate::subtitle::layout(&merged, &outputs.meta.subtitle_rules)
            .violations
            .len();
    }
    // Word times turned on only for the subtitle formats stay out of the others (JSON).
    let without_words = (!outputs.keep_words).then(|| {
        let mut t = merged.clone();
        for seg in &mut t.segments {
            seg.words = None;
        }
        t
    });
    for (format, file) in &outputs.files {
        let transcript = match &without_words {
            Some(t) if !format.is_subtitle() => t,
            _ => &merged,
        };
        let text = format.render(transcript, &outputs.meta);
        write_atomic(file, text.as_bytes()).map_err(|e| Error::output(file, e))?;
    }
    Ok(summary)
}
