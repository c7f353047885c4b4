//! Where models live. Names, downloads and verification come with `verbatim models`; this
//! module only knows the store directory and how to find a model already there.

use std::path::{Path, PathBuf};

/// Whisper models tried in order when none is configured (the best English default first).
pub const DEFAULT_MODEL_FILES: &[&str] = &[
    "ggml-base.en.bin",
    "ggml-base.bin",
    "ggml-tiny.en.bin",
    "ggml-small.en.bin",
    "ggml-tiny.bin",
];

/// Silero VAD file names, newest first.
pub const VAD_MODEL_FILES: &[&str] = &[
    "ggml-silero-v6.2.0.bin",
    "ggml-silero-vad.bin",
    "ggml-silero-v5.1.2.bin",
];

/// The model store: `$VERBATIM_MODELS_DIR`, else `$XDG_CACHE_HOME/verbatim/models`, else
/// `~/.cache/verbatim/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VERBATIM_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("verbatim").join("models")
}

/// The first default Whisper model present in the store.
pub fn find_default_model() -> Option<PathBuf> {
    let dir = models_dir();
    DEFAULT_MODEL_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// A Silero VAD model next to `near` (the Whisper model) or in the store.
pub fn find_vad_model(near: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = near.and_then(Path::parent) {
        dirs.push(dir.to_path_buf());
    }
    dirs.push(models_dir());
    dirs.iter()
        .flat_map(|d| VAD_MODEL_FILES.iter().map(move |f| d.join(f)))
        .find(|p| p.is_file())
}
