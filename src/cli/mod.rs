//! Command-line interface: clap definitions and one file per subcommand.

mod completions;
mod config;
mod daemon;
mod device;
mod devices;
mod error;
mod exit_code;
mod fetch;
mod info;
mod listen;
mod models;
mod options;
mod rules;
mod serve;
mod subtitle;
mod transcribe;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes:
  0    success
  1    failure (the input failed, every input failed, or the model could not be loaded)
  2    bad command-line usage
  3    some inputs failed, others succeeded
  130  interrupted (Ctrl-C); no partial output files are left behind

Environment:
  VERBATIM_MODEL       Whisper model (name or file) used when --model is not given (default base.en)
  VERBATIM_VAD_MODEL   Silero VAD model (name or file) used when --vad-model is not given
  VERBATIM_MODELS_DIR  the model store (default $XDG_CACHE_HOME/verbatim/models, ~/.cache/...)
  VERBATIM_MODEL_URL   download mirror instead of https://huggingface.co
  VERBATIM_REGISTRY    file of extra or replacement registry rows (name, checksum, file...)
  VERBATIM_OFFLINE     1 = never download; fail with instructions when a model is missing
  HF_TOKEN             Hugging Face token, sent only to huggingface.co
  VERBATIM_FFMPEG      ffmpeg binary for formats the built-in decoders lack (empty: never use ffmpeg)
  VERBATIM_DEVICE      default for --device (auto, cpu, gpu, gpu:N)
  VERBATIM_API_KEY     API key `verbatim serve` requires when --api-key is not given
  VERBATIM_CONFIG      the config file (default $XDG_CONFIG_HOME/verbatim/config.toml)
  NO_COLOR             set (not empty): no colours unless --color always";

/// Fast, accurate speech to text on Whisper.
#[derive(Debug, Parser)]
#[command(name = "verbatim", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// When to use colours: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
}

/// The `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// Colours on a terminal, unless NO_COLOR is set.
    Auto,
    /// Always colour (also into pipes).
    Always,
    /// Never colour.
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Transcribe audio or video files (or standard input) to text, subtitles or JSON.
    #[command(after_help = transcribe::AFTER_HELP)]
    Transcribe(transcribe::TranscribeArgs),
    /// Live dictation from the microphone: partial text while you speak, committed text that
    /// never changes; JSON events, typing into the focused window, or appending to a file.
    #[command(after_help = listen::AFTER_HELP)]
    Listen(listen::ListenArgs),
    /// Subtitle whole media libraries: readable SRT/VTT/ASS by reading-speed rules, skipping
    /// what is done, resumable, shardable across Slurm or Kubernetes; or check subtitle files.
    #[command(after_help = subtitle::AFTER_HELP)]
    Subtitle(subtitle::SubtitleArgs),
    /// Manage Whisper and VAD models: list, pull, rm, verify, path, import.
    #[command(after_help = models::AFTER_HELP)]
    Models(models::ModelsArgs),
    /// List audio input devices (microphones) with their default format.
    #[command(after_help = devices::AFTER_HELP)]
    Devices(devices::DevicesArgs),
    /// Serve OpenAI's transcription API over HTTP (/v1/audio/transcriptions, translations,
    /// models): one loaded model, concurrent requests, a bounded queue.
    #[command(after_help = serve::AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// Print shell completions (bash, zsh, fish, powershell, elvish) to standard output.
    #[command(after_help = completions::COMPLETIONS_AFTER_HELP)]
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) to standard output, or write one page per command.
    #[command(after_help = completions::MAN_AFTER_HELP)]
    Man(completions::ManArgs),
    /// Show the config file's path or the effective settings (config.toml sets defaults for
    /// every command).
    #[command(after_help = config::AFTER_HELP)]
    Config(config::ConfigArgs),
    /// Versions, compiled backends (CPU, Vulkan, CUDA...), GPU devices, CPU features and the
    /// model store.
    #[command(after_help = info::AFTER_HELP)]
    Info(info::InfoArgs),
    /// Internal: lists GPU devices and self-tests one in a child process (see --device).
    #[command(name = "__gpu-probe", hide = true)]
    GpuProbe(device::ProbeArgs),
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    silence_caught_decoder_panics();
    let color = color_from_args(std::env::args_os().skip(1));
    apply_color(color);
    let clap_color = match color {
        ColorWhen::Always => clap::ColorChoice::Always,
        ColorWhen::Never => clap::ColorChoice::Never,
        ColorWhen::Auto if no_color_env() => clap::ColorChoice::Never,
        ColorWhen::Auto => clap::ColorChoice::Auto,
    };
    let base = Cli::command().color(clap_color);
    // The config file sets defaults; a broken one stops everything but `config path`,
    // which is how a user finds it.
    let entries = match config::load(&base) {
        Ok(e) => e,
        Err(e) if std::env::args().nth(1).is_none_or(|a| a != "config") => {
            print_error(e);
            return exit_code::USAGE;
        }
        Err(_) => Vec::new(),
    };
    let full = config::apply(base.clone(), &entries);
    let parsed = full
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Transcribe(args) => transcribe::run(args),
        Command::Subtitle(args) => subtitle::run(args),
        Command::Models(args) => models::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Completions(args) => completions::run_completions(args),
        Command::Man(args) => completions::run_man(args),
        Command::Config(args) => config::run(args, &base),
        Command::Info(args) => info::run(args),
        Command::GpuProbe(args) => device::run_probe(args),
    };
    // The one place a command's error is printed and becomes the exit code.
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            e.exit_code()
        }
    }
}

