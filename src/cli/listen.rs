//! `verbatim listen`: live dictation from the microphone (or a file replayed like one).

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use verbatim::engine::{EngineOptions, TranscribeOptions, VadOptions};
use verbatim::error::exit_code;
use verbatim::listen::dictation::{DictationOptions, Event};
use verbatim::listen::session::{self, Ended, Input, SessionOptions, Summary};
use verbatim::listen::typing::Typer;

use super::{print_error, print_warning};

pub const AFTER_HELP: &str = "\
Examples:
  verbatim listen                          # dictate; Ctrl-C ends and prints a summary
  verbatim listen --once                   # one utterance, printed when you stop talking
  verbatim listen --type                   # type committed text into the focused window
  verbatim listen --json | my-program      # JSON Lines: partial, commit, utterance_end
  verbatim listen --output notes.txt       # append each utterance to a file as it is committed
  verbatim listen --device 2 -m base.en
  verbatim listen --input talk.wav --realtime   # replay a file through the same pipeline

On a terminal the current guess is shown dimmed and rewritten in place; committed words are
final and never change. Committed text is the prompt for what follows.";

/// Options of `verbatim listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Input device: an index or a name from `verbatim devices` [default: the default input].
    #[arg(short = 'D', long, value_name = "NAME|INDEX", help_heading = "Input")]
    device: Option<String>,

    /// Replay this file instead of capturing (as fast as possible, or --realtime).
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    input: Option<PathBuf>,

    /// With --input: replay at real-time pace, like a microphone.
    #[arg(long, requires = "input", help_heading = "Input")]
    realtime: bool,

    /// Stop after the first utterance (when the VAD hears its end) and print it.
    #[arg(long, help_heading = "Session")]
    once: bool,

    /// Stop after this many seconds of audio.
    #[arg(long, value_name = "SECS", help_heading = "Session")]
    duration: Option<f64>,

    /// Print JSON Lines events (partial, commit, utterance_end) on stdout.
    #[arg(long, help_heading = "Output")]
    json: bool,

    /// Append committed text to FILE, one utterance per line, as it is committed.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    output: Option<PathBuf>,

    /// Type committed text into the focused window (xdotool, wtype, dotool or ydotool; the
    /// clipboard when none works).
    #[arg(long = "type", help_heading = "Output")]
    type_text: bool,

    /// No summary and no notices on stderr.
    #[arg(short, long, help_heading = "Output")]
    quiet: bool,

    /// Whisper model: registry name, imported name or ggml file.
    #[arg(short, long, env = "VERBATIM_MODEL", value_name = "NAME|PATH",
          default_value = verbatim::models::DEFAULT_MODEL, help_heading = "Model")]
    model: String,

    /// Silero VAD model (name or file) [default: next to the model, else silero-v6.2.0].
    #[arg(
        long,
        env = "VERBATIM_VAD_MODEL",
        value_name = "NAME|PATH",
        help_heading = "Model"
    )]
    vad_model: Option<String>,

    /// Never download; fail with instructions when a model is missing (also VERBATIM_OFFLINE=1).
    #[arg(long, help_heading = "Model")]
    offline: bool,

    /// Spoken language: a code such as en, de, fr (auto detects per utterance).
    #[arg(
        short,
        long,
        default_value = "en",
        value_name = "LANG",
        help_heading = "Decoding"
    )]
    language: String,

    /// Text that primes the vocabulary (names, terms).
    #[arg(long, value_name = "TEXT", help_heading = "Decoding")]
    prompt: Option<String>,

    /// CPU threads for whisper.
    #[arg(short, long, default_value_t = verbatim::engine::default_threads(), value_name = "N", help_heading = "Decoding")]
    threads: usize,

    /// Beam size of each re-transcription, the pass that ends an utterance included (1 =
    /// greedy, fastest; 5 costs about three times as much a step on 2 cores).
    #[arg(
        long,
        default_value_t = DictationOptions::default().transcribe.beam_size,
        value_name = "N",
        help_heading = "Decoding"
    )]
    beam_size: usize,

    /// Re-transcribe the growing utterance after this much new audio (seconds).
    #[arg(
        long,
        default_value_t = DictationOptions::default().step,
        value_name = "SECS",
        help_heading = "Dictation"
    )]
    step: f64,

    /// Silence that ends an utterance (seconds).
    #[arg(
        long,
        default_value_t = DictationOptions::default().endpoint_silence,
        value_name = "SECS",
        help_heading = "Dictation"
    )]
    endpoint: f64,

    /// VAD speech probability threshold (0-1).
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "P",
        help_heading = "Dictation"
    )]
    vad_threshold: f32,

    #[command(flatten)]
    compute: super::device::ComputeDeviceArgs,
}

