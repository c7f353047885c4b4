//! `verbatim subtitle` over folders of real media: every subtitle written, skip-existing,
//! resuming after a kill, failures reported without stopping the batch, and shards that split
//! a library between processes with every file done exactly once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::Value;

/// `verbatim subtitle` with tiny.en and the VAD model.
fn subtitle() -> Command {
    let mut cmd = verbatim();
    cmd.arg("subtitle")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

/// Copies shared files into `root/rel` (creating folders).
fn put(root: &Path, rel: &str, shared_name: &str) -> PathBuf {
    let dest = root.join(rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(audio(shared_name), &dest).unwrap();
    dest
}

/// Muxes a shared audio file with a small video track into `dest` (container by extension).
fn make_video(shared_name: &str, dest: &Path, video_codec: &str, audio_codec: &str) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "color=c=navy:s=64x48:r=5"])
        .arg("-i")
        .arg(audio(shared_name))
        .args(["-shortest", "-c:v", video_codec, "-c:a", audio_codec])
        .arg(dest)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg is needed to make the video fixtures");
    assert!(status.success(), "ffmpeg failed for {}", dest.display());
}

/// Reads a JSON Lines report into path -> record.
fn report(path: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let key = v["path"].as_str().unwrap().to_string();
        assert!(
            map.insert(key.clone(), v).is_none(),
            "{key} twice in report"
        );
    }
    map
}

fn statuses(report: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    report
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap().to_string()))
        .collect()
}

/// Every regular file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// A complete SRT: numbered cues with times, text, blank line at the end.
fn assert_complete_srt(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("1\n"), "{}: {text:?}", path.display());
    assert!(text.contains(" --> "), "{}: {text:?}", path.display());
    assert!(text.ends_with("\n\n"), "{}: {text:?}", path.display());
    text
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn a_media_tree_is_subtitled_then_skipped_then_only_the_missing_file_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("library");
    let outdir = dir.path().join("subs");
    put(&input, "jfk.flac", "jfk.flac");
    put(&input, "book/ch1.flac", "1688-142285-0002.flac");
    put(&input, "book/ch2.wav", "1221-135766-0002.wav");
    std::fs::write(input.join("book/notes.txt"), "not media").unwrap();
    make_video(
        "1688-142285-0009.flac",
        &input.join("clips/a.mkv"),
        "mpeg4",
        "flac",
    );
    make_video(
        "367-130732-0000.flac",
        &input.join("clips/b.mp4"),
        "mpeg4",
        "aac",
    );
    make_video(
        "367-130732-0006.flac",
        &input.join("clips/deep/c.webm"),
        "libvpx",
        "libopus",
    );
    let rep = dir.path().join("run1.jsonl");
    let out = run(subtitle()
        .arg(&input)
        .arg("-r")
        .arg("-o")
        .arg(&outdir)
        .args(["-f", "srt,vtt"])
        .arg("--report")
        .arg(&rep));
    assert_eq!(code(&out), 0);
    let expected = [
        "book/ch1",
        "book/ch2",
        "clips/a",
        "clips/b",
        "clips/deep/c",
        "jfk",
    ];
    let mut want: Vec<String> = expected
        .iter()
        .flat_map(|b| [format!("{b}.srt"), format!("{b}.vtt")])
        .collect();
    want.sort();
    assert_eq!(
        tree(&outdir),
        want,
        "the output tree mirrors the input tree"
    );
    for b in expected {
        assert_complete_srt(&outdir.join(format!("{b}.srt")));
    }
    let jfk = std::fs::read_to_string(outdir.join("jfk.srt")).unwrap();
    let words = normalize_words(&jfk).join(" ");
    assert!(
        words.contains("ask not what your country can do for you"),
        "{jfk}"
    );
    let r1 = report(&rep);
    assert_eq!(r1.len(), 6);
    for (path, rec) in &r1 {
        assert_eq!(rec["status"], "ok", "{path}: {rec}");
        assert_eq!(rec["language"], "en");
        assert!(rec["audio_duration"].as_f64().unwrap() > 2.0, "{rec}");
        assert_eq!(rec["outputs"].as_array().unwrap().len(), 2);
    }
    let summary = stderr(&out);
    assert!(summary.contains("6 ok, 0 skipped, 0 failed"), "{summary}");

    // Second run: everything is skipped and nothing is rewritten.
    let before: Vec<SystemTime> = want.iter().map(|f| mtime(&outdir.join(f))).collect();
    let rep2 = dir.path().join("run2.jsonl");
    let out = run(subtitle()
        .arg(&input)
        .arg("-r")
        .arg("-o")
        .arg(&outdir)
        .args(["-f", "srt,vtt"])
        .arg("--report")
        .arg(&rep2));
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
    let r2 = statuses(&report(&rep2));
    assert_eq!(r2.len(), 6);
    assert!(r2.values().all(|s| s == "skipped"), "{r2:?}");
    let after: Vec<SystemTime> = want.iter().map(|f| mtime(&outdir.join(f))).collect();
    assert_eq!(before, after, "a skipped file is not rewritten");

    // One output deleted: only that file is redone.
    std::fs::remove_file(outdir.join("clips/b.vtt")).unwrap();
    let rep3 = dir.path().join("run3.jsonl");
    let out = run(subtitle()
        .arg(&input)
        .arg("-r")
        .arg("-o")
        .arg(&outdir)
        .args(["-f", "srt,vtt"])
        .arg("--report")
        .arg(&rep3));
    assert_eq!(code(&out), 0);
    let r3 = statuses(&report(&rep3));
    let redone: Vec<&String> = r3
        .iter()
        .filter(|(_, s)| *s == "ok")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(redone.len(), 1, "{r3:?}");
    assert!(redone[0].ends_with("clips/b.mp4"), "{r3:?}");
    assert_eq!(tree(&outdir), want);
}

