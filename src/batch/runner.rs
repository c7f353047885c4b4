//! The worker pool: several workers pull files from one queue and transcribe them with one
//! shared [`Engine`] (one whisper state each, so the model is in memory once).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::{Job, NamingOptions};
use crate::engine::{Engine, Hooks, TranscribeOptions};
use crate::output::JsonMeta;
use crate::Error;

/// What a batch run does besides transcribing.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Number of workers (files transcribed at once).
    pub workers: usize,
    /// Decoding options for each file; `threads` is per worker.
    pub transcribe: TranscribeOptions,
    /// Output formats (a JSON sidecar is just [`Format::Json`] among them) and naming.
    pub naming: NamingOptions,
    /// Redo files whose outputs exist.
    pub overwrite: bool,
    /// Window length for long recordings (see [`crate::pipeline::PipelineOptions`]).
    pub window_seconds: f64,
    /// Context for the writers (tool, model, options); `source` is filled per file.
    pub meta: JsonMeta,
    /// Label speakers (`--diarize`).
    pub diarize: Option<crate::diarization::Diarizer>,
}

/// How one file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Transcribed and every output written.
    Ok,
    /// Every output already existed.
    Skipped,
    /// Failed (the record's `error` says why); nothing was written for it.
    Failed,
    /// Another run (an overlapping batch, a retried task) was writing its outputs: left to
    /// it, untouched (`error` names the output and its lock).
    Busy,
}

/// One line of the `--report` JSON Lines file.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The media file.
    pub path: PathBuf,
    /// How it ended.
    pub status: Status,
    /// Audio duration in seconds, when the file was decoded.
    pub audio_duration: Option<f64>,
    /// Files written (empty when skipped or failed).
    pub outputs: Vec<PathBuf>,
    /// Language of the transcript (detected or given).
    pub language: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Cues that break a subtitle rule because the speech left no way around it (e.g. too
    /// fast to read at the maximum reading speed); `None` when no subtitle was written.
    pub rule_violations: Option<usize>,
    /// Wall-clock seconds spent on the file.
    pub wall_seconds: f64,
    /// What went wrong without stopping it (a truncated or damaged file, a skipped packet),
    /// one line each naming the file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Record {
    /// The record of a file whose outputs already exist.
    pub fn skipped(job: &Job) -> Record {
        Record {
            path: job.source.path.clone(),
            status: Status::Skipped,
            audio_duration: None,
            outputs: Vec::new(),
            language: None,
            error: None,
            rule_violations: None,
            wall_seconds: 0.0,
            warnings: Vec::new(),
        }
    }
}

/// Receives the run's events, from worker threads (hence `Sync`); used for progress and
/// reports.
pub trait Observer: Sync {
    /// Worker `worker` started on `job`.
    fn started(&self, _worker: usize, _job: &Job) {}
    /// Worker `worker` is `fraction` (0..1) through its file.
    fn progress(&self, _worker: usize, _fraction: f32) {}
    /// Worker `worker` finished a file (any status).
    fn finished(&self, _worker: usize, _record: &Record) {}
}

/// Transcribes `jobs` on `options.workers` threads and writes their outputs. Returns one
/// record per job that was attempted, in completion order. When `cancel` is set, workers stop
/// (the file in progress is abandoned without output) and the jobs not started get no record.
pub fn run(
    engine: &Engine,
    jobs: &[Job],
    options: &BatchOptions,
    observer: &dyn Observer,
    cancel: &AtomicBool,
) -> Vec<Record> {
    let next = AtomicUsize::new(0);
    let records = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
    let workers = options.workers.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (next, records) = (&next, &records);
            scope.spawn(move || loop {
                if cancel.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                observer.started(worker, job);
                let record = process(engine, job, options, worker, observer, cancel);
                let Some(record) = record else { break }; // cancelled mid-file
                observer.finished(worker, &record);
                records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(record);
            });
        }
    });
    records.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// One file; `None` when cancelled.
fn process(
    engine: &Engine,
    job: &Job,
    options: &BatchOptions,
    worker: usize,
    observer: &dyn Observer,
    cancel: &AtomicBool,
) -> Option<Record> {
    let started = Instant::now();
    let mut record = Record::skipped(job);
    // Another process (an overlapping run, a retried task) may have finished it meanwhile.
    if job.is_done(&options.naming) && !options.overwrite {
        return Some(record);
    }
    // A bug in a decoder must cost one file, not the whole batch.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        transcribe_and_write(engine, job, options, worker, observer, cancel, &mut record)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::input(
            &job.source.path,
            format!("internal error: {what}"),
        ))
    });
    record.wall_seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(outputs) => {
            record.status = Status::Ok;
            record.outputs = outputs;
        }
        Err(Error::Cancelled) => return None,
        Err(e @ Error::Busy { .. }) => {
            record.status = Status::Busy;
            record.error = Some(e.to_string());
        }
        Err(e) => {
            record.status = Status::Failed;
            record.error = Some(e.to_string());
        }
    }
    Some(record)
}

fn transcribe_and_write(
    engine: &Engine,
    job: &Job,
    options: &BatchOptions,
    worker: usize,
    observer: &dyn Observer,
    cancel: &AtomicBool,
    record: &mut Record,
) -> crate::Result<Vec<PathBuf>> {
    let path = &job.source.path;
    // The language suffix must be known before the outputs are opened: given, or English
    // for English-only models; otherwise detect it on the first 30 s.
    let language = match (&options.naming.lang_suffix, &options.naming.known_language) {
        (false, _) => None,
        (true, Some(lang)) => Some(lang.clone()),
        (true, None) => Some(detect_language(engine, path, &options.transcribe)?),
    };
    let outputs = crate::pipeline::Outputs {
        files: options
            .naming
            .formats
            .iter()
            .map(|&f| (f, job.output_path(f, language.as_deref())))
            .collect(),
        meta: {
            let mut meta = options.meta.clone();
            meta.source = path.display().to_string();
            meta
        },
        keep_words: true,
    };
    let mut transcribe = options.transcribe.clone();
    if let Some(lang) = &language {
        transcribe.language = Some(lang.clone());
    }
    let pipeline_options = crate::pipeline::PipelineOptions {
        transcribe,
        window_seconds: options.window_seconds,
        resume: true,
        split_channels: false,
        diarize: options.diarize.clone(),
        max_seconds: None,
        strict: false,
    };
    let mut on_progress = |fraction: f32| observer.progress(worker, fraction);
    let mut hooks = Hooks {
        on_segment: None,
        on_progress: Some(&mut on_progress),
        cancel: Some(cancel),
    };
    let summary =
        crate::pipeline::transcribe(engine, path, &outputs, &pipeline_options, &mut hooks)?;
    record.audio_duration = Some(summary.duration);
    record.warnings = summary.warnings.clone();
    record.language = (!summary.language.is_empty()).then(|| summary.language.clone());
    if options.naming.formats.iter().any(|f| f.is_subtitle()) {
        record.rule_violations = Some(summary.rule_violations);
    }
    let written = outputs.files.into_iter().map(|(_, p)| p).collect();
    Ok(written)
}

/// The language of the first 30 s of speech, for `--lang-suffix` names on multilingual models.
fn detect_language(
    engine: &Engine,
    path: &std::path::Path,
    opts: &TranscribeOptions,
) -> crate::Result<String> {
    let mut stream = crate::audio::AudioStream::open(path)?;
    let mut head: Vec<f32> = Vec::new();
    while head.len() < 30 * crate::audio::WHISPER_SAMPLE_RATE as usize {
        match stream.next_chunk()? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    engine.detect_language(path, &head, opts)
}
