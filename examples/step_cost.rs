//! What one dictation step costs on this machine, by the length of the buffer it re-reads: the
//! VAD pass over the buffer and the re-transcription with the steps' options (greedy, 10 s
//! encoder context, word times), median of 5, on 1-24 s of the long file's continuous speech.
//! A step that costs more than 70 % of `--step` (0.35 s) makes dictation wait for more audio.
//! A second table gives the steps of `verbatim listen --context 20`: 20 s of earlier speech
//! read ahead of the buffer, its text as the decoder's prefix, with that speech encoded with
//! the buffer at every step (as before engine patch 0010) and encoded once and kept (now).
//!
//! ```sh
//! cargo run --release --example step_cost -- [--model PATH] [--shared DIR]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use verbatim::audio::{self, InputSource};
use verbatim::engine::{DecoderPrefix, Engine, EngineOptions, Hooks, VadOptions};
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

    // The context: the 20 s before the buffer, the text of it as whisper reads it.
    let context = &samples[10 * 16_000..30 * 16_000];
    let mut whole = opts.clone();
    whole.min_context_seconds = 0.0;
    let text = engine
        .transcribe(
            Path::new("context"),
            context,
            None,
            &whole,
            &mut Hooks::default(),
        )
        .expect("transcribes")
        .text();
    println!();
    println!("| buffer after 20 s of context | encoded with the buffer | encoded once, kept |");
    println!("| ---: | ---: | ---: |");
    for seconds in [1.0f64, 4.0, 8.0] {
        let start = 30 * 16_000;
        let mut window = context.to_vec();
        window.extend_from_slice(&samples[start..start + (seconds * 16_000.0) as usize]);
        let mut step = opts.clone();
        // As dictation bounds a step's tokens by its audio.
        step.max_tokens = 16 + (seconds * 10.0).ceil() as usize;
        step.decoder_prefix = Some(DecoderPrefix {
            text: text.clone(),
            end: 20.0,
        });
        let mut cost = |cached: bool| {
            step.cached_context_seconds = if cached { 20.0 } else { 0.0 };
            let mut times = Vec::new();
            // The first call encodes the context; dictation makes it once per change.
            for _ in 0..6 {
                let t = Instant::now();
                engine
                    .transcribe(
                        Path::new("step"),
                        &window,
                        None,
                        &step,
                        &mut Hooks::default(),
                    )
                    .expect("transcribes");
                times.push(t.elapsed().as_secs_f64());
            }
            median(times.split_off(1))
        };
        let (joint, cached) = (cost(false), cost(true));
        println!("| {seconds:.0} s | {joint:.3} s | {cached:.3} s |");
    }
}
