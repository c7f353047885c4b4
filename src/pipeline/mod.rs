//! Transcribing a file of any length in bounded memory, writing results as they become
//! final, and resuming after a crash.
//!
//! The audio is decoded as a stream ([`AudioStream`]) and cut into windows of a few minutes at
//! pauses in the speech (never inside a word). Each window is transcribed with the previous
//! window's text as prompt, its segments are shifted to the file's timeline and handed to the
//! writers, which append to `NAME.EXT.partial` files. After every window a small checkpoint
//! (`NAME.EXT.checkpoint.json`) records where the stream stands and how long each partial file
//! is; it is written atomically. A rerun of the same command finds it, truncates the partial
//! files back to those lengths, skips the audio already done and goes on, so the result equals
//! an uninterrupted run's: windows are cut by a rule that depends only on the audio, and the
//! resumed window starts at the same sample with the same prompt. On success the partial files
//! are renamed into place and the checkpoint removed.
//!
//! Memory holds one window of samples (5 minutes = 19 MB) plus whisper's state; neither the
//! whole file's samples nor its transcript are ever held.
//!
//! Output directories may be shared with other users (a 1777 directory) and with other runs,
//! so nothing at an output's temporary names is trusted (docs/hardening.md, "Outputs and
//! partial files"):
//! - a new partial file is created exclusively (`create_new`: `O_CREAT|O_EXCL`, which never
//!   follows a link); whatever was at the name (a stale file, a planted link) is unlinked
//!   first, never opened, so a link's target is never written or truncated;
//! - a partial file is resumed only if it is a regular file of ours (not a link, the same
//!   inode once open, one link) holding exactly the bytes the checkpoint hashed; else the run
//!   starts over and says so in a warning;
//! - the checkpoint records the model (path, size, a hash of its ends) and every option that
//!   changes the text, and is written by rename like the final files;
//! - every output is locked (`NAME.EXT.lock`, `flock`ed) for the whole run: a second run on
//!   the same outputs fails at once, naming the output, instead of interleaving its writes.

mod channels;
mod checkpoint;
mod speakers;
mod spool;

pub use spool::transcribe_reader;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::audio::pipe::PipeInput;
use crate::audio::{AudioStream, WHISPER_SAMPLE_RATE};
use crate::engine::{Engine, Hooks, TranscribeOptions};
use crate::output::{Format, JsonMeta, OutputFormat, WriterState};
use crate::{Error, Result, Segment, Transcript};

pub use checkpoint::{Checkpoint, ModelStamp};

const SR: usize = WHISPER_SAMPLE_RATE as usize;
/// Silence before a cut after which the previous text no longer prompts the next window.
const STALE_CONTEXT_S: f64 = 10.0;

/// How a file is cut and transcribed.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Decoding options; `offset` and `duration` select a range of the file.
    pub transcribe: TranscribeOptions,
    /// Target window length in seconds; a window ends at the longest pause in its last
    /// quarter. Longer windows give whisper more context, shorter ones checkpoint more often.
    pub window_seconds: f64,
    /// Continue from a matching checkpoint when one exists (else start over).
    pub resume: bool,
    /// Transcribe each input channel on its own (speakers recorded on separate channels);
    /// segments carry their channel. Not resumable: the outputs are written at the end.
    pub split_channels: bool,
    /// Refuse audio longer than this many seconds (of the selected range): checked against
    /// the container's header before decoding, then against the samples as they are
    /// decoded, so a lying header costs no more than the limit ([`Error::TooLong`]).
    pub max_seconds: Option<f64>,
    /// Find who speaks when and label segments and words with speakers (`--diarize`). Not
    /// resumable: the outputs are written at the end.
    pub diarize: Option<crate::diarization::Diarizer>,
    /// Treat damage the decoder reports (a truncated file, skipped packets, samples far
    /// beyond full scale, NaN) as an error: no outputs are kept. Without it they are warnings
    /// in [`Summary::warnings`] and the run succeeds with what could be read.
    pub strict: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            transcribe: TranscribeOptions::default(),
            window_seconds: 300.0,
            resume: true,
            split_channels: false,
            diarize: None,
            max_seconds: None,
            strict: false,
        }
    }
}

/// The files to write and the context the writers need.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Each format with its final path.
    pub files: Vec<(Format, PathBuf)>,
    /// Writer context (tool, model, options, subtitle rules).
    pub meta: JsonMeta,
    /// Keep word timings in the non-subtitle formats (JSON); subtitle formats always get
    /// them, since their layout is built on them.
    pub keep_words: bool,
}

