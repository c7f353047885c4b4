//! Device selection (`--device`, `--strict`), the GPU probe's CPU fallback and `verbatim info`.
//!
//! On the default (CPU-only) build: `--device gpu` falls back with one warning and still
//! transcribes, `--strict` refuses, `info` works. With `--features vulkan` (CI runs
//! `cargo test --features vulkan --test gpu` on Mesa's software Vulkan driver, lavapipe):
//! jfk through the Vulkan backend gives the right words, `info` lists the Vulkan device, and a
//! probe that aborts, hangs or finds no driver falls back to the CPU instead of taking
//! verbatim down.

mod common;

use std::process::Command;

use common::*;

const JFK_WORDS: &str = "and so my fellow americans ask not what your country can do for you ask what you can do for your country";

/// `verbatim` with no device preference from the environment.
fn cmd() -> Command {
    let mut c = verbatim();
    c.env_remove("VERBATIM_DEVICE")
        .env_remove("VERBATIM_GPU_PROBE_FAIL")
        .env_remove("VERBATIM_GPU_PROBE_TIMEOUT");
    c
}

/// `transcribe jfk.flac` with tiny.en and the VAD model, warnings shown, on `device`.
fn jfk_on(device: &str) -> Command {
    let mut c = cmd();
    c.arg("transcribe")
        .arg(audio("jfk.flac"))
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .arg("--no-timestamps")
        .arg("--device")
        .arg(device);
    c
}

fn assert_jfk_words(out: &std::process::Output) {
    assert_eq!(
        normalize_words(&stdout(out)).join(" "),
        JFK_WORDS,
        "stdout: {}",
        stdout(out)
    );
}

#[test]
fn info_lists_versions_backends_and_cpu_features() {
    let out = run(cmd().arg("info"));
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "verbatim",
        "whisper.cpp   1.8.3",
        "backends      cpu",
        "cpu features",
        "model store",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    #[cfg(target_arch = "x86_64")]
    assert!(
        text.contains("SSE3"),
        "x86-64 CPUs all have SSE3; info said:\n{text}"
    );
}

