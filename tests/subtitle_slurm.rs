//! `verbatim subtitle --shard auto` on a real Slurm cluster, through the user-facing example
//! `examples/slurm-array.sh`: a job array splits a tree of recordings between its tasks, every
//! file is subtitled exactly once, and resubmitting the array skips everything.
//!
//! Needs root, `slurm-wlm` and `munge` (see tests/common/slurm.rs); skipped without them unless
//! `CI` is set.

mod common;

use common::slurm::SlurmCluster;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Array tasks: each loads tiny.en and runs its shard.
const TASKS: u32 = 3;
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// The input tree (path below the input root, shared audio file) and words each subtitle must
/// contain (what tiny.en hears, normalised).
const INPUTS: [(&str, &str, &str); 5] = [
    (
        "jfk.flac",
        "jfk.flac",
        "ask not what your country can do for you",
    ),
    (
        "talks/1688-142285-0002.flac",
        "1688-142285-0002.flac",
        "thought me so silly",
    ),
    (
        "talks/1688-142285-0003.flac",
        "1688-142285-0003.flac",
        "account of himself",
    ),
    (
        "talks/recipes/367-130732-0001.flac",
        "367-130732-0001.flac",
        "when is a lobster not a lobster",
    ),
    (
        "talks/recipes/367-130732-0008.flac",
        "367-130732-0008.flac",
        "stirring constantly",
    ),
];

/// Variables of a developer's environment that would change what `verbatim` does in the tasks
/// (sbatch exports the whole submitting environment to them).
const VERBATIM_VARS: [&str; 8] = [
    "VERBATIM_MODEL",
    "VERBATIM_VAD_MODEL",
    "VERBATIM_MODELS_DIR",
    "VERBATIM_FFMPEG",
    "VERBATIM_MODEL_URL",
    "VERBATIM_REGISTRY",
    "VERBATIM_SHARD_COUNT",
    "JOB_COMPLETION_INDEX",
];