#[test]
fn a_killed_run_started_again_completes_with_no_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let names = [
        "1688-142285-0002.flac",
        "1688-142285-0004.flac",
        "1688-142285-0005.flac",
        "1688-142285-0008.flac",
        "1688-142285-0009.flac",
        "367-130732-0001.flac",
    ];
    for n in names {
        put(&input, n, n);
    }
    // One worker, so the files finish one by one and the kill lands between or inside them.
    let mut child = subtitle()
        .arg(&input)
        .args(["-j", "1", "-q"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let srts = |d: &Path| -> Vec<String> {
        tree(d)
            .into_iter()
            .filter(|f| f.ends_with(".srt"))
            .collect()
    };
    while srts(&input).len() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no subtitle appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = srts(&input);
    assert!(
        done_before.len() < names.len(),
        "killed too late: {done_before:?}"
    );
    for f in &done_before {
        assert_complete_srt(&input.join(f));
    }

    let rep = dir.path().join("resume.jsonl");
    let out = run(subtitle().arg(&input).arg("--report").arg(&rep));
    assert_eq!(code(&out), 0);
    let r = statuses(&report(&rep));
    assert_eq!(r.len(), names.len());
    for (path, status) in &r {
        let stem = Path::new(path).file_stem().unwrap().to_string_lossy();
        let was_done = done_before.contains(&format!("{stem}.srt"));
        assert_eq!(status, if was_done { "skipped" } else { "ok" }, "{path}");
    }
    for n in names {
        let srt = input.join(n).with_extension("srt");
        assert_complete_srt(&srt);
    }
    // Only media and finished subtitles: no temporary file counts as (or looks like) output.
    let stray: Vec<String> = tree(&input)
        .into_iter()
        .filter(|f| !f.ends_with(".srt") && !f.ends_with(".flac"))
        .collect();
    assert!(
        stray.iter().all(|f| f.starts_with(".verbatim-")),
        "{stray:?}"
    );
}

#[test]
fn a_corrupt_file_is_reported_and_the_rest_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    put(&input, "good.flac", "1688-142285-0002.flac");
    put(&input, "also-good.wav", "1089-134686-0002.wav");
    let broken = input.join("broken.mp4");
    std::fs::write(&broken, b"\0\0\0\x18ftypmp42 this is not a real movie").unwrap();
    let rep = dir.path().join("r.jsonl");
    let out = run(subtitle().arg(&input).arg("--report").arg(&rep));
    assert_eq!(code(&out), 3, "some failed -> exit 3");
    let err = stderr(&out);
    assert!(err.contains("2 ok, 0 skipped, 1 failed"), "{err}");
    assert!(err.contains("broken.mp4"), "{err}");
    let r = report(&rep);
    let bad = &r[&broken.display().to_string()];
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["error"].as_str().unwrap().contains("broken.mp4"),
        "{bad}"
    );
    assert!(input.join("good.srt").is_file());
    assert!(input.join("also-good.srt").is_file());
    assert!(!input.join("broken.srt").exists());
    assert!(r[&input.join("good.flac").display().to_string()]
        .get("warnings")
        .is_none());

    // A truncated file is subtitled up to the cut, and the cut is said on stderr and in the
    // report (the batch used to drop the decoder's warnings).
    let cut_dir = dir.path().join("cut");
    std::fs::create_dir_all(&cut_dir).unwrap();
    let whole = std::fs::read(audio("1688-142285-0000.flac")).unwrap();
    let cut = cut_dir.join("cut.flac");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let rep = dir.path().join("cut.jsonl");
    let out = run(subtitle().arg(&cut_dir).arg("--report").arg(&rep));
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "verbatim: warning: {}: the audio ends at",
            cut.display()
        )),
        "{err}"
    );
    let r = report(&rep);
    let warnings = r[&cut.display().to_string()]["warnings"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("truncated"),
        "{warnings:?}"
    );
    assert!(cut_dir.join("cut.srt").is_file());

    // Nothing succeeds: exit 1.
    let only_bad = dir.path().join("bad");
    std::fs::create_dir_all(&only_bad).unwrap();
    std::fs::copy(&broken, only_bad.join("x.mkv")).unwrap();
    let out = run(subtitle().arg(&only_bad));
    assert_eq!(code(&out), 1);
}