/// A malformed file can panic symphonia; the library catches that and reports the file as
/// corrupt, so the panic's own message would only be noise on stderr.
fn silence_caught_decoder_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !verbatim::audio::decode::inside_guarded_decoder() {
            previous(info);
        }
    }));
}

/// Whether `NO_COLOR` asks for no colours (set and not empty, as no-color.org defines it).
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The `--color` value from the raw arguments (needed before clap parses them, so that
/// clap's own help and errors follow it too); the last one wins, as in clap.
fn color_from_args(args: impl Iterator<Item = std::ffi::OsString>) -> ColorWhen {
    let mut color = ColorWhen::Auto;
    let mut args = args.map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--color" {
            args.next()
        } else {
            arg.strip_prefix("--color=").map(str::to_string)
        };
        if let Some(v) = value.and_then(|v| ColorWhen::from_str(&v, true).ok()) {
            color = v;
        }
    }
    color
}

/// Turns colours (progress bars, styled output) on or off for stdout and stderr. `auto`
/// leaves the terminal check to `console` (colours only on a terminal) and honours NO_COLOR.
fn apply_color(color: ColorWhen) {
    let enabled = match color {
        ColorWhen::Always => Some(true),
        ColorWhen::Never => Some(false),
        ColorWhen::Auto if no_color_env() => Some(false),
        ColorWhen::Auto => None,
    };
    if let Some(on) = enabled {
        console::set_colors_enabled(on);
        console::set_colors_enabled_stderr(on);
    }
}

/// Installs the Ctrl-C handler: the first press sets the returned flag (the command then
/// finishes cleanly), a second one exits at once with the interrupted code.
pub fn install_ctrlc() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let presses = AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || {
        set.store(true, Ordering::SeqCst);
        if presses.fetch_add(1, Ordering::SeqCst) >= 1 {
            std::process::exit(exit_code::INTERRUPTED);
        }
    });
    flag
}

/// Prints a one-line error in the house style.
pub fn print_error(message: impl std::fmt::Display) {
    eprintln!("verbatim: error: {message}");
}

/// Prints a one-line warning in the house style.
pub fn print_warning(message: impl std::fmt::Display) {
    eprintln!("verbatim: warning: {message}");
}
