//! Microphone capture: a cpal input stream feeding a lock-free ring buffer.
//!
//! The audio callback never blocks, allocates or locks: it converts samples to f32 in a stack
//! buffer and pushes them into a `ringbuf` producer; whatever does not fit is counted as dropped.
//! It also records, in atomics, how many frames it has pushed and when, so the reader can date
//! each sample it pops (for commit latency) even when it pops late.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapRb};

use crate::error::Error;
use crate::listen::devices::{self, DeviceInfo};

/// Seconds of device audio the ring buffer holds while the worker is busy transcribing.
const RING_SECONDS: usize = 30;

/// State shared between the audio callback and the reader, all lock-free.
struct Shared {
    /// Interleaved samples pushed in all.
    pushed: AtomicU64,
    /// Interleaved samples that did not fit.
    dropped: AtomicU64,
    /// Nanoseconds after `epoch` of the latest callback.
    last_callback_ns: AtomicU64,
    /// Set by the error callback when the device fails or vanishes.
    failed: AtomicBool,
}

/// A running capture from an input device.
pub struct Microphone {
    // The stream stops when dropped; it is kept here and never used otherwise.
    _stream: cpal::Stream,
    consumer: HeapCons<f32>,
    shared: Arc<Shared>,
    error: Arc<Mutex<Option<String>>>,
    epoch: Instant,
    popped: u64,
    info: DeviceInfo,
    channels: usize,
    rate: u32,
}

impl Microphone {
    /// Opens `spec` (None: the default input device) with its default configuration and starts
    /// capturing.
    pub fn open(spec: Option<&str>) -> Result<Microphone, Error> {
        let (device, info) = devices::open(spec)?;
        let config = device.default_input_config().map_err(|e| {
            Error::Device(format!(
                "input device '{}' cannot be opened: {e}",
                info.name
            ))
        })?;
        let format = config.sample_format();
        let stream_config = config.config();
        let channels = stream_config.channels.max(1) as usize;
        let rate = stream_config.sample_rate;
        let ring = HeapRb::<f32>::new(rate as usize * channels * RING_SECONDS);
        let (producer, consumer) = ring.split();
        let shared = Arc::new(Shared {
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_callback_ns: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        });
        let error = Arc::new(Mutex::new(None));
        let epoch = Instant::now();
        let stream = match format {
            SampleFormat::F32 => {
                build::<f32>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::F64 => {
                build::<f64>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::I8 => {
                build::<i8>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::I16 => {
                build::<i16>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::I32 => {
                build::<i32>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::I64 => {
                build::<i64>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::U8 => {
                build::<u8>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::U16 => {
                build::<u16>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::U32 => {
                build::<u32>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            SampleFormat::U64 => {
                build::<u64>(&device, &stream_config, producer, &shared, &error, epoch)
            }
            other => {
                return Err(Error::Device(format!(
                    "input device '{}' delivers {other} samples, which verbatim does not read",
                    info.name
                )))
            }
        }
        .map_err(|e| {
            Error::Device(format!(
                "input device '{}' cannot be opened: {e}",
                info.name
            ))
        })?;
        // cpal streams do not start on their own.
        stream.play().map_err(|e| {
            Error::Device(format!("input device '{}' cannot start: {e}", info.name))
        })?;
        Ok(Microphone {
            _stream: stream,
            consumer,
            shared,
            error,
            epoch,
            popped: 0,
            info,
            channels,
            rate,
        })
    }

    /// Lets go of a failed device without stopping its stream: after the sound server died,
    /// stopping can block forever inside ALSA, and a session must end, not hang.
    pub fn abandon(self) {
        std::mem::forget(self._stream);
    }

    /// The device in use.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Interleaved channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Sample rate (Hz).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Seconds of audio dropped because the ring buffer was full.
    pub fn dropped_seconds(&self) -> f64 {
        self.shared.dropped.load(Ordering::Relaxed) as f64
            / (self.rate as f64 * self.channels as f64)
    }

    /// Moves captured interleaved samples into `out` (cleared first) and returns the instant at
    /// which the last of them was captured; `Ok(None)` when nothing is waiting.
    ///
    /// Fails when the device reported an error or stopped delivering audio for `stall`.
    pub fn read(&mut self, out: &mut Vec<f32>, stall: Duration) -> Result<Option<Instant>, Error> {
        out.clear();
        let waiting = self.consumer.occupied_len();
        if waiting > 0 {
            out.resize(waiting, 0.0);
            let n = self.consumer.pop_slice(out);
            out.truncate(n);
            self.popped += n as u64;
            // The newest sample arrived at the last callback; the ones still queued after ours
            // are younger than ours by their duration.
            let pushed = self.shared.pushed.load(Ordering::Acquire);
            let last = self.epoch
                + Duration::from_nanos(self.shared.last_callback_ns.load(Ordering::Acquire));
            let younger = pushed.saturating_sub(self.popped) as f64
                / (self.rate as f64 * self.channels as f64);
            return Ok(Some(
                last.checked_sub(Duration::from_secs_f64(younger))
                    .unwrap_or(last),
            ));
        }
        if self.shared.failed.load(Ordering::Acquire) {
            let why = self
                .error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "the device failed".into());
            return Err(Error::Device(format!(
                "input device '{}' stopped: {why}",
                self.info.name
            )));
        }
        let last_ns = self.shared.last_callback_ns.load(Ordering::Acquire);
        let since = self
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(last_ns));
        if since > stall {
            return Err(Error::Device(format!(
                "input device '{}' stopped delivering audio ({:.1} s without data; was it unplugged or its sound server stopped?)",
                self.info.name,
                since.as_secs_f64()
            )));
        }
        Ok(None)
    }
}

/// Builds the input stream for sample type `T`.
fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut producer: ringbuf::HeapProd<f32>,
    shared: &Arc<Shared>,
    error: &Arc<Mutex<Option<String>>>,
    epoch: Instant,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let data_shared = shared.clone();
    let err_shared = shared.clone();
    let err_slot = error.clone();
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            // Realtime thread: no allocation, no lock, no blocking. Convert through a stack
            // buffer and push what fits.
            let mut buf = [0f32; 1024];
            let mut dropped = 0u64;
            for chunk in data.chunks(buf.len()) {
                for (dst, src) in buf.iter_mut().zip(chunk) {
                    *dst = src.to_sample::<f32>();
                }
                let pushed = producer.push_slice(&buf[..chunk.len()]);
                dropped += (chunk.len() - pushed) as u64;
            }
            data_shared
                .pushed
                .fetch_add(data.len() as u64 - dropped, Ordering::AcqRel);
            if dropped > 0 {
                data_shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            data_shared
                .last_callback_ns
                .store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        },
        move |e: cpal::Error| {
            // A reroute of the default device keeps the stream running: not a failure.
            if e.kind() == cpal::ErrorKind::DeviceChanged {
                return;
            }
            // Not the realtime callback: a lock is fine here.
            if let Ok(mut slot) = err_slot.lock() {
                *slot = Some(e.to_string());
            }
            err_shared.failed.store(true, Ordering::Release);
        },
        None,
    )
}
