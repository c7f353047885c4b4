//! A dictation session: a source (microphone or file replay) through the resampler into the
//! dictation policy, until the audio ends, a limit is reached, or the caller stops it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

#[cfg(feature = "listen")]
use crate::audio::resample::StreamResampler;
use crate::audio::{self, InputSource};
use crate::engine::Engine;
use crate::error::Error;
#[cfg(feature = "listen")]
use crate::listen::capture::Microphone;
use crate::listen::dictation::{Dictation, DictationOptions, Event, Stats};
use crate::listen::spoken::{Rewriter, TextRules};
use crate::listen::whole::{self, Whole};

const RATE: f64 = crate::audio::WHISPER_SAMPLE_RATE as f64;

/// Where the audio comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A capture device: None for the default, else a name or index.
    Microphone(Option<String>),
    /// A file replayed through the same policy; `realtime` paces it like a microphone.
    File {
        /// The file.
        path: PathBuf,
        /// Pace the replay at real time (else as fast as possible).
        realtime: bool,
    },
}

/// Options of a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The source.
    pub input: Input,
    /// Stop after this much audio (seconds).
    pub duration: Option<f64>,
    /// Stop after the first utterance.
    pub once: bool,
    /// The dictation policy.
    pub dictation: DictationOptions,
    /// Spoken punctuation and replacements applied to committed text (none by default).
    pub text: TextRules,
    /// Read the dictation whole when it ends instead of committing as the words are said
    /// (see [`whole`]); the live steps only show what they hear.
    pub whole: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// The caller stopped it (Ctrl-C).
    Stopped,
    /// `--duration` was reached.
    Duration,
    /// `--once`: the first utterance ended.
    Once,
    /// The replayed file ended.
    EndOfInput,
    /// The device failed; committed text was kept.
    DeviceLost,
}

/// What a session did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The device or file.
    pub source: String,
    /// Why it ended.
    pub ended: Ended,
    /// Audio dropped because the worker fell behind (seconds).
    pub dropped_seconds: f64,
    /// Figures of the dictation.
    pub stats: Stats,
}

