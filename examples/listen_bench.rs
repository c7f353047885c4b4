//! Dictation benchmark: replays shared speech through `verbatim listen`'s pipeline and prints
//! commit latency, partial update interval, worker real-time factor, the longest audio one step
//! re-read, dropped audio and WER against offline transcription with the same model, measured
//! in the same run.
//!
//! Commit latency is dated two ways. The main columns take the end of the last committed word
//! from the offline transcript (full context, beam search, VAD-snapped word times), matched
//! to the committed words by alignment: whisper's word times inside a live hypothesis drift by
//! seconds, both ways. The column "whisper's word times" dates commits as `verbatim listen`
//! itself does (the `latency` of its events).
//!
//! ```sh
//! cargo run --release --example listen_bench -- --model ../shared/models/ggml-tiny.en.bin
//! cargo run --release --example listen_bench -- --model ../shared/models/ggml-base-q5_1.bin --fast
//! ```
//! A table per file follows the aggregate. `--help` lists the options (`--fast`: as fast as
//! possible, where only the "heard at commit" latency means anything; `--hyp-dir DIR`: texts for
//! `../shared/tools/wer.py`); an unknown one is an error.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};
use verbatim::listen::dictation::{DictationOptions, Event};
use verbatim::listen::session::{self, Input, SessionOptions};