/// What a run produced, without its segments (they went to the writers and the hook).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Language (detected in the first window, or given).
    pub language: String,
    /// Probability of the detected language.
    pub language_probability: Option<f32>,
    /// Seconds of audio in the file (or the selected range's end).
    pub duration: f64,
    /// Segments written.
    pub segments: usize,
    /// Subtitle cues that break a rule the speech made unavoidable (first subtitle format).
    pub rule_violations: usize,
    /// Where a resumed run picked up, in seconds.
    pub resumed_from: Option<f64>,
    /// Windows transcribed by this run (not counting those a resumed run skipped).
    pub windows: usize,
    /// Decoder warnings.
    pub warnings: Vec<String>,
    /// The speakers found (`--diarize`), in order of first appearance.
    pub speakers: Vec<crate::transcript::Speaker>,
    /// Who spoke when (`--diarize`).
    pub turns: Vec<crate::transcript::SpeakerTurn>,
}

/// One output being written: its partial file and the writer's counters.
struct Sink {
    format: Format,
    writer: Box<dyn OutputFormat>,
    final_path: PathBuf,
    partial_path: PathBuf,
    aside_path: PathBuf,
    file: File,
    aside: Option<File>,
    state: WriterState,
    /// Bytes written to the partial file and their running hash (what a checkpoint records).
    len: u64,
    hash: Sha256,
    /// The same for the aside file.
    aside_len: u64,
    aside_hash: Sha256,
}

fn partial_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The checkpoint file for a set of outputs: next to the first one.
pub fn checkpoint_path(outputs: &Outputs) -> Option<PathBuf> {
    outputs.files.first().map(|(_, p)| checkpoint_for(p))
}

/// The checkpoint of a run whose first output is `first_output`.
pub fn checkpoint_for(first_output: &Path) -> PathBuf {
    partial_path(first_output, ".checkpoint.json")
}

fn out_err(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::output(path, e)
}

/// The one way to transcribe an input into its outputs, for the CLI, the batch runner and
/// library users: `input` is a file, or `-` for standard input (decoded as it arrives, so
/// memory stays bounded as for a file). Calls `hooks.on_segment` with each final segment
/// (file timeline) and `hooks.on_progress` with the fraction done.
pub fn transcribe(
    engine: &Engine,
    input: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    if input.as_os_str() == "-" {
        let stdin = Box::new(std::io::stdin());
        return spool::transcribe_stream(engine, "-", stdin, outputs, options, hooks);
    }
    if is_stream(input) {
        // A FIFO or `<(command)`: it reads once and has no length, like standard input.
        let file = File::open(input).map_err(|e| {
            let reason = format!("cannot open: {e}");
            Error::input_from(input, reason, e)
        })?;
        let name = input.display().to_string();
        return spool::transcribe_stream(engine, &name, Box::new(file), outputs, options, hooks);
    }
    transcribe_path(engine, input, outputs, options, hooks, true)
}

