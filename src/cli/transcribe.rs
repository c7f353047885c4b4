//! `verbatim transcribe`: files or stdin in, transcript on stdout and in files.

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use verbatim::audio::{self, InputSource};
use verbatim::engine::{self, Engine, EngineOptions, Hooks, TranscribeOptions, VadOptions};
use verbatim::error::exit_code;
use verbatim::output::{self, Format, JsonMeta};
use verbatim::{Error, Segment, Transcript};

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

    /// Whisper model: a registry name (tiny.en, base, large-v3-turbo-q5_0...), an imported
    /// model's name, or a ggml file. Registry models are downloaded and verified on first use.
    #[arg(
        short,
        long,
        env = "VERBATIM_MODEL",
        value_name = "NAME|PATH",
        default_value = verbatim::models::DEFAULT_MODEL,
        help_heading = "Model"
    )]
    model: String,

    /// Never touch the network: fail with instructions when a model is not installed
    /// (also VERBATIM_OFFLINE=1).
    #[arg(long, help_heading = "Model")]
    offline: bool,

    /// Spoken language: `auto` to detect it, or a code such as en, de, fr, ja.
    #[arg(
        short,
        long,
        default_value = "auto",
        value_name = "LANG",
        help_heading = "Decoding"
    )]
    language: String,

    /// Translate the speech to English.
    #[arg(long, help_heading = "Decoding")]
    translate: bool,

    /// CPU threads [default: all cores].
    #[arg(short, long, value_name = "N", help_heading = "Decoding")]
    threads: Option<usize>,

    /// Beam size for beam-search decoding; 1 decodes greedily (faster, less accurate).
    #[arg(long, default_value_t = 5, value_name = "N", help_heading = "Decoding")]
    beam_size: usize,

    /// Candidates compared when sampling with temperature > 0.
    #[arg(long, default_value_t = 5, value_name = "N", help_heading = "Decoding")]
    best_of: usize,

    /// Initial sampling temperature (0 is deterministic).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "T",
        help_heading = "Decoding"
    )]
    temperature: f32,

    /// Temperature step used to retry a window whose decode looks wrong (repetitive or
    /// improbable).
    #[arg(
        long,
        default_value_t = 0.2,
        value_name = "T",
        help_heading = "Decoding"
    )]
    temperature_increment: f32,

    /// Never retry at a higher temperature.
    #[arg(long, help_heading = "Decoding")]
    no_fallback: bool,

    /// Text that primes the decoder: names, jargon, spelling, punctuation style.
    #[arg(long, value_name = "TEXT", help_heading = "Decoding")]
    prompt: Option<String>,

    /// Include word-level timestamps and probabilities (JSON output). Word times are always
    /// computed for srt, vtt and ass, which are laid out word by word.
    #[arg(short, long, help_heading = "Decoding")]
    word_timestamps: bool,

    /// Start at this time (seconds, MM:SS or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Range")]
    offset: Option<f64>,

    /// Transcribe only this much audio (seconds, MM:SS or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Range")]
    duration: Option<f64>,

    /// Disable voice activity detection (transcribe silence and noise too).
    #[arg(long, help_heading = "Voice activity detection")]
    no_vad: bool,

    /// Silero VAD model, a registry name or a ggml file [default: a Silero model next to the
    /// Whisper model, else silero-v6.2.0 from the store, downloaded on first use].
    #[arg(
        long,
        env = "VERBATIM_VAD_MODEL",
        value_name = "NAME|PATH",
        help_heading = "Voice activity detection"
    )]
    vad_model: Option<String>,

    /// Speech probability threshold for VAD (0-1).
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "P",
        help_heading = "Voice activity detection"
    )]
    vad_threshold: f32,

    /// Keep whisper's output even where the hallucination guard would drop or cut it.
    #[arg(long, help_heading = "Decoding")]
    no_guard: bool,

    /// Transcribe each channel on its own and label segments with it (e.g. two-person calls
    /// recorded in stereo).
    #[arg(long, help_heading = "Input")]
    split_channels: bool,

    /// Ignore a checkpoint left by an interrupted run of the same command and start over
    /// (by default such a run resumes where it stopped).
    #[arg(long, help_heading = "Long recordings")]
    restart: bool,

    /// Length of the windows a recording is cut into, at pauses, in seconds: memory holds
    /// one window, and a checkpoint is written after each.
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECONDS",
        help_heading = "Long recordings"
    )]
    window: f64,

    /// Output files to write, comma separated: txt, srt, vtt, ass, json, tsv, lrc.
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
    device: super::device::DeviceArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| {
        format!("unknown format `{s}` (expected txt, srt, vtt, ass, json, tsv or lrc)")
    })
}

