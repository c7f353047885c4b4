//! `verbatim models`: list, pull, remove, verify, locate and import models.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use verbatim::models::{self, download, registry, Registry, Resolved};
use verbatim::Error;

use super::error::CliError;
use super::exit_code;
use super::fetch::FetchDisplay;
use super::print_error;

/// `println!` that ignores a closed pipe (`verbatim models list | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub const AFTER_HELP: &str = "\
Examples:
  verbatim models list
  verbatim models pull base.en large-v3-turbo-q5_0
  verbatim models pull diarize
  verbatim models verify
  verbatim models path tiny.en
  verbatim models rm medium
  verbatim models import ~/.cache/huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots/*/ --name tiny.en-fw

Models live in $VERBATIM_MODELS_DIR, else $XDG_CACHE_HOME/verbatim/models (~/.cache/verbatim/models).
Downloads come from https://huggingface.co unless VERBATIM_MODEL_URL names a mirror, are resumed
after an interruption, and are verified against the registry's checksum before they are used.
VERBATIM_REGISTRY names a file of extra registry rows (same format as the built-in table).
`diarize` stands for the speaker diarization models (--diarize), which install into diarize/.";

/// Options of `verbatim models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List every registry model (size, languages, installed or not, path) and imported models.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download and verify models (skips those already installed).
    Pull {
        /// Registry names, e.g. base.en, large-v3-turbo-q5_0, silero-v6.2.0; `diarize` for both
        /// diarization models.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Print only errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove installed models from the store.
    Rm {
        /// Model names (registry or imported).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Re-hash installed models and compare with their checksums (all when no name is given).
    Verify {
        /// Model names (registry or imported).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of an installed model (fails when it is not installed).
    Path {
        /// Model name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Convert a CTranslate2 (faster-whisper) Whisper model directory into a ggml model in the
    /// store, usable with --model NAME.
    Import {
        /// Directory with model.bin, config.json and vocabulary.txt or tokenizer.json.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Name for the imported model [default: the directory's name].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Replace an imported model of the same name.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `verbatim models ...`.
pub fn run(args: ModelsArgs) -> Result<i32, CliError> {
    // A broken VERBATIM_REGISTRY file is the user's to fix: a usage error.
    let registry = Registry::load().map_err(CliError::usage)?;
    let store = models::models_dir();
    let result = match args.command {
        ModelsCommand::List { json } => list(&registry, &store, json),
        ModelsCommand::Pull { names, quiet } => {
            pull(&registry, &store, &expand(&registry, names), quiet)
        }
        ModelsCommand::Rm { names } => remove(&registry, &store, &expand(&registry, names)),
        ModelsCommand::Verify { names, json } => {
            verify(&registry, &store, &expand(&registry, names), json)
        }
        ModelsCommand::Path { name } => path(&registry, &store, &name),
        ModelsCommand::Import { dir, name, force } => import(&registry, &store, &dir, name, force),
    };
    Ok(result?)
}

/// The names with `diarize` (unless a registry row has that name) replaced by every
/// diarize-kind model, without repeats.
fn expand(registry: &Registry, names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let group: Vec<String> = if name == "diarize" && registry.get(&name).is_none() {
            registry
                .entries()
                .iter()
                .filter(|e| e.kind == models::Kind::Diarize)
                .map(|e| e.name.clone())
                .collect()
        } else {
            vec![name]
        };
        for n in group {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

fn list(registry: &Registry, store: &Path, json: bool) -> Result<i32, Error> {
    let installed = models::installed(store, registry);
    let mut rows = Vec::new();
    for entry in registry.entries() {
        let path = registry::install_path(store, entry);
        rows.push((
            entry.name.clone(),
            entry.kind.as_str().to_string(),
            entry.languages().to_string(),
            models::size_label(entry),
            entry.size.bytes(),
            path.is_file(),
            path,
            Some(entry),
        ));
    }
    for item in installed.iter().filter(|i| i.entry.is_none()) {
        rows.push((
            item.name.clone(),
            "imported".to_string(),
            "-".to_string(),
            download::human_bytes(item.bytes),
            item.bytes,
            true,
            item.path.clone(),
            None,
        ));
    }
    if json {
        let base = registry::base_url();
        let items: Vec<_> = rows
            .iter()
            .map(|(name, kind, langs, _, bytes, inst, path, entry)| {
                json!({
                    "name": name,
                    "kind": kind,
                    "languages": langs,
                    "english_only": entry.map(|e| e.english_only),
                    "size_bytes": bytes,
                    "size_exact": entry.map(|e| e.size.exact().is_some()).unwrap_or(true),
                    "checksum": entry.map(|e| e.checksum.to_string()),
                    "url": entry.map(|e| e.url(&base)),
                    "member": entry.and_then(|e| e.member()),
                    "installed": inst,
                    "path": path,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "store": store, "models": items }))
                .unwrap_or_default()
        );
        return Ok(exit_code::OK);
    }
    outln!("Model store: {}", store.display());
    outln!(
        "{:<26} {:<9} {:<13} {:>11}  {:<9}  PATH",
        "NAME",
        "KIND",
        "LANGUAGES",
        "SIZE",
        "INSTALLED"
    );
    for (name, kind, langs, size, _, inst, path, _) in &rows {
        let marker = if name == models::DEFAULT_MODEL {
            format!("{name} (default)")
        } else {
            name.clone()
        };
        outln!(
            "{:<26} {:<9} {:<13} {:>11}  {:<9}  {}",
            marker,
            kind,
            langs,
            size,
            if *inst { "yes" } else { "no" },
            if *inst {
                path.display().to_string()
            } else {
                "-".into()
            }
        );
    }
    Ok(exit_code::OK)
}

fn pull(registry: &Registry, store: &Path, names: &[String], quiet: bool) -> Result<i32, Error> {
    // Check every name before downloading anything, so a typo fails fast.
    let mut entries = Vec::new();
    for name in names {
        match models::resolve(name, registry, store)? {
            Resolved::Registry(entry, path) => entries.push((entry, path)),
            _ => {
                return Err(Error::Usage(format!(
                    "'{name}' is not a registry model; `verbatim models list` shows the names"
                )))
            }
        }
    }
    let mut failed = 0;
    for (entry, path) in entries {
        if path.is_file() {
            if !quiet {
                eprintln!(
                    "verbatim: {} is already installed at {} (`verbatim models verify {}` re-checks it)",
                    entry.name,
                    path.display(),
                    entry.name
                );
            }
            continue;
        }
        let mut display = FetchDisplay::new(quiet);
        match models::ensure_entry(&entry, &path, false, &mut |e| display.event(e)) {
            Ok(p) => display.done(&entry.name, &p),
            Err(e) => {
                print_error(e);
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        exit_code::OK
    } else {
        exit_code::FAILURE
    })
}

/// The installed model called `name`, or an error saying it is not installed.
fn installed_named(
    registry: &Registry,
    store: &Path,
    name: &str,
) -> Result<models::Installed, Error> {
    let all = models::installed(store, registry);
    if let Some(item) = all.iter().find(|i| i.name == name) {
        return Ok(item.clone());
    }
    if registry.get(name).is_some() {
        return Err(Error::Store(format!(
            "model {name} is not installed in {} (`verbatim models pull {name}` installs it)",
            store.display()
        )));
    }
    // Resolve for the "unknown model" message with suggestions.
    models::resolve(name, registry, store)?;
    Err(Error::Store(format!(
        "{name} is not a model in the store {}",
        store.display()
    )))
}

fn remove(registry: &Registry, store: &Path, names: &[String]) -> Result<i32, Error> {
    let items = names
        .iter()
        .map(|n| installed_named(registry, store, n))
        .collect::<Result<Vec<_>, _>>()?;
    for item in items {
        std::fs::remove_file(&item.path)
            .map_err(|e| Error::Store(format!("cannot remove {}: {e}", item.path.display())))?;
        let _ = std::fs::remove_file(models::sidecar_path(&item.path));
        eprintln!("verbatim: removed {} ({})", item.name, item.path.display());
    }
    Ok(exit_code::OK)
}

fn verify(registry: &Registry, store: &Path, names: &[String], json: bool) -> Result<i32, Error> {
    let items = if names.is_empty() {
        let all = models::installed(store, registry);
        if all.is_empty() && !json {
            eprintln!("verbatim: no models installed in {}", store.display());
        }
        all
    } else {
        names
            .iter()
            .map(|n| installed_named(registry, store, n))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut bad = 0;
    let mut records = Vec::new();
    for item in &items {
        let (status, detail) = match models::expected_checksum(item) {
            None => ("unknown", "no checksum known for this file".to_string()),
            Some(want) => match download::hash_file(&item.path, &want) {
                Err(e) => {
                    bad += 1;
                    ("error", format!("cannot read: {e}"))
                }
                Ok(got) if got == want.hex() => ("ok", want.to_string()),
                Ok(got) => {
                    bad += 1;
                    (
                        "mismatch",
                        format!(
                            "expected {want}, got {}:{got}; remove it with `verbatim models rm {}` and pull it again",
                            want.algorithm(),
                            item.name
                        ),
                    )
                }
            },
        };
        if json {
            records.push(json!({
                "name": item.name, "path": item.path, "status": status, "detail": detail,
            }));
        } else {
            outln!("{:<26} {:<8} {}", item.name, status, detail);
        }
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
    }
    Ok(if bad == 0 {
        exit_code::OK
    } else {
        exit_code::FAILURE
    })
}

fn path(registry: &Registry, store: &Path, name: &str) -> Result<i32, Error> {
    let resolved = models::resolve(name, registry, store)?;
    let p = resolved.path();
    if !p.is_file() {
        return Err(Error::Store(format!(
            "model {name} is not installed (it would be at {}; `verbatim models pull {name}` installs it)",
            p.display()
        )));
    }
    outln!("{}", p.display());
    Ok(exit_code::OK)
}

fn import(
    registry: &Registry,
    store: &Path,
    dir: &Path,
    name: Option<String>,
    force: bool,
) -> Result<i32, Error> {
    let name = match name {
        Some(n) => n,
        None => default_import_name(dir),
    };
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::Usage(format!(
            "'{name}' cannot be a model name (no slashes, spaces or leading dot); pass --name"
        )));
    }
    if registry.get(&name).is_some() {
        return Err(Error::Usage(format!(
            "'{name}' is a registry model name; choose another with --name (e.g. {name}-ct2)"
        )));
    }
    std::fs::create_dir_all(store).map_err(|e| {
        Error::Store(format!(
            "cannot create the model store {}: {e}",
            store.display()
        ))
    })?;
    let out = store.join(models::local_file(&name));
    if out.exists() && !force {
        return Err(Error::Usage(format!(
            "an imported model called {name} already exists at {} (pass --force to replace it)",
            out.display()
        )));
    }
    eprintln!("verbatim: importing {} as {name}", dir.display());
    convert(dir, &out, &name)?;
    outln!("{}", out.display());
    Ok(exit_code::OK)
}

/// A name for an imported model from its directory: `faster-whisper-tiny.en` -> `tiny.en-ct2`;
/// Hugging Face snapshot directories use the repository's name.
fn default_import_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut parts: Vec<String> = canonical
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // .../models--Systran--faster-whisper-tiny.en/snapshots/<hash>
    if let Some(i) = parts.iter().position(|p| p.starts_with("models--")) {
        let repo = parts[i].rsplit("--").next().unwrap_or("").to_string();
        parts = vec![repo];
    }
    let last = parts.pop().unwrap_or_default();
    let last = if last == "model" {
        parts.pop().unwrap_or(last)
    } else {
        last
    };
    let stem = last
        .trim_start_matches("faster-whisper-")
        .trim_start_matches("whisper-");
    format!("{stem}-ct2")
}

/// Converts and writes the checksum sidecar, then reports what was imported.
fn convert(dir: &Path, out: &Path, name: &str) -> Result<(), Error> {
    let summary = models::import::import_ct2(dir, out)?;
    let checksum = download::hash_file(out, &registry::Checksum::Sha256(String::new()))
        .map_err(|e| Error::Store(format!("cannot read back {}: {e}", out.display())))?;
    let sidecar = models::sidecar_path(out);
    if let Err(e) = std::fs::write(&sidecar, format!("{checksum}\n")) {
        // Without its checksum the model still works; `verify` would only say "unknown".
        let _ = std::fs::remove_file(out);
        return Err(Error::Store(format!(
            "cannot write {}: {e}",
            sidecar.display()
        )));
    }
    eprintln!(
        "verbatim: imported {name}: {} model, {} encoder + {} decoder layers, {} mel bins, {} tokens; CTranslate2 {} weights written as {} ({} tensors, {}); use it with --model {name}",
        if summary.multilingual { "multilingual" } else { "English-only" },
        summary.n_audio_layer,
        summary.n_text_layer,
        summary.n_mels,
        summary.n_vocab,
        summary.source_dtype,
        summary.ftype,
        summary.tensors,
        download::human_bytes(summary.bytes),
    );
    Ok(())
}
