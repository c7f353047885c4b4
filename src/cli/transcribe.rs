//! `verbatim transcribe`: files or stdin in, transcript on stdout and in files.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use verbatim::engine::{Engine, Hooks, TranscribeOptions};
use verbatim::output::{self, Format, JsonMeta};
use verbatim::{timecode, Error, Segment};

use super::device::DeviceArgs;
use super::error::CliError;
use super::exit_code;
use super::options::{DiarizeArgs, FileDecodeArgs, ModelArgs, VadArgs};
use super::{print_error, print_warning};

pub const AFTER_HELP: &str = "\
Examples:
  verbatim transcribe talk.mp3
  verbatim transcribe a.flac b.m4a -f srt,vtt,json -o out/
  cat meeting.wav | verbatim transcribe - -f txt
  verbatim transcribe interview.wav --split-channels -f srt
  verbatim transcribe film.mkv -f srt,vtt,ass --preset youtube --max-chars 37
  verbatim transcribe lecture.mkv -l de --translate -w -f json
  verbatim transcribe podcast.mp3 --offset 1:30 --duration 60 --prompt 'Kubernetes, etcd'

Outputs are named after the input (talk.mp3 -> talk.srt), written next to it or under -o,
and always written atomically: an interrupted run leaves no half-written file.";

/// Options of `verbatim transcribe`.
#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// Audio or video files to transcribe; `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,

    #[command(flatten)]
    models: ModelArgs,

    #[command(flatten)]
    decoding: FileDecodeArgs,

    /// Include word-level timestamps and probabilities (JSON output). Word times are always
    /// computed for srt, vtt and ass, which are laid out word by word.
    #[arg(short, long, help_heading = "Decoding")]
    word_timestamps: bool,

    /// Start at this time (seconds, MM:SS or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = timecode::parse_user, help_heading = "Range")]
    offset: Option<f64>,

    /// Transcribe only this much audio (seconds, MM:SS or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = timecode::parse_length, help_heading = "Range")]
    duration: Option<f64>,

    #[command(flatten)]
    vad: VadArgs,

    /// Transcribe each channel on its own and label segments with it (e.g. two-person calls
    /// recorded in stereo).
    #[arg(long, help_heading = "Input", conflicts_with = "diarize")]
    split_channels: bool,

    #[command(flatten)]
    speakers: DiarizeArgs,

    /// Ignore a checkpoint left by an interrupted run of the same command and start over
    /// (by default such a run resumes where it stopped).
    #[arg(long, help_heading = "Long recordings")]
    restart: bool,

    /// Fail (exit 1, no output files) when the input is damaged: truncated, undecodable
    /// packets, NaN samples, samples far beyond full scale. By default such a run warns and
    /// transcribes what could be read.
    #[arg(long, help_heading = "Input")]
    reject_damaged: bool,

    /// Length of the windows a recording is cut into, at pauses, in seconds: memory holds
    /// one window, and a checkpoint is written after each.
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECONDS",
        help_heading = "Long recordings"
    )]
    window: f64,

    /// Output files to write, comma separated: txt, srt, vtt, ass, json, tsv, lrc, rttm.
    #[arg(short, long, value_delimiter = ',', value_name = "FORMATS", value_parser = parse_format, help_heading = "Output")]
    format: Vec<Format>,

    /// Directory for output files [default: next to each input].
    #[arg(short, long, value_name = "DIR", help_heading = "Output")]
    output_dir: Option<PathBuf>,

    /// Print `[start --> end]` before each line on stdout [default: on a terminal].
    #[arg(long, overrides_with = "no_timestamps", help_heading = "Output")]
    timestamps: bool,

    /// Print plain text lines on stdout, without times.
    #[arg(long, help_heading = "Output")]
    no_timestamps: bool,

    /// Print each segment on stdout as one JSON object per line (JSON Lines: source, start,
    /// end, text, avg_logprob, no_speech_prob, flags, words), for scripts.
    #[arg(long, help_heading = "Output", conflicts_with_all = ["timestamps", "no_timestamps"])]
    json: bool,

    /// No progress bar and no warnings on stderr (errors are still printed).
    #[arg(short, long, help_heading = "Output")]
    quiet: bool,

    #[command(flatten)]
    subtitle_rules: super::rules::SubtitleRuleArgs,

    #[command(flatten)]
    device: DeviceArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| {
        format!("unknown format `{s}` (expected txt, srt, vtt, ass, json, tsv, lrc or rttm)")
    })
}