/// Parses `90`, `1:30`, `01:02:03.5` into seconds.
fn parse_time(s: &str) -> Result<f64, String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid time `{s}` (use seconds, MM:SS or HH:MM:SS)"
        ));
    }
    let mut total = 0.0;
    for part in &parts {
        let v: f64 = part
            .parse()
            .map_err(|_| format!("invalid time `{s}` (use seconds, MM:SS or HH:MM:SS)"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("invalid time `{s}`"));
        }
        total = total * 60.0 + v;
    }
    Ok(total)
}

fn timestamp(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
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
                .channel_label()
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

pub fn run(args: TranscribeArgs) -> i32 {
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
            print_error(
                "-o takes a directory for the output files (-f); the transcript is already printed on stdout",
            );
            return exit_code::USAGE;
        }
        // Made only when some input exists: a run whose inputs are all missing leaves
        // nothing behind, not even an empty directory.
        let any_input = args
            .inputs
            .iter()
            .any(|p| p.as_os_str() == "-" || p.exists());
        if any_input {
            if let Err(e) = std::fs::create_dir_all(dir) {
                print_error(format!(
                    "{}: cannot create output directory: {e}",
                    dir.display()
                ));
                return exit_code::FAILURE;
            }
        }
    }
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        print_error("standard input (-) can be given only once");
        return exit_code::USAGE;
    }
    if !formats.is_empty() {
        let mut targets = HashSet::new();
        for input in &args.inputs {
            for f in &formats {
                let out = output::output_path(input, args.output_dir.as_deref(), *f);
                if !targets.insert(out.clone()) {
                    print_error(format!(
                        "two inputs would write the same output file {}; use -o with separate runs or rename an input",
                        out.display()
                    ));
                    return exit_code::USAGE;
                }
            }
        }
    }
    let subtitle_rules = match args.subtitle_rules.rules() {
        Ok(r) => r,
        Err(e) => {
            print_error(e);
            return exit_code::USAGE;
        }
    };
    let language = args.language.trim().to_ascii_lowercase();
    if language != "auto" && engine::language_id(&language).is_none() {
        print_error(format!(
            "unknown language code `{}` (use auto or a code such as en, de, fr)",
            args.language
        ));
        return exit_code::USAGE;
    }

    // Decide the device (and probe the GPU) before any download: --strict fails fast.
    let placement = match args.device.resolve(args.quiet) {
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
    let vad_model = if args.no_vad {
        None
    } else {
        let found =
            super::fetch::ensure_vad(args.vad_model.as_deref(), &model, offline, args.quiet);
        match found {
            Ok(p) => Some(p),
            Err(e) => {
                print_error(format!("{e} (or pass --no-vad to transcribe without VAD)"));
                return exit_code::FAILURE;
            }
        }
    };
    let engine_options = EngineOptions {
        vad_model: vad_model.clone(),
        ..EngineOptions::default()
    };
    let engine = match placement.load(&model, &engine_options, args.quiet) {
        Ok(e) => e,
        Err(e) => {
            print_error(e);
            return exit_code::FAILURE;
        }
    };
    let info = engine.model_info().clone();
    if !args.quiet {
        if !info.multilingual && language != "auto" && language != "en" {
            print_warning(format!(
                "{} is English-only; ignoring --language {language}",
                model.display()
            ));
        }
        if !info.multilingual && args.translate {
            print_warning(format!(
                "{} is English-only; --translate has no effect",
                model.display()
            ));
        }
    }

    let options = TranscribeOptions {
        language: (language != "auto").then_some(language),
        translate: args.translate,
        threads: args.threads.unwrap_or_else(engine::default_threads).max(1),
        beam_size: args.beam_size.max(1),
        best_of: args.best_of.max(1),
        temperature: args.temperature.max(0.0),
        temperature_increment: if args.no_fallback {
            0.0
        } else {
            args.temperature_increment.max(0.0)
        },
        initial_prompt: args.prompt.clone(),
        // The subtitle engine breaks and times cues by word.
        word_timestamps: args.word_timestamps || formats.iter().any(|f| f.is_subtitle()),
        vad: vad_model.is_some(),
        vad_options: VadOptions {
            threshold: args.vad_threshold.clamp(0.01, 0.99),
            ..VadOptions::default()
        },
        hallucination_guard: !args.no_guard,
        offset: args.offset.unwrap_or(0.0),
        duration: args.duration,
        ..TranscribeOptions::default()
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
            return exit_code::INTERRUPTED;
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
                if resumable {
                    print_error(
                        "interrupted; the finished part is saved: run the same command again to resume",
                    );
                } else {
                    print_error("interrupted; no output files were written for the current input");
                }
                return exit_code::INTERRUPTED;
            }
            Err(e) => {
                print_error(e);
                failed += 1;
            }
        }
    }
    match (ok, failed) {
        (_, 0) => exit_code::OK,
        (0, _) => exit_code::FAILURE,
        _ => exit_code::PARTIAL,
    }
}