/// Runs a session, calling `on_event` for every partial, commit and utterance end.
///
/// On a device failure the utterance in progress is still committed; the error comes back with
/// the summary so the caller can report both.
pub fn run(
    engine: &Engine,
    opts: &SessionOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(Summary, Option<Error>), Error> {
    let mut dictation_opts = opts.dictation.clone();
    if let Input::File {
        realtime: false, ..
    } = opts.input
    {
        dictation_opts.pace = false;
    }
    let mut dictation = Dictation::new(engine, dictation_opts)?;
    let mut whole = opts.whole.then(Whole::new);
    // Read whole, a dictation keeps its audio: bounded as by `--duration`.
    let duration = match opts.duration {
        d if !opts.whole => d,
        d => Some(d.unwrap_or(whole::MAX_SECONDS).min(whole::MAX_SECONDS)),
    };
    let limit = duration.map(|d| (d * RATE) as usize);
    let mut ended = None;
    let mut failure = None;
    let mut rewriter = Rewriter::new(opts.text.clone());
    let mut deliver = |events: Vec<Event>,
                       dictation: &Dictation,
                       whole: &mut Option<Whole>,
                       ended: &mut Option<Ended>| {
        let utterance_ended = events
            .iter()
            .any(|e| matches!(e, Event::UtteranceEnd { .. }));
        if opts.once && utterance_ended && ended.is_none() {
            *ended = Some(Ended::Once);
        }
        let events = match whole {
            Some(w) => w.shown(events),
            None => events,
        };
        for e in &rewriter.apply(events) {
            on_event(e);
        }
        if ended.is_none() {
            if let Some(limit) = limit {
                if dictation.audio_time() * RATE >= limit as f64 {
                    *ended = Some(Ended::Duration);
                }
            }
        }
    };

    let (source, dropped) = match &opts.input {
        #[cfg(not(feature = "listen"))]
        Input::Microphone(_) => {
            return Err(Error::Usage(
                "this build has no microphone capture (the `listen` feature)".into(),
            ))
        }
        #[cfg(feature = "listen")]
        Input::Microphone(spec) => {
            let mut mic = Microphone::open(spec.as_deref())?;
            let source = mic.info().name.clone();
            let channels = mic.channels();
            let mut resampler = StreamResampler::new(mic.rate())?;
            let mut raw = Vec::new();
            let mut mono = Vec::new();
            // Debugging aid: VERBATIM_LISTEN_DUMP=FILE.wav records what the dictation hears.
            let mut dump = std::env::var_os("VERBATIM_LISTEN_DUMP").and_then(|p| {
                hound::WavWriter::create(
                    p,
                    hound::WavSpec {
                        channels: 1,
                        sample_rate: crate::audio::WHISPER_SAMPLE_RATE,
                        bits_per_sample: 32,
                        sample_format: hound::SampleFormat::Float,
                    },
                )
                .ok()
            });
            let mut out = Vec::new();
            let started = Instant::now();
            while ended.is_none() {
                // Stopped: what the microphone has captured by now is still heard (the last
                // words before a push-to-talk key is released), then the session ends.
                let stopping = stop.load(Ordering::SeqCst);
                // Generous at start-up: some servers take a moment to deliver the first block.
                let stall = if started.elapsed() < Duration::from_secs(5) {
                    Duration::from_secs(8)
                } else {
                    Duration::from_secs(2)
                };
                match mic.read(&mut raw, stall) {
                    Ok(Some(arrival)) => {
                        mono.clear();
                        mono.extend(
                            raw.chunks(channels)
                                .map(|f| f.iter().sum::<f32>() / f.len() as f32),
                        );
                        out.clear();
                        resampler.process(&mono, &mut out)?;
                        if let Some(limit) = limit {
                            let room =
                                limit.saturating_sub((dictation.audio_time() * RATE) as usize);
                            out.truncate(room);
                        }
                        if let Some(w) = dump.as_mut() {
                            for x in &out {
                                let _ = w.write_sample(*x);
                            }
                        }
                        let events = feed(
                            &mut dictation,
                            &mut whole,
                            &out,
                            arrival,
                            stopping,
                            &mut ended,
                            &mut failure,
                        )?;
                        deliver(events, &dictation, &mut whole, &mut ended);
                    }
                    Ok(None) if !stopping => std::thread::sleep(Duration::from_millis(10)),
                    Ok(None) => {}
                    Err(e) => {
                        ended = Some(Ended::DeviceLost);
                        failure = Some(e);
                    }
                }
                if stopping && ended.is_none() {
                    ended = Some(Ended::Stopped);
                }
            }
            if let Some(w) = dump {
                let _ = w.finalize();
            }
            let dropped = mic.dropped_seconds();
            if failure.is_some() {
                mic.abandon();
            }
            (source, dropped)
        }
        Input::File { path, realtime } => {
            let prepared = audio::load(&InputSource::Path(path.clone()), false)?;
            let samples = prepared.streams.into_iter().next().unwrap_or_default();
            let chunk = 1_600; // 100 ms, about what a microphone callback delivers
            let started = Instant::now();
            let mut pos = 0;
            while ended.is_none() {
                if stop.load(Ordering::SeqCst) {
                    ended = Some(Ended::Stopped);
                    break;
                }
                if pos >= samples.len() {
                    ended = Some(Ended::EndOfInput);
                    break;
                }
                let mut end = (pos + chunk).min(samples.len());
                if *realtime {
                    let due = started + Duration::from_secs_f64(end as f64 / RATE);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else {
                        // Behind (the last step took a while): like a microphone's ring buffer,
                        // hand over everything captured by now in one block, so the next step
                        // sees the newest audio rather than working through stale chunks.
                        let captured = ((now - started).as_secs_f64() * RATE) as usize;
                        let whole = captured.saturating_sub(pos) / chunk * chunk;
                        end = (pos + whole.max(chunk)).min(samples.len());
                    }
                }
                if let Some(limit) = limit {
                    end = end.min(limit);
                }
                // The block's last sample was captured when the replay clock reached it.
                let arrival = if *realtime {
                    started + Duration::from_secs_f64(end as f64 / RATE)
                } else {
                    Instant::now()
                };
                let events = feed(
                    &mut dictation,
                    &mut whole,
                    &samples[pos..end],
                    arrival,
                    false,
                    &mut ended,
                    &mut failure,
                )?;
                pos = end;
                deliver(events, &dictation, &mut whole, &mut ended);
                if limit.is_some_and(|l| pos >= l) && ended.is_none() {
                    ended = Some(Ended::Duration);
                }
            }
            (path.display().to_string(), 0.0)
        }
    };

    // Whatever ended the session, the utterance in progress is committed, never lost (read
    // whole, by the whole reading: a last live pass would only be shown).
    if ended != Some(Ended::Once) && whole.is_none() {
        let events = dictation.finish()?;
        let mut none = None;
        deliver(events, &dictation, &mut whole, &mut none);
    }
    let mut stats = dictation.stats().clone();
    if let Some(mut w) = whole {
        if ended == Some(Ended::Once) {
            w.cut_at(dictation.utterance_read_to());
        }
        let events = w.finish(engine, Path::new(&source), &opts.dictation, &mut stats)?;
        for e in &rewriter.apply(events) {
            on_event(e);
        }
    }
    let summary = Summary {
        source,
        ended: ended.unwrap_or(Ended::Stopped),
        dropped_seconds: dropped,
        stats,
    };
    Ok((summary, failure))
}

/// Hands samples to the live steps, and keeps them for the whole reading when there is one.
/// Read whole, a stopping session runs no more live steps (they would only be shown), and a
/// step that fails ends the session instead of losing what was said: it is still read.
fn feed(
    dictation: &mut Dictation,
    whole: &mut Option<Whole>,
    samples: &[f32],
    arrival: Instant,
    stopping: bool,
    ended: &mut Option<Ended>,
    failure: &mut Option<Error>,
) -> Result<Vec<Event>, Error> {
    let Some(w) = whole.as_mut() else {
        return dictation.push(samples, arrival);
    };
    w.keep(samples, arrival);
    if stopping {
        return Ok(Vec::new());
    }
    dictation.push(samples, arrival).or_else(|e| {
        *ended = Some(Ended::Stopped);
        *failure = Some(e);
        Ok(Vec::new())
    })
}