/// Whether `path` is a pipe, socket or character device rather than a file.
fn is_stream(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| {
            let t = m.file_type();
            t.is_fifo() || t.is_socket() || t.is_char_device()
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn transcribe_path(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    checkpoints: bool,
) -> Result<Summary> {
    // A missing or empty input fails before the outputs' directory or locks are made.
    crate::audio::decode::check_input(path)?;
    // Held until the outputs are in place (or the run failed): a second run on any of the
    // same outputs fails here, before it touches a partial file or a checkpoint.
    let _lock = OutputLock::acquire(outputs)?;
    if let Some(diarizer) = &options.diarize {
        return speakers::transcribe(engine, diarizer, path, outputs, options, hooks);
    }
    if options.split_channels {
        return channels::transcribe(engine, path, outputs, options, hooks);
    }
    let mode = Mode {
        channel: None,
        checkpoints,
    };
    windowed(engine, path, None, outputs, options, hooks, mode)
}

/// Transcribes `path` window by window into `outputs` (downmixed; resumable).
pub fn transcribe_file(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let options = PipelineOptions {
        split_channels: false,
        ..options.clone()
    };
    transcribe_path(engine, path, outputs, &options, hooks, true)
}

/// How [`run`] reads its input and whether it checkpoints.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// One input channel instead of the downmix (segments are labelled with it).
    channel: Option<usize>,
    /// Write checkpoints (never for standard input, which a rerun cannot read again).
    checkpoints: bool,
}

/// Runs the windowed pipeline on `path` without writing files and returns its final
/// segments (each also handed to the caller's hook) with the run's summary; `progress` maps
/// this run's fraction done to the caller's.
fn collect_segments(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    mode: Mode,
    progress: &dyn Fn(f32) -> f32,
) -> Result<(Vec<Segment>, Summary)> {
    let no_files = Outputs {
        files: Vec::new(),
        ..outputs.clone()
    };
    let mut collected: Vec<Segment> = Vec::new();
    let mut user_segment = hooks.on_segment.take();
    let mut on_segment = |seg: &Segment| {
        collected.push(seg.clone());
        if let Some(h) = user_segment.as_mut() {
            h(seg);
        }
    };
    let mut user_progress = hooks.on_progress.take();
    let mut on_progress = |f: f32| {
        if let Some(h) = user_progress.as_mut() {
            h(progress(f));
        }
    };
    let mut run_hooks = Hooks {
        on_segment: Some(&mut on_segment),
        on_progress: Some(&mut on_progress),
        cancel: hooks.cancel,
    };
    let result = windowed(engine, path, None, &no_files, options, &mut run_hooks, mode);
    hooks.on_segment = user_segment;
    hooks.on_progress = user_progress;
    Ok((collected, result?))
}

/// Writes a whole transcript into every output (atomically) and returns the number of
/// subtitle rule violations (first subtitle format's layout).
fn write_whole(transcript: &Transcript, outputs: &Outputs) -> Result<usize> {
    let violations = if outputs.files.iter().any(|(f, _)| f.is_subtitle()) {
        crate::subtitle::layout(transcript, &outputs.meta.subtitle_rules)
            .violations
            .len()
    } else {
        0
    };
    // Word times turned on only for the subtitle formats stay out of the others (JSON).
    let without_words = (!outputs.keep_words).then(|| {
        let mut t = transcript.clone();
        for seg in &mut t.segments {
            seg.words = None;
        }
        t
    });
    for (format, file) in &outputs.files {
        let t = match &without_words {
            Some(t) if !format.is_subtitle() => t,
            _ => transcript,
        };
        let text = format.render(t, &outputs.meta);
        crate::output::write_atomic(file, text.as_bytes()).map_err(|e| Error::output(file, e))?;
    }
    Ok(violations)
}

/// Transcribes `path` (or, with `pipe`, the stream it names) window by window.
fn windowed(
    engine: &Engine,
    path: &Path,
    pipe: Option<PipeInput>,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    mode: Mode,
) -> Result<Summary> {
    let result = run(engine, path, pipe, outputs, options, hooks, mode);
    if result.is_err() {
        // With a checkpoint, the partial files are the work a rerun resumes from; without
        // one (stopped inside the first window) they hold nothing worth keeping.
        let resumable = mode.checkpoints && checkpoint_path(outputs).is_some_and(|p| p.is_file());
        if !resumable {
            for (_, final_path) in &outputs.files {
                let _ = std::fs::remove_file(partial_path(final_path, ".partial"));
                let _ = std::fs::remove_file(partial_path(final_path, ".aside.partial"));
            }
        }
    }
    result
}

fn run(
    engine: &Engine,
    path: &Path,
    pipe: Option<PipeInput>,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    mode: Mode,
) -> Result<Summary> {
    let mut stream = match pipe {
        Some(pipe) => AudioStream::open_pipe(pipe)?,
        None => AudioStream::open_channel(path, mode.channel)?,
    };
    let opts = &options.transcribe;
    let window_len = ((options.window_seconds.max(30.0)) * SR as f64) as usize;
    let range_start = (opts.offset.max(0.0) * SR as f64) as u64;
    let range_end = opts
        .duration
        .map(|d| range_start + (d.max(0.0) * SR as f64) as u64);
    let total_hint = stream.duration_hint.map(|d| {
        let end = (d * SR as f64) as u64;
        range_end
            .map_or(end, |e| e.min(end))
            .saturating_sub(range_start)
    });

    let too_long = |seconds: Option<f64>| Error::TooLong {
        path: path.to_path_buf(),
        seconds,
        max: options.max_seconds.unwrap_or_default(),
    };
    let limit_end = options
        .max_seconds
        .map(|max| range_start + (max.max(0.0) * SR as f64) as u64);
    if let Some(end) = stream.duration_hint.map(|d| (d * SR as f64) as u64) {
        if range_start > 0 && end <= range_start {
            return Err(offset_past_end(path, range_start, end));
        }
    }
    if let (Some(max), Some(total)) = (options.max_seconds, total_hint) {
        let seconds = total as f64 / SR as f64;
        if seconds > max {
            return Err(too_long(Some(seconds)));
        }
    }

    let model = ModelStamp::of(&engine.model_info().path);
    let fingerprint = checkpoint::fingerprint(path, outputs, options, &model, engine);
    let ckpt_path = checkpoint_path(outputs).filter(|_| mode.checkpoints);
    // Notes for the caller (warnings): why a checkpoint was not resumed, links removed.
    let mut notes: Vec<String> = Vec::new();
    let loaded = match (&ckpt_path, options.resume) {
        (Some(p), true) => Checkpoint::load(p).map(|c| (p, c)),
        _ => None,
    };
    let resume = match loaded {
        Some((p, c)) if c.fingerprint != fingerprint => {
            notes.push(format!(
                "{}: the checkpoint is from another input, model or set of options; starting over",
                p.display()
            ));
            None
        }
        other => other.map(|(_, c)| c),
    };
    let (mut sinks, resume) = open_sinks(outputs, resume, &mut notes)?;
    if resume.is_none() {
        if let Some(p) = &ckpt_path {
            let _ = std::fs::remove_file(p);
        }
    }

    let mut summary = Summary::default();
    let mut language = resume.as_ref().map(|c| c.language.clone());
    summary.language_probability = resume.as_ref().and_then(|c| c.language_probability);
    let mut prompt_tail = resume
        .as_ref()
        .map(|c| c.prompt_tail.clone())
        .unwrap_or_default();
    summary.segments = resume.as_ref().map_or(0, |c| c.segments);
    summary.rule_violations = resume.as_ref().map_or(0, |c| c.rule_violations);
    let done_until = resume.as_ref().map_or(range_start, |c| c.samples_done);
    if resume.is_some() {
        summary.resumed_from = Some(done_until as f64 / SR as f64);
    }
    let mut started = resume.is_some();

    // Absolute sample index of buffer[0]; the stream position is buffer_start + buffer.len().
    let mut buffer: Vec<f32> = Vec::with_capacity(window_len + 2 * SR);
    let mut buffer_start: u64 = done_until;
    let mut position: u64 = 0;
    let mut ended = false;
    loop {
        // Fill the buffer to a window (plus the part the cut may leave behind).
        while !ended && buffer.len() < window_len {
            if hooks
                .cancel
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            {
                return Err(Error::Cancelled);
            }
            let Some(chunk) = stream.next_chunk()? else {
                ended = true;
                break;
            };
            let chunk_start = position;
            position += chunk.len() as u64;
            if limit_end.is_some_and(|l| position.min(range_end.unwrap_or(u64::MAX)) > l) {
                return Err(too_long(None));
            }
            // Keep only [done_until, range_end) of the stream.
            let lo = done_until.max(chunk_start);
            let hi = range_end.map_or(position, |e| e.min(position));
            if hi > lo {
                buffer.extend_from_slice(
                    &chunk[(lo - chunk_start) as usize..(hi - chunk_start) as usize],
                );
            }
            if range_end.is_some_and(|e| position >= e) {
                ended = true;
            }
        }
        summary.duration = (buffer_start + buffer.len() as u64) as f64 / SR as f64;
        if buffer.is_empty() && (ended || started) {
            break;
        }
        let cut = if ended {
            buffer.len()
        } else {
            choose_cut(engine, &buffer, opts)?
        };
        let window = &buffer[..cut];
        let offset_s = buffer_start as f64 / SR as f64;
        let mut wopts = opts.clone();
        wopts.offset = 0.0;
        wopts.duration = None;
        wopts.language = language.clone().or(wopts.language);
        wopts.initial_prompt = join_prompt(opts.initial_prompt.as_deref(), &prompt_tail);

        // Hooks see the file's timeline and the whole file's progress.
        let user_segment = hooks.on_segment.take();
        let user_progress = hooks.on_progress.take();
        let mut seg_hook = user_segment;
        let mut on_segment = |seg: &Segment| {
            if let Some(h) = seg_hook.as_mut() {
                h(&shifted(seg, offset_s));
            }
        };
        let mut prog_hook = user_progress;
        let done_before = buffer_start - range_start;
        let window_samples = cut as u64;
        let mut on_progress = |f: f32| {
            if let (Some(h), Some(total)) = (prog_hook.as_mut(), total_hint) {
                let done = done_before as f64 + f as f64 * window_samples as f64;
                h((done / total.max(1) as f64).clamp(0.0, 1.0) as f32);
            }
        };
        let mut window_hooks = Hooks {
            on_segment: Some(&mut on_segment),
            on_progress: Some(&mut on_progress),
            cancel: hooks.cancel,
        };
        let result = engine.transcribe(path, window, mode.channel, &wopts, &mut window_hooks);
        hooks.on_segment = seg_hook;
        hooks.on_progress = prog_hook;
        let mut part = result?;
        summary.windows += 1;
        for seg in &mut part.segments {
            *seg = shifted(seg, offset_s);
        }
        part.duration = (buffer_start + cut as u64) as f64 / SR as f64;
        if language.is_none() {
            language = Some(part.language.clone());
            summary.language_probability = part.language_probability;
        }
        part.language = language.clone().unwrap_or_default();
        summary.segments += part.segments.len();
        if outputs.files.iter().any(|(f, _)| f.is_subtitle()) {
            summary.rule_violations += crate::subtitle::layout(&part, &outputs.meta.subtitle_rules)
                .violations
                .len();
        }
        // The next window continues this one's text only when the speech runs on across the
        // cut: after a long silence the context is stale, and a prompt then makes whisper
        // prone to repeating it (seen on tiny.en: a sentence looped seven times).
        prompt_tail = match part.segments.last() {
            Some(last) if part.duration - last.end < STALE_CONTEXT_S => tail_text(&part),
            _ => String::new(),
        };

        // Write, make durable, then checkpoint: a checkpoint never points past the data.
        if !started {
            let head = Transcript {
                language: part.language.clone(),
                language_probability: part.language_probability,
                ..Transcript::default()
            };
            for s in &mut sinks {
                let text = s.writer.begin(&head, &outputs.meta);
                s.put(&text)?;
            }
            started = true;
        }
        let without_words = (!outputs.keep_words).then(|| {
            let mut t = part.clone();
            for seg in &mut t.segments {
                seg.words = None;
            }
            t
        });
        for s in &mut sinks {
            let part = match &without_words {
                Some(t) if !s.format.is_subtitle() => t,
                _ => &part,
            };
            let text = s.writer.chunk(part, &outputs.meta, &mut s.state);
            s.put(&text)?;
            let aside = s.writer.aside(part, &mut s.state);
            s.put_aside(&aside)?;
        }
        buffer.drain(..cut);
        buffer_start += cut as u64;
        if let Some(p) = &ckpt_path {
            if !(ended && buffer.is_empty()) {
                let ckpt = Checkpoint {
                    fingerprint: fingerprint.clone(),
                    model: model.clone(),
                    samples_done: buffer_start,
                    language: language.clone().unwrap_or_default(),
                    language_probability: summary.language_probability,
                    prompt_tail: prompt_tail.clone(),
                    segments: summary.segments,
                    rule_violations: summary.rule_violations,
                    outputs: sinks
                        .iter_mut()
                        .map(|s| s.snapshot())
                        .collect::<Result<Vec<_>>>()?,
                };
                ckpt.save(p).map_err(|e| out_err(p, e))?;
            }
        }
        if ended && buffer.is_empty() {
            break;
        }
    }

    // The file's duration, as the whole-file path reports it: exact when the stream was read
    // to its end, else (a --duration range) what the header says.
    let read_to_end = range_end.is_none_or(|e| position < e);
    summary.duration = if read_to_end {
        position as f64 / SR as f64
    } else {
        stream.duration_hint.unwrap_or(summary.duration)
    };
    if range_start > 0 && position <= range_start {
        return Err(offset_past_end(path, range_start, position));
    }
    let warnings = stream.warnings();
    if options.strict && !warnings.is_empty() {
        // Nothing of a damaged input is kept: without its checkpoint the partial files go too.
        if let Some(p) = &ckpt_path {
            let _ = std::fs::remove_file(p);
        }
        let shown = path.display().to_string();
        let first = warnings[0]
            .strip_prefix(&format!("{shown}: "))
            .unwrap_or(&warnings[0]);
        return Err(Error::input(
            path,
            format!("damaged input (--reject-damaged): {first}"),
        ));
    }
    // Finish every file: the tail, the aside text, the close; then rename into place.
    summary.language = language.unwrap_or_else(|| opts.language.clone().unwrap_or_default());
    let tail = Transcript {
        speakers: Vec::new(),
        turns: Vec::new(),
        language: summary.language.clone(),
        language_probability: summary.language_probability,
        duration: summary.duration,
        segments: Vec::new(),
    };
    for s in &mut sinks {
        if !started {
            let text = s.writer.begin(&tail, &outputs.meta);
            s.file
                .write_all(text.as_bytes())
                .map_err(|e| out_err(&s.partial_path, e))?;
        }
        let text = s.writer.end(&tail, &outputs.meta, &s.state);
        s.file
            .write_all(text.as_bytes())
            .map_err(|e| out_err(&s.partial_path, e))?;
        if let Some(mut aside) = s.aside.take() {
            aside.flush().map_err(|e| out_err(&s.aside_path, e))?;
            aside.rewind().map_err(|e| out_err(&s.aside_path, e))?;
            std::io::copy(&mut aside, &mut s.file).map_err(|e| out_err(&s.partial_path, e))?;
        }
        s.file
            .write_all(s.writer.close().as_bytes())
            .map_err(|e| out_err(&s.partial_path, e))?;
        s.file.sync_all().map_err(|e| out_err(&s.partial_path, e))?;
    }
    for s in &sinks {
        std::fs::rename(&s.partial_path, &s.final_path).map_err(|e| out_err(&s.final_path, e))?;
        let _ = std::fs::remove_file(&s.aside_path);
    }
    if let Some(p) = &ckpt_path {
        let _ = std::fs::remove_file(p);
    }
    summary.warnings = warnings;
    summary.warnings.extend(notes);
    Ok(summary)
}

impl Sink {
    /// Appends to the partial file, keeping its length and running hash.
    fn put(&mut self, text: &str) -> Result<()> {
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| out_err(&self.partial_path, e))?;
        self.len += text.len() as u64;
        self.hash.update(text.as_bytes());
        Ok(())
    }

    /// Appends to the aside file (formats that have one).
    fn put_aside(&mut self, text: &str) -> Result<()> {
        if let Some(a) = self.aside.as_mut() {
            a.write_all(text.as_bytes())
                .map_err(|e| out_err(&self.aside_path, e))?;
            self.aside_len += text.len() as u64;
            self.aside_hash.update(text.as_bytes());
        }
        Ok(())
    }

    /// Flushes to disk and records the lengths and hashes a resume checks and truncates
    /// back to.
    fn snapshot(&mut self) -> Result<checkpoint::OutputState> {
        self.file
            .sync_data()
            .map_err(|e| out_err(&self.partial_path, e))?;
        if let Some(a) = self.aside.as_mut() {
            a.sync_data().map_err(|e| out_err(&self.aside_path, e))?;
        }
        Ok(checkpoint::OutputState {
            format: self.format.extension().to_string(),
            len: self.len,
            sha256: format!("{:x}", self.hash.clone().finalize()),
            aside_len: self.aside_len,
            aside_sha256: format!("{:x}", self.aside_hash.clone().finalize()),
            state: self.state.clone(),
        })
    }
}

