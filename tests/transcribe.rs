//! End-to-end tests of `verbatim transcribe`: the real binary, the real tiny.en / base
//! models and real human speech from the shared directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn json_of(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn segments(doc: &Value) -> &Vec<Value> {
    doc["segments"].as_array().expect("segments array")
}

#[test]
fn jfk_flac_gives_the_exact_words() {
    let out = run(transcribe().arg("--no-timestamps").arg(audio("jfk.flac")));
    assert!(out.status.success());
    let hyp = normalize_words(&stdout(&out));
    let reference = normalize_words(&reference("jfk.flac"));
    assert_eq!(hyp, reference, "stdout was: {}", stdout(&out));
}

#[test]
fn librispeech_word_error_rate_is_at_most_14_percent() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = (0..10)
        .flat_map(|i| {
            [
                format!("1688-142285-{i:04}.flac"),
                format!("367-130732-{i:04}.flac"),
            ]
        })
        .collect();
    names.push("1089-134686-0002.wav".into());
    names.push("1221-135766-0002.wav".into());
    let mut cmd = transcribe();
    cmd.args(["-f", "txt", "-o"]).arg(dir.path());
    for n in &names {
        cmd.arg(audio(n));
    }
    let out = run(&mut cmd);
    assert!(out.status.success());
    assert_eq!(files_in(dir.path()).len(), 22);
    // Judge with the team's scorer, the same one the README's figures come from.
    let scorer = run(std::process::Command::new("python3")
        .arg(shared("tools/wer.py"))
        .arg("--refdir")
        .arg(shared("audio"))
        .arg("--hypdir")
        .arg(dir.path())
        .arg("--json"));
    assert!(scorer.status.success(), "wer.py failed");
    let report: Value = serde_json::from_slice(&scorer.stdout).unwrap();
    let total = report["total"]["wer"].as_f64().unwrap();
    let total = if total > 1.0 { total / 100.0 } else { total };
    eprintln!(
        "LibriSpeech (22 utterances) WER with tiny.en: {:.2} %",
        total * 100.0
    );
    assert_eq!(report["total"]["files"].as_u64(), Some(22));
    assert!(total <= 0.14, "WER {:.2} % is above 14 %", total * 100.0);
}

#[test]
fn long_silence_stays_a_gap_and_first_segment_starts_on_speech() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["-w", "-f", "json", "-o"])
        .arg(dir.path())
        .arg(audio("librivox_0870_gap45s_0890.wav")));
    assert!(out.status.success());
    let doc = json_of(&dir.path().join("librivox_0870_gap45s_0890.json"));
    let segs = segments(&doc);
    assert!(segs.len() >= 2);
    // 5 s silence + 7.1 s speech + 45 s digital silence (12.1 s to 57.1 s) + speech.
    let (gap_start, gap_end) = (12.1, 57.1);
    for s in segs {
        let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        assert!(
            end <= gap_start + 0.5 || start >= gap_end - 0.5,
            "segment {start}-{end} spans the 45 s silence: {s}"
        );
        for w in s["words"].as_array().unwrap() {
            let (ws, we) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
            assert!(
                we <= gap_start + 0.5 || ws >= gap_end - 0.5,
                "word {w} in the silence"
            );
        }
    }
    let first = segs[0]["start"].as_f64().unwrap();
    assert!(
        (first - 5.0).abs() <= 0.5,
        "first segment starts at {first}, speech at 5.0"
    );
    let text = doc["text"].as_str().unwrap();
    let wer = wer(&reference("librivox_0870_gap45s_0890.wav"), text);
    assert!(wer <= 0.15, "WER {wer} for: {text}");
}

#[test]
fn noise_and_silence_give_no_words() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["-f", "json,txt", "-o"])
        .arg(dir.path())
        .arg(audio("picovoice_noise_only.wav")));
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "", "phantom text on noise");
    let doc = json_of(&dir.path().join("picovoice_noise_only.json"));
    assert_eq!(segments(&doc).len(), 0, "{doc}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("picovoice_noise_only.txt")).unwrap(),
        ""
    );
}

