//! `verbatim listen`: live dictation from the microphone (or a file replayed like one).

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use verbatim::listen::dictation::{DictationOptions, Event};
use verbatim::listen::hotkey::{self, Hotkey};
use verbatim::listen::session::{self, Ended, Input, SessionOptions, Summary};
use verbatim::listen::spoken::{separator, TextRules};
use verbatim::listen::typing::Typer;

use super::daemon::Control;
use super::device::DeviceArgs;
use super::error::CliError;
use super::exit_code;
use super::fetch::Vad;
use super::options::{DecodeArgs, LanguageArgs, ModelArgs, VadTuningArgs};
use super::print_warning;

pub const AFTER_HELP: &str = "\
Examples:
  verbatim listen                          # dictate; Ctrl-C ends and prints a summary
  verbatim listen --once                   # one utterance, printed when you stop talking
  verbatim listen --type                   # type committed text into the focused window
  verbatim listen --json | my-program      # JSON Lines: partial, commit, utterance_end
  verbatim listen --output notes.txt       # append each utterance to a file as it is committed
  verbatim listen --mic 2 -m base.en       # microphone 2 of `verbatim devices`
  verbatim listen --input talk.wav --realtime   # replay a file through the same pipeline
  verbatim listen --type --spoken-punctuation --replacements ~/names.txt
  verbatim listen --context 20             # read each utterance with the speech before it
  verbatim listen --daemon --hotkey F12 --whole --type   # read whole at the key's release
  verbatim listen --daemon --type &        # resident: model loaded, microphone closed
  verbatim listen toggle                   # bind to a key: start, then stop and deliver
  verbatim listen history -n 5             # the last dictations

On a terminal the current guess is shown dimmed and rewritten in place; committed words are
final and never change. Committed text is the prompt for what follows. --mic (-D) picks the
microphone; --device, as in every command, where whisper runs. With a multilingual model and
--language auto every step detects the language: give -l to save that time.";

/// The most earlier speech `--context` reads: whisper's window is 30 s, and the utterance
/// needs room beside it.
const MAX_CONTEXT: f64 = 25.0;

/// Options of `verbatim listen`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ListenArgs {
    #[command(subcommand)]
    control: Option<Control>,

    /// Stay resident with the model loaded and the microphone closed; `verbatim listen
    /// start|stop|toggle` (bind them to a key) dictate, and each dictation is delivered
    /// (printed, --type, --output) and saved to the history.
    #[arg(long, conflicts_with_all = ["input", "once", "duration"], help_heading = "Daemon")]
    daemon: bool,

    /// With --daemon: push-to-talk, dictate while KEY is held (F1-F20, RIGHTCTRL, PAUSE...,
    /// or a code), read from the kernel's input devices: needs the `input` group.
    #[arg(long, value_name = "KEY", requires = "daemon", value_parser = hotkey::parse_key, help_heading = "Daemon")]
    hotkey: Option<u16>,

    /// Microphone: an index or a name (or a unique part of one) from `verbatim devices`
    /// [default: the default input].
    #[arg(short = 'D', long, value_name = "NAME|INDEX", help_heading = "Input")]
    mic: Option<String>,

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

    /// Deliver each dictation read whole when it ends (the daemon's stop, the key's release,
    /// Ctrl-C, --once's utterance, the end of --input), as `transcribe` reads a file: its
    /// accuracy, after the stop instead of as you speak. The live guess is still shown; a
    /// dictation stops at 30 minutes.
    #[arg(long, help_heading = "Session")]
    whole: bool,

    /// Print JSON Lines events (partial, commit, utterance_end) on stdout.
    #[arg(long, help_heading = "Output")]
    json: bool,

    /// Append committed text to FILE, one utterance per line, as it is committed.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    output: Option<PathBuf>,

    /// Type committed text into the focused window (xdotool, wtype, dotool or ydotool; the
    /// clipboard when none works).
    #[arg(id = "type", long = "type", help_heading = "Output")]
    type_text: bool,

    /// No summary and no notices on stderr.
    #[arg(short, long, help_heading = "Output")]
    quiet: bool,

    /// Turn spoken punctuation and commands into text: "comma", "period" ("full stop"),
    /// "question mark", "new line", "new paragraph"... (docs/listen.md lists them per
    /// language), in the language of --language (English with auto).
    #[arg(long, help_heading = "Text")]
    spoken_punctuation: bool,

    /// Replace what whisper keeps getting wrong: a file of `FROM => TO` lines (words matched
    /// whole, ignoring case; `re:` starts a regular expression).
    #[arg(long, value_name = "FILE", help_heading = "Text")]
    replacements: Option<PathBuf>,

    #[command(flatten)]
    models: ModelArgs,

    #[command(flatten)]
    language: LanguageArgs,

    #[command(flatten)]
    decode: DecodeArgs,

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

    /// Read up to this much of the speech before each utterance with it, its committed text
    /// forced as the start of whisper's output: continuous speech reads more accurately, and
    /// each step costs about 1.5 times as much (0 = off; 20 is the value measured, see
    /// docs/listen.md). It shrinks while steps fall behind the speech.
    #[arg(
        long,
        default_value_t = DictationOptions::default().context_seconds,
        value_name = "SECS",
        help_heading = "Dictation"
    )]
    context: f64,

    #[command(flatten)]
    vad: VadTuningArgs,

    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs `verbatim listen`.
