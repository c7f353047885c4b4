//! The checkpoint of a long transcription: where the audio stands, how long each partial
//! output is, and what the next window needs (language, prompt). Written atomically after
//! each window; a checkpoint from another input, model or set of options is ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Outputs, PipelineOptions};
use crate::engine::Engine;
use crate::output::WriterState;

/// What a resumed run needs to continue exactly where the last window ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hash of the input file, model, options and outputs: a resume must match it.
    pub fingerprint: String,
    /// Absolute index (16 kHz samples) of the first sample not yet transcribed.
    pub samples_done: u64,
    /// Language of the transcript so far.
    pub language: String,
    /// Probability of the detected language.
    pub language_probability: Option<f32>,
    /// The end of the text so far: the next window's prompt.
    pub prompt_tail: String,
    /// Segments written so far.
    pub segments: usize,
    /// Subtitle rule violations so far.
    pub rule_violations: usize,
    /// One entry per output, in the order of [`Outputs::files`].
    pub outputs: Vec<OutputState>,
}

/// A partial output's length and writer counters at the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputState {
    /// Format extension (`srt`, `json`, ...).
    pub format: String,
    /// Bytes of the partial file that are final.
    pub len: u64,
    /// Bytes of the aside file (JSON's text) that are final.
    pub aside_len: u64,
    /// The writer's counters.
    pub state: WriterState,
}

impl Checkpoint {
    /// Reads a checkpoint; `None` when missing or unreadable (then the run starts over).
    pub fn load(path: &Path) -> Option<Checkpoint> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::output::write_atomic(path, text.as_bytes())
    }
}

/// Everything that, if changed, would make the resumed result differ from a fresh run.
pub(super) fn fingerprint(
    input: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    engine: &Engine,
) -> String {
    let mut h = Sha256::new();
    let mut feed = |label: &str, value: String| {
        h.update(label.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    };
    feed("version", env!("CARGO_PKG_VERSION").to_string());
    let canonical = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    feed("input", canonical.display().to_string());
    if let Ok(meta) = std::fs::metadata(input) {
        feed("size", meta.len().to_string());
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        feed("mtime", mtime.to_string());
    }
    let model = &engine.model_info().path;
    feed("model", model.display().to_string());
    feed(
        "model_size",
        std::fs::metadata(model).map_or(0, |m| m.len()).to_string(),
    );
    feed(
        "options",
        serde_json::to_string(&options.transcribe).unwrap_or_default(),
    );
    feed("window", options.window_seconds.to_string());
    feed("rules", format!("{:?}", outputs.meta.subtitle_rules));
    for (format, path) in &outputs.files {
        feed(
            "output",
            format!("{}={}", format.extension(), path.display()),
        );
    }
    format!("{:x}", h.finalize())
}
