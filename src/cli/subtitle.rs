//! `verbatim subtitle`: readable subtitles for whole media libraries, resumable and shardable
//! across the processes of a cluster job engine; `--check` lints existing subtitle files.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use verbatim::batch::{self, DiscoverOptions, Job, NamingOptions, Observer, Record, Shard, Status};
use verbatim::engine::{self, TranscribeOptions};
use verbatim::output::{Format, JsonMeta};

use super::device::DeviceArgs;
use super::error::CliError;
use super::exit_code;
use super::options::{FileDecodeArgs, ModelArgs, VadArgs};
use super::print_error;

pub const AFTER_HELP: &str = "\
Examples:
  verbatim subtitle ~/Videos -r                      talk.mkv -> talk.srt next to it
  verbatim subtitle ~/Videos -r -o ~/Subs -f srt,vtt  mirror the tree under ~/Subs
  verbatim subtitle 'shows/**/*.mp4' --lang-suffix    talk.mp4 -> talk.en.srt
  find /media -name '*.mkv' | verbatim subtitle --from-list -
  verbatim subtitle /data/in -r -o /data/out --shard auto   one task of a Slurm array
  verbatim subtitle --check talk.srt other.vtt        report every rule a file breaks

Files whose subtitles already exist are skipped (--overwrite redoes them), and every file is
written atomically, so an interrupted or crashed run, started again, does only what is missing.

Exit codes: 0 every file done or skipped (or --check found nothing), 1 nothing done (no
media found, every file failed, a fatal error, or --check found problems), 2 bad usage,
3 some files failed while others succeeded, 130 interrupted.";

/// Options of `verbatim subtitle`.
#[derive(Debug, Args)]
pub struct SubtitleArgs {
    /// Folders, media files or glob patterns (quote them: 'shows/**/*.mkv').
    #[arg(value_name = "INPUT")]
    inputs: Vec<PathBuf>,

    /// Descend into subfolders of folder inputs.
    #[arg(short, long, help_heading = "Input")]
    recursive: bool,

    /// Also read input paths from FILE, one per line (`-` for standard input).
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    from_list: Option<PathBuf>,

    /// File extensions looked for in folders and globs, comma separated [default: common
    /// audio and video formats: wav, flac, mp3, m4a, ogg, opus, mp4, mkv, webm, mov, ...].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "EXT",
        help_heading = "Input"
    )]
    ext: Vec<String>,

    /// Process only part of the files: INDEX/COUNT (0-based), or `auto` to take them from a
    /// Slurm job array (SLURM_ARRAY_TASK_ID/COUNT) or a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX with --shard-count). Files are split by a stable hash of their
    /// path below the input folder.
    #[arg(long, value_name = "I/N|auto", help_heading = "Input")]
    shard: Option<String>,

    /// Number of shards for `--shard auto` when the job engine does not say
    /// (Kubernetes: the Job's completions; also VERBATIM_SHARD_COUNT).
    #[arg(long, value_name = "N", help_heading = "Input")]
    shard_count: Option<u64>,

    /// Subtitle formats, comma separated: srt, vtt, ass.
    #[arg(short, long, value_delimiter = ',', default_value = "srt", value_name = "FORMATS", value_parser = parse_subtitle_format, help_heading = "Output")]
    format: Vec<Format>,

    /// Also write the full transcript as JSON (words, confidence) next to each subtitle.
    #[arg(long, help_heading = "Output")]
    json: bool,

    /// Write under DIR, mirroring the input tree, instead of next to each input.
    #[arg(short, long, value_name = "DIR", help_heading = "Output")]
    output_dir: Option<PathBuf>,

    /// Put the language code in the file name: talk.en.srt.
    #[arg(long, help_heading = "Output")]
    lang_suffix: bool,

    /// Redo files whose subtitles already exist.
    #[arg(long, help_heading = "Output")]
    overwrite: bool,

    /// Write one JSON line per file (path, status, audio_duration, outputs, language, error,
    /// rule_violations, wall_seconds) to FILE (`-`: standard output); with --check, one per
    /// problem (file, cue, start, rule, detail).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    report: Option<PathBuf>,

    /// List what would be done and skipped, then stop.
    #[arg(long, help_heading = "Output")]
    dry_run: bool,

    /// No progress display and no per-file lines on stderr (errors are still printed).
    #[arg(short, long, help_heading = "Output")]
    quiet: bool,

    /// Check subtitle files (SRT or WebVTT, from any tool) against the reading rules instead
    /// of transcribing; the INPUTs are the subtitle files.
    #[arg(long, help_heading = "Check")]
    check: bool,

    #[command(flatten)]
    rules: super::rules::SubtitleRuleArgs,

    #[command(flatten)]
    models: ModelArgs,

    #[command(flatten)]
    decoding: FileDecodeArgs,

    #[command(flatten)]
    vad: VadArgs,

    #[command(flatten)]
    speakers: super::options::DiarizeArgs,

    #[command(flatten)]
    device: DeviceArgs,

    /// Files transcribed at once, each by its own worker sharing the one loaded model
    /// [default: the cores divided by --threads, one worker per core without --threads; never
    /// more than there are files].
    #[arg(short = 'j', long, value_name = "N", value_parser = super::options::parse_workers, help_heading = "Performance")]
    jobs: Option<usize>,

    /// Length of the windows long recordings are cut into, at pauses, in seconds (memory
    /// holds one window; a checkpoint after each lets an interrupted file resume).
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECONDS",
        help_heading = "Performance"
    )]
    window: f64,
}