/// Runs `verbatim listen` and returns the exit code.
pub fn run(args: ListenArgs) -> i32 {
    // First Ctrl-C ends the session cleanly (flush, summary); a second one exits at once.
    let stop = super::install_ctrlc();
    if !(0.1..=10.0).contains(&args.step) || !(0.1..=10.0).contains(&args.endpoint) {
        print_error("--step and --endpoint must be between 0.1 and 10 seconds");
        return exit_code::USAGE;
    }
    if args.duration.is_some_and(|d| d.is_nan() || d <= 0.0) {
        print_error("--duration must be a positive number of seconds");
        return exit_code::USAGE;
    }
    let language = args.language.trim().to_ascii_lowercase();
    if language != "auto" && verbatim::engine::language_id(&language).is_none() {
        print_error(format!("unknown language code `{}`", args.language));
        return exit_code::USAGE;
    }
    // Open the output file first: a bad path should fail before the model loads.
    let mut output = match &args.output {
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                print_error(format!(
                    "{}: cannot open for appending: {e}",
                    path.display()
                ));
                return exit_code::FAILURE;
            }
        },
        None => None,
    };
    let mut typer = if args.type_text {
        match Typer::detect() {
            Ok(t) => {
                if !args.quiet {
                    eprintln!("verbatim: typing with {}", t.backend_name());
                    if let Some(notice) = t.notice() {
                        print_warning(notice);
                    }
                }
                Some(t)
            }
            Err(e) => {
                print_error(e);
                return exit_code::FAILURE;
            }
        }
    } else {
        None
    };

    // Decide the device (and probe the GPU) before any download: --strict fails fast.
    let placement = match super::device::DeviceArgs::from(&args.compute).resolve(args.quiet) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let offline = args.offline || verbatim::models::offline_from_env();
    let model = match super::fetch::ensure_model(&args.model, offline, args.quiet) {
        Ok(m) => m,
        Err(e) => {
            print_error(e);
            return exit_code::FAILURE;
        }
    };
    let vad = match super::fetch::ensure_vad(args.vad_model.as_deref(), &model, offline, args.quiet)
    {
        Ok(v) => v,
        Err(e) => {
            print_error(format!(
                "{e} (dictation needs the VAD model to find utterances)"
            ));
            return exit_code::FAILURE;
        }
    };
    let engine_options = EngineOptions {
        vad_model: Some(vad),
        ..EngineOptions::default()
    };
    let engine = match placement.load(&model, &engine_options, args.quiet) {
        Ok(e) => e,
        Err(e) => {
            print_error(e);
            return exit_code::FAILURE;
        }
    };

    let opts = SessionOptions {
        input: match &args.input {
            Some(path) => Input::File {
                path: path.clone(),
                realtime: args.realtime,
            },
            None => Input::Microphone(args.device.clone()),
        },
        duration: args.duration,
        once: args.once,
        dictation: DictationOptions {
            step: args.step,
            endpoint_silence: args.endpoint,
            transcribe: TranscribeOptions {
                language: Some(language),
                threads: args.threads.max(1),
                beam_size: args.beam_size.max(1),
                initial_prompt: args.prompt.clone(),
                ..DictationOptions::default().transcribe
            },
            vad: VadOptions {
                threshold: args.vad_threshold.clamp(0.01, 0.99),
                ..VadOptions::default()
            },
            ..DictationOptions::default()
        },
    };

    let terminal = std::io::stdout().is_terminal() && !args.json;
    let mut display = Display::new(terminal);
    let mut first_commit = true;
    let mut write_failed = false;
    let mut on_event = |event: &Event| {
        if args.json {
            if let Ok(line) = serde_json::to_string(event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        } else {
            display.show(event);
        }
        match event {
            Event::Commit { text, .. } => {
                if let Some(t) = typer.as_mut() {
                    let piece = if first_commit {
                        text.clone()
                    } else {
                        format!(" {text}")
                    };
                    match t.type_text(&piece) {
                        Ok(outcome) => {
                            if outcome.fell_back() && !args.quiet {
                                print_warning(outcome);
                            }
                        }
                        Err(e) => print_warning(e),
                    }
                }
                first_commit = false;
            }
            Event::UtteranceEnd { text, .. } => {
                if let Some(f) = output.as_mut() {
                    // Flushed per line: a crash or a lost device keeps every committed utterance.
                    if (writeln!(f, "{text}").and_then(|_| f.flush())).is_err() && !write_failed {
                        write_failed = true;
                        print_warning("cannot write to the --output file");
                    }
                }
            }
            Event::Partial { .. } => {}
        }
    };

    let result = session::run(&engine, &opts, &stop, &mut on_event);
    display.finish();
    match result {
        Ok((summary, failure)) => {
            if !args.quiet {
                print_summary(&summary);
            }
            match failure {
                Some(e) => {
                    print_error(format!(
                        "{e}; committed text was kept{}",
                        if args.output.is_some() {
                            " in the --output file"
                        } else {
                            ""
                        }
                    ));
                    exit_code::FAILURE
                }
                None if write_failed => exit_code::FAILURE,
                None => exit_code::OK,
            }
        }
        Err(e) => {
            print_error(e);
            exit_code::FAILURE
        }
    }
}