#[test]
fn resampled_downmixed_and_compressed_inputs_transcribe() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["-f", "txt", "-o"])
        .arg(dir.path())
        .arg(audio("1221-135766-0001_48k_stereo.wav"))
        .arg(audio("jfk_441khz.m4a")));
    assert!(out.status.success());
    for name in ["1221-135766-0001_48k_stereo", "jfk_441khz"] {
        let hyp = std::fs::read_to_string(dir.path().join(format!("{name}.txt"))).unwrap();
        let w = wer(&reference(name), &hyp);
        assert!(w <= 0.2, "{name}: WER {w} for {hyp}");
    }
}

fn base_json(dir: &Path, file: &str, extra: &[&str]) -> Value {
    let out = run(verbatim()
        .arg("transcribe")
        .arg("--model")
        .arg(base_model())
        .arg("--vad-model")
        .arg(vad_model())
        .args(["--quiet", "-l", "auto", "-f", "json", "-o"])
        .arg(dir)
        .args(extra)
        .arg(audio(file)));
    assert!(out.status.success(), "{file} failed");
    let stem = Path::new(file)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    json_of(&dir.join(format!("{stem}.json")))
}

#[test]
fn base_model_detects_french_and_german() {
    let dir = tempfile::tempdir().unwrap();
    for (file, lang) in [
        ("picovoice_test_fr.wav", "fr"),
        ("picovoice_test_de.wav", "de"),
    ] {
        let doc = base_json(dir.path(), file, &[]);
        assert_eq!(doc["language"], lang, "{file}: {doc}");
        let p = doc["language_probability"].as_f64().unwrap();
        assert!(p > 0.5 && p <= 1.0, "{file}: language probability {p}");
        assert!(!segments(&doc).is_empty());
    }
}

#[test]
fn base_model_transcribes_aiff_and_multilingual_mp3() {
    let dir = tempfile::tempdir().unwrap();
    let doc = base_json(dir.path(), "uberi_french.aiff", &[]);
    assert_eq!(doc["language"], "fr", "{doc}");
    assert!(!doc["text"].as_str().unwrap().trim().is_empty());
    let doc = base_json(dir.path(), "multilingual.mp3", &[]);
    let text = doc["text"].as_str().unwrap().to_lowercase();
    // The English half is the MIT licence text.
    assert!(
        text.contains("permission") && text.contains("software"),
        "{text}"
    );
    let last_end = segments(&doc).last().unwrap()["end"].as_f64().unwrap();
    assert!(last_end > 45.0, "transcript stops at {last_end} s of 60 s");
}

#[test]
fn stdin_is_read_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["--no-timestamps", "-f", "txt", "-o"])
        .arg(dir.path())
        .arg("-")
        .stdin(std::fs::File::open(audio("jfk.flac")).unwrap()));
    assert!(out.status.success());
    assert!(
        wer(&reference("jfk.flac"), &stdout(&out)) <= 0.05,
        "{}",
        stdout(&out)
    );
    assert_eq!(files_in(dir.path()), vec!["stdin.txt"]);
}

/// Standard input goes through the same pipeline as a file. A container that needs seeking
/// (M4A) and split channels are spooled to a private temporary file; errors name `-`, and no
/// temporary file is left behind.
#[test]
fn stdin_takes_the_file_pipeline_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .env("TMPDIR", tmp.path())
        .args(["--no-timestamps", "-f", "json", "-o"])
        .arg(dir.path())
        .arg("-")
        .stdin(std::fs::File::open(audio("jfk_441khz.m4a")).unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wer(&reference("jfk.flac"), &stdout(&out)) <= 0.05,
        "{}",
        stdout(&out)
    );
    let doc = json_of(&dir.path().join("stdin.json"));
    assert!(
        (doc["duration"].as_f64().unwrap() - 11.0).abs() < 0.2,
        "{doc}"
    );
    assert_eq!(files_in(tmp.path()), Vec::<String>::new());

    let out = run(transcribe()
        .env("TMPDIR", tmp.path())
        .args(["--split-channels", "-f", "json", "-o"])
        .arg(dir.path())
        .arg("-")
        .stdin(std::fs::File::open(audio("stereo_diarization.wav")).unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json_of(&dir.path().join("stdin.json"));
    let channels: std::collections::BTreeSet<u64> = segments(&doc)
        .iter()
        .filter_map(|s| s["channel"].as_u64())
        .collect();
    assert_eq!(channels.into_iter().collect::<Vec<_>>(), vec![0, 1]);

    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"not audio at all\n".repeat(100)).unwrap();
    let out = run(transcribe()
        .env("TMPDIR", tmp.path())
        .arg("-")
        .stdin(std::fs::File::open(&junk).unwrap()));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("verbatim: error: -: "), "{err}");
    assert!(!err.contains("verbatim-input-"), "{err}");
    assert_eq!(files_in(tmp.path()), Vec::<String>::new());
}