/// A partial file opened for appending, with its length and the hash of its content.
type Opened = (File, u64, Sha256);

/// Opens the partial files: those the checkpoint describes when resuming (every one checked
/// first; if any is not what the checkpoint recorded, the checkpoint is dropped and the
/// returned one is `None`), else new ones, created exclusively.
fn open_sinks(
    outputs: &Outputs,
    resume: Option<Checkpoint>,
    notes: &mut Vec<String>,
) -> Result<(Vec<Sink>, Option<Checkpoint>)> {
    let mut resumed: Option<Vec<(Opened, Option<Opened>)>> = None;
    if let Some(c) = &resume {
        match open_checked(outputs, c, true) {
            Ok(files) => resumed = Some(files),
            Err(reason) => notes.push(format!(
                "{reason}: the partial files are not those the checkpoint describes; starting over"
            )),
        }
    }
    let resume = if resumed.is_some() { resume } else { None };
    let mut resumed = resumed.map(|v| v.into_iter());
    let mut sinks = Vec::new();
    for (i, (format, final_path)) in outputs.files.iter().enumerate() {
        let saved = resume.as_ref().map(|c| &c.outputs[i]);
        let partial = partial_path(final_path, ".partial");
        let aside_path = partial_path(final_path, ".aside.partial");
        let fresh = |path: &Path, notes: &mut Vec<String>| -> Result<Opened> {
            Ok((create_fresh(path, notes)?, 0, Sha256::new()))
        };
        let (file, aside) = match resumed.as_mut().and_then(|r| r.next()) {
            Some((file, aside)) => (file, aside),
            None => {
                let file = fresh(&partial, notes)?;
                let aside = if *format == Format::Json {
                    Some(fresh(&aside_path, notes)?)
                } else {
                    None
                };
                (file, aside)
            }
        };
        let (aside, aside_len, aside_hash) = match aside {
            Some((f, len, hash)) => (Some(f), len, hash),
            None => (None, 0, Sha256::new()),
        };
        sinks.push(Sink {
            format: *format,
            writer: format.writer(),
            final_path: final_path.clone(),
            partial_path: partial,
            aside_path,
            file: file.0,
            aside,
            state: saved.map(|o| o.state.clone()).unwrap_or_default(),
            len: file.1,
            hash: file.2,
            aside_len,
            aside_hash,
        });
    }
    Ok((sinks, resume))
}

