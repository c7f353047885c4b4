//! What one dictation step costs on this machine, by the length of the buffer it re-reads: the
//! VAD pass over the buffer and the re-transcription with the steps' options (greedy, 10 s
//! encoder context, word times), median of 5, on 1-24 s of the long file's continuous speech.
//! A step that costs more than 70 % of `--step` (0.35 s) makes dictation wait for more audio.
//!
//! ```sh
//! cargo run --release --example step_cost -- [--model PATH] [--shared DIR]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use verbatim::audio::{self, InputSource};
use verbatim::engine::{Engine, EngineOptions, Hooks, VadOptions};
use verbatim::listen::dictation::DictationOptions;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let shared = arg("--shared").unwrap_or_else(|| PathBuf::from("../shared"));
    let model = arg("--model").unwrap_or_else(|| shared.join("models/ggml-tiny.en.bin"));
    let engine = Engine::load(
        &model,
        &EngineOptions {
            vad_model: Some(shared.join("models/ggml-silero-vad.bin")),
            ..EngineOptions::default()
        },
    )
    .expect("model loads");
    let file = shared.join("audio/long_ls_2609_3080_concat.flac");
    let samples = audio::load(&InputSource::Path(file), false)
        .expect("audio loads")
        .streams
        .remove(0);
    let mut opts = DictationOptions::default().transcribe;
    opts.vad = false;
    opts.word_timestamps = true;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| buffer | VAD | re-transcription | step |");
    println!("| ---: | ---: | ---: | ---: |");
    for seconds in [1.0f64, 4.0, 8.0, 12.0, 16.0, 24.0] {
        // From 30 s in: continuous speech.
        let start = 30 * 16_000;
        let buffer = &samples[start..start + (seconds * 16_000.0) as usize];
        let (mut vad, mut asr) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            engine
                .detect_speech(buffer, &VadOptions::default())
                .expect("VAD runs");
            vad.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            engine
                .transcribe(
                    Path::new("step"),
                    buffer,
                    None,
                    &opts,
                    &mut Hooks::default(),
                )
                .expect("transcribes");
            asr.push(t.elapsed().as_secs_f64());
        }
        let (v, a) = (median(vad), median(asr));
        println!("| {seconds:.0} s | {v:.3} s | {a:.3} s | {:.3} s |", v + a);
    }
}