/// Streams on standard input are decoded as they arrive, nothing copied to disk: FLAC and a
/// WAV of unknown length by symphonia, Opus (no built-in decoder) by ffmpeg fed from the pipe.
#[test]
fn stdin_streams_are_decoded_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opus = dir.path().join("jfk.opus");
    let wav = dir.path().join("jfk-streamed.wav");
    for (args, out) in [
        (vec!["-c:a", "libopus", "-f", "ogg"], &opus),
        // ffmpeg writing WAV to a pipe leaves the lengths at 0xFFFFFFFF.
        (vec!["-f", "wav"], &wav),
    ] {
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(audio("jfk.flac"))
            .args(args)
            .arg("pipe:1")
            .stdout(std::fs::File::create(out).unwrap())
            .status()
            .expect("MISSING TOOL: ffmpeg (CI installs it)");
        assert!(status.success());
    }
    for input in [audio("jfk.flac"), opus, wav] {
        let out = run(transcribe()
            .env("TMPDIR", tmp.path())
            .args(["--no-timestamps", "-f", "txt", "-o"])
            .arg(dir.path())
            .arg("-")
            .stdin(std::fs::File::open(&input).unwrap()));
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            stderr(&out)
        );
        assert!(
            wer(&reference("jfk.flac"), &stdout(&out)) <= 0.1,
            "{}: {}",
            input.display(),
            stdout(&out)
        );
        assert_eq!(files_in(tmp.path()), Vec::<String>::new());
    }
}

#[test]
fn outputs_are_named_after_the_input_stem() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let a = inputs.join("a.flac");
    let b = inputs.join("b.m4a");
    std::fs::copy(audio("jfk.flac"), &a).unwrap();
    std::fs::copy(audio("jfk_441khz.m4a"), &b).unwrap();
    let out_dir = dir.path().join("out");
    let out = run(transcribe()
        .args(["-f", "srt,vtt,json", "-o"])
        .arg(&out_dir)
        .arg(&a)
        .arg(&b));
    assert!(out.status.success());
    assert_eq!(
        files_in(&out_dir),
        vec!["a.json", "a.srt", "a.vtt", "b.json", "b.srt", "b.vtt"]
    );
    // Without -o the files go next to the input.
    let out = run(transcribe().args(["-f", "txt"]).arg(&a));
    assert!(out.status.success());
    assert_eq!(files_in(&inputs), vec!["a.flac", "a.txt", "b.m4a"]);
}

