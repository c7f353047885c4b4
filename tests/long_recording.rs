//! Long recordings: a 32-minute file built from the shared LibriSpeech utterances at known
//! times (mostly silence, so the test stays quick) is transcribed window by window with exact
//! times to its last minutes; a run killed halfway resumes from its checkpoint and ends with
//! exactly the files an uninterrupted run writes; segments reach stdout while the file is still
//! being read.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SR: usize = 16_000;
const LENGTH_S: usize = 32 * 60;

struct Placed {
    name: String,
    /// Where the utterance's first speech is in the long file, seconds.
    speech_start: f64,
    end: f64,
}

/// Writes a WAV of `length_s` seconds with `count` utterances, one every `spacing_s` seconds
/// from 30 s on, and returns where each was put.
fn build_long_file(path: &Path, count: usize, spacing_s: usize, length_s: usize) -> Vec<Placed> {
    let mut names: Vec<String> = (0..10)
        .flat_map(|i| {
            [
                format!("1688-142285-{i:04}.flac"),
                format!("367-130732-{i:04}.flac"),
            ]
        })
        .collect();
    names.sort();
    names.truncate(count);
    let mut samples = vec![0f32; length_s * SR];
    // A faint noise floor, as a real room has (deterministic).
    let mut rng = Rng::new(7);
    for s in samples.iter_mut() {
        *s = (rng.symmetric() * 0.0005) as f32;
    }
    let mut placed = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let audio = verbatim::audio::load(
            &verbatim::audio::InputSource::Path(common::audio(name)),
            false,
        )
        .unwrap();
        let utt = &audio.streams[0];
        let at = (30 + k * spacing_s) * SR;
        for (i, s) in utt.iter().enumerate() {
            samples[at + i] += s;
        }
        // The utterance's true start: the first 50 ms within 20 dB of its loudest 10 ms (a
        // click or a breath before the first word is not speech).
        let rms: Vec<f32> = utt
            .chunks(SR / 100)
            .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
            .collect();
        let peak = rms.iter().cloned().fold(0.0, f32::max);
        let onset = rms
            .windows(5)
            .position(|w| w.iter().all(|r| *r >= peak * 0.1))
            .unwrap_or(0)
            * (SR / 100);
        placed.push(Placed {
            name: name.clone(),
            speech_start: (at + onset) as f64 / SR as f64,
            end: (at + utt.len()) as f64 / SR as f64,
        });
    }
    let mut w = wav_writer_16k(path);
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    placed
}

/// What `subtitle --check` finds in `srt` besides reading speed (which fast speech can make
/// impossible): overlaps, gaps, line lengths, durations — what a bad cut would break.
fn structural_problems(srt: &Path) -> Vec<String> {
    let out = run(verbatim().args(["subtitle", "--check"]).arg(srt));
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.contains("reading speed"))
        .map(str::to_string)
        .collect()
}

fn long_transcribe(input: &Path, out: &Path) -> Command {
    long_transcribe_windows(input, out, 120)
}

fn long_transcribe_windows(input: &Path, out: &Path, window: usize) -> Command {
    let mut cmd = transcribe_verbose();
    cmd.arg(input)
        .args(["-f", "srt,json,txt", "-t", "2", "--no-timestamps"])
        .arg("--window")
        .arg(window.to_string())
        .arg("-o")
        .arg(out);
    cmd
}

/// The 32-minute file: 20 utterances 94 s apart, the last in the final minutes.
fn fixture(count: usize, spacing_s: usize) -> (tempfile::TempDir, PathBuf, Vec<Placed>) {
    fixture_len(count, spacing_s, LENGTH_S)
}

fn fixture_len(
    count: usize,
    spacing_s: usize,
    length_s: usize,
) -> (tempfile::TempDir, PathBuf, Vec<Placed>) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("day.wav");
    let placed = build_long_file(&wav, count, spacing_s, length_s);
    (dir, wav, placed)
}

#[test]
fn a_32_minute_file_keeps_its_words_and_exact_times_across_windows() {
    let (dir, wav, placed) = fixture(20, 94);

    // 1. Uninterrupted run.
    let full = dir.path().join("full");
    let out = run(&mut long_transcribe(&wav, &full));
    assert!(out.status.success());
    if let Some(keep) = std::env::var_os("VERBATIM_TEST_KEEP") {
        for name in ["day.json", "day.srt"] {
            std::fs::copy(full.join(name), Path::new(&keep).join(name)).unwrap();
        }
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("day.json")).unwrap()).unwrap();
    assert!((doc["duration"].as_f64().unwrap() - LENGTH_S as f64).abs() < 0.1);
    let segments = doc["segments"].as_array().unwrap();
    let (mut total_errors, mut total_words) = (0usize, 0usize);
    for p in &placed {
        let inside: Vec<&Value> = segments
            .iter()
            .filter(|s| {
                let st = s["start"].as_f64().unwrap();
                st > p.speech_start - 2.0 && st < p.end
            })
            .collect();
        assert!(
            !inside.is_empty(),
            "{}: no segment near {:.1} s",
            p.name,
            p.speech_start
        );
        let first = inside[0]["start"].as_f64().unwrap();
        assert!(
            (first - p.speech_start).abs() <= 0.5,
            "{}: first segment at {first:.2} s, speech starts at {:.2} s",
            p.name,
            p.speech_start
        );
        let text: Vec<&str> = inside.iter().map(|s| s["text"].as_str().unwrap()).collect();
        let hyp = normalize_words(&text.join(" "));
        let reference = normalize_words(&reference(&p.name));
        let errors = word_errors(&reference, &hyp);
        // Every utterance is found: at most a third of its words wrong (two for very short
        // ones: tiny.en hears "Newberg" as "new bird").
        assert!(
            errors * 3 <= reference.len() || errors <= 2,
            "{}: {errors} word errors of {} words\nref: {reference:?}\nhyp: {hyp:?}",
            p.name,
            reference.len()
        );
        total_errors += errors;
        total_words += reference.len();
    }
    // And overall as accurate as whisper on the utterances alone (about 10 % WER offline).
    assert!(
        total_errors * 100 <= total_words * 15,
        "WER {total_errors}/{total_words} over all utterances"
    );
    // Nothing but the utterances: the silences gave no text.
    let covered = segments.iter().all(|s| {
        let st = s["start"].as_f64().unwrap();
        placed
            .iter()
            .any(|p| st > p.speech_start - 2.0 && st < p.end)
    });
    assert!(covered, "a segment outside every utterance");
    // The SRT is valid and laid out within the rules, across every window cut: the only
    // problems are speech too fast to read at 17 chars/s, which no layout can fix.
    let problems = structural_problems(&full.join("day.srt"));
    assert!(problems.is_empty(), "{problems:?}");
}