/// `HH:MM:SS.mmm`, the times printed before each segment.
fn timestamp(seconds: f64) -> String {
    timecode::clock(seconds, '.')
}

/// How segments are printed on stdout.
#[derive(Debug, Clone, Copy)]
enum Stdout {
    /// Text, one segment per line, with `[start --> end]` when `with_times`.
    Text { with_times: bool },
    /// `--json`: one JSON object per segment, naming its source.
    JsonLines,
}

/// Prints a segment of `source` on stdout.
fn print_segment(seg: &Segment, style: Stdout, source: &Path) {
    let line = match style {
        Stdout::JsonLines => {
            let mut value = serde_json::to_value(seg).unwrap_or_default();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("source".into(), source.display().to_string().into());
            }
            value.to_string()
        }
        Stdout::Text { with_times } => {
            let label = seg
                .speaker_label()
                .map(|l| format!("[{l}] "))
                .unwrap_or_default();
            if with_times {
                format!(
                    "[{} --> {}]  {label}{}",
                    timestamp(seg.start),
                    timestamp(seg.end),
                    seg.text
                )
            } else {
                format!("{label}{}", seg.text)
            }
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn run(args: TranscribeArgs) -> Result<i32, CliError> {
    // First Ctrl-C aborts whisper cleanly; a second one exits at once.
    let cancel = super::install_ctrlc();

    // Validate everything that can be validated before loading a model.
    let formats: Vec<Format> = {
        let mut seen = HashSet::new();
        args.format
            .iter()
            .copied()
            .filter(|f| seen.insert(*f))
            .collect()
    };
    if let Some(dir) = &args.output_dir {
        // `-o -` reads like "to stdout", which is where the transcript goes anyway; a
        // directory named `-` is never what was meant (`./-` still names one).
        if dir.as_os_str() == "-" {
            return Err(CliError::usage(
                "-o takes a directory for the output files (-f); the transcript is already printed on stdout",
            ));
        }
        // Made only when some input exists: a run whose inputs are all missing leaves
        // nothing behind, not even an empty directory.
        let any_input = args
            .inputs
            .iter()
            .any(|p| p.as_os_str() == "-" || p.exists());
        if any_input {
            std::fs::create_dir_all(dir).map_err(|e| {
                CliError::failure(format!(
                    "{}: cannot create output directory: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(CliError::usage("standard input (-) can be given only once"));
    }
    if !formats.is_empty() {
        let mut targets = HashSet::new();
        for input in &args.inputs {
            for f in &formats {
                let out = output::output_path(input, args.output_dir.as_deref(), *f);
                if !targets.insert(out.clone()) {
                    return Err(CliError::usage(format!(
                        "two inputs would write the same output file {}; use -o with separate runs or rename an input",
                        out.display()
                    )));
                }
            }
        }
    }
    let subtitle_rules = args.subtitle_rules.rules()?;
    if formats.contains(&Format::Rttm) && !args.speakers.diarize && !args.split_channels {
        return Err(CliError::usage(
            "rttm says who spoke when: add --diarize (or --split-channels for one speaker per channel)",
        ));
    }
    // The diarization models load before the Whisper model: a missing one fails at once.
    let diarizer = args.speakers.load(args.models.offline(), args.quiet)?;

    let engine = super::fetch::load_engine(
        &args.models,
        args.vad.engine_vad(),
        &args.device,
        args.quiet,
    )?;
    let info = engine.model_info().clone();
    args.decoding.warn_english_only(&info, args.quiet);

    let options = TranscribeOptions {
        // The subtitle engine breaks and times cues by word.
        word_timestamps: args.word_timestamps || formats.iter().any(|f| f.is_subtitle()),
        offset: args.offset.unwrap_or(0.0),
        duration: args.duration,
        ..args.decoding.transcribe_options(&args.vad, 1)
    };

    let stdout = if args.json {
        Stdout::JsonLines
    } else {
        Stdout::Text {
            with_times: args.timestamps || (!args.no_timestamps && std::io::stdout().is_terminal()),
        }
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let multiple = args.inputs.len() > 1;

    let mut ok = 0usize;
    let mut failed = 0usize;
    for input in &args.inputs {
        if cancel.load(Ordering::SeqCst) {
            return Err(CliError::Interrupted(format!(
                "interrupted before {}; the inputs before it keep their outputs",
                input.display()
            )));
        }
        // With --json the source of each line is in the line itself.
        if multiple && !args.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "==> {} <==", input.display());
        }
        match transcribe_one(
            input,
            &engine,
            &options,
            &args,
            &formats,
            &subtitle_rules,
            diarizer.as_ref(),
            stdout,
            show_progress,
            &cancel,
        ) {
            Ok(()) => ok += 1,
            Err(Error::Cancelled) => {
                let resumable = formats.first().is_some_and(|f| {
                    let out = output::output_path(input, args.output_dir.as_deref(), *f);
                    verbatim::pipeline::checkpoint_for(&out).is_file()
                });
                return Err(CliError::Interrupted(if resumable {
                    "interrupted; the finished part is saved: run the same command again to resume"
                        .into()
                } else {
                    "interrupted; no output files were written for the current input".into()
                }));
            }
            // One failed input is reported and the others go on.
            Err(e) => {
                print_error(e);
                failed += 1;
            }
        }
    }
    Ok(match (ok, failed) {
        (_, 0) => exit_code::OK,
        (0, _) => exit_code::FAILURE,
        _ => exit_code::PARTIAL,
    })
}

fn progress_bar(show: bool, display: &Path) -> Option<ProgressBar> {
    if !show {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {percent:>3}% {elapsed_precise} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(
        display
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// One input (a file or `-`) through the library's pipeline: bounded memory, outputs growing
/// as `NAME.EXT.partial` while it runs, a file resumable from its checkpoint.
#[allow(clippy::too_many_arguments)]
fn transcribe_one(
    input: &Path,
    engine: &Engine,
    options: &TranscribeOptions,
    args: &TranscribeArgs,
    formats: &[Format],
    subtitle_rules: &verbatim::subtitle::Rules,
    diarizer: Option<&verbatim::diarization::Diarizer>,
    stdout: Stdout,
    show_progress: bool,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let bar = progress_bar(show_progress, input);
    let outputs = verbatim::pipeline::Outputs {
        files: formats
            .iter()
            .map(|f| {
                (
                    *f,
                    output::output_path(input, args.output_dir.as_deref(), *f),
                )
            })
            .collect(),
        meta: JsonMeta::for_run(
            engine,
            input.display().to_string(),
            options,
            subtitle_rules.clone(),
        ),
        keep_words: args.word_timestamps,
    };
    let pipeline_options = verbatim::pipeline::PipelineOptions {
        transcribe: options.clone(),
        window_seconds: args.window,
        resume: !args.restart,
        split_channels: args.split_channels,
        diarize: diarizer.cloned(),
        max_seconds: None,
        strict: args.reject_damaged,
    };
    let mut on_segment = |seg: &Segment| match &bar {
        Some(b) => b.suspend(|| print_segment(seg, stdout, input)),
        None => print_segment(seg, stdout, input),
    };
    let mut on_progress = |fraction: f32| {
        if let Some(b) = &bar {
            b.set_position((fraction * 1000.0) as u64);
        }
    };
    let mut hooks = Hooks {
        on_segment: Some(&mut on_segment),
        on_progress: Some(&mut on_progress),
        cancel: Some(cancel),
    };
    if !args.quiet {
        // Only a checkpoint the run will accept (same model, options and intact partial
        // files) is announced; the pipeline warns when it starts over instead.
        if let Some(at) =
            verbatim::pipeline::resume_point(engine, input, &outputs, &pipeline_options)
        {
            print_warning(format!(
                "{}: resuming after {} (checkpoint found; --restart starts over)",
                input.display(),
                timestamp(at)
            ));
        }
    }
    let result =
        verbatim::pipeline::transcribe(engine, input, &outputs, &pipeline_options, &mut hooks);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = result?;
    if !args.quiet {
        if let Some(at) = summary.resumed_from {
            eprintln!(
                "verbatim: {}: resumed at {}; {} window(s) transcribed in this run",
                input.display(),
                timestamp(at),
                summary.windows
            );
        }
        for w in &summary.warnings {
            print_warning(w);
        }
        if summary.rule_violations > 0 {
            print_warning(format!(
                "{}: {} subtitle rule violation(s) the speech made unavoidable (verbatim subtitle --check lists them)",
                input.display(),
                summary.rule_violations
            ));
        }
    }
    Ok(())
}
