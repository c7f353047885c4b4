//! The checkpoint of a long transcription: where the audio stands, how long each partial
//! output is (and a hash of its content), and what the next window needs (language, prompt).
//! Written atomically after each window; a checkpoint from another input, model or set of
//! options is ignored, and so is one whose partial files are not the ones it describes.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Outputs, PipelineOptions};
use crate::engine::Engine;
use crate::output::WriterState;

/// A checkpoint is a few kilobytes (the prompt tail is ~200 characters); anything larger at
/// that name is not one of ours and is not read.
const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;
/// Bytes hashed at each end of the model file for its stamp: the header (hyper-parameters,
/// vocabulary) and the last tensors, enough to tell two models apart without reading them.
const MODEL_STAMP_BYTES: u64 = 64 << 10;

/// What a resumed run needs to continue exactly where the last window ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hash of the input file, model, options and outputs: a resume must match it.
    pub fingerprint: String,
    /// The model the finished windows were transcribed with (also part of the fingerprint;
    /// kept readable here so a person can tell which model a checkpoint belongs to).
    #[serde(default)]
    pub model: ModelStamp,
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

/// Which model a checkpoint was written with: its path, size and a hash of its first and
/// last 64 KiB (cheap, and different for any two Whisper models).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStamp {
    /// The model file's path.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its first and last 64 KiB.
    pub sha256_ends: String,
}

impl ModelStamp {
    /// The stamp of the model file at `path` (empty hash when it cannot be read).
    pub fn of(path: &Path) -> ModelStamp {
        let mut stamp = ModelStamp {
            path: path.display().to_string(),
            ..ModelStamp::default()
        };
        let Ok(mut file) = std::fs::File::open(path) else {
            return stamp;
        };
        let size = file.metadata().map_or(0, |m| m.len());
        stamp.size = size;
        let mut h = Sha256::new();
        let mut buf = Vec::new();
        if (&mut file)
            .take(MODEL_STAMP_BYTES)
            .read_to_end(&mut buf)
            .is_err()
        {
            return stamp;
        }
        h.update(&buf);
        if size > 2 * MODEL_STAMP_BYTES {
            use std::io::Seek;
            buf.clear();
            if file
                .seek(std::io::SeekFrom::Start(size - MODEL_STAMP_BYTES))
                .and_then(|_| (&mut file).take(MODEL_STAMP_BYTES).read_to_end(&mut buf))
                .is_err()
            {
                return stamp;
            }
            h.update(&buf);
        }
        stamp.sha256_ends = format!("{:x}", h.finalize());
        stamp
    }
}

/// A partial output's length, content hash and writer counters at the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputState {
    /// Format extension (`srt`, `json`, ...).
    pub format: String,
    /// Bytes of the partial file that are final.
    pub len: u64,
    /// SHA-256 of those bytes: a resume checks the partial file still holds them.
    #[serde(default)]
    pub sha256: String,
    /// Bytes of the aside file (JSON's text) that are final.
    pub aside_len: u64,
    /// SHA-256 of those bytes.
    #[serde(default)]
    pub aside_sha256: String,
    /// The writer's counters.
    pub state: WriterState,
}

impl Checkpoint {
    /// Reads a checkpoint; `None` when missing, unreadable or not to be trusted (then the run
    /// starts over). The name is never followed if it is a link, nor read if it is not a
    /// regular file of ours of checkpoint size: a planted link to a FIFO, a device or another
    /// user's file is not a checkpoint.
    pub fn load(path: &Path) -> Option<Checkpoint> {
        let (file, meta) = super::open_regular(path, false).ok()??;
        if meta.len() > MAX_CHECKPOINT_BYTES || !super::owned_by_us(&meta) {
            return None;
        }
        let mut text = String::new();
        file.take(MAX_CHECKPOINT_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the checkpoint atomically (a new temporary file, created exclusively in the
    /// same directory, renamed over the name: a link planted there is replaced, not
    /// followed).
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
    model: &ModelStamp,
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
    // v2: partial files are checked against content hashes; model stamped by content.
    feed("checkpoint", "2".to_string());
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
    feed("model", model.path.clone());
    feed("model_size", model.size.to_string());
    feed("model_hash", model.sha256_ends.clone());
    feed("vad", engine.has_vad().to_string());
    feed(
        "options",
        serde_json::to_string(&options.transcribe).unwrap_or_default(),
    );
    // Debug too: it includes what serde skips (the VAD tuning, which moves the cuts).
    feed("options_all", format!("{:?}", options.transcribe));
    feed("window", options.window_seconds.to_string());
    feed("rules", format!("{:?}", outputs.meta.subtitle_rules));
    // What the writers put in the files' heads (model, options, source) and word timings.
    feed(
        "meta",
        serde_json::to_string(&outputs.meta).unwrap_or_default(),
    );
    feed("keep_words", outputs.keep_words.to_string());
    for (format, path) in &outputs.files {
        feed(
            "output",
            format!("{}={}", format.extension(), path.display()),
        );
    }
    format!("{:x}", h.finalize())
}
