//! Downmixing and resampling to whisper's 16 kHz, with rubato's FFT resampler (a fixed ratio
//! is exactly what files need; its anti-aliasing filter keeps content above 8 kHz out).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::WHISPER_SAMPLE_RATE;

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
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        WHISPER_SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|e| e.to_string())?;
    let input =
        InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| format!("{e:?}"))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| e.to_string())?;
    Ok(output.take_data())
}