#[test]
fn info_json_has_every_field() {
    let out = run(cmd().args(["info", "--json"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("info --json is JSON");
    assert_eq!(v["verbatim_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["whisper_cpp_version"], "1.8.3");
    assert_eq!(v["backends"][0], "cpu");
    assert!(v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["kind"] == "cpu"));
    let features = v["cpu_features"].as_array().unwrap();
    let names: Vec<&str> = features.iter().filter_map(|f| f["name"].as_str()).collect();
    #[cfg(target_arch = "x86_64")]
    for name in ["AVX2", "AVX-512", "F16C", "FMA"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(features.iter().all(|f| f["detected"].is_boolean()));
    assert!(v["model_store"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["default_model"]["name"].is_string());
}

#[test]
fn bad_device_values_are_usage_errors() {
    let out = run(&mut jfk_on("tpu"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("auto, cpu, gpu or gpu:N"));

    let out = run(jfk_on("cpu").arg("--strict"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--strict needs --device gpu"));
}

#[test]
fn every_model_command_takes_a_device() {
    for (command, flag) in [
        ("transcribe", "--device <auto|cpu|gpu|gpu:N>"),
        ("subtitle", "--device <auto|cpu|gpu|gpu:N>"),
        // listen's microphone is --mic.
        ("listen", "--device <auto|cpu|gpu|gpu:N>"),
        ("serve", "--device <auto|cpu|gpu|gpu:N>"),
    ] {
        let out = run(cmd().args([command, "--help"]));
        assert!(out.status.success(), "{command} --help failed");
        let help = stdout(&out);
        assert!(
            help.contains(flag),
            "{command} --help lacks {flag}:\n{help}"
        );
        assert!(help.contains("--strict"), "{command} --help lacks --strict");
    }
}

#[test]
fn device_cpu_transcribes_without_warnings() {
    let out = run(&mut jfk_on("cpu"));
    assert!(out.status.success());
    assert_jfk_words(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[cfg(not(any(
    feature = "vulkan",
    feature = "cuda",
    feature = "hipblas",
    feature = "metal"
)))]
mod cpu_build {
    use super::*;

    #[test]
    fn device_gpu_falls_back_to_the_cpu_with_one_warning() {
        let out = run(&mut jfk_on("gpu"));
        assert!(out.status.success());
        assert_jfk_words(&out);
        let err = stderr(&out);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(
            warnings[0].starts_with("verbatim: warning: GPU unavailable (")
                && warnings[0].contains("built without a GPU backend")
                && warnings[0].ends_with("; using the CPU"),
            "{err}"
        );
    }

    #[test]
    fn device_gpu_strict_fails_clearly() {
        let out = run(jfk_on("gpu:1").arg("--strict"));
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        assert!(
            err.contains("verbatim: error: GPU unavailable (")
                && err.contains("--strict forbids falling back to the CPU"),
            "{err}"
        );
    }

    #[test]
    fn auto_on_a_cpu_build_is_silent() {
        let out = run(&mut jfk_on("auto"));
        assert!(out.status.success());
        assert_jfk_words(&out);
        assert!(!stderr(&out).contains("GPU"), "{}", stderr(&out));
    }

    #[test]
    fn info_says_there_is_no_gpu_backend() {
        let out = run(cmd().arg("info"));
        assert!(stdout(&out).contains("built without a GPU backend"));
    }
}

/// On Mesa's software Vulkan driver (lavapipe): ggml-vulkan skips CPU-type devices unless
/// GGML_VK_VISIBLE_DEVICES names them.
#[cfg(feature = "vulkan")]
mod vulkan {
    use super::*;

    fn lavapipe(mut c: Command) -> Command {
        if std::env::var_os("GGML_VK_VISIBLE_DEVICES").is_none() {
            c.env("GGML_VK_VISIBLE_DEVICES", "0");
        }
        c
    }

    #[test]
    fn info_lists_a_usable_vulkan_device() {
        let mut c = lavapipe(cmd());
        let out = run(c.args(["info", "--json"]));
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "vulkan"));
        let devices = v["devices"].as_array().unwrap();
        let gpu = devices
            .iter()
            .find(|d| d["id"] == "gpu:0")
            .unwrap_or_else(|| panic!("no gpu:0 in {devices:?}"));
        assert!(gpu["name"].as_str().unwrap().starts_with("Vulkan"), "{gpu}");
        assert_eq!(gpu["usable"], true, "{gpu}");

        let mut c = lavapipe(cmd());
        let out = run(c.arg("info"));
        assert!(stdout(&out).contains("gpu:0   Vulkan0"), "{}", stdout(&out));
    }

    #[test]
    fn jfk_on_the_vulkan_device_gives_the_right_words() {
        let out = run(lavapipe(jfk_on("gpu")).arg("--strict"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_jfk_words(&out);
        assert!(!stderr(&out).contains("GPU unavailable"));
    }

    #[test]
    fn an_aborting_probe_falls_back_to_the_cpu() {
        let mut c = lavapipe(jfk_on("gpu"));
        c.env("VERBATIM_GPU_PROBE_FAIL", "abort");
        let out = run(&mut c);
        assert!(out.status.success());
        assert_jfk_words(&out);
        assert!(
            stderr(&out)
                .contains("verbatim: warning: GPU unavailable (the GPU probe aborted (SIGABRT)")
                && stderr(&out).contains("; using the CPU"),
            "{}",
            stderr(&out)
        );

        let mut c = lavapipe(jfk_on("gpu"));
        c.env("VERBATIM_GPU_PROBE_FAIL", "abort").arg("--strict");
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("--strict forbids falling back to the CPU"));
    }

    #[test]
    fn a_hanging_probe_times_out() {
        let mut c = lavapipe(jfk_on("gpu"));
        c.env("VERBATIM_GPU_PROBE_FAIL", "hang")
            .env("VERBATIM_GPU_PROBE_TIMEOUT", "1")
            .arg("--strict");
        let started = std::time::Instant::now();
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("the GPU probe did not finish within 1 s"),
            "{}",
            stderr(&out)
        );
        assert!(started.elapsed().as_secs() < 30);
    }

    #[test]
    fn no_vulkan_driver_means_no_gpu() {
        let mut c = lavapipe(jfk_on("gpu"));
        c.env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .arg("--strict");
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("GPU unavailable (no GPU device found)"),
            "{}",
            stderr(&out)
        );
    }
}