/// Checks (and with `write`, opens for appending, truncated back to the checkpoint) every
/// partial file `ckpt` describes. The error names the first file that does not match.
fn open_checked(
    outputs: &Outputs,
    ckpt: &Checkpoint,
    write: bool,
) -> std::result::Result<Vec<(Opened, Option<Opened>)>, String> {
    if ckpt.outputs.len() != outputs.files.len() {
        return Err("the checkpoint lists other outputs".into());
    }
    let mut files = Vec::new();
    for ((format, path), saved) in outputs.files.iter().zip(&ckpt.outputs) {
        if saved.format != format.extension() {
            return Err(format!("{}: another format", path.display()));
        }
        let partial = partial_path(path, ".partial");
        let file = open_resumed(&partial, saved.len, &saved.sha256, write)
            .map_err(|why| format!("{}: {why}", partial.display()))?;
        let aside = if *format == Format::Json {
            let aside_path = partial_path(path, ".aside.partial");
            Some(
                open_resumed(&aside_path, saved.aside_len, &saved.aside_sha256, write)
                    .map_err(|why| format!("{}: {why}", aside_path.display()))?,
            )
        } else {
            None
        };
        files.push((file, aside));
    }
    Ok(files)
}

/// Opens a partial file to resume it, if it can be trusted: a regular file (never through a
/// link), ours, with one link, at least `len` bytes long, whose first `len` bytes hash to
/// `sha256`. With `write`, it is then truncated to `len` and positioned at its end.
fn open_resumed(
    path: &Path,
    len: u64,
    sha256: &str,
    write: bool,
) -> std::result::Result<Opened, String> {
    let (mut file, meta) = match open_regular(path, write) {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err("not a regular file (a link?)".into()),
        Err(e) => return Err(e.to_string()),
    };
    if !owned_by_us(&meta) {
        return Err("owned by another user".into());
    }
    #[cfg(unix)]
    if std::os::unix::fs::MetadataExt::nlink(&meta) != 1 {
        return Err("has other hard links".into());
    }
    if meta.len() < len {
        return Err(format!(
            "{} bytes where the checkpoint recorded {len}",
            meta.len()
        ));
    }
    let mut hash = Sha256::new();
    let read = std::io::copy(&mut (&mut file).take(len), &mut hash).map_err(|e| e.to_string())?;
    if read != len || format!("{:x}", hash.clone().finalize()) != sha256 {
        return Err("its content is not what the checkpoint recorded".into());
    }
    if write {
        file.set_len(len).map_err(|e| e.to_string())?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| e.to_string())?;
    }
    Ok((file, len, hash))
}

