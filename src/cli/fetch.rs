//! Shows model downloads: an indicatif bar (size, speed, ETA) on a terminal, plain lines
//! otherwise, nothing with `--quiet` except waits and retries, which explain a pause.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use verbatim::engine::{Engine, EngineOptions};
use verbatim::models::download::{human_bytes, Event};
use verbatim::Error;

use super::device::DeviceArgs;
use super::error::CliError;
use super::options::ModelArgs;

/// Turns download events into output on stderr.
pub struct FetchDisplay {
    quiet: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl FetchDisplay {
    /// A display for the current stderr.
    pub fn new(quiet: bool) -> FetchDisplay {
        FetchDisplay {
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// Handles one event.
    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Waiting { name } => {
                eprintln!(
                    "verbatim: another verbatim process is downloading {name}; waiting for it"
                )
            }
            Event::Start {
                name,
                url,
                offset,
                total,
            } => {
                if self.quiet {
                    return;
                }
                let size = total
                    .map(human_bytes)
                    .unwrap_or_else(|| "unknown size".into());
                let resumed = if offset > 0 {
                    format!(", resuming at {}", human_bytes(offset))
                } else {
                    String::new()
                };
                eprintln!("verbatim: downloading {name} ({size}{resumed}) from {url}");
                if self.terminal {
                    let bar =
                        ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(8));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:30.cyan/blue} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_position(offset);
                    bar.reset_eta();
                    self.bar = Some(bar);
                }
            }
            Event::Progress { done } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(done);
                }
            }
            Event::Retry { reason, attempt } => {
                self.clear();
                eprintln!("verbatim: warning: {reason}; retrying (attempt {attempt})");
            }
            Event::Verifying => {
                self.clear();
                if !self.quiet {
                    eprintln!("verbatim: verifying checksum");
                }
            }
        }
    }

    /// Reports a finished install.
    pub fn done(&mut self, name: &str, path: &std::path::Path) {
        self.clear();
        if !self.quiet {
            eprintln!("verbatim: installed {name} at {}", path.display());
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Resolves a model argument to an installed file, downloading it with a display if needed.
pub fn ensure_model(arg: &str, offline: bool, quiet: bool) -> Result<PathBuf, Error> {
    let mut display = FetchDisplay::new(quiet);
    let mut fetched = false;
    let path = verbatim::models::ensure(arg, offline, &mut |e| {
        if matches!(e, Event::Start { .. }) {
            fetched = true;
        }
        display.event(e)
    })?;
    if fetched {
        display.done(arg, &path);
    }
    Ok(path)
}

/// The diarization models, downloading the missing ones with a display (never when offline).
pub fn ensure_diarization_models(
    offline: bool,
    quiet: bool,
) -> Result<verbatim::diarization::DiarizationModels, Error> {
    let mut display = FetchDisplay::new(quiet);
    let mut fetched = false;
    let models = verbatim::diarization::ensure_models(offline, &mut |e| {
        fetched |= matches!(e, Event::Start { .. });
        display.event(e)
    })?;
    if fetched {
        let dir = models
            .segmentation
            .parent()
            .unwrap_or(std::path::Path::new("."));
        display.done("the diarization models", dir);
    }
    Ok(models)
}

/// The Silero VAD model: `arg` (name or file) when given, else a Silero file next to the Whisper
/// model, else the registry default from the store (downloaded on first use).
pub fn ensure_vad(
    arg: Option<&str>,
    model: &std::path::Path,
    offline: bool,
    quiet: bool,
) -> Result<PathBuf, Error> {
    match arg {
        Some(arg) => ensure_model(arg, offline, quiet),
        None => match verbatim::models::find_vad_model(Some(model)) {
            Some(p) => Ok(p),
            None => ensure_model(verbatim::models::DEFAULT_VAD_MODEL, offline, quiet),
        },
    }
}

/// Whether a command loads the VAD model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vad {
    /// `--no-vad`: no VAD model.
    Off,
    /// The VAD model, which `--no-vad` would do without.
    On,
    /// The VAD model, which the command cannot do without (dictation finds utterances with it).
    Required,
}

/// The one way every command loads its engine: decides the device (probing the GPU, so that
/// `--strict` fails before any download), resolves (downloading if needed) the Whisper model
/// and the VAD model, and loads them there.
pub fn load_engine(
    models: &ModelArgs,
    vad: Vad,
    device: &DeviceArgs,
    quiet: bool,
) -> Result<Engine, CliError> {
    let placement = device.resolve(quiet)?;
    let offline = models.offline();
    let model = ensure_model(&models.model, offline, quiet)?;
    let vad_model = match vad {
        Vad::Off => None,
        Vad::On | Vad::Required => {
            let found = ensure_vad(models.vad_model.as_deref(), &model, offline, quiet);
            Some(found.map_err(|e| {
                CliError::failure(if vad == Vad::Required {
                    format!("{e} (dictation needs the VAD model to find utterances)")
                } else {
                    format!("{e} (or pass --no-vad to transcribe without VAD)")
                })
            })?)
        }
    };
    let options = EngineOptions {
        vad_model,
        ..EngineOptions::default()
    };
    Ok(placement.load(&model, &options, quiet)?)
}