#[test]
fn slurm_array_subtitles_each_file_once_and_a_resubmission_skips_all() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let output = work.path().join("out");
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for (rel, shared_name, _) in INPUTS {
        let dest = input.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(audio(shared_name), &dest).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm-array.sh");

    let run_array = |label: &str| {
        let mut cmd = cluster.sbatch(
            &format!("0-{}", TASKS - 1),
            &logs.join(format!("{label}-%A_%a.out")),
        );
        // The script asks for 2 CPUs per task; a 1-CPU machine could never run that.
        cmd.arg(format!("--cpus-per-task={}", cluster.cpus().min(2)))
            .arg(format!("--chdir={}", work.path().display()))
            .env("INPUT_DIR", &input)
            .env("OUTPUT_DIR", &output)
            .env("VERBATIM", env!("CARGO_BIN_EXE_verbatim"))
            .env("MODEL", tiny_en())
            .env("VERBATIM_OFFLINE", "1")
            .env_remove("SHARD_COUNT");
        for var in VERBATIM_VARS {
            cmd.env_remove(var);
        }
        let jid = cluster.submit(&mut cmd, &script);
        let tasks = cluster.wait_job(jid, JOB_TIMEOUT);
        let ids: Vec<u32> = tasks.iter().map(|t| t.task_id).collect();
        assert_eq!(
            ids,
            (0..TASKS).collect::<Vec<_>>(),
            "{label}: tasks of job {jid}"
        );
        let failed: Vec<_> = tasks.iter().filter(|t| !t.ok()).collect();
        assert!(
            failed.is_empty(),
            "{label}: tasks did not complete with exit 0: {failed:?}\n{}",
            task_logs(&logs, label)
        );
        eprintln!("{}", task_logs(&logs, label));
    };

    // First run: every file subtitled once, by exactly one task.
    run_array("first");
    for (rel, _, words) in INPUTS {
        let srt = output.join(rel).with_extension("srt");
        let text = std::fs::read_to_string(&srt)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", srt.display(), task_logs(&logs, "first")));
        assert!(!text.trim().is_empty(), "{} is empty", srt.display());
        assert!(
            text.contains("-->"),
            "{} is not SubRip:\n{text}",
            srt.display()
        );
        let heard = normalize_words(&srt_text(&text)).join(" ");
        assert!(
            heard.contains(words),
            "{}: expected {words:?} in {heard:?}",
            srt.display()
        );
    }
    // Nothing but one .srt per input at the mirrored path, and the reports: no other format by
    // default, no temporary files left by the atomic writes.
    let written: Vec<String> = output_files(&output)
        .into_keys()
        .filter(|p| !is_report(p))
        .collect();
    let mut expected: Vec<String> = INPUTS
        .iter()
        .map(|(rel, _, _)| {
            Path::new(rel)
                .with_extension("srt")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(written, expected, "the output tree after the first run");
    assert_reports(&output, "ok");

    // Keep the first run's reports, so the second run's are its own whether --report appends
    // or truncates.
    let first_reports = work.path().join("first-reports");
    std::fs::create_dir_all(&first_reports).unwrap();
    for task in 0..TASKS {
        let report = output.join(format!("report-{task}.jsonl"));
        if report.exists() {
            std::fs::rename(&report, first_reports.join(format!("report-{task}.jsonl"))).unwrap();
        }
    }
    let before = output_files(&output);

    // Resubmission: everything exists, so every file is skipped and nothing is rewritten.
    run_array("again");
    assert_reports(&output, "skipped");
    let after: BTreeMap<String, SystemTime> = output_files(&output)
        .into_iter()
        .filter(|(p, _)| !is_report(p))
        .collect();
    assert_eq!(
        after, before,
        "the resubmission changed the output tree (files or mtimes)"
    );
}

/// Checks that the tasks' reports, together, list every input exactly once with `status`.
fn assert_reports(output: &Path, status: &str) {
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for task in 0..TASKS {
        let report = output.join(format!("report-{task}.jsonl"));
        // A task whose shard holds no file may write an empty report, or none.
        let Ok(text) = std::fs::read_to_string(&report) else {
            continue;
        };
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{}:{}: not JSON ({e}): {line}", report.display(), n + 1)
            });
            let path = entry["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{}:{}: no \"path\": {line}", report.display(), n + 1));
            let got = entry["status"]
                .as_str()
                .unwrap_or_else(|| panic!("{}:{}: no \"status\": {line}", report.display(), n + 1));
            assert_eq!(
                got,
                status,
                "{}:{}: status of {path}: {line}",
                report.display(),
                n + 1
            );
            let rel = input_of(path).unwrap_or_else(|| {
                panic!(
                    "{}:{}: {path} is none of the inputs",
                    report.display(),
                    n + 1
                )
            });
            seen.entry(rel).or_default().push(format!("task {task}"));
        }
    }
    for (rel, _, _) in INPUTS {
        let tasks = seen.get(rel).cloned().unwrap_or_default();
        assert_eq!(
            tasks.len(),
            1,
            "{rel} must be reported exactly once ({status}); reported by {tasks:?}"
        );
    }
}

/// The input a report's `path` names: relative to the input root, or any path ending in it.
fn input_of(path: &str) -> Option<&'static str> {
    INPUTS
        .iter()
        .map(|(rel, _, _)| *rel)
        .find(|rel| Path::new(path).ends_with(rel))
}

fn is_report(rel: &str) -> bool {
    rel.starts_with("report-") && rel.ends_with(".jsonl")
}

/// Every file below `root` (relative path, mtime), sorted.
fn output_files(root: &Path) -> BTreeMap<String, SystemTime> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, SystemTime>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
                files.insert(rel, mtime);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// The spoken text of a SubRip file: its lines without cue numbers and timings.
fn srt_text(srt: &str) -> String {
    srt.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("-->") && !l.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tasks' stdout and stderr of one run (`LABEL-*.out`), for failure messages.
fn task_logs(logs: &Path, label: &str) -> String {
    let mut names = files_in(logs);
    names.retain(|n| n.starts_with(&format!("{label}-")));
    names
        .iter()
        .map(|n| {
            format!(
                "--- {n} ---\n{}",
                std::fs::read_to_string(logs.join(n)).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