#[test]
fn shards_split_a_tree_so_every_file_is_done_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let outdir = dir.path().join("out");
    let names = [
        "a/1688-142285-0002.flac",
        "a/1688-142285-0008.flac",
        "b/367-130732-0000.flac",
        "b/367-130732-0006.flac",
        "c/1688-142285-0009.flac",
        "367-130732-0001.flac",
    ];
    for n in names {
        put(
            &input,
            n,
            Path::new(n).file_name().unwrap().to_str().unwrap(),
        );
    }
    // Three processes at once; the middle one finds its shard in Slurm's variables.
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = subtitle();
            cmd.arg(&input)
                .arg("-r")
                .arg("-o")
                .arg(&outdir)
                .args(["-j", "1", "-t", "1", "-q"])
                .arg("--report")
                .arg(dir.path().join(format!("r{i}.jsonl")));
            if i == 1 {
                cmd.args(["--shard", "auto"])
                    .env("SLURM_ARRAY_TASK_ID", "1")
                    .env("SLURM_ARRAY_TASK_COUNT", "3");
            } else {
                cmd.arg("--shard").arg(format!("{i}/3"));
            }
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        eprintln!("shard {i}: {}", stderr(&out));
        assert_eq!(code(&out), 0, "shard {i}");
        let path = dir.path().join(format!("r{i}.jsonl"));
        // A shard can be empty; then there is no work and no record.
        if path.exists() {
            for (p, rec) in report(&path) {
                assert_eq!(rec["status"], "ok", "{p}");
                *seen.entry(p).or_default() += 1;
            }
        }
    }
    let all: Vec<String> = names
        .iter()
        .map(|n| input.join(n).display().to_string())
        .collect();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), {
        let mut a = all.clone();
        a.sort();
        a
    });
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let mut want: Vec<String> = names
        .iter()
        .map(|n| Path::new(n).with_extension("srt").display().to_string())
        .collect();
    want.sort();
    assert_eq!(tree(&outdir), want);
}