#[allow(clippy::too_many_arguments)]
fn transcribe_one(
    input: &Path,
    engine: &Engine,
    options: &TranscribeOptions,
    args: &TranscribeArgs,
    formats: &[Format],
    subtitle_rules: &verbatim::subtitle::Rules,
    stdout: Stdout,
    show_progress: bool,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    if input.as_os_str() != "-" && !args.split_channels {
        return transcribe_streamed(
            input,
            engine,
            options,
            args,
            formats,
            subtitle_rules,
            stdout,
            show_progress,
            cancel,
        );
    }
    let source = if input.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut data)
            .map_err(|e| Error::input("-", format!("cannot read standard input: {e}")))?;
        InputSource::Bytes {
            name: "-".into(),
            data,
        }
    } else {
        InputSource::Path(input.to_path_buf())
    };
    let display = source.display_path();
    let prepared = audio::load(&source, args.split_channels)?;
    if !args.quiet {
        for w in &prepared.warnings {
            print_warning(w);
        }
    }

    let bar = progress_bar(show_progress, &display);

    let n_streams = prepared.streams.len();
    let split = n_streams > 1;
    let mut merged = Transcript::default();
    for (i, stream) in prepared.streams.iter().enumerate() {
        let mut on_segment = |seg: &Segment| match &bar {
            Some(b) => b.suspend(|| print_segment(seg, stdout, input)),
            None => print_segment(seg, stdout, input),
        };
        let mut on_progress = |fraction: f32| {
            if let Some(b) = &bar {
                b.set_position((((i as f32 + fraction) / n_streams as f32) * 1000.0) as u64);
            }
        };
        let mut hooks = Hooks {
            on_segment: Some(&mut on_segment),
            on_progress: Some(&mut on_progress),
            cancel: Some(cancel),
        };
        let channel = split.then_some(i);
        let result = engine.transcribe(&display, stream, channel, options, &mut hooks);
        let transcript = match result {
            Ok(t) => t,
            Err(e) => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Err(e);
            }
        };
        if i == 0 {
            merged.language = transcript.language.clone();
            merged.language_probability = transcript.language_probability;
            merged.duration = transcript.duration;
        }
        merged.segments.extend(transcript.segments);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if split {
        merged.segments.sort_by(|a, b| a.start.total_cmp(&b.start));
    }

    if !formats.is_empty() {
        let meta = JsonMeta::for_run(
            engine,
            display.display().to_string(),
            options,
            subtitle_rules.clone(),
        );
        // Word times turned on only for the subtitle formats stay out of the others (JSON).
        let without_words = (!args.word_timestamps).then(|| {
            let mut t = merged.clone();
            for seg in &mut t.segments {
                seg.words = None;
            }
            t
        });
        if !args.quiet && formats.iter().any(|f| f.is_subtitle()) {
            let violations = verbatim::subtitle::layout(&merged, subtitle_rules).violations;
            if let Some(first) = violations.first() {
                print_warning(format!(
                    "{}: {} subtitle rule violation(s) the speech made unavoidable, first: {first}",
                    display.display(),
                    violations.len()
                ));
            }
        }
        for format in formats {
            let path = output::output_path(input, args.output_dir.as_deref(), *format);
            let transcript = match &without_words {
                Some(t) if !format.is_subtitle() => t,
                _ => &merged,
            };
            let text = format.render(transcript, &meta);
            output::write_atomic(&path, text.as_bytes()).map_err(|e| Error::Output {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
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

/// A file through the streaming pipeline: bounded memory, outputs growing as
/// `NAME.EXT.partial` while it runs, resumable from its checkpoint.
#[allow(clippy::too_many_arguments)]
fn transcribe_streamed(
    input: &Path,
    engine: &Engine,
    options: &TranscribeOptions,
    args: &TranscribeArgs,
    formats: &[Format],
    subtitle_rules: &verbatim::subtitle::Rules,
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
    if !args.quiet && !args.restart {
        if let Some(ckpt) = verbatim::pipeline::checkpoint_path(&outputs)
            .and_then(|p| verbatim::pipeline::Checkpoint::load(&p))
        {
            print_warning(format!(
                "{}: resuming after {} (checkpoint found; --restart starts over)",
                input.display(),
                timestamp(ckpt.samples_done as f64 / 16_000.0)
            ));
        }
    }
    let result =
        verbatim::pipeline::transcribe_file(engine, input, &outputs, &pipeline_options, &mut hooks);
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
