//! Decoding a file as a stream of 16 kHz mono chunks, on a background thread, so that a
//! recording of any length is never in memory whole.
//!
//! The decoder thread runs the same decoders as [`super::decode_path`] (hound, symphonia,
//! ffmpeg through a pipe), downmixes and resamples each block as it comes, and hands chunks
//! over a bounded channel: when the consumer (whisper) is slower than the decoder, the decoder
//! waits, and memory stays at a few chunks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::decode::{stream_path, DecodeInfo, PcmSink};
use super::pipe::{stream_pipe, PipeInput};
use super::resample::StreamResampler;
use super::WHISPER_SAMPLE_RATE;
use crate::{Error, Result};

/// Samples per chunk handed to the consumer (one second).
const CHUNK: usize = WHISPER_SAMPLE_RATE as usize;
/// Chunks the decoder may run ahead of the consumer.
const AHEAD: usize = 8;

enum Message {
    Chunk(Vec<f32>),
    Done(Result<DecodeInfo>),
}

/// A file being decoded to 16 kHz mono; read it with [`AudioStream::next_chunk`].
pub struct AudioStream {
    path: PathBuf,
    rx: Receiver<Message>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    first: Option<Vec<f32>>,
    info: Option<DecodeInfo>,
    levels: Arc<Levels>,
    channels: Arc<std::sync::atomic::AtomicUsize>,
    /// Duration in seconds read from the container's header, when it says.
    pub duration_hint: Option<f64>,
    /// Reading a stream: the decoder may be blocked reading it, so it is not waited for.
    detach: bool,
}

/// What the decoder thread reads.
enum Origin {
    File(PathBuf),
    Pipe(PipeInput),
}

impl AudioStream {
    /// Starts decoding `path`. Errors found before any audio (missing file, not audio,
    /// unsupported codec without ffmpeg) are returned here, with the same one-line messages
    /// as [`super::decode_path`].
    pub fn open(path: &Path) -> Result<AudioStream> {
        Self::open_channel(path, None)
    }

    /// Like [`AudioStream::open`], but the samples are those of one input channel (0-based)
    /// instead of the downmix; [`AudioStream::channels`] says how many there are.
    pub fn open_channel(path: &Path, channel: Option<usize>) -> Result<AudioStream> {
        let duration_hint = probe_duration(path);
        Self::start(Origin::File(path.to_path_buf()), channel, duration_hint)
    }

    /// Starts decoding a stream that can be read only once (standard input, a FIFO), as it
    /// arrives: nothing beyond its kept head is buffered. Downmixed; no duration is known.
    pub fn open_pipe(input: PipeInput) -> Result<AudioStream> {
        Self::start(Origin::Pipe(input), None, None)
    }