#[test]
fn split_channels_labels_each_talker() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["--split-channels", "-f", "json", "-o"])
        .arg(dir.path())
        .arg(audio("stereo_diarization.wav")));
    assert!(out.status.success());
    let doc = json_of(&dir.path().join("stereo_diarization.json"));
    let text_of = |ch: u64| {
        segments(&doc)
            .iter()
            .filter(|s| s["channel"].as_u64() == Some(ch))
            .map(|s| s["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let refs = std::fs::read_to_string(audio("stereo_diarization.channels.tsv")).unwrap();
    let left = refs
        .lines()
        .find(|l| l.starts_with("left"))
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap();
    let right = refs
        .lines()
        .find(|l| l.starts_with("right"))
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap();
    assert!(wer(left, &text_of(0)) <= 0.25, "left: {}", text_of(0));
    assert!(wer(right, &text_of(1)) <= 0.25, "right: {}", text_of(1));
    assert!(stdout(&out).contains("[ch1]") && stdout(&out).contains("[ch2]"));
}

#[test]
fn offset_and_duration_select_a_range_on_the_original_timeline() {
    let out = run(transcribe()
        .args(["--timestamps", "--offset", "0:05", "--duration", "4"])
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    let text = stdout(&out).to_lowercase();
    assert!(!text.contains("fellow americans"), "{text}");
    assert!(text.contains("ask"), "{text}");
    // Every printed time lies inside 5 s .. 9 s.
    for line in text.lines() {
        let start = &line[1..13];
        let secs: f64 =
            start[6..].parse::<f64>().unwrap() + 60.0 * start[3..5].parse::<f64>().unwrap();
        assert!((4.9..=9.1).contains(&secs), "{line}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_with_exit_130_and_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = transcribe()
        .args(["--no-timestamps", "-f", "srt,json", "-o"])
        .arg(dir.path())
        .arg(audio("long_ls_2609_3080_concat.flac"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until whisper is mid-file (a segment was printed), then interrupt.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("no segment printed").unwrap();
    assert!(!first.trim().is_empty());
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in lines {}
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

#[test]
fn progress_bar_is_hidden_when_stderr_is_not_a_terminal() {
    let out = run(verbatim()
        .arg("transcribe")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .arg(audio("1221-135766-0002.wav")));
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "stderr should be silent when piped");
    // stdout is not a terminal either: plain lines, no timestamps.
    assert!(!stdout(&out).contains("-->"));
}

#[test]
fn help_documents_options_examples_and_exit_codes() {
    let out = run(verbatim().args(["transcribe", "--help"]));
    assert!(out.status.success());
    let help = stdout(&out);
    for needle in [
        "--model",
        "--language",
        "--translate",
        "--threads",
        "--beam-size",
        "--best-of",
        "--temperature",
        "--no-fallback",
        "--prompt",
        "--word-timestamps",
        "--offset",
        "--duration",
        "--no-vad",
        "--vad-model",
        "--split-channels",
        "--format",
        "--output-dir",
        "--quiet",
        "Examples:",
        "VERBATIM_MODEL",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let out = run(verbatim().arg("--help"));
    assert!(stdout(&out).contains("Exit codes:"));
}

#[test]
fn json_lines_on_stdout_carry_each_segment_and_its_source() {
    let out = run(transcribe()
        .arg("--json")
        .arg(audio("jfk.flac"))
        .arg(audio("1688-142285-0002.flac")));
    assert!(out.status.success());
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    let sources: Vec<&str> = lines
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert!(sources[0].ends_with("jfk.flac"));
    assert!(sources.last().unwrap().ends_with("1688-142285-0002.flac"));
    let jfk: Vec<&str> = lines
        .iter()
        .filter(|l| l["source"].as_str().unwrap().ends_with("jfk.flac"))
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        normalize_words(&jfk.join(" ")),
        normalize_words(&reference("jfk.flac"))
    );
    assert!(lines
        .iter()
        .all(|l| l["end"].as_f64() > l["start"].as_f64()));
}

#[test]
fn an_english_only_model_warns_about_the_options_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe_verbose()
        .args(["--language", "de", "--translate", "--no-timestamps"])
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("is English-only; ignoring --language de"),
        "{err}"
    );
    assert!(
        err.contains("is English-only; --translate has no effect"),
        "{err}"
    );
    // Warnings only: the speech is still read, in English.
    assert_eq!(
        normalize_words(&stdout(&out)),
        normalize_words(&reference("jfk.flac"))
    );
    // subtitle shares the warnings; --quiet silences them.
    let subtitle = |flag: &str| {
        run(verbatim()
            .args(["subtitle", flag, "--language", "de", "--model"])
            .arg(tiny_en())
            .arg("--vad-model")
            .arg(vad_model())
            .arg("-o")
            .arg(dir.path())
            .arg(audio("jfk.flac")))
    };
    let out = subtitle("--quiet");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("English-only"), "{}", stderr(&out));
    let out = subtitle("--overwrite");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is English-only; ignoring --language de"),
        "{}",
        stderr(&out)
    );
}
