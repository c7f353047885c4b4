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

mod channels;
mod checkpoint;
mod spool;

pub use spool::transcribe_reader;

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::audio::{AudioStream, WHISPER_SAMPLE_RATE};
use crate::engine::{Engine, Hooks, TranscribeOptions};
use crate::output::{Format, JsonMeta, OutputFormat, WriterState};
use crate::{Error, Result, Segment, Transcript};

pub use checkpoint::Checkpoint;

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
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            transcribe: TranscribeOptions::default(),
            window_seconds: 300.0,
            resume: true,
            split_channels: false,
            max_seconds: None,
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
/// library users: `input` is a file, or `-` for standard input (spooled to a temporary file,
/// so memory stays bounded as for a file). Calls `hooks.on_segment` with each final segment
/// (file timeline) and `hooks.on_progress` with the fraction done.
pub fn transcribe(
    engine: &Engine,
    input: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    if input.as_os_str() == "-" {
        let stdin = &mut std::io::stdin().lock();
        return transcribe_reader(engine, "-", stdin, outputs, options, hooks);
    }
    transcribe_path(engine, input, outputs, options, hooks, true)
}

fn transcribe_path(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    checkpoints: bool,
) -> Result<Summary> {
    if options.split_channels {
        return channels::transcribe(engine, path, outputs, options, hooks);
    }
    let mode = Mode {
        channel: None,
        checkpoints,
    };
    windowed(engine, path, outputs, options, hooks, mode)
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

fn windowed(
    engine: &Engine,
    path: &Path,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    mode: Mode,
) -> Result<Summary> {
    let result = run(engine, path, outputs, options, hooks, mode);
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
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
    mode: Mode,
) -> Result<Summary> {
    let mut stream = AudioStream::open_channel(path, mode.channel)?;
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
    if let (Some(max), Some(total)) = (options.max_seconds, total_hint) {
        let seconds = total as f64 / SR as f64;
        if seconds > max {
            return Err(too_long(Some(seconds)));
        }
    }

    let fingerprint = checkpoint::fingerprint(path, outputs, options, engine);
    let ckpt_path = checkpoint_path(outputs).filter(|_| mode.checkpoints);
    let mut resume = match (&ckpt_path, options.resume) {
        (Some(p), true) => Checkpoint::load(p).filter(|c| c.fingerprint == fingerprint),
        _ => None,
    };
    let mut sinks = open_sinks(outputs, resume.as_mut())?;
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
                s.file
                    .write_all(text.as_bytes())
                    .map_err(|e| out_err(&s.partial_path, e))?;
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
            s.file
                .write_all(text.as_bytes())
                .map_err(|e| out_err(&s.partial_path, e))?;
            let aside = s.writer.aside(part, &mut s.state);
            if let Some(a) = s.aside.as_mut() {
                a.write_all(aside.as_bytes())
                    .map_err(|e| out_err(&s.aside_path, e))?;
            }
        }
        buffer.drain(..cut);
        buffer_start += cut as u64;
        if let Some(p) = &ckpt_path {
            if !(ended && buffer.is_empty()) {
                let ckpt = Checkpoint {
                    fingerprint: fingerprint.clone(),
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
    // Finish every file: the tail, the aside text, the close; then rename into place.
    summary.language = language.unwrap_or_else(|| opts.language.clone().unwrap_or_default());
    let tail = Transcript {
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
    summary.warnings = stream.warnings();
    Ok(summary)
}

impl Sink {
    /// Flushes to disk and records the lengths a resume truncates back to.
    fn snapshot(&mut self) -> Result<checkpoint::OutputState> {
        self.file
            .sync_data()
            .map_err(|e| out_err(&self.partial_path, e))?;
        let len = self
            .file
            .metadata()
            .map_err(|e| out_err(&self.partial_path, e))?
            .len();
        let aside_len = match self.aside.as_mut() {
            Some(a) => {
                a.sync_data().map_err(|e| out_err(&self.aside_path, e))?;
                a.metadata()
                    .map_err(|e| out_err(&self.aside_path, e))?
                    .len()
            }
            None => 0,
        };
        Ok(checkpoint::OutputState {
            format: self.format.extension().to_string(),
            len,
            aside_len,
            state: self.state.clone(),
        })
    }
}

/// Opens the partial files: truncated back to the checkpoint when resuming (a checkpoint
/// whose files do not match is dropped: `resume` becomes `None`), else created empty.
fn open_sinks(outputs: &Outputs, resume: Option<&mut Checkpoint>) -> Result<Vec<Sink>> {
    let open = |path: &Path, keep: Option<u64>| -> Result<File> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| out_err(path, e))?;
        }
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(keep.is_none())
            .open(path)
            .map_err(|e| out_err(path, e))?;
        if let Some(len) = keep {
            f.set_len(len).map_err(|e| out_err(path, e))?;
            f.seek(std::io::SeekFrom::End(0))
                .map_err(|e| out_err(path, e))?;
        }
        Ok(f)
    };
    // A checkpoint is usable only if every partial file is at least as long as recorded.
    let usable = resume.as_ref().is_some_and(|c| {
        c.outputs.len() == outputs.files.len()
            && outputs.files.iter().zip(&c.outputs).all(|((f, p), o)| {
                o.format == f.extension()
                    && file_len(&partial_path(p, ".partial")) >= Some(o.len)
                    && (o.aside_len == 0
                        || file_len(&partial_path(p, ".aside.partial")) >= Some(o.aside_len))
            })
    });
    let ckpt = if usable { resume } else { None };
    let mut sinks = Vec::new();
    for (i, (format, final_path)) in outputs.files.iter().enumerate() {
        let saved = ckpt.as_ref().map(|c| &c.outputs[i]);
        let partial = partial_path(final_path, ".partial");
        let aside_path = partial_path(final_path, ".aside.partial");
        let writer = format.writer();
        let file = open(&partial, saved.map(|o| o.len))?;
        let aside = if *format == Format::Json {
            Some(open(&aside_path, saved.map(|o| o.aside_len))?)
        } else {
            None
        };
        sinks.push(Sink {
            format: *format,
            writer,
            final_path: final_path.clone(),
            partial_path: partial,
            aside_path,
            file,
            aside,
            state: saved.map(|o| o.state.clone()).unwrap_or_default(),
        });
    }
    Ok(sinks)
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
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