#[test]
fn lists_language_suffixes_dry_runs_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let a = put(&input, "x/talk.flac", "1688-142285-0002.flac");
    put(&input, "y/other.flac", "367-130732-0006.flac");

    // A list on standard input, with the language in the name.
    let mut child = subtitle()
        .args(["--from-list", "-", "--lang-suffix", "-q"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "# one file\n{}", a.display()).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert!(input.join("x/talk.en.srt").is_file());
    assert!(!input.join("y/other.en.srt").exists());

    // Dry run: what is done and what is not, and nothing written.
    let out = run(subtitle()
        .arg(&input)
        .args(["-r", "--lang-suffix", "--dry-run"]));
    assert_eq!(code(&out), 0);
    let listing = stdout(&out);
    assert!(
        listing.contains(&format!("skip  {}", a.display())),
        "{listing}"
    );
    assert!(listing.contains("todo  "), "{listing}");
    assert!(!input.join("y/other.en.srt").exists());

    // No media at all: exit 1 with the reason; bad shard specs: usage errors.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "x").unwrap();
    let out = run(subtitle().arg(&empty));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no media files found"),
        "{}",
        stderr(&out)
    );
    for bad in ["3/3", "x", "auto"] {
        let out = run(subtitle()
            .arg(&input)
            .arg("--shard")
            .arg(bad)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX"));
        assert_eq!(code(&out), 2, "--shard {bad}");
        assert!(stderr(&out).contains("--shard"), "{}", stderr(&out));
    }
    let out = run(subtitle().arg(dir.path().join("missing")));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn check_reports_every_rule_a_foreign_subtitle_file_breaks() {
    let dir = tempfile::tempdir().unwrap();
    // As another tool writes it: CRLF, a BOM, a line too long, cues overlapping, too fast.
    let bad = dir.path().join("other-tool.srt");
    std::fs::write(
        &bad,
        "\u{feff}1\r\n00:00:01,000 --> 00:00:04,000\r\nThis line is much longer than forty-two characters, surely\r\n\r\n\
         2\r\n00:00:03,500 --> 00:00:05,000\r\nOverlap\r\n\r\n\
         3\r\n00:00:06,000 --> 00:00:06,500\r\nfar too many words to read in half a second\r\n\r\n",
    )
    .unwrap();
    let good = dir.path().join("good.vtt");
    std::fs::write(
        &good,
        "WEBVTT\n\n00:01.000 --> 00:03.000\nA calm, short line.\n\n00:04.000 --> 00:06.500\nAnd another one.\n",
    )
    .unwrap();
    let out = run(verbatim().args(["subtitle", "--check"]).arg(&bad));
    assert_eq!(code(&out), 1);
    let report = stdout(&out);
    for rule in ["line", "overlap", "reading speed"] {
        assert!(
            report.to_lowercase().contains(rule),
            "{rule} missing in: {report}"
        );
    }
    assert!(
        report
            .lines()
            .all(|l| l.starts_with(&bad.display().to_string())),
        "{report}"
    );
    // The same problems as JSON Lines for scripts.
    let out = run(verbatim()
        .args(["subtitle", "--check", "--report", "-"])
        .arg(&bad));
    assert_eq!(code(&out), 1);
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), report.lines().count());
    assert!(records
        .iter()
        .any(|r| r["rule"] == "overlap" && r["cue"] == 1));
    let out = run(verbatim().args(["subtitle", "--check"]).arg(&good));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).is_empty());
    // A stricter rule set turns the good file bad.
    let out = run(verbatim()
        .args(["subtitle", "--check", "--max-chars", "10"])
        .arg(&good));
    assert_eq!(code(&out), 1);
    // Not a subtitle file: one clear line naming it.
    let junk = dir.path().join("junk.srt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let out = run(verbatim().args(["subtitle", "--check"]).arg(&junk));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("junk.srt"), "{}", stderr(&out));
}