/// `--offset` at or after the end of the audio: an error, not an empty transcript.
fn offset_past_end(path: &Path, offset: u64, end: u64) -> Error {
    Error::input(
        path,
        format!(
            "the offset ({:.1} s) is at or past the end of the audio ({:.1} s)",
            offset as f64 / SR as f64,
            end as f64 / SR as f64
        ),
    )
}

/// Where a rerun of this command would resume, in seconds of the file: `Some` only when a
/// checkpoint matching this input, model, options and outputs exists and every partial file
/// holds what it recorded (checked read-only; nothing is changed). For messages such as
/// "resuming after ...", which should not promise a resume the run will refuse.
pub fn resume_point(
    engine: &Engine,
    input: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
) -> Option<f64> {
    if !options.resume || input.as_os_str() == "-" || options.split_channels {
        return None;
    }
    let ckpt = Checkpoint::load(&checkpoint_path(outputs)?)?;
    let model = ModelStamp::of(&engine.model_info().path);
    if ckpt.fingerprint != checkpoint::fingerprint(input, outputs, options, &model, engine) {
        return None;
    }
    open_checked(outputs, &ckpt, false).ok()?;
    Some(ckpt.samples_done as f64 / SR as f64)
}

/// Creates `path` new and empty for writing, exclusively (`O_CREAT|O_EXCL`: never through a
/// link, never an existing file). Whatever held the name before (a stale partial file, a
/// link someone planted) is unlinked first; a link's target is never opened.
fn create_fresh(path: &Path, notes: &mut Vec<String>) -> Result<File> {
    ensure_parent(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                notes.push(format!(
                    "{}: was a symbolic link; removed the link (its target is untouched) and \
                     wrote a new file",
                    path.display()
                ));
            }
            remove_planted(path, &meta)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(out_err(path, e)),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| out_err(path, e))
}

