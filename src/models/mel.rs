//! Whisper's mel filterbank, computed the way `librosa.filters.mel(sr=16000, n_fft=400,
//! n_mels=N)` computes it (Slaney mel scale, Slaney area normalisation). openai-whisper's
//! `mel_filters.npz`, which whisper.cpp's converters copy into every ggml file, holds exactly
//! that matrix, so a CTranslate2 directory (which has no filters) does not need it.

/// Sample rate Whisper's front end runs at.
pub const SAMPLE_RATE: f64 = crate::audio::WHISPER_SAMPLE_RATE as f64;
/// FFT size of Whisper's STFT (25 ms windows).
pub const N_FFT: usize = 400;
/// FFT bins per frame (`N_FFT / 2 + 1`), the filterbank's width.
pub const N_BINS: usize = N_FFT / 2 + 1;

// Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// The `n_mels × 201` filterbank (row-major) for 16 kHz audio and a 400-point FFT.
///
/// The arithmetic follows librosa step by step, including its rounding: the triangles are
/// computed in f64 and stored as f32, then multiplied by the f64 Slaney norms and stored
/// as f32 again, so the result matches `mel_filters.npz` to the last bit or nearly so.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    // np.fft.rfftfreq(n=400, d=1/16000): k * (1 / (n * d)).
    let step = 1.0 / (N_FFT as f64 * (1.0 / SAMPLE_RATE));
    let fft_freqs: Vec<f64> = (0..N_BINS).map(|k| k as f64 * step).collect();

    // mel_frequencies(n_mels + 2, fmin=0, fmax=sr/2): np.linspace over the mel scale,
    // i * step + start, with the last point set to the end exactly.
    let n_points = n_mels + 2;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let mel_step = (hi - lo) / (n_points - 1) as f64;
    let mel_f: Vec<f64> = (0..n_points)
        .map(|i| {
            let m = if i + 1 == n_points {
                hi
            } else {
                i as f64 * mel_step + lo
            };
            mel_to_hz(m)
        })
        .collect();

    let mut weights = vec![0f32; n_mels * N_BINS];
    for (i, row) in weights.chunks_exact_mut(N_BINS).enumerate() {
        let (f0, f1, f2) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let (d0, d1) = (f1 - f0, f2 - f1);
        let enorm = 2.0 / (f2 - f0);
        for (w, &freq) in row.iter_mut().zip(&fft_freqs) {
            let lower = -(f0 - freq) / d0;
            let upper = (f2 - freq) / d1;
            // np.maximum(0, m) keeps m when m is -0.0 (the first bin of the first band),
            // and the stored filters carry that sign; f64::max leaves it unspecified.
            let m = lower.min(upper);
            let tri = if m < 0.0 { 0.0 } else { m } as f32;
            *w = (f64::from(tri) * enorm) as f32;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_continuous() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.245_640_471_924_965).abs() < 1e-9);
    }

    #[test]
    fn filterbank_has_whisper_values() {
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        // Spot values of openai-whisper's mel_filters.npz ("mel_80").
        assert!((f[1] - 0.024_862_595).abs() < 1e-9, "{}", f[1]);
        assert_eq!(f[0].to_bits(), (-0.0f32).to_bits());
        // Each triangle integrates to ~2 / bandwidth × bandwidth / 2 × bins: row sums stay
        // positive and every band touches at least one bin.
        for row in f.chunks_exact(201) {
            assert!(row.iter().any(|&w| w > 0.0));
            assert!(row.iter().all(|&w| (0.0..0.05).contains(&w)));
        }
        let f128 = mel_filters(128);
        assert_eq!(f128.len(), 128 * 201);
    }
}