/// Every option declared once; clap gives `--help` and rejects an unknown option or a bad value,
/// which would otherwise run minutes of benchmark on the default policy.
#[derive(clap::Parser)]
#[command(
    about = "Replays shared speech through the dictation and scores it against offline transcription",
    after_help = "example: cargo run --release --example listen_bench -- --fast --files long_ls_2609_3080_concat --context 20"
)]
struct Args {
    /// Model (repeatable; default SHARED/models/ggml-tiny.en.bin)
    #[arg(long = "model", value_name = "PATH")]
    models: Vec<PathBuf>,
    /// The shared data
    #[arg(long, value_name = "DIR", default_value = "../shared")]
    shared: PathBuf,
    /// File stems under SHARED/audio, comma-separated (default: the long file and 22 utterances)
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    files: Vec<String>,
    /// As fast as possible instead of real time (only "heard at commit" is then a latency)
    #[arg(long)]
    fast: bool,
    /// Every event and each commit's dating, as JSON Lines
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// The committed and the offline text of each file (DIR/listen/STEM.txt,
    /// DIR/offline/STEM.txt), for ../shared/tools/wer.py
    #[arg(long, value_name = "DIR")]
    hyp_dir: Option<PathBuf>,
    /// Language (English speech: no detection per step on multilingual models)
    #[arg(long, value_name = "CODE", default_value = "en")]
    language: String,
    /// Silero VAD model (default SHARED/models/ggml-silero-vad.bin)
    #[arg(long, value_name = "PATH")]
    vad: Option<PathBuf>,
    // The policy: each overrides one field of `DictationOptions::default()` when given.
    /// Seconds of audio between steps
    #[arg(long, value_name = "S")]
    step: Option<f64>,
    /// Seconds of silence that end an utterance
    #[arg(long, value_name = "S")]
    endpoint: Option<f64>,
    /// Encoder context floor of each step, seconds
    #[arg(long, value_name = "S")]
    min_context: Option<f64>,
    /// Seconds of utterance read before the buffer is cut
    #[arg(long, value_name = "S")]
    max_window: Option<f64>,
    /// Seconds at the end of a hypothesis held back
    #[arg(long, value_name = "S")]
    hold_back: Option<f64>,
    /// Words at the end of a hypothesis held back
    #[arg(long, value_name = "N")]
    hold_back_words: Option<usize>,
    /// Seconds of an utterance before its first commit
    #[arg(long, value_name = "S")]
    first_commit_after: Option<f64>,
    /// Seconds of audio kept before the VAD's speech start
    #[arg(long, value_name = "S")]
    preroll: Option<f64>,
    /// Temperature fallback step (0 = none)
    #[arg(long, value_name = "T")]
    temperature_increment: Option<f32>,
    /// Beam size of the steps (1 = greedy)
    #[arg(long, value_name = "N")]
    beam: Option<usize>,
    /// Beam size of an utterance's last pass
    #[arg(long, value_name = "N")]
    final_beam: Option<usize>,
    /// Encoder context floor of the last pass, seconds
    #[arg(long, value_name = "S")]
    final_context: Option<f64>,
    /// Probability under which a word needs a third agreeing hypothesis
    #[arg(long, value_name = "P")]
    confirm_below: Option<f32>,
    /// Seconds of disagreement before disputed words may be bridged
    #[arg(long, value_name = "S")]
    bridge_after: Option<f64>,
    /// Earlier speech read with each step, its text as whisper's prefix (0 = off)
    #[arg(long, value_name = "S")]
    context: Option<f64>,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let shared = args.shared;
    let mut models = args.models;
    if models.is_empty() {
        models.push(shared.join("models/ggml-tiny.en.bin"));
    }
    let vad = args
        .vad
        .unwrap_or_else(|| shared.join("models/ggml-silero-vad.bin"));
    let fast = args.fast;
    let audio = shared.join("audio");
    let mut dictation = DictationOptions::default();
    dictation.transcribe.language = Some(args.language);
    fn set<T>(value: Option<T>, field: &mut T) {
        if let Some(v) = value {
            *field = v;
        }
    }
    let t = &mut dictation.transcribe;
    set(args.min_context, &mut t.min_context_seconds);
    set(args.beam, &mut t.beam_size);
    set(args.temperature_increment, &mut t.temperature_increment);
    set(args.step, &mut dictation.step);
    set(args.endpoint, &mut dictation.endpoint_silence);
    set(args.max_window, &mut dictation.max_window);
    set(args.hold_back_words, &mut dictation.hold_back_words);
    set(args.first_commit_after, &mut dictation.first_commit_after);
    set(args.preroll, &mut dictation.preroll);
    set(args.final_beam, &mut dictation.final_beam_size);
    set(args.final_context, &mut dictation.final_min_context);
    set(args.confirm_below, &mut dictation.confirm_below);
    set(args.bridge_after, &mut dictation.bridge_after);
    set(args.hold_back, &mut dictation.hold_back);
    set(args.context, &mut dictation.context_seconds);
    let hyp_dir = args.hyp_dir;
    let mut events_out = args
        .events
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("--events file")));
    println!(
        "policy: step {} s, endpoint {} s, min context {} s, max window {} s, beam {}",
        dictation.step,
        dictation.endpoint_silence,
        dictation.transcribe.min_context_seconds,
        dictation.max_window,
        dictation.transcribe.beam_size
    );
    let stems: Vec<String> = if !args.files.is_empty() {
        args.files
    } else {
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
        "| model | audio s | WER listen | WER offline | commit p50 | commit p95 | commit max | commit p50 / p95 / max, whisper's word times | heard at commit p50 / p95 / max | partial interval | worker RTF | longest window | dropped s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let mut ref_latencies = Vec::new();
        // Audio heard at each commit minus the offline end of its last word: the latency
        // without the worker's time, the same in every replay (see `Stats::commit_positions`).
        let mut heard_latencies = Vec::new();
        let mut intervals = Vec::new();
        let (mut audio_s, mut compute_s, mut dropped) = (0.0, 0.0, 0.0);
        let mut longest_window = 0.0f64;
        // (file, reference words, listen errors, offline errors, dated latencies).
        let mut per_file: Vec<(String, usize, usize, usize, Vec<f64>)> = Vec::new();
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
                text: Default::default(),
                whole: false,
            };
            let mut committed = Vec::new();
            // (live latency, estimated end of the last word, words so far) per commit.
            let mut commits: Vec<(f64, f64, usize)> = Vec::new();
            let mut committed_words = 0usize;
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
                    Event::Commit {
                        text, latency, end, ..
                    } => {
                        committed.push(text.clone());
                        committed_words += norm(text).len();
                        commits.push((*latency, *end, committed_words));
                    }
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
            assert_eq!(summary.stats.commit_positions.len(), commits.len());
            latencies.extend(summary.stats.commit_latencies.iter().copied());
            audio_s += summary.stats.audio_seconds;
            compute_s += summary.stats.compute_seconds;
            dropped += summary.dropped_seconds;
            longest_window = longest_window.max(summary.stats.longest_window);
            let listened = committed.join(" ");
            let (offline, offline_words) = offline_text(&engine, &file);
            // Whisper's word times in a live hypothesis can be seconds off (a late date makes a
            // commit look quick, an early one slow), so each commit is also dated by the end of
            // its last word in the offline transcript (full context, beam search, VAD-snapped
            // times), matched by word alignment. The replay hands sample s over at
            // start + s / 16 kHz, so the commit happened at `end + latency` on that clock.
            let heard = norm(&listened);
            let matched = align(
                &heard,
                &offline_words
                    .iter()
                    .map(|w| w.0.clone())
                    .collect::<Vec<_>>(),
            );
            let mut before = 0;
            let mut file_latencies = Vec::new();
            for (k, &(latency, end, upto)) in commits.iter().enumerate() {
                let found = (0..upto.min(matched.len()))
                    .rev()
                    .find_map(|i| matched[i].map(|j| (i, j)));
                let own = found.is_some_and(|(i, _)| i >= before);
                before = upto;
                if let Some((_, j)) = found {
                    let dated = latency + end - offline_words[j].1;
                    ref_latencies.push(dated);
                    file_latencies.push(dated);
                    let heard = summary.stats.commit_positions[k] - offline_words[j].1;
                    heard_latencies.push(heard);
                    // Each commit's dating, for reading the latency tail (which words wait).
                    if let Some(out) = events_out.as_mut() {
                        use std::io::Write;
                        let line = serde_json::json!({
                            "type": "dated", "file": stem, "end": end, "latency": latency,
                            "offline_end": offline_words[j].1, "offline_word": offline_words[j].0,
                            "dated": dated, "own": own, "heard": heard,
                        });
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            if let Some(dir) = &hyp_dir {
                for (sub, text) in [("listen", &listened), ("offline", &offline)] {
                    let dir = dir.join(sub);
                    std::fs::create_dir_all(&dir).expect("--hyp-dir");
                    std::fs::write(dir.join(format!("{stem}.txt")), text).expect("--hyp-dir");
                }
            }
            let r = norm(&reference);
            let (l, o) = (
                edit_distance(&r, &norm(&listened)),
                edit_distance(&r, &norm(&offline)),
            );
            words += r.len();
            errs_l += l;
            errs_o += o;
            per_file.push((stem.clone(), r.len(), l, o, file_latencies));
        }
        let pct = |e: usize| 100.0 * e as f64 / words.max(1) as f64;
        let p = |q: f64| percentile(&latencies, q);
        let r = |q: f64| percentile(&ref_latencies, q);
        let h = |q: f64| percentile(&heard_latencies, q);
        println!(
            "| {} | {:.0} | {:.2} % | {:.2} % | {:.2} s | {:.2} s | {:.2} s | {:.2} / {:.2} / {:.2} s | {:.2} / {:.2} / {:.2} s | {:.2} s | {:.2} | {:.1} s | {:.2} |",
            model.file_name().unwrap().to_string_lossy(),
            audio_s,
            pct(errs_l),
            pct(errs_o),
            r(50.0),
            r(95.0),
            r(100.0),
            p(50.0),
            p(95.0),
            p(100.0),
            h(50.0),
            h(95.0),
            h(100.0),
            intervals.iter().sum::<f64>() / intervals.len().max(1) as f64,
            compute_s / audio_s.max(1e-9),
            longest_window,
            dropped
        );
        // Per file: an aggregate can hide the hard case (the long file, continuous speech).
        println!();
        println!("| file | words | WER listen | WER offline | listen - offline | commit p50 | commit p95 |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (stem, n, l, o, lat) in &per_file {
            let pct = |e: usize| 100.0 * e as f64 / (*n).max(1) as f64;
            println!(
                "| {stem} | {n} | {:.2} % | {:.2} % | {:+.2} | {:.2} s | {:.2} s |",
                pct(*l),
                pct(*o),
                pct(*l) - pct(*o),
                percentile(lat, 50.0),
                percentile(lat, 95.0),
            );
        }
        println!();
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

/// Offline transcription with verbatim's defaults (VAD, beam 5), for the WER comparison, and
/// its words (normalized) with their end times, to date commits.
fn offline_text(engine: &Engine, file: &Path) -> (String, Vec<(String, f64)>) {
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
            &TranscribeOptions {
                word_timestamps: true,
                ..TranscribeOptions::default()
            },
            &mut Hooks::default(),
        )
        .expect("transcribes");
    let text = t
        .segments
        .iter()
        .map(|s| s.text.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let words = t
        .segments
        .iter()
        .flat_map(|s| s.words.iter().flatten())
        .flat_map(|w| norm(&w.text).into_iter().map(move |n| (n, w.end)))
        .collect();
    (text, words)
}

/// Edit-distance table between word lists `a` and `b`: `d[i][j]` is the distance between the
/// first `i` words of `a` and the first `j` of `b`.
fn distances(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let (m, n) = (a.len(), b.len());
    let mut d = vec![vec![0usize; n + 1]; m + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=m {
        for j in 1..=n {
            d[i][j] = (d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]))
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
        }
    }
    d
}

/// For each word of `a`, the index of the word of `b` it is paired with in a minimal edit
/// alignment (equal or substituted), or `None` where it is an insertion.
fn align(a: &[String], b: &[String]) -> Vec<Option<usize>> {
    let d = distances(a, b);
    let (m, n) = (a.len(), b.len());
    let mut out = vec![None; m];
    let (mut i, mut j) = (m, n);
    while i > 0 && j > 0 {
        if d[i][j] == d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]) {
            out[i - 1] = Some(j - 1);
            i -= 1;
            j -= 1;
        } else if d[i][j] == d[i - 1][j] + 1 {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out
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
    distances(a, b)[a.len()][b.len()]
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}