/// The terminal view: committed words in normal text, the partial dimmed after them, the line
/// rewritten in place; a new line per utterance. Off a terminal: one line per utterance.
struct Display {
    terminal: bool,
    committed: String,
    partial: String,
    width: usize,
}

impl Display {
    fn new(terminal: bool) -> Display {
        let width = console::Term::stdout().size().1 as usize;
        Display {
            terminal,
            committed: String::new(),
            partial: String::new(),
            width: if width < 20 { 80 } else { width },
        }
    }

    fn show(&mut self, event: &Event) {
        match event {
            Event::Partial { text, .. } => self.partial = text.clone(),
            Event::Commit { text, .. } => {
                if !self.committed.is_empty() {
                    self.committed.push(' ');
                }
                self.committed.push_str(text);
                self.partial.clear();
            }
            Event::UtteranceEnd { text, .. } => {
                let mut out = std::io::stdout().lock();
                if self.terminal {
                    let _ = write!(out, "\r\x1b[2K{text}\n");
                } else {
                    let _ = writeln!(out, "{text}");
                }
                let _ = out.flush();
                self.committed.clear();
                self.partial.clear();
                return;
            }
        }
        if self.terminal {
            self.redraw();
        }
    }

    fn redraw(&self) {
        // Show the end of the line only: a wrapped line cannot be rewritten with `\r`.
        let room = self.width.saturating_sub(1);
        let committed_len = self.committed.chars().count();
        let partial_len = self.partial.chars().count();
        let sep = usize::from(!self.committed.is_empty() && !self.partial.is_empty());
        let total = committed_len + sep + partial_len;
        let skip = total.saturating_sub(room);
        let committed: String = self.committed.chars().skip(skip).collect();
        let partial: String = self
            .partial
            .chars()
            .skip(skip.saturating_sub(committed_len + sep))
            .collect();
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r\x1b[2K{committed}{}\x1b[2m{partial}\x1b[0m",
            if sep == 1 { " " } else { "" }
        );
        let _ = out.flush();
    }

    fn finish(&mut self) {
        if self.terminal && (!self.committed.is_empty() || !self.partial.is_empty()) {
            println!();
        }
    }
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v.get(i).copied()
}

fn print_summary(s: &Summary) {
    let lat = &s.stats.commit_latencies;
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2} s"));
    let rtf = if s.stats.audio_seconds > 0.0 {
        s.stats.compute_seconds / s.stats.audio_seconds
    } else {
        0.0
    };
    let how = match s.ended {
        Ended::Stopped => "stopped",
        Ended::Duration => "duration reached",
        Ended::Once => "utterance done",
        Ended::EndOfInput => "end of input",
        Ended::DeviceLost => "device lost",
    };
    eprintln!(
        "verbatim: listened {:.1} s from {} ({how}): {} utterances, {} words; commit latency p50 {}, p95 {}; dropped audio {:.2} s; worker real-time factor {:.2}",
        s.stats.audio_seconds,
        s.source,
        s.stats.utterances,
        s.stats.words,
        fmt(percentile(lat, 50.0)),
        fmt(percentile(lat, 95.0)),
        s.dropped_seconds,
        rtf
    );
}