/// Unlinks what is at one of our temporary names (a directory there is an error).
fn remove_planted(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.is_dir() {
        return Err(Error::Output {
            path: path.to_path_buf(),
            reason: "a directory is in the way of a temporary file".into(),
            source: None,
        });
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(out_err(path, e)),
    }
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| out_err(path, e))?;
    }
    Ok(())
}

/// Opens `path` only if it is a regular file, never through a link: `lstat`, open without
/// creating or truncating, then check that the open file is the one `lstat` saw (a name
/// swapped in between is refused). `Ok(None)` when the name holds anything else.
pub(crate) fn open_regular(
    path: &Path,
    write: bool,
) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let before = std::fs::symlink_metadata(path)?;
    if !before.file_type().is_file() {
        return Ok(None);
    }
    let file = OpenOptions::new().read(true).write(write).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || !same_inode(&before, &meta) {
        return Ok(None);
    }
    Ok(Some((file, meta)))
}

#[cfg(unix)]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// Whether a file belongs to this process's effective user.
#[cfg(unix)]
pub(crate) fn owned_by_us(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    static EUID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    // std has no geteuid: a file this process creates is owned by its effective user.
    let euid = EUID.get_or_init(|| {
        tempfile::tempfile()
            .and_then(|f| f.metadata())
            .map(|m| m.uid())
            .ok()
    });
    euid.is_some_and(|uid| meta.uid() == uid)
}

#[cfg(not(unix))]
pub(crate) fn owned_by_us(_: &std::fs::Metadata) -> bool {
    true
}

/// The locks on one run's outputs: `NAME.EXT.lock` next to each output, `flock`ed
/// exclusively for the whole run and removed when dropped (still locked).
///
/// std's `File::try_lock` (flock(2) on Linux and the BSDs, LockFileEx on Windows; stable
/// since Rust 1.89) is used rather than the fs4 or fd-lock crates: it is the same call with
/// no new dependency, and the kernel drops the lock when the process dies however it dies
/// (SIGKILL, OOM), so a stale lock file never blocks the next run.
/// A lock held by another run is an error at once rather than a wait: a second run on the
/// same outputs is almost always a mistake (the same command started twice, two jobs
/// pointed at one directory), and waiting would then redo finished work or hang a batch.
struct OutputLock {
    held: Vec<(PathBuf, File)>,
}

