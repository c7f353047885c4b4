//! Outputs in hostile places (issue 23, rows S1, D1, D2, D3): links planted at every
//! temporary name, two runs on the same outputs, a rerun with another model after an
//! interrupt, and partial files or checkpoints damaged after a kill. Every case runs the
//! built binary and checks the files it leaves, and what a planted link pointed at.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LONG: &str = "long_ls_2609_3080_concat.flac";

/// `transcribe` with an explicit model and the VAD model, warnings shown.
fn transcribe_with(model: &Path) -> Command {
    let mut cmd = verbatim();
    cmd.arg("transcribe")
        .arg("--model")
        .arg(model)
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

/// `verbatim subtitle` with tiny.en and the VAD model.
fn subtitle_cmd() -> Command {
    let mut cmd = verbatim();
    cmd.arg("subtitle")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

fn json_of(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON ({e}):\n{text}", path.display()))
}

fn segments(json: &Value) -> &Vec<Value> {
    json["segments"].as_array().expect("a segments array")
}

/// The secret a planted link points at, outside the output directory.
fn secret(dir: &Path) -> (PathBuf, &'static str) {
    let path = dir.join("root-only-file");
    let content = "do not overwrite me\n";
    std::fs::write(&path, content).unwrap();
    (path, content)
}

fn link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

fn assert_untouched(path: &Path, content: &str) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        content,
        "{} was written through a link",
        path.display()
    );
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// S1: a link at every name a run writes or reads besides its outputs (partial, aside,
/// checkpoint, lock) and at the final names: the run ends with correct, regular output files
/// and the link's target is unchanged.
#[test]
fn links_at_every_temporary_name_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (target, content) = secret(dir.path());
    let out = dir.path().join("d");
    std::fs::create_dir(&out).unwrap();
    for name in [
        "jfk.srt.partial",
        "jfk.srt.lock",
        "jfk.srt.checkpoint.json",
        "jfk.json.partial",
        "jfk.json.aside.partial",
        "jfk.json.lock",
        "jfk.srt",
        "jfk.json",
    ] {
        link(&target, &out.join(name));
    }
    // A dangling link too: following it would create the file it names.
    let dangling = dir.path().join("created-through-link");
    std::fs::remove_file(out.join("jfk.srt.partial")).unwrap();
    link(&dangling, &out.join("jfk.srt.partial"));

    let o = run(transcribe_with(&tiny_en())
        .arg(audio("jfk.flac"))
        .args(["-f", "srt,json", "-o"])
        .arg(&out));
    assert_untouched(&target, content);
    assert!(
        !dangling.exists(),
        "a file was created through a dangling link"
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let srt = std::fs::read_to_string(out.join("jfk.srt")).unwrap();
    assert!(srt.contains("fellow Americans"), "{srt}");
    let json = json_of(&out.join("jfk.json"));
    assert!(!segments(&json).is_empty());
    for name in ["jfk.srt", "jfk.json"] {
        assert!(!is_link(&out.join(name)), "{name} is still a link");
    }
    // Nothing else left: the planted names were removed, the run's own removed at the end.
    assert_eq!(files_in(&out), ["jfk.json", "jfk.srt"]);
}

/// S1 through the batch runner (`verbatim subtitle`), which writes through the same pipeline.
#[test]
fn subtitle_never_follows_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let (target, content) = secret(dir.path());
    let out = dir.path().join("d");
    std::fs::create_dir(&out).unwrap();
    for name in ["jfk.srt.partial", "jfk.srt.lock", "jfk.srt.checkpoint.json"] {
        link(&target, &out.join(name));
    }
    let o = run(subtitle_cmd()
        .arg(audio("jfk.flac"))
        .args(["-f", "srt", "-o"])
        .arg(&out));
    assert_untouched(&target, content);
    assert!(o.status.success(), "{}", stderr(&o));
    let srt = std::fs::read_to_string(out.join("jfk.srt")).unwrap();
    assert!(srt.contains("fellow Americans"), "{srt}");
    assert_eq!(files_in(&out), ["jfk.srt"]);
}

