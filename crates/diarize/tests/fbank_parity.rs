//! The Kaldi fbank against the independent numpy reference (`tools/campplus_reference.py`,
//! written from torchaudio.compliance.kaldi.fbank) on the first 2 s of LibriSpeech
//! 1089-134686-0002 (fixture: `tests/data/campplus_1089_2s.i16`, its reference
//! `tests/data/fbank_1089_2s.f32`).

mod common;

use common::{f32s, pcm};
use diarize::fbank::{num_frames, subtract_mean, Fbank, NUM_MEL_BINS};

#[test]
fn fbank_matches_the_numpy_reference() {
    let samples = pcm("campplus_1089_2s.i16");
    let want = f32s("fbank_1089_2s.f32");
    let frames = num_frames(samples.len());
    assert_eq!(frames, 198);
    assert_eq!(want.len(), frames * NUM_MEL_BINS);

    let got = Fbank::new().compute(&samples);
    assert_eq!(got.len(), want.len());
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("fbank max |rust - numpy| = {max_err:.2e}");
    assert!(max_err < 1e-3, "max abs error {max_err}");

    // And after CAM++'s mean normalisation.
    let (mut g, mut w) = (got, want);
    subtract_mean(&mut g, NUM_MEL_BINS);
    subtract_mean(&mut w, NUM_MEL_BINS);
    let max_err = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-3, "mean-normalised max abs error {max_err}");
}

#[test]
fn fbank_of_short_input_is_empty() {
    assert!(Fbank::new().compute(&[0.1; 399]).is_empty());
    assert_eq!(Fbank::new().compute(&[0.1; 400]).len(), NUM_MEL_BINS);
}