pub fn run(args: ListenArgs) -> Result<i32, CliError> {
    if let Some(control) = &args.control {
        return super::daemon::control(control);
    }
    // First Ctrl-C ends the session cleanly (flush, summary); a second one exits at once.
    let stop = super::install_ctrlc();
    if !(0.1..=10.0).contains(&args.step) || !(0.1..=10.0).contains(&args.endpoint) {
        return Err(CliError::usage(
            "--step and --endpoint must be between 0.1 and 10 seconds",
        ));
    }
    if !(0.0..=MAX_CONTEXT).contains(&args.context) {
        return Err(CliError::usage(format!(
            "--context must be between 0 and {MAX_CONTEXT} seconds (whisper reads 30 s at once)"
        )));
    }
    if args.duration.is_some_and(|d| d.is_nan() || d <= 0.0) {
        return Err(CliError::usage(
            "--duration must be a positive number of seconds",
        ));
    }
    let text = text_rules(&args)?;
    // The socket first: a second daemon should fail before loading a model.
    let server = if args.daemon {
        Some(super::daemon::bind(args.quiet)?)
    } else {
        None
    };
    let hotkey = args.hotkey.map(Hotkey::open).transpose()?;
    // Open the output file first: a bad path should fail before the model loads.
    let mut delivery = Delivery::open(&args)?;
    let engine = super::fetch::load_engine(&args.models, Vad::Required, &args.device, args.quiet)?;
    let opts = SessionOptions {
        input: match &args.input {
            Some(path) => Input::File {
                path: path.clone(),
                realtime: args.realtime,
            },
            None => Input::Microphone(args.mic.clone()),
        },
        duration: args.duration,
        once: args.once,
        dictation: DictationOptions {
            step: args.step,
            endpoint_silence: args.endpoint,
            context_seconds: args.context,
            ..super::options::dictation_options(&args.language, &args.decode, &args.vad)
        },
        text,
        whole: args.whole,
    };
    if let Some(server) = server {
        return super::daemon::serve(
            server,
            hotkey,
            &engine,
            &opts,
            &mut delivery,
            &stop,
            args.quiet,
        );
    }

    let result = session::run(&engine, &opts, &stop, &mut |e| delivery.deliver(e));
    delivery.finish();
    let (summary, failure) = result?;
    if !args.quiet {
        print_summary(&summary);
    }
    match failure {
        Some(e) => Err(CliError::failure(format!(
            "{e}; committed text was kept{}",
            if args.output.is_some() {
                " in the --output file"
            } else {
                ""
            }
        ))),
        // The warning was printed when the write failed.
        None if delivery.write_failed => Ok(exit_code::FAILURE),
        None => Ok(exit_code::OK),
    }
}

/// Where committed text goes: the terminal or JSON Lines on stdout, the focused window
/// (`--type`), the `--output` file.
pub(super) struct Delivery {
    json: bool,
    quiet: bool,
    display: Display,
    typer: Option<Typer>,
    output: Option<std::fs::File>,
    /// What was typed last, which decides whether the next piece needs a space.
    typed_tail: String,
    /// A write to the `--output` file failed (said once).
    pub(super) write_failed: bool,
}

impl Delivery {
    /// Opens the `--output` file and finds the typing tool, so a bad path or a missing tool
    /// fails before the model loads.
    fn open(args: &ListenArgs) -> Result<Delivery, CliError> {
        let output = match &args.output {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        CliError::failure(format!(
                            "{}: cannot open for appending: {e}",
                            path.display()
                        ))
                    })?,
            ),
            None => None,
        };
        let typer = if args.type_text {
            let t = Typer::detect()?;
            if !args.quiet {
                eprintln!("verbatim: typing with {}", t.backend_name());
                if let Some(notice) = t.notice() {
                    print_warning(notice);
                }
            }
            Some(t)
        } else {
            None
        };
        Ok(Delivery {
            json: args.json,
            quiet: args.quiet,
            display: Display::new(std::io::stdout().is_terminal() && !args.json),
            typer,
            output,
            typed_tail: String::new(),
            write_failed: false,
        })
    }

    /// Shows, types and appends one event.
    pub(super) fn deliver(&mut self, event: &Event) {
        if self.json {
            if let Ok(line) = serde_json::to_string(event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        } else {
            self.display.show(event);
        }
        match event {
            Event::Commit { text, .. } => {
                if let Some(t) = self.typer.as_mut() {
                    let piece = format!("{}{text}", separator(&self.typed_tail, text));
                    match t.type_text(&piece) {
                        Ok(outcome) => {
                            if outcome.fell_back() && !self.quiet {
                                print_warning(outcome);
                            }
                        }
                        Err(e) => print_warning(e),
                    }
                }
                self.typed_tail = text.chars().last().map(String::from).unwrap_or_default();
            }
            Event::UtteranceEnd { text, .. } => {
                if let Some(f) = self.output.as_mut() {
                    // Flushed per line: a crash or a lost device keeps every committed utterance.
                    if (writeln!(f, "{text}").and_then(|_| f.flush())).is_err()
                        && !self.write_failed
                    {
                        self.write_failed = true;
                        print_warning("cannot write to the --output file");
                    }
                }
            }
            Event::Partial { .. } => {}
        }
    }

    /// Ends the terminal's current line.
    pub(super) fn finish(&mut self) {
        self.display.finish();
    }
}

/// The rules of --spoken-punctuation and --replacements, checked before the model loads.
fn text_rules(args: &ListenArgs) -> Result<TextRules, CliError> {
    let mut rules = TextRules::new();
    if args.spoken_punctuation {
        rules = rules
            .with_spoken_punctuation(args.language.code().unwrap_or("en"))
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    if let Some(path) = &args.replacements {
        rules = rules
            .with_replacements_file(path)
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    Ok(rules)
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
                self.committed.push_str(separator(&self.committed, text));
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