impl OutputLock {
    fn acquire(outputs: &Outputs) -> Result<OutputLock> {
        let mut lock = OutputLock { held: Vec::new() };
        for (_, output) in &outputs.files {
            // On an error the locks already taken are released by drop.
            lock.held.push(lock_one(output)?);
        }
        Ok(lock)
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        for (path, file) in self.held.drain(..) {
            // Removed while still locked: a run that opened it meanwhile sees, once it gets
            // the lock, that the name no longer leads to its file, and starts again.
            let _ = std::fs::remove_file(&path);
            drop(file);
        }
    }
}

fn lock_one(output: &Path) -> Result<(PathBuf, File)> {
    let path = partial_path(output, ".lock");
    ensure_parent(&path)?;
    for _ in 0..32 {
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path);
        let file = match created {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match open_regular(&path, true) {
                Ok(Some((f, _))) => f,
                Ok(None) => {
                    // A link or something else planted at the name: unlink it, never open it.
                    if let Ok(meta) = std::fs::symlink_metadata(&path) {
                        remove_planted(&path, &meta)?;
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(out_err(&path, e)),
            },
            Err(e) => return Err(out_err(&path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy {
                    path: output.to_path_buf(),
                    lock: path,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(out_err(&path, e)),
        }
        // The run that held it may have removed it just before we locked: only the file at
        // the name counts.
        let current = std::fs::symlink_metadata(&path);
        if let (Ok(now), Ok(ours)) = (current, file.metadata()) {
            if now.file_type().is_file() && same_inode(&now, &ours) {
                return Ok((path, file));
            }
        }
    }
    Err(Error::Output {
        path: output.to_path_buf(),
        reason: format!(
            "its lock {} keeps changing under this run; another process is replacing it",
            path.display()
        ),
        source: None,
    })
}

fn shifted(seg: &Segment, offset: f64) -> Segment {
    let mut s = seg.clone();
    s.start += offset;
    s.end += offset;
    if let Some(words) = s.words.as_mut() {
        for w in words {
            w.start += offset;
            w.end += offset;
        }
    }
    s
}

/// The last ~200 characters of a window's text, cut at a word boundary: enough context for
/// whisper to carry style and names across the cut, short enough not to crowd its prompt.
fn tail_text(part: &Transcript) -> String {
    let mut text = String::new();
    for seg in part.segments.iter().rev() {
        text = if text.is_empty() {
            seg.text.clone()
        } else {
            format!("{} {text}", seg.text)
        };
        if text.len() >= 200 {
            break;
        }
    }
    if text.len() > 200 {
        let mut start = text.len() - 200;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let cut = text[start..].find(' ').map_or(start, |i| start + i + 1);
        text = text[cut..].to_string();
    }
    text
}

fn join_prompt(user: Option<&str>, tail: &str) -> Option<String> {
    match (user.filter(|u| !u.is_empty()), tail.is_empty()) {
        (None, true) => None,
        (Some(u), true) => Some(u.to_string()),
        (None, false) => Some(tail.to_string()),
        (Some(u), false) => Some(format!("{u} {tail}")),
    }
}

/// Where to end the window in `buffer` (which holds at least a window): in the middle of the
/// longest pause in its last quarter, so no word is cut. Depends only on the samples, so a
/// resumed run cuts exactly where the first run did.
fn choose_cut(engine: &Engine, buffer: &[f32], opts: &TranscribeOptions) -> Result<usize> {
    let search_from = buffer.len() * 3 / 4;
    let region = &buffer[search_from..];
    if engine.has_vad() {
        let spans = engine.detect_speech(region, &opts.vad_options)?;
        let mut best: Option<(usize, usize)> = None; // (gap length, middle)
        let mut prev_end = 0usize;
        for span in spans
            .iter()
            .chain(std::iter::once(&crate::engine::vad::Span {
                start: region.len(),
                end: region.len(),
            }))
        {
            if span.start > prev_end {
                let gap = span.start - prev_end;
                let middle = prev_end + gap / 2;
                // The region's edges are not known pauses: a gap touching them counts half.
                let weight = if prev_end == 0 || span.start == region.len() {
                    gap / 2
                } else {
                    gap
                };
                if best.is_none_or(|(g, _)| weight > g) {
                    best = Some((weight, middle));
                }
            }
            prev_end = prev_end.max(span.end);
        }
        if let Some((gap, middle)) = best {
            if gap >= SR / 10 {
                return Ok(search_from + middle.max(1));
            }
        }
    }
    // No pause found (music, or VAD off): the quietest 100 ms of the last quarter.
    let frame = SR / 10;
    let mut best = (f32::INFINITY, region.len());
    for (i, chunk) in region.chunks(frame).enumerate() {
        let energy: f32 = chunk.iter().map(|s| s * s).sum::<f32>() / chunk.len().max(1) as f32;
        if energy < best.0 {
            best = (energy, i * frame + chunk.len() / 2);
        }
    }
    Ok(search_from + best.1.max(1))
}