    fn start(
        origin: Origin,
        channel: Option<usize>,
        duration_hint: Option<f64>,
    ) -> Result<AudioStream> {
        let path = match &origin {
            Origin::File(path) => path.clone(),
            Origin::Pipe(input) => input.name().to_path_buf(),
        };
        let path = path.as_path();
        let detach = matches!(origin, Origin::Pipe(_));
        let (tx, rx) = sync_channel(AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let levels = Arc::new(Levels::default());
        let channels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, levels, count) = (stop.clone(), levels.clone(), channels.clone());
            std::thread::Builder::new()
                .name("verbatim-decode".into())
                .spawn(move || decode_thread(origin, channel, tx, stop, levels, count))
                .map_err(|e| Error::input(path, format!("cannot start the decoder: {e}")))?
        };
        let mut stream = AudioStream {
            path: path.to_path_buf(),
            rx,
            stop,
            thread: Some(thread),
            first: None,
            info: None,
            levels,
            channels,
            duration_hint,
            detach,
        };
        // Wait for the first chunk so that "not an audio file" fails here, not mid-run.
        match stream.recv()? {
            Some(chunk) => stream.first = Some(chunk),
            None => {
                return Err(Error::input(path, "contains no audio samples"));
            }
        }
        Ok(stream)
    }

    fn recv(&mut self) -> Result<Option<Vec<f32>>> {
        if self.info.is_some() {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(Message::Chunk(c)) => Ok(Some(c)),
            Ok(Message::Done(Ok(info))) => {
                self.info = Some(info);
                Ok(None)
            }
            Ok(Message::Done(Err(e))) => {
                self.info = Some(DecodeInfo::default());
                Err(e)
            }
            Err(_) => {
                self.info = Some(DecodeInfo::default());
                Err(Error::input(&self.path, "the decoder stopped unexpectedly"))
            }
        }
    }

    /// The input's channel count (known once `open` has returned).
    pub fn channels(&self) -> usize {
        self.channels.load(Ordering::SeqCst)
    }

    /// The next chunk of 16 kHz mono samples (about one second), or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        self.recv()
    }

    /// Warnings about the decode (skipped packets, replaced NaN samples); complete once
    /// [`AudioStream::next_chunk`] has returned `None`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self
            .info
            .as_ref()
            .map(|i| i.warnings.clone())
            .unwrap_or_default();
        let n = self.levels.non_finite.load(Ordering::SeqCst);
        if n > 0 {
            out.push(format!("replaced {n} NaN or infinite samples with silence"));
        }
        let peak = f32::from_bits(self.levels.peak.load(Ordering::SeqCst));
        if peak > OVER_SCALE {
            out.push(format!(
                "samples reach {peak:.0} times full scale (integer values stored as float?); whisper hears noise, so the transcript may be empty or wrong"
            ));
        }
        let path = self.path.display();
        out.into_iter().map(|w| format!("{path}: {w}")).collect()
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        // The decoder checks `stop` at every block; receiving unblocks it if it waits on a
        // full channel. It drops its sender when it ends, which ends this loop.
        self.stop.store(true, Ordering::SeqCst);
        if self.detach {
            // It ends at its next block (the receiver is gone) or when the stream ends.
            return;
        }
        if let Some(thread) = self.thread.take() {
            loop {
                match self.rx.recv_timeout(std::time::Duration::from_millis(50)) {
                    Ok(_) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if thread.is_finished() => {
                        break
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
            let _ = thread.join();
        }
    }
}

/// Peak level, in multiples of full scale, above which the samples are not audio as
/// recorded: float files mislabelled or written with integer values.
const OVER_SCALE: f32 = 4.0;

/// What the decoder saw in the samples, complete once decoding has ended.
#[derive(Default)]
struct Levels {
    /// NaN or infinite samples (replaced with silence).
    non_finite: std::sync::atomic::AtomicUsize,
    /// The largest absolute sample, as `f32` bits.
    peak: std::sync::atomic::AtomicU32,
}

/// Downmixes, cleans and resamples blocks, and sends whole chunks to the consumer.
struct MonoSink {
    tx: SyncSender<Message>,
    stop: Arc<AtomicBool>,
    levels: Arc<Levels>,
    resampler: Option<StreamResampler>,
    format: Option<(usize, u32)>,
    /// One channel to keep instead of the downmix.
    channel: Option<usize>,
    channel_count: Arc<std::sync::atomic::AtomicUsize>,
    mono: Vec<f32>,
    out: Vec<f32>,
    error: Option<String>,
}

impl MonoSink {
    fn send_full_chunks(&mut self) -> bool {
        while self.out.len() >= CHUNK {
            let rest = self.out.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.out, rest);
            if self.tx.send(Message::Chunk(chunk)).is_err() {
                return false;
            }
        }
        true
    }
}

