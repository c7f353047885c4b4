//! The config file: its settings become every command's defaults, flags beat environment
//! variables beat the file beat built-in defaults, and a bad file is a clear error.

mod common;

use std::path::Path;

use common::*;

fn with_config(path: &Path) -> std::process::Command {
    let mut cmd = verbatim();
    cmd.env("VERBATIM_CONFIG", path);
    cmd
}

/// The entry of `key` in `config show --json`'s settings.
fn setting(doc: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    doc["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
}

#[test]
fn config_settings_are_defaults_that_env_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "# defaults for every command\nmodel = \"{}\"\nvad-model = \"{}\"\nthreads = 1\n\n[transcribe]\nformat = [\"txt\", \"tsv\"]\noutput_dir = \"{}\"\n",
            dir.path().join("no-such-model.bin").display(),
            vad_model().display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();

    // `config show` says where each value comes from.
    let out = run(with_config(&cfg).args(["config", "show", "--json"]));
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let setting = |key: &str| setting(&doc, key).unwrap_or_else(|| panic!("{key} missing: {doc}"));
    assert!(setting("model")["source"]
        .as_str()
        .unwrap()
        .contains("line 2"));
    assert_eq!(setting("threads")["value"], "1");
    assert_eq!(setting("language")["source"], "built-in default");
    assert_eq!(setting("transcribe.format")["value"], "txt,tsv");

    // The file's model does not exist: the environment variable beats it.
    let out = run(with_config(&cfg)
        .env("VERBATIM_MODEL", tiny_en())
        .args(["transcribe", "-q"])
        .arg(audio("jfk.flac")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dir.path().join("out/jfk.txt").is_file(),
        "format and output_dir from the file"
    );
    assert!(dir.path().join("out/jfk.tsv").is_file());

    // A flag beats both the environment and the file.
    let out = run(with_config(&cfg)
        .env("VERBATIM_MODEL", dir.path().join("also-missing.bin"))
        .args(["transcribe", "-q", "-f", "json", "--model"])
        .arg(tiny_en())
        .arg(audio("1688-142285-0002.flac")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("out/1688-142285-0002.json").is_file());
    assert!(!dir.path().join("out/1688-142285-0002.txt").exists());

    // Only the file: its (missing) model is used, and the error names it.
    let out = run(with_config(&cfg)
        .env_remove("VERBATIM_MODEL")
        .args(["transcribe", "-q"])
        .arg(audio("jfk.flac")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no-such-model.bin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn listen_type_is_a_config_key() {
    // `--type`'s field is `type_text` (`type` is a Rust keyword); the key is still `type`.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[listen]\ntype = true\nendpoint = 0.8\n").unwrap();
    let out = run(with_config(&cfg).args(["config", "show", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let value = |key: &str| setting(&doc, key).map(|s| s["value"].clone());
    assert_eq!(value("listen.type"), Some("true".into()), "{doc}");
    assert_eq!(value("listen.endpoint"), Some("0.8".into()), "{doc}");
}

#[test]
fn a_bad_config_file_is_one_clear_error_with_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "model = \"x\"\nthreds = 3\n",
            "line 2: unknown key `threds`",
        ),
        (
            "[transcribe]\njobs = 2\n",
            "line 2: `jobs` is not an option of `verbatim transcribe`",
        ),
        (
            "[transcrib]\nformat = \"srt\"\n",
            "line 1: unknown command table [transcrib]",
        ),
        ("vad = \"no\"\n", "line 1: key `vad` must be true or false"),
        ("model = [\n", "line 1:"),
    ];
    for (text, want) in cases {
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run(with_config(&cfg).args(["transcribe", "x.wav"]));
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(err.contains("config.toml"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // `config path` still works, so the user can find the file.
        let out = run(with_config(&cfg).args(["config", "path"]));
        assert!(out.status.success());
        assert_eq!(stdout(&out).trim(), cfg.display().to_string());
    }
}

/// `verbatim listen` on jfk with tiny.en and the VAD model, reading `config`.
fn listen_to_jfk(config: &Path) -> std::process::Command {
    let mut cmd = with_config(config);
    cmd.env_remove("VERBATIM_DEVICE")
        .arg("listen")
        .arg("--input")
        .arg(audio("jfk.flac"))
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

#[test]
fn a_top_level_device_is_where_whisper_runs_in_listen_too() {
    let dir = tempfile::tempdir().unwrap();
    for device in ["cpu", "gpu"] {
        let cfg = dir.path().join(format!("{device}.toml"));
        std::fs::write(&cfg, format!("device = \"{device}\"\n")).unwrap();
        let out = run(&mut listen_to_jfk(&cfg));
        let err = stderr(&out);
        assert!(
            !err.contains("no input device"),
            "device = {device:?} was taken for a microphone: {err}"
        );
        assert!(out.status.success(), "device = {device:?}: {err}");
        let heard = stdout(&out);
        assert!(
            wer(&reference("jfk.flac"), &heard) <= 0.12,
            "device = {device:?}: {heard}"
        );
        // A GPU that cannot be used (as on a build without a GPU backend) falls back to the
        // CPU with the one warning every command gives.
        for line in err.lines().filter(|l| l.contains("GPU")) {
            assert!(
                line.starts_with("verbatim: warning: GPU unavailable (")
                    && line.ends_with("; using the CPU"),
                "device = {device:?}: {err}"
            );
        }
    }

    // The microphone is `mic` (--mic, -D): a [listen] table may set it, a flag beats it, and
    // the top-level device still means the compute device.
    let cfg = dir.path().join("mic.toml");
    std::fs::write(
        &cfg,
        "device = \"cpu\"\n[listen]\nmic = \"no-such-microphone-from-config\"\n",
    )
    .unwrap();
    let listen = |args: &[&str]| {
        let mut cmd = with_config(&cfg);
        cmd.env_remove("VERBATIM_DEVICE")
            .arg("listen")
            .arg("--model")
            .arg(tiny_en())
            .arg("--vad-model")
            .arg(vad_model())
            .args(args);
        run(&mut cmd)
    };
    let out = listen(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no input device matches 'no-such-microphone-from-config'"),
        "{}",
        stderr(&out)
    );
    for flag in ["--mic", "-D"] {
        let out = listen(&[flag, "no-such-microphone-from-flag"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("no input device matches 'no-such-microphone-from-flag'"),
            "{flag}: {}",
            stderr(&out)
        );
    }
}
