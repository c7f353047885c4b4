//! Command-line interface: clap definitions and one file per subcommand.

mod device;
mod devices;
mod fetch;
mod info;
mod listen;
mod models;
mod subtitle;
mod transcribe;

use clap::{Parser, Subcommand};

use verbatim::error::exit_code;

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
  VERBATIM_DEVICE      default for --device (auto, cpu, gpu, gpu:N)";

/// Fast, accurate speech to text on Whisper.
#[derive(Debug, Parser)]
#[command(name = "verbatim", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let cli = match Cli::try_parse() {
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
    match cli.command {
        Command::Transcribe(args) => transcribe::run(args),
        Command::Subtitle(args) => subtitle::run(args),
        Command::Models(args) => models::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Info(args) => info::run(args),
        Command::GpuProbe(args) => device::run_probe(args),
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