impl PcmSink for MonoSink {
    fn block(&mut self, interleaved: &[f32], channels: usize, rate: u32) -> bool {
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        match self.format {
            None => {
                if let Some(reason) = super::bad_rate(rate) {
                    self.error = Some(reason);
                    return false;
                }
                match StreamResampler::new(rate) {
                    Ok(r) => self.resampler = Some(r),
                    Err(e) => {
                        self.error = Some(format!("cannot resample audio: {e}"));
                        return false;
                    }
                }
                self.format = Some((channels, rate));
                self.channel_count.store(channels, Ordering::SeqCst);
                if let Some(c) = self.channel.filter(|&c| c >= channels) {
                    self.error = Some(format!("has no channel {c} (it has {channels})"));
                    return false;
                }
            }
            Some(f) if f != (channels, rate) => {
                self.error = Some("channel count or sample rate changes mid-stream".into());
                return false;
            }
            Some(_) => {}
        }
        if channels == 0 {
            self.error = Some("audio has zero channels".into());
            return false;
        }
        self.mono.clear();
        let scale = 1.0 / channels as f32;
        let mut bad = 0usize;
        let mut peak = 0.0f32;
        for frame in interleaved.chunks_exact(channels) {
            let picked = match self.channel {
                Some(c) => &frame[c..c + 1],
                None => frame,
            };
            let mut sum = 0.0f32;
            for &s in picked {
                if s.is_finite() {
                    sum += s;
                    peak = peak.max(s.abs());
                } else {
                    bad += 1;
                }
            }
            self.mono.push(match self.channel {
                Some(_) => sum,
                None => sum * scale,
            });
        }
        if bad > 0 {
            self.levels.non_finite.fetch_add(bad, Ordering::SeqCst);
        }
        // Non-negative floats order like their bit patterns.
        self.levels.peak.fetch_max(peak.to_bits(), Ordering::SeqCst);
        if let Some(r) = self.resampler.as_mut() {
            if let Err(e) = r.process(&self.mono, &mut self.out) {
                self.error = Some(format!("cannot resample audio: {e}"));
                return false;
            }
        }
        self.send_full_chunks()
    }
}

fn decode_thread(
    mut origin: Origin,
    channel: Option<usize>,
    tx: SyncSender<Message>,
    stop: Arc<AtomicBool>,
    levels: Arc<Levels>,
    channel_count: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut sink = MonoSink {
        tx: tx.clone(),
        stop,
        levels,
        resampler: None,
        format: None,
        channel,
        channel_count,
        mono: Vec::new(),
        out: Vec::new(),
        error: None,
    };
    let (result, path) = match &mut origin {
        Origin::File(path) => (
            stream_path(path, channel.is_some(), &mut sink),
            path.clone(),
        ),
        Origin::Pipe(input) => (stream_pipe(input, &mut sink), input.name().to_path_buf()),
    };
    let path = path.as_path();
    let result = match (result, sink.error.take()) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(reason)) => Err(Error::input(path, reason)),
        (Ok(info), None) => {
            if let Some(r) = sink.resampler.as_mut() {
                let mut tail = std::mem::take(&mut sink.out);
                if let Err(e) = r.finish(&mut tail) {
                    let _ = tx.send(Message::Done(Err(Error::input(
                        path,
                        format!("cannot resample audio: {e}"),
                    ))));
                    return;
                }
                sink.out = tail;
            }
            if !sink.send_full_chunks() {
                return;
            }
            if !sink.out.is_empty()
                && tx
                    .send(Message::Chunk(std::mem::take(&mut sink.out)))
                    .is_err()
            {
                return;
            }
            Ok(info)
        }
    };
    let _ = tx.send(Message::Done(result));
}

/// The duration the container's header declares, without decoding (for progress and ETA).
pub fn probe_duration(path: &Path) -> Option<f64> {
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    let file = std::fs::File::open(path).ok()?;
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    // A malformed header may panic symphonia; a missing estimate is harmless.
    let format = super::decode::quietly(|| {
        symphonia::default::get_probe()
            .probe(
                &hint,
                MediaSourceStream::new(Box::new(file), Default::default()),
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .ok()
    })
    .ok()??;
    let track = format.default_track(TrackType::Audio)?;
    let frames = track.num_frames?;
    let rate = track.codec_params.as_ref()?.audio()?.sample_rate?;
    (rate > 0).then(|| frames as f64 / f64::from(rate))
}