/// A regular `.partial` left at the name by something other than a checkpointed run (no
/// checkpoint) is never resumed: its bytes do not reach the output.
#[test]
fn a_stray_partial_file_without_a_checkpoint_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("jfk.json.partial"), "{\"planted\": \"JUNK\", ").unwrap();
    std::fs::write(out.join("jfk.json.aside.partial"), "JUNK JUNK").unwrap();
    std::fs::write(out.join("jfk.txt.partial"), "JUNK\n").unwrap();
    let o = run(transcribe_with(&tiny_en())
        .arg(audio("jfk.flac"))
        .args(["-f", "json,txt", "-o"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let json_text = std::fs::read_to_string(out.join("jfk.json")).unwrap();
    let txt = std::fs::read_to_string(out.join("jfk.txt")).unwrap();
    assert!(!json_text.contains("JUNK") && !txt.contains("JUNK"));
    let json = json_of(&out.join("jfk.json"));
    assert!(!segments(&json).is_empty());
    assert!(txt.contains("fellow Americans"), "{txt}");
    assert_eq!(files_in(&out), ["jfk.json", "jfk.txt"]);
}

/// D1, deterministic half: while another process holds an output's lock, a run fails at once
/// (exit 1, one line naming the output and saying another run writes it) and touches none of
/// that run's files. A lock file left by a killed run (not locked) does not stop anyone.
#[test]
fn a_held_lock_fails_the_second_run_at_once_and_a_stale_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    std::fs::create_dir(&out).unwrap();
    // The other run's files, mid-way.
    std::fs::write(out.join("jfk.srt.partial"), "1\n00:00:00,000 --> ").unwrap();
    std::fs::write(out.join("jfk.json.partial"), "{\"x\": ").unwrap();
    let lock = std::fs::File::create(out.join("jfk.json.lock")).unwrap();
    lock.try_lock().unwrap();
    let started = Instant::now();
    let o = run(transcribe_with(&tiny_en())
        .arg(audio("jfk.flac"))
        .args(["-f", "srt,json", "-o"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("another verbatim run is writing it"))
        .unwrap_or_else(|| panic!("no clear error: {err}"));
    assert!(line.contains("jfk.json"), "{line}");
    // At once: no transcription happened (jfk takes tens of seconds here).
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        std::fs::read_to_string(out.join("jfk.srt.partial")).unwrap(),
        "1\n00:00:00,000 --> "
    );
    assert_eq!(
        std::fs::read_to_string(out.join("jfk.json.partial")).unwrap(),
        "{\"x\": "
    );
    assert!(!out.join("jfk.srt").exists() && !out.join("jfk.json").exists());

    // The holder dies (its lock is released; the file stays): the next run goes through.
    drop(lock);
    let o = run(transcribe_with(&tiny_en())
        .arg(audio("jfk.flac"))
        .args(["-f", "srt,json", "-o"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    json_of(&out.join("jfk.json"));
    assert_eq!(files_in(&out), ["jfk.json", "jfk.srt"]);
}

/// D1 in a batch: a file whose outputs another run is writing is left to that run (reported
/// as "busy", not failed: an overlapping or retried batch is no error); the others are done.
#[test]
fn a_batch_leaves_a_file_another_run_is_writing_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(audio("jfk.flac"), input.join("jfk.flac")).unwrap();
    std::fs::copy(audio("1688-142285-0002.flac"), input.join("short.flac")).unwrap();
    let lock = std::fs::File::create(input.join("jfk.srt.lock")).unwrap();
    lock.try_lock().unwrap();
    let report = dir.path().join("r.jsonl");
    let o = run(subtitle_cmd().arg(&input).arg("--report").arg(&report));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("(another verbatim run is writing its outputs)"),
        "{err}"
    );
    assert!(err.contains("1 ok, 1 skipped, 0 failed"), "{err}");
    let text = std::fs::read_to_string(&report).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let jfk = records
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("jfk.flac"))
        .unwrap();
    assert_eq!(jfk["status"], "busy", "{jfk}");
    assert!(
        jfk["error"].as_str().unwrap().contains("jfk.srt.lock"),
        "{jfk}"
    );
    assert!(!input.join("jfk.srt").exists());
    assert!(input.join("short.srt").is_file());
    drop(lock);
}

/// D1: two runs started together on the same outputs with different models: each final file
/// is valid and wholly from the run that succeeded; the other failed clearly.
#[test]
fn two_runs_on_the_same_outputs_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cc");
    let input = audio("jfk.flac");
    let spawn = |model: &Path| {
        transcribe_with(model)
            .arg(&input)
            .args(["-f", "json,srt,txt", "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&tiny_en());
    let b = spawn(&base_model());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    eprintln!("--- a ---\n{}--- b ---\n{}", stderr(&a), stderr(&b));
    let (winner, loser, winner_model) = match (a.status.success(), b.status.success()) {
        (true, false) => (&a, &b, tiny_en()),
        (false, true) => (&b, &a, base_model()),
        _ => panic!(
            "expected one run to succeed and the other to fail clearly: {:?} {:?}",
            a.status, b.status
        ),
    };
    assert_eq!(loser.status.code(), Some(1));
    let err = stderr(loser);
    assert!(
        err.contains("another verbatim run is writing it"),
        "the losing run did not say why: {err}"
    );
    let _ = winner;
    // Every file is the winner's, whole.
    let json = json_of(&out.join("jfk.json"));
    let model = json.to_string();
    assert!(
        model.contains(&*winner_model.to_string_lossy()),
        "the JSON names another model than the successful run's: {model}"
    );
    let from_json: Vec<String> = segments(&json)
        .iter()
        .map(|s| s["text"].as_str().unwrap().trim().to_string())
        .collect();
    let txt = std::fs::read_to_string(out.join("jfk.txt")).unwrap();
    let from_txt: Vec<String> = txt.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(from_txt, from_json, "txt and json come from different runs");
    let srt = std::fs::read_to_string(out.join("jfk.srt")).unwrap();
    assert_eq!(
        normalize_words(&srt_text(&srt)),
        normalize_words(&txt),
        "srt and txt come from different runs"
    );
    assert_eq!(files_in(&out), ["jfk.json", "jfk.srt", "jfk.txt"]);
}

/// The cue text of an SRT file (no numbers, no times).
fn srt_text(srt: &str) -> String {
    srt.lines()
        .filter(|l| !l.contains("-->") && l.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The long file's first 70 s in 30 s windows: two or three windows, each checkpointed.
fn windowed(cmd: &mut Command, out: &Path, formats: &str) {
    cmd.arg(audio(LONG))
        .args(["--window", "30", "--duration", "70", "-f", formats, "-o"])
        .arg(out);
}

/// Starts a windowed run and interrupts it (SIGINT) once its first checkpoint is written;
/// returns once it has exited, with the checkpoint in place.
fn interrupted_after_first_window(model: &Path, out: &Path, formats: &str, first: &str) {
    let checkpoint = out.join(format!("{first}.checkpoint.json"));
    let mut cmd = transcribe_with(model);
    windowed(&mut cmd, out, formats);
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(Instant::now() < deadline, "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the interrupt");
    assert!(
        checkpoint.is_file(),
        "no checkpoint left after the interrupt"
    );
    assert!(
        !out.join(first).exists(),
        "a final file exists after the interrupt"
    );
}

fn finished(model: &Path, out: &Path, formats: &str) -> Output {
    let mut cmd = transcribe_with(model);
    windowed(&mut cmd, out, formats);
    run(&mut cmd)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// D2: interrupted after its first window, rerun with another model: the rerun starts over
/// (says so, no "resumed" line) and its files equal an uninterrupted run of the new model.
#[test]
fn a_rerun_with_another_model_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let formats = "json,txt";
    interrupted_after_first_window(&tiny_en(), &out, formats, "long_ls_2609_3080_concat.json");
    let first_window = std::fs::read_to_string(out.join("long_ls_2609_3080_concat.txt.partial"))
        .unwrap_or_default();

    let o = finished(&base_model(), &out, formats);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        !err.contains("resumed at"),
        "resumed with another model: {err}"
    );
    assert!(err.contains("starting over"), "no warning: {err}");

    let fresh = dir.path().join("fresh");
    let f = finished(&base_model(), &fresh, formats);
    assert!(f.status.success());
    for name in [
        "long_ls_2609_3080_concat.json",
        "long_ls_2609_3080_concat.txt",
    ] {
        assert_eq!(
            std::fs::read_to_string(out.join(name)).unwrap(),
            std::fs::read_to_string(fresh.join(name)).unwrap(),
            "{name} differs from an uninterrupted run of the new model"
        );
    }
    let json = json_of(&out.join("long_ls_2609_3080_concat.json"));
    assert!(json.to_string().contains("ggml-base-q5_1.bin"));
    let first = segments(&json)[0]["start"].as_f64().unwrap();
    assert!(first < 30.0, "first window missing: starts at {first}");
    eprintln!("tiny.en's first window was: {first_window}");
    assert_eq!(
        files_in(&out),
        [
            "long_ls_2609_3080_concat.json",
            "long_ls_2609_3080_concat.txt"
        ]
    );
}

/// D3: after an interrupt, the partial files or the checkpoint damaged in each way a crash,
/// a full disk or a person can leave them: each rerun starts over (a warning, no "resumed"
/// line) and ends with the files of an uninterrupted run. The undamaged state, as a control,
/// does resume.
#[test]
fn damaged_partial_files_or_checkpoints_make_the_rerun_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let formats = "json,srt";
    let stem = "long_ls_2609_3080_concat";
    // The checkpoint names its outputs' paths: every case runs in the same directory, `work`,
    // restored each time from a copy of the interrupted state.
    let work = dir.path().join("work");
    let saved = dir.path().join("saved");
    interrupted_after_first_window(&tiny_en(), &work, formats, &format!("{stem}.json"));
    copy_dir(&work, &saved);
    let fresh = dir.path().join("fresh");
    assert!(finished(&tiny_en(), &fresh, formats).status.success());
    let json_partial = format!("{stem}.json.partial");
    let srt_partial = format!("{stem}.srt.partial");
    let checkpoint = format!("{stem}.json.checkpoint.json");
    let (target, content) = secret(dir.path());

    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Option<Damage>)> = vec![
        ("intact (control)", None),
        (
            "emptied json partial",
            Some(Box::new(move |d: &Path| {
                std::fs::write(d.join(&json_partial), "").unwrap()
            })),
        ),
        (
            "truncated srt partial",
            Some(Box::new({
                let srt_partial = srt_partial.clone();
                move |d: &Path| {
                    let p = d.join(&srt_partial);
                    let len = std::fs::metadata(&p).unwrap().len();
                    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(len / 2).unwrap();
                }
            })),
        ),
        (
            "checkpoint claiming longer files",
            Some(Box::new({
                let checkpoint = checkpoint.clone();
                move |d: &Path| {
                    let p = d.join(&checkpoint);
                    let mut v: Value =
                        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                    for o in v["outputs"].as_array_mut().unwrap() {
                        let len = o["len"].as_u64().unwrap();
                        o["len"] = (len + 4096).into();
                    }
                    std::fs::write(&p, v.to_string()).unwrap();
                }
            })),
        ),
        (
            "corrupted srt partial content (same length)",
            Some(Box::new({
                let srt_partial = srt_partial.clone();
                move |d: &Path| {
                    let p = d.join(&srt_partial);
                    let mut bytes = std::fs::read(&p).unwrap();
                    let i = bytes.len() / 2;
                    bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
                    std::fs::write(&p, bytes).unwrap();
                }
            })),
        ),
        (
            "srt partial replaced by a link to a copy of itself",
            Some(Box::new({
                let srt_partial = srt_partial.clone();
                let target = target.clone();
                move |d: &Path| {
                    let p = d.join(&srt_partial);
                    std::fs::copy(&p, &target).unwrap();
                    std::fs::remove_file(&p).unwrap();
                    link(&target, &p);
                }
            })),
        ),
    ];
    for (what, damage) in &cases {
        eprintln!("=== {what}");
        let out = work.clone();
        std::fs::remove_dir_all(&out).unwrap();
        copy_dir(&saved, &out);
        let linked_before = damage.is_some() && what.contains("link");
        if let Some(d) = damage {
            d(&out);
        }
        let target_before = std::fs::read(&target).unwrap();
        let o = finished(&tiny_en(), &out, formats);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let err = stderr(&o);
        if damage.is_none() {
            assert!(err.contains("resumed at"), "{what}: did not resume: {err}");
        } else {
            assert!(!err.contains("resumed at"), "{what}: resumed: {err}");
            assert!(err.contains("starting over"), "{what}: no warning: {err}");
        }
        if linked_before {
            assert_eq!(
                std::fs::read(&target).unwrap(),
                target_before,
                "{what}: the link's target was changed"
            );
        }
        let json = json_of(&out.join(format!("{stem}.json")));
        let first = segments(&json)[0]["start"].as_f64().unwrap();
        assert!(
            first < 30.0,
            "{what}: first window missing (starts at {first})"
        );
        for ext in ["json", "srt"] {
            let name = format!("{stem}.{ext}");
            assert_eq!(
                std::fs::read_to_string(out.join(&name)).unwrap(),
                std::fs::read_to_string(fresh.join(&name)).unwrap(),
                "{what}: {name} differs from an uninterrupted run's"
            );
        }
        assert_eq!(
            files_in(&out),
            [format!("{stem}.json"), format!("{stem}.srt")],
            "{what}: files left behind"
        );
    }
    let _ = content;
}
