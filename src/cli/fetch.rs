//! Shows model downloads: an indicatif bar (size, speed, ETA) on a terminal, plain lines
//! otherwise, nothing with `--quiet` except waits and retries, which explain a pause.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use verbatim::models::download::{human_bytes, Event};
use verbatim::Error;

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

/// Resolves (downloading if needed) the Whisper model and, unless `no_vad`, the VAD model,
/// then loads them where `placement` says. The error is the one line to print.
pub fn load_engine(
    model_arg: &str,
    vad_arg: Option<&str>,
    no_vad: bool,
    offline: bool,
    quiet: bool,
    placement: &super::device::Placement,
) -> Result<verbatim::engine::Engine, String> {
    let model = ensure_model(model_arg, offline, quiet).map_err(|e| e.to_string())?;
    let vad_model = if no_vad {
        None
    } else {
        Some(
            ensure_vad(vad_arg, &model, offline, quiet)
                .map_err(|e| format!("{e} (or pass --no-vad to transcribe without VAD)"))?,
        )
    };
    let options = verbatim::engine::EngineOptions {
        vad_model,
        ..verbatim::engine::EngineOptions::default()
    };
    placement.load(&model, &options, quiet)
}
