//! Dictation benchmark: replays shared speech through `verbatim listen`'s pipeline and prints
//! commit latency, partial update interval, worker real-time factor, dropped audio and WER
//! against offline transcription with the same model, measured in the same run.
//!
//! ```sh
//! cargo run --release --example listen_bench -- --model ../shared/models/ggml-tiny.en.bin
//! cargo run --release --example listen_bench -- --model ../shared/models/ggml-base-q5_1.bin --fast
//! ```
//! Options: `--model PATH` (repeatable), `--vad PATH`, `--shared DIR`, `--fast` (as fast as
//! possible instead of real time: latency figures are then meaningless), `--files a,b` (stems),
//! the policy: `--step S`, `--endpoint S`, `--min-context S`, `--max-window S`, `--hold-back S`,
//! `--beam N`, and `--events FILE` (every event as JSON Lines, with its file).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};
use verbatim::listen::dictation::{DictationOptions, Event};
use verbatim::listen::session::{self, Input, SessionOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    };
    let shared = get("--shared")
        .pop()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let mut models: Vec<PathBuf> = get("--model").into_iter().map(PathBuf::from).collect();
    if models.is_empty() {
        models.push(shared.join("models/ggml-tiny.en.bin"));
    }
    let vad = get("--vad")
        .pop()
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("models/ggml-silero-vad.bin"));
    let fast = args.iter().any(|a| a == "--fast");
    let audio = shared.join("audio");
    let num = |flag: &str| get(flag).pop().and_then(|v| v.parse::<f64>().ok());
    let mut dictation = DictationOptions::default();
    if let Some(v) = num("--step") {
        dictation.step = v;
    }
    if let Some(v) = num("--endpoint") {
        dictation.endpoint_silence = v;
    }
    if let Some(v) = num("--min-context") {
        dictation.transcribe.min_context_seconds = v;
    }
    if let Some(v) = num("--beam") {
        dictation.transcribe.beam_size = v as usize;
    }
    if let Some(v) = num("--max-window") {
        dictation.max_window = v;
    }
    if let Some(v) = num("--hold-back") {
        dictation.hold_back = v;
    }
    // Every event of every file, as JSON Lines, for looking into slow or wrong commits.
    let mut events_out = get("--events")
        .pop()
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("--events file")));
    println!(
        "policy: step {} s, endpoint {} s, min context {} s, max window {} s, beam {}",
        dictation.step,
        dictation.endpoint_silence,
        dictation.transcribe.min_context_seconds,
        dictation.max_window,
        dictation.transcribe.beam_size
    );
    let stems: Vec<String> = match get("--files").pop() {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => {
            let mut v = vec!["long_ls_2609_3080_concat".to_string()];
            let mut ls: Vec<String> = std::fs::read_dir(&audio)
                .expect("shared audio")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    ((n.starts_with("1688-") || n.starts_with("367-")) && n.ends_with(".flac"))
                        || n == "1089-134686-0002.wav"
                        || n == "1221-135766-0002.wav"
                })
                .map(|n| n.rsplit_once('.').unwrap().0.to_string())
                .collect();
            ls.sort();
            v.extend(ls);
            v
        }
    };
    println!(
        "mode: {}; files: {} (the long file + LibriSpeech utterances)",
        if fast {
            "as fast as possible"
        } else {
            "real time"
        },
        stems.len()
    );
    println!(
        "| model | audio s | WER listen | WER offline | commit p50 | commit p95 | commit max | partial interval | worker RTF | dropped s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for model in &models {
        let engine = Engine::load(
            model,
            &EngineOptions {
                vad_model: Some(vad.clone()),
                ..EngineOptions::default()
            },
        )
        .expect("model loads");
        let (mut errs_l, mut errs_o, mut words) = (0usize, 0usize, 0usize);
        let mut latencies = Vec::new();
        let mut intervals = Vec::new();
        let (mut audio_s, mut compute_s, mut dropped) = (0.0, 0.0, 0.0);
        for stem in &stems {
            let file = find(&audio, stem);
            let reference = std::fs::read_to_string(audio.join(format!("{stem}.txt")))
                .expect("reference transcript");
            let opts = SessionOptions {
                input: Input::File {
                    path: file.clone(),
                    realtime: !fast,
                },
                duration: None,
                once: false,
                dictation: dictation.clone(),
            };
            let mut committed = Vec::new();
            let mut last_partial: Option<Instant> = None;
            let stop = AtomicBool::new(false);
            let (summary, _) = session::run(&engine, &opts, &stop, &mut |e| {
                if let Some(out) = events_out.as_mut() {
                    use std::io::Write;
                    let mut line = serde_json::to_value(e).expect("event serializes");
                    line["file"] = stem.as_str().into();
                    let _ = writeln!(out, "{line}");
                }
                match e {
                    Event::Commit { text, .. } => committed.push(text.clone()),
                    Event::Partial { .. } => {
                        let now = Instant::now();
                        if let Some(prev) = last_partial {
                            intervals.push(now.duration_since(prev).as_secs_f64());
                        }
                        last_partial = Some(now);
                    }
                    Event::UtteranceEnd { .. } => last_partial = None,
                }
            })
            .expect("session runs");
            latencies.extend(summary.stats.commit_latencies.iter().copied());
            audio_s += summary.stats.audio_seconds;
            compute_s += summary.stats.compute_seconds;
            dropped += summary.dropped_seconds;
            let listened = committed.join(" ");
            let offline = offline_text(&engine, &file);
            let r = norm(&reference);
            words += r.len();
            errs_l += edit_distance(&r, &norm(&listened));
            errs_o += edit_distance(&r, &norm(&offline));
        }
        let pct = |e: usize| 100.0 * e as f64 / words.max(1) as f64;
        let p = |q: f64| percentile(&latencies, q);
        println!(
            "| {} | {:.0} | {:.2} % | {:.2} % | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} |",
            model.file_name().unwrap().to_string_lossy(),
            audio_s,
            pct(errs_l),
            pct(errs_o),
            p(50.0),
            p(95.0),
            p(100.0),
            intervals.iter().sum::<f64>() / intervals.len().max(1) as f64,
            compute_s / audio_s.max(1e-9),
            dropped
        );
    }
}

fn find(dir: &Path, stem: &str) -> PathBuf {
    for ext in ["flac", "wav", "mp3", "m4a"] {
        let p = dir.join(format!("{stem}.{ext}"));
        if p.is_file() {
            return p;
        }
    }
    panic!("no audio for {stem} in {}", dir.display());
}

/// Offline transcription with verbatim's defaults (VAD, beam 5), for the WER comparison.
fn offline_text(engine: &Engine, file: &Path) -> String {
    let prepared = verbatim::audio::load(
        &verbatim::audio::InputSource::Path(file.to_path_buf()),
        false,
    )
    .expect("decodes");
    let t = engine
        .transcribe(
            file,
            &prepared.streams[0],
            None,
            &TranscribeOptions::default(),
            &mut Hooks::default(),
        )
        .expect("transcribes");
    t.segments
        .iter()
        .map(|s| s.text.trim())
        .collect::<Vec<_>>()
        .join(" ")
}

fn norm(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}
