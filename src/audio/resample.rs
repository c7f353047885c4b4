//! Downmixing and resampling to whisper's 16 kHz, with rubato's FFT resampler (a fixed ratio
//! is exactly what files need; its anti-aliasing filter keeps content above 8 kHz out).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::WHISPER_SAMPLE_RATE;
use crate::error::Error;

/// Averages planar channels into one mono channel.
pub fn downmix_to_mono(channels: &[Vec<f32>]) -> Vec<f32> {
    match channels {
        [] => Vec::new(),
        [only] => only.clone(),
        _ => {
            let len = channels.iter().map(Vec::len).min().unwrap_or(0);
            let scale = 1.0 / channels.len() as f32;
            (0..len)
                .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() * scale)
                .collect()
        }
    }
}

/// Resamples one channel from `rate` Hz to 16 kHz. Returns the input unchanged at 16 kHz.
pub fn resample_to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == WHISPER_SAMPLE_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    if rate == 0 {
        return Err("sample rate is 0 Hz".into());
    }
    let mut resampler = Fft::<f32>::new_custom(
        rate as usize,
        WHISPER_SAMPLE_RATE as usize,
        fft_chunk_size(rate as usize),
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )
    .map_err(|e| e.to_string())?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| format!("{e:?}"))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| e.to_string())?;
    Ok(output.take_data())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// An input chunk of about 1024 frames that is an even multiple of the rate's smallest
/// block. rubato centres its filter at `fft_size_in / 2` with integer division, so an odd
/// block (441 frames for 44.1 kHz) shifts the output by half an input sample.
fn fft_chunk_size(rate: usize) -> usize {
    let unit = rate / gcd(rate, WHISPER_SAMPLE_RATE as usize);
    let even_unit = if unit % 2 == 1 { 2 * unit } else { unit };
    even_unit * 1024usize.div_ceil(even_unit).max(1)
}

/// A resampler for live streams: feed device-rate mono samples as they come, get 16 kHz out.
///
/// The FFT resampler works on fixed input blocks; samples wait in `pending` until a block is
/// full, so the added delay is at most one block (64 ms at 16 kHz-multiples, about 1024 input
/// frames otherwise). The resampler's own delay is trimmed from the start of the output, so
/// output sample `n` is input time `n / 16000` exactly.
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    delay_left: usize,
    rate: u32,
    frames_in: u64,
    frames_out: u64,
}

impl StreamResampler {
    /// A resampler from `rate` Hz to 16 kHz.
    pub fn new(rate: u32) -> Result<StreamResampler, Error> {
        if rate == 0 {
            return Err(Error::Audio("sample rate is 0 Hz".into()));
        }
        if rate == WHISPER_SAMPLE_RATE {
            return Ok(StreamResampler {
                inner: None,
                pending: Vec::new(),
                delay_left: 0,
                rate,
                frames_in: 0,
                frames_out: 0,
            });
        }
        let fft = Fft::<f32>::new_custom(
            rate as usize,
            WHISPER_SAMPLE_RATE as usize,
            fft_chunk_size(rate as usize),
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| Error::Audio(format!("cannot resample from {rate} Hz: {e}")))?;
        let delay_left = fft.output_delay();
        Ok(StreamResampler {
            inner: Some(fft),
            pending: Vec::new(),
            delay_left,
            rate,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Adds input samples and appends whatever 16 kHz output is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), Error> {
        self.frames_in += input.len() as u64;
        let before = out.len();
        let result = self.process_inner(input, out);
        self.frames_out += (out.len() - before) as u64;
        result
    }

    /// Ends the stream: pushes the samples still inside the filter out, so the output has
    /// exactly `ceil(frames_in * 16000 / rate)` samples, as a whole-file resample would.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), Error> {
        let expected =
            (self.frames_in * u64::from(WHISPER_SAMPLE_RATE)).div_ceil(u64::from(self.rate));
        if self.inner.is_some() {
            let block = self.inner.as_ref().map_or(1024, |f| f.input_frames_next());
            let silence = vec![0.0f32; block];
            // Each block of silence moves the filter on by one block; a few suffice.
            let mut guard = 0;
            while self.frames_out < expected && guard < 64 {
                let before = out.len();
                self.process_inner(&silence, out)?;
                self.frames_out += (out.len() - before) as u64;
                guard += 1;
            }
        }
        if self.frames_out > expected {
            let extra = (self.frames_out - expected) as usize;
            out.truncate(out.len().saturating_sub(extra));
            self.frames_out = expected;
        }
        Ok(())
    }

    fn process_inner(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), Error> {
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() < need {
                return Ok(());
            }
            let block = InterleavedSlice::new(&self.pending[..need], 1, need)
                .map_err(|e| Error::Audio(format!("resampler input: {e:?}")))?;
            let produced = fft
                .process(&block, None)
                .map_err(|e| Error::Audio(format!("resampler: {e}")))?;
            let data = produced.take_data();
            let skip = self.delay_left.min(data.len());
            self.delay_left -= skip;
            out.extend_from_slice(&data[skip..]);
            self.pending.drain(..need);
        }
    }
}