fn parse_subtitle_format(s: &str) -> Result<Format, String> {
    match Format::parse(s) {
        Some(f) if f.is_subtitle() => Ok(f),
        _ => Err(format!(
            "unknown subtitle format `{s}` (expected srt, vtt or ass)"
        )),
    }
}

/// Threads per worker when neither `-j` nor `-t` is given. See the batch benchmark: on 2
/// cores, two single-threaded workers beat one two-threaded worker.
const THREADS_PER_WORKER: usize = 1;

/// Workers for `todo` files: `-j`, else the cores divided by `-t` (one single-threaded worker
/// per core without it), never more than there are files. The threads per worker are `-t`,
/// else the cores shared out among the workers (`DecodeArgs::threads_for`).
fn workers(jobs: Option<usize>, threads: Option<usize>, todo: usize) -> usize {
    let cores = engine::default_threads();
    jobs.unwrap_or_else(|| cores / threads.unwrap_or(THREADS_PER_WORKER))
        .clamp(1, todo.max(1))
}

pub fn run(args: SubtitleArgs) -> Result<i32, CliError> {
    let rules = args.rules.rules()?;
    if args.check {
        return check(&args, &rules);
    }
    let cancel = super::install_ctrlc();
    if args.inputs.is_empty() && args.from_list.is_none() {
        return Err(CliError::usage(
            "no inputs: give folders, files or globs, or --from-list FILE",
        ));
    }
    if args.decoding.translate && args.lang_suffix {
        return Err(CliError::usage(
            "--lang-suffix names the spoken language, but --translate writes English subtitles: use one or the other",
        ));
    }
    let shard = match &args.shard {
        None => Shard::All,
        Some(spec) => Shard::parse(spec, args.shard_count, &|k| std::env::var(k).ok())?,
    };
    let mut discover_options = DiscoverOptions {
        recursive: args.recursive,
        ..DiscoverOptions::default()
    };
    if !args.ext.is_empty() {
        discover_options.extensions = args
            .ext
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
    }
    let sources = batch::discover(&args.inputs, args.from_list.as_deref(), &discover_options)?;
    if sources.is_empty() {
        return Err(CliError::failure(format!(
            "no media files found (extensions: {}{})",
            discover_options.extensions.join(", "),
            if args.recursive {
                ""
            } else {
                "; add -r to search subfolders"
            }
        )));
    }
    let total_found = sources.len();
    let sources: Vec<_> = sources
        .into_iter()
        .filter(|s| shard.contains(&s.relative))
        .collect();

    let mut formats: Vec<Format> = {
        let mut seen = HashSet::new();
        args.format
            .iter()
            .copied()
            .filter(|f| seen.insert(*f))
            .collect()
    };
    if args.json {
        formats.push(Format::Json);
    }
    // The language is known up front when given, or when the model is English-only (the
    // registry name says so; a file path may not, then any code counts as done).
    let model_arg = &args.models.model;
    let known_language = if let Some(code) = args.decoding.language.code() {
        Some(code.to_string())
    } else if model_arg.ends_with(".en")
        || Path::new(model_arg)
            .file_stem()
            .is_some_and(|s| s.to_string_lossy().contains(".en"))
    {
        Some("en".to_string())
    } else {
        None
    };
    let naming = NamingOptions {
        formats,
        output_dir: args.output_dir.clone(),
        lang_suffix: args.lang_suffix,
        known_language,
    };
    let plan = batch::plan(sources, &naming, args.overwrite)?;

    let mut report = match &args.report {
        None => None,
        Some(path) => Some(Report::create(path).map_err(|e| {
            CliError::failure(format!("{}: cannot write the report: {e}", path.display()))
        })?),
    };
    let shard_note = match shard {
        Shard::All => String::new(),
        Shard::Part { index, count } => format!(" (shard {index}/{count} of {total_found} files)"),
    };
    if args.dry_run {
        for job in &plan.todo {
            println!("todo  {}", job.source.path.display());
        }
        for job in &plan.done {
            println!("skip  {}", job.source.path.display());
        }
        eprintln!(
            "verbatim: {} to do, {} already done{shard_note}",
            plan.todo.len(),
            plan.done.len()
        );
        return Ok(exit_code::OK);
    }
    let skipped: Vec<Record> = plan.done.iter().map(Record::skipped).collect();
    if let Some(r) = &mut report {
        for rec in &skipped {
            r.write(rec);
        }
    }
    if plan.todo.is_empty() && plan.done.is_empty() {
        // An empty shard is normal (more tasks than files, or an unlucky split): success.
        if !args.quiet {
            eprintln!("verbatim: nothing to do: no file falls in this shard{shard_note}");
        }
        return Ok(exit_code::OK);
    }
    if plan.todo.is_empty() {
        if !args.quiet {
            eprintln!(
                "verbatim: nothing to do: all {} files already have their subtitles{shard_note} \
                 (--overwrite redoes them)",
                plan.done.len()
            );
        }
        return Ok(exit_code::OK);
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

    let workers = workers(args.jobs, args.decoding.decode.threads, plan.todo.len());
    let transcribe = TranscribeOptions {
        // The subtitle engine lays cues out on word times.
        word_timestamps: true,
        ..args.decoding.transcribe_options(&args.vad, workers)
    };
    let threads_per_worker = transcribe.threads;
    let meta = JsonMeta::for_run(&engine, String::new(), &transcribe, rules);
    let options = batch::BatchOptions {
        workers,
        transcribe,
        naming,
        overwrite: args.overwrite,
        window_seconds: args.window,
        meta,
        diarize: diarizer,
    };

    if !args.quiet {
        eprintln!(
            "verbatim: {} to do, {} already done{shard_note}; {workers} worker(s) x \
             {threads_per_worker} thread(s), model {}",
            plan.todo.len(),
            plan.done.len(),
            info.path.display()
        );
    }
    let started = Instant::now();
    let display = Display::new(&plan.todo, workers, args.quiet, report);
    let records = batch::run(&engine, &plan.todo, &options, &display, &cancel);
    display.finish();
    let wall = started.elapsed();

    let count = |s: Status| records.iter().filter(|r| r.status == s).count();
    let (ok, failed) = (count(Status::Ok), count(Status::Failed));
    // A file another run is writing is left to it, as one done meanwhile is.
    let skipped = skipped.len() + count(Status::Skipped) + count(Status::Busy);
    let audio: f64 = records
        .iter()
        .filter_map(|r| r.audio_duration)
        .fold(0.0, |a, b| a + b);
    let interrupted = cancel.load(Ordering::SeqCst);
    let not_started = plan.todo.len() - records.len();
    if !args.quiet || failed > 0 {
        let speed = if wall.as_secs_f64() > 0.0 {
            audio / wall.as_secs_f64()
        } else {
            0.0
        };
        eprintln!(
            "verbatim: {ok} ok, {skipped} skipped, {failed} failed{}; {} of audio in {} \
             ({speed:.1}x real time, real-time factor {:.3})",
            if not_started > 0 {
                format!(", {not_started} not done")
            } else {
                String::new()
            },
            human_duration(audio),
            human_duration(wall.as_secs_f64()),
            if audio > 0.0 {
                wall.as_secs_f64() / audio
            } else {
                0.0
            },
        );
        for r in records.iter().filter(|r| r.status == Status::Failed) {
            eprintln!(
                "verbatim: failed: {}",
                r.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    if interrupted {
        return Err(CliError::Interrupted(
            "interrupted; finished files are kept, the files in progress got no output (run \
             the same command again to finish)"
                .into(),
        ));
    }
    Ok(match (ok + skipped, failed) {
        (_, 0) => exit_code::OK,
        (0, _) => exit_code::FAILURE,
        _ => exit_code::PARTIAL,
    })
}

fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{:.1} s", seconds.max(0.0)),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60),
    }
}

/// `--check`: lint subtitle files (ours or any tool's) against the rules.
fn check(args: &SubtitleArgs, rules: &verbatim::subtitle::Rules) -> Result<i32, CliError> {
    if args.inputs.is_empty() {
        return Err(CliError::usage(
            "--check needs subtitle files (SRT or WebVTT)",
        ));
    }
    let mut report = match &args.report {
        None => None,
        Some(path) => Some(Report::create(path).map_err(|e| {
            CliError::failure(format!("{}: cannot write the report: {e}", path.display()))
        })?),
    };
    let (mut problems, mut unreadable) = (0usize, 0usize);
    for path in &args.inputs {
        match verbatim::subtitle::check_file(path, rules) {
            Ok(violations) => {
                for v in &violations {
                    match &mut report {
                        Some(r) => r.write(&serde_json::json!({
                            "file": path.display().to_string(),
                            "cue": v.cue,
                            "start": v.start,
                            "rule": v.rule,
                            "detail": v.detail,
                        })),
                        None => println!("{}: {v}", path.display()),
                    }
                }
                if !args.quiet {
                    eprintln!(
                        "verbatim: {}: {}",
                        path.display(),
                        if violations.is_empty() {
                            "follows every rule".to_string()
                        } else {
                            format!("{} problem(s)", violations.len())
                        }
                    );
                }
                problems += violations.len();
            }
            // One unreadable file is reported and the check goes on.
            Err(e) => {
                print_error(e);
                unreadable += 1;
            }
        }
    }
    Ok(if problems > 0 || unreadable > 0 {
        exit_code::FAILURE
    } else {
        exit_code::OK
    })
}

/// The JSON Lines report, flushed after every record so a crash keeps what was done.
struct Report {
    file: Box<dyn Write + Send>,
    path: PathBuf,
    failed: bool,
}

impl Report {
    fn create(path: &Path) -> std::io::Result<Report> {
        if path.as_os_str() == "-" {
            return Ok(Report {
                file: Box::new(std::io::stdout()),
                path: path.to_path_buf(),
                failed: false,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Written in place (a crash keeps what was done), so never through a link someone
        // planted at the name in a shared directory: a link is refused, a regular file is
        // replaced by a new one created exclusively (`O_CREAT|O_EXCL`, which follows no
        // link), and a FIFO or device named directly is written as it is.
        let create_new = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        };
        let file = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(std::io::Error::other(
                    "it is a symbolic link; refusing to write through it (--report - writes \
                     to standard output)",
                ))
            }
            Ok(meta) if meta.is_file() => {
                std::fs::remove_file(path)?;
                create_new()?
            }
            Ok(meta) if meta.is_dir() => {
                return Err(std::io::Error::other("it is a directory"));
            }
            Ok(_) => std::fs::OpenOptions::new().write(true).open(path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_new()?,
            Err(e) => return Err(e),
        };
        Ok(Report {
            file: Box::new(file),
            path: path.to_path_buf(),
            failed: false,
        })
    }

    fn write<T: serde::Serialize>(&mut self, record: &T) {
        let line = serde_json::to_string(record).unwrap_or_default();
        if let Err(e) = writeln!(self.file, "{line}").and_then(|_| self.file.flush()) {
            if !self.failed {
                print_error(format!(
                    "{}: cannot write the report: {e}",
                    self.path.display()
                ));
                self.failed = true;
            }
        }
    }
}

/// Progress on stderr: on a terminal an overall bar plus one line per busy worker; otherwise
/// (logs, Slurm output files) one line per finished file.
struct Display {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    workers: Vec<ProgressBar>,
    state: Mutex<DisplayState>,
    total: usize,
    quiet: bool,
}

struct DisplayState {
    /// Progress of each worker's current file, 0..1.
    fractions: Vec<f32>,
    finished: usize,
    audio_done: f64,
    report: Option<Report>,
}

impl Display {
    fn new(jobs: &[Job], workers: usize, quiet: bool, report: Option<Report>) -> Display {
        let terminal = !quiet && std::io::stderr().is_terminal();
        let (multi, overall, bars) = if terminal {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(jobs.len() as u64 * 1000));
            overall.set_style(
                ProgressStyle::with_template("[{bar:30}] {msg} · {elapsed_precise} · ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            let bars = (0..workers)
                .map(|w| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("worker {}", w + 1));
                    bar.set_message("idle");
                    bar
                })
                .collect();
            (Some(multi), Some(overall), bars)
        } else {
            (None, None, Vec::new())
        };
        let display = Display {
            multi,
            overall,
            workers: bars,
            state: Mutex::new(DisplayState {
                fractions: vec![0.0; workers],
                finished: 0,
                audio_done: 0.0,
                report,
            }),
            total: jobs.len(),
            quiet,
        };
        display.redraw(&display.lock());
        display
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DisplayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn redraw(&self, state: &DisplayState) {
        if let Some(bar) = &self.overall {
            let partial: f32 = state.fractions.iter().sum();
            bar.set_position(state.finished as u64 * 1000 + (partial * 1000.0) as u64);
            bar.set_message(format!(
                "{}/{} files · {:.2} h audio",
                state.finished,
                self.total,
                state.audio_done / 3600.0
            ));
        }
    }

    fn finish(&self) {
        for bar in &self.workers {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Observer for Display {
    fn started(&self, worker: usize, job: &Job) {
        if let Some(bar) = self.workers.get(worker) {
            bar.set_message(format!("{}   0%", job.source.relative.display()));
        }
        let mut state = self.lock();
        state.fractions[worker] = 0.0;
    }

    fn progress(&self, worker: usize, fraction: f32) {
        let mut state = self.lock();
        state.fractions[worker] = fraction.clamp(0.0, 1.0);
        if let Some(bar) = self.workers.get(worker) {
            let msg = bar.message();
            let name = msg
                .rsplit_once(' ')
                .map_or(msg.as_str(), |(n, _)| n.trim_end());
            bar.set_message(format!("{name} {:>3.0}%", fraction * 100.0));
        }
        self.redraw(&state);
    }

    fn finished(&self, worker: usize, record: &Record) {
        let mut state = self.lock();
        state.fractions[worker] = 0.0;
        state.finished += 1;
        state.audio_done += record.audio_duration.unwrap_or(0.0);
        if let Some(report) = &mut state.report {
            report.write(record);
        }
        if let Some(bar) = self.workers.get(worker) {
            bar.set_message("idle");
        }
        let line = match record.status {
            Status::Ok => format!(
                "ok      {} ({} of audio in {}{})",
                record.path.display(),
                human_duration(record.audio_duration.unwrap_or(0.0)),
                human_duration(record.wall_seconds),
                match record.rule_violations {
                    Some(n) if n > 0 => format!("; {n} cue(s) break a rule: see --check"),
                    _ => String::new(),
                }
            ),
            Status::Skipped => format!("skipped {} (done meanwhile)", record.path.display()),
            Status::Busy => format!(
                "skipped {} (another verbatim run is writing its outputs)",
                record.path.display()
            ),
            Status::Failed => format!(
                "failed  {}",
                record.error.as_deref().unwrap_or("unknown error")
            ),
        };
        let shown = self.multi.is_some() || !self.quiet || record.status == Status::Failed;
        // Damage (a truncated file, skipped packets) is said as `transcribe` says it.
        let warnings = record
            .warnings
            .iter()
            .map(|w| format!("verbatim: warning: {w}"));
        let lines = std::iter::once(line).chain(warnings).filter(|_| shown);
        for line in lines {
            match &self.multi {
                Some(multi) => {
                    let _ = multi.println(line);
                }
                None => eprintln!("{line}"),
            }
        }
        self.redraw(&state);
    }
}