/// A 10-minute file in 60 s windows: killed halfway, rerun, it ends with the same bytes as an
/// uninterrupted run and redoes only the windows after its checkpoint.
#[test]
fn a_run_killed_halfway_resumes_and_ends_with_the_uninterrupted_runs_files() {
    let (dir, wav, _placed) = fixture_len(8, 70, 10 * 60);
    let full = dir.path().join("full");
    let out = run(&mut long_transcribe_windows(&wav, &full, 60));
    assert!(out.status.success());
    // 2. The same run, killed once it is well past its first windows.
    let resumed = dir.path().join("resumed");
    let checkpoint = resumed.join("day.srt.checkpoint.json");
    let mut child = long_transcribe_windows(&wav, &resumed, 60)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let killed_at = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        assert!(Instant::now() < deadline, "no checkpoint past 4 minutes");
        if let Ok(text) = std::fs::read_to_string(&checkpoint) {
            let v: Value = serde_json::from_str(&text).unwrap();
            let done = v["samples_done"].as_u64().unwrap() as f64 / SR as f64;
            if done > 4.0 * 60.0 {
                break done;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !resumed.join("day.srt").exists(),
        "no final file after a kill"
    );
    // The partial file is valid up to its last complete cue.
    let partial = std::fs::read_to_string(resumed.join("day.srt.partial")).unwrap();
    assert!(
        partial.starts_with("1\n") && partial.ends_with("\n\n"),
        "{partial}"
    );
    let problems = structural_problems(&resumed.join("day.srt.partial"));
    assert!(problems.is_empty(), "{problems:?}");

    let out = run(&mut long_transcribe_windows(&wav, &resumed, 60));
    assert!(out.status.success());
    let log = stderr(&out);
    assert!(log.contains("resuming after"), "{log}");
    // Only the windows after the checkpoint were transcribed again.
    let windows: usize = log
        .lines()
        .find(|l| l.contains(" window(s) transcribed in this run"))
        .and_then(|l| {
            l.split(" window(s)")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no window count in: {log}"));
    let total_windows = 10 * 60 / 60;
    // Every window but the last is at least 45 s (the cut is in its last quarter).
    let left = ((600.0 - killed_at) / 45.0).floor() as usize + 1;
    assert!(
        windows <= left && windows < total_windows,
        "{windows} windows redone after a kill at {killed_at:.0} s"
    );
    for name in ["day.srt", "day.json", "day.txt"] {
        assert_eq!(
            std::fs::read(resumed.join(name)).unwrap(),
            std::fs::read(full.join(name)).unwrap(),
            "{name} differs from the uninterrupted run's"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(&resumed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "day.srt" | "day.json" | "day.txt"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn first_segments_reach_stdout_while_the_rest_of_the_file_is_still_being_read() {
    // 10 minutes, speech from 30 s on every 70 s, windows of 120 s.
    let (dir, wav, placed) = fixture_len(8, 70, 10 * 60);
    let out = dir.path().join("out");
    let checkpoint = out.join("day.srt.checkpoint.json");
    let mut child = long_transcribe_windows(&wav, &out, 120)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().expect("a first line").unwrap();
    // The first segment is printed while the first windows are transcribed: the process is
    // still running, no final output exists, and the checkpoint (written after each window)
    // is at most two windows in.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process had finished when the first line arrived"
    );
    assert!(
        !out.join("day.srt").exists(),
        "the final SRT already existed"
    );
    if let Ok(text) = std::fs::read_to_string(&checkpoint) {
        let v: Value = serde_json::from_str(&text).unwrap();
        let done = v["samples_done"].as_u64().unwrap() as f64 / SR as f64;
        assert!(done <= 240.0, "first line only after {done} s of the file");
    }
    // And it is the first utterance's speech (most of its words are in its reference).
    let first_words = normalize_words(&first);
    let expected = normalize_words(&reference(&placed[0].name));
    let known = first_words.iter().filter(|w| expected.contains(w)).count();
    assert!(
        !first_words.is_empty() && known * 2 > first_words.len(),
        "first line {first:?} is not from {}",
        placed[0].name
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success());
    assert!(!rest.is_empty());
    assert!(out.join("day.srt").is_file());
}
