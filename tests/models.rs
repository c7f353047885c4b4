//! `verbatim models` and on-demand downloads against a real HTTP server on 127.0.0.1 that serves
//! the shared models under their official Hugging Face paths, with faults on demand.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::{Fault, Server};
use common::*;
use sha2::Digest;

fn sha256(path: &Path) -> String {
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(path).unwrap());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A scratch store, a registry override naming the shared files' checksums, and the server.
struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    registry: PathBuf,
    server: Server,
}

const WHISPER_REPO: &str = "/ggerganov/whisper.cpp/resolve/main";
const VAD_REPO: &str = "/ggml-org/whisper-vad/resolve/main";

impl Fixture {
    fn new(fault: Fault) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let tiny = tiny_en();
        let vad = vad_model();
        let tiny_sum = sha256(&tiny);
        let vad_sum = sha256(&vad);
        // The shared files were converted independently of upstream's, so the tests give their
        // own checksums through the same override file private mirrors use. `base.en` (the
        // default model) is served with tiny.en's bytes: a download is a download.
        let registry = dir.path().join("registry.tsv");
        std::fs::write(
            &registry,
            format!(
                "# test mirror\n\
                 tiny.en\twhisper\ten\t{}\tsha256:{tiny_sum}\tggerganov/whisper.cpp\tggml-tiny.en.bin\n\
                 base.en\twhisper\ten\t~75 MiB\tsha256:{tiny_sum}\tggerganov/whisper.cpp\tggml-base.en.bin\n\
                 silero-v6.2.0\tvad\t-\t{}\tsha256:{vad_sum}\tggml-org/whisper-vad\tggml-silero-v6.2.0.bin\n\
                 small.en\twhisper\ten\t~466 MiB\tsha1:db8a495a91d927739e50b3fc1cc4c6b8f6c2d022\tggerganov/whisper.cpp\tggml-small.en.bin\n",
                std::fs::metadata(&tiny).unwrap().len(),
                std::fs::metadata(&vad).unwrap().len(),
            ),
        )
        .unwrap();
        let mut files = HashMap::new();
        files.insert(format!("{WHISPER_REPO}/ggml-tiny.en.bin"), tiny.clone());
        files.insert(format!("{WHISPER_REPO}/ggml-base.en.bin"), tiny);
        files.insert(format!("{VAD_REPO}/ggml-silero-v6.2.0.bin"), vad);
        let server = Server::start(files, fault);
        Fixture {
            _dir: dir,
            store,
            registry,
            server,
        }
    }

    /// `verbatim` pointed at this fixture's store, registry and server, online.
    fn cmd(&self) -> Command {
        let mut cmd = verbatim();
        cmd.env("VERBATIM_MODELS_DIR", &self.store)
            .env("VERBATIM_REGISTRY", &self.registry)
            .env("VERBATIM_MODEL_URL", &self.server.base)
            .env_remove("VERBATIM_OFFLINE");
        cmd
    }

    fn store_files(&self) -> Vec<String> {
        files_in(&self.store)
            .into_iter()
            .filter(|f| !f.ends_with(".lock"))
            .collect()
    }
}

#[test]
fn pull_verify_path_list_and_use() {
    let fx = Fixture::new(Fault::None);
    let out = run(fx.cmd().args(["models", "pull", "tiny.en"]));
    assert!(out.status.success());
    let installed = fx.store.join("ggml-tiny.en.bin");
    assert_eq!(sha256(&installed), sha256(&tiny_en()));
    assert_eq!(fx.store_files(), vec!["ggml-tiny.en.bin".to_string()]);
    assert!(stderr(&out).contains("installed tiny.en"));

    // A second pull is a no-op that says so.
    let out = run(fx.cmd().args(["models", "pull", "tiny.en"]));
    assert!(out.status.success());
    assert!(stderr(&out).contains("already installed"));
    assert_eq!(fx.server.hits_for("ggml-tiny.en.bin").len(), 1);

    let out = run(fx.cmd().args(["models", "verify"]));
    assert!(out.status.success());
    assert!(stdout(&out).contains("tiny.en") && stdout(&out).contains(" ok "));

    let out = run(fx.cmd().args(["models", "path", "tiny.en"]));
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), installed.display().to_string());

    let out = run(fx.cmd().args(["models", "list", "--json"]));
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let models = list["models"].as_array().unwrap();
    let tiny = models.iter().find(|m| m["name"] == "tiny.en").unwrap();
    assert_eq!(tiny["installed"], true);
    assert_eq!(tiny["english_only"], true);
    let large = models.iter().find(|m| m["name"] == "large-v3").unwrap();
    assert_eq!(large["installed"], false);
    assert_eq!(large["english_only"], false);
    assert!(models.len() > 30, "the built-in registry is listed too");

    // Use by name: the VAD model is fetched on first use the same way.
    let out = run(fx
        .cmd()
        .args(["transcribe", "--model", "tiny.en", "-q"])
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    assert!(stdout(&out)
        .to_lowercase()
        .contains("ask not what your country can do for you"));
    assert_eq!(fx.server.hits_for("ggml-silero-v6.2.0.bin").len(), 1);
    assert!(fx.store.join("ggml-silero-v6.2.0.bin").is_file());

    // Offline now works from the store, without a request.
    let before = fx.server.hits().len();
    let out = run(fx
        .cmd()
        .args(["transcribe", "--model", "tiny.en", "--offline", "-q"])
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    assert_eq!(fx.server.hits().len(), before);

    // A corrupted installed file is caught by verify, and rm removes it.
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(&installed, bytes).unwrap();
    let out = run(fx.cmd().args(["models", "verify", "tiny.en"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("mismatch"));
    let out = run(fx.cmd().args(["models", "rm", "tiny.en"]));
    assert!(out.status.success());
    assert!(!installed.exists());
    let out = run(fx.cmd().args(["models", "path", "tiny.en"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not installed"));
}

#[test]
fn default_model_is_downloaded_on_first_use() {
    let fx = Fixture::new(Fault::None);
    let out = run(fx.cmd().args(["transcribe", "-q"]).arg(audio("jfk.flac")));
    assert!(out.status.success());
    assert!(stdout(&out)
        .to_lowercase()
        .contains("ask not what your country"));
    assert_eq!(fx.server.hits_for("ggml-base.en.bin").len(), 1);
    assert!(fx.store.join("ggml-base.en.bin").is_file());
    assert!(fx.store.join("ggml-silero-v6.2.0.bin").is_file());
}

#[test]
fn dropped_connection_resumes_with_a_range_request() {
    let cut = 20_000_000;
    let fx = Fixture::new(Fault::DropOnceAfter(cut));
    let out = run(fx.cmd().args(["models", "pull", "tiny.en"]));
    assert!(out.status.success());
    assert_eq!(
        sha256(&fx.store.join("ggml-tiny.en.bin")),
        sha256(&tiny_en())
    );
    let hits = fx.server.hits_for("ggml-tiny.en.bin");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].range_start, None);
    assert_eq!(hits[1].range_start, Some(cut), "{hits:?}");
    assert_eq!(hits[1].status, 206);
    assert!(stderr(&out).contains("retrying"));
    assert_eq!(fx.store_files(), vec!["ggml-tiny.en.bin".to_string()]);
}

#[test]
fn interrupted_download_resumes_in_the_next_run() {
    let fx = Fixture::new(Fault::None);
    // What a killed run leaves behind: the first 10 MB in the .part file.
    std::fs::create_dir_all(&fx.store).unwrap();
    let head = &std::fs::read(tiny_en()).unwrap()[..10_000_000];
    std::fs::write(fx.store.join("ggml-tiny.en.bin.part"), head).unwrap();
    let out = run(fx.cmd().args(["models", "pull", "tiny.en"]));
    assert!(out.status.success());
    assert!(stderr(&out).contains("resuming"));
    let hits = fx.server.hits_for("ggml-tiny.en.bin");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].range_start, Some(10_000_000));
    assert_eq!(
        sha256(&fx.store.join("ggml-tiny.en.bin")),
        sha256(&tiny_en())
    );
}

#[test]
fn corrupted_byte_fails_the_checksum_and_leaves_nothing() {
    let fx = Fixture::new(Fault::Corrupt(12_345_678));
    let out = run(fx.cmd().args(["models", "pull", "tiny.en"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("checksum mismatch for tiny.en"), "{err}");
    assert!(err.contains("removed"));
    assert_eq!(fx.store_files(), Vec::<String>::new());
    // The same through transcribe: the model is never used.
    let out = run(fx
        .cmd()
        .args(["transcribe", "--model", "tiny.en", "-q"])
        .arg(audio("jfk.flac")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checksum mismatch"));
    assert!(stdout(&out).is_empty());
    assert_eq!(fx.store_files(), Vec::<String>::new());
}

/// A registry line whose file matches its checksum but is not a model of its kind (here the
/// VAD model listed as a Whisper model) is refused after the download, never installed.
#[test]
fn a_download_that_is_not_a_usable_model_is_not_installed() {
    let fx = Fixture::new(Fault::None);
    let vad = vad_model();
    let mut registry = std::fs::read_to_string(&fx.registry).unwrap();
    registry.push_str(&format!(
        "mixed-up\twhisper\ten\t{}\tsha256:{}\tggml-org/whisper-vad\tggml-silero-v6.2.0.bin\n",
        std::fs::metadata(&vad).unwrap().len(),
        sha256(&vad)
    ));
    std::fs::write(&fx.registry, registry).unwrap();
    let out = run(fx.cmd().args(["models", "pull", "mixed-up"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("download of mixed-up"), "{err}");
    assert!(err.contains("Silero VAD model"), "{err}");
    assert!(err.contains("removed"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    assert_eq!(fx.store_files(), Vec::<String>::new());
}

#[test]
fn not_found_and_connection_refused_are_clear() {
    let fx = Fixture::new(Fault::None);
    let out = run(fx.cmd().args(["models", "pull", "small.en"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not found") && err.contains("HTTP 404"),
        "{err}"
    );
    assert!(err.contains("ggml-small.en.bin"));
    assert_eq!(fx.store_files(), Vec::<String>::new());

    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(fx
        .cmd()
        .env("VERBATIM_MODEL_URL", format!("http://127.0.0.1:{port}"))
        .args(["models", "pull", "tiny.en"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refused"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1);
    assert_eq!(fx.store_files(), Vec::<String>::new());

    // Unknown names suggest close ones; usage errors exit 2.
    let out = run(fx.cmd().args(["models", "pull", "tiny.enn"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean"));
}

#[test]
fn offline_never_touches_the_network_and_says_what_to_do() {
    let fx = Fixture::new(Fault::None);
    for how in ["flag", "env"] {
        let mut cmd = fx.cmd();
        cmd.args(["transcribe", "--model", "tiny.en"]);
        if how == "flag" {
            cmd.arg("--offline");
        } else {
            cmd.env("VERBATIM_OFFLINE", "1");
        }
        let out = run(cmd.arg(audio("jfk.flac")));
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("offline"), "{err}");
        assert!(err.contains("verbatim models pull tiny.en"), "{err}");
        assert!(err.contains("ggml-tiny.en.bin"), "{err}");
    }
    assert!(fx.server.hits().is_empty());
}

#[test]
fn concurrent_pulls_download_once() {
    // 885 kB at 64 kB per 100 ms: long enough for the second process to find the lock taken.
    let fx = Fixture::new(Fault::Throttle(64 * 1024));
    let spawn = || {
        fx.cmd()
            .args(["models", "pull", "silero-v6.2.0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    std::thread::sleep(Duration::from_millis(300));
    let second = spawn();
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    assert!(a.status.success() && b.status.success());
    let errs = format!("{}{}", stderr(&a), stderr(&b));
    eprintln!("{errs}");
    assert!(errs.contains("waiting for it"), "{errs}");
    assert_eq!(fx.server.hits_for("ggml-silero-v6.2.0.bin").len(), 1);
    assert_eq!(
        sha256(&fx.store.join("ggml-silero-v6.2.0.bin")),
        sha256(&vad_model())
    );
}

#[test]
fn bad_registry_file_names_its_line() {
    let fx = Fixture::new(Fault::None);
    std::fs::write(&fx.registry, "ok\twhisper\ten\t1\tsha1:zz\tr\tf.bin\n").unwrap();
    let out = run(fx.cmd().args(["models", "list"]));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("line 1") && err.contains("checksum"), "{err}");
}

/// The CTranslate2 tiny.en directory (see tests/import.rs): `$VERBATIM_CT2_TINY_EN`, else the
/// one pip put in `bench/.venv`; missing data fails.
fn ct2_tiny_en() -> PathBuf {
    let found = find_ct2_tiny_en();
    match found {
        Some(p) => p,
        _ => panic!(
            "MISSING TEST DATA: the CTranslate2 tiny.en directory (set VERBATIM_CT2_TINY_EN; .ci/run downloads it)"
        ),
    }
}

#[test]
fn import_then_use_by_name() {
    let fx = Fixture::new(Fault::None);
    let ct2 = ct2_tiny_en();
    let out = run(fx
        .cmd()
        .args(["models", "import"])
        .arg(&ct2)
        .args(["--name", "tiny-fw"]));
    assert!(out.status.success());
    let file = fx.store.join("ggml-tiny-fw.bin");
    assert_eq!(stdout(&out).trim(), file.display().to_string());
    assert!(stderr(&out).contains("English-only"));
    // Made from the same CTranslate2 weights as the shared file, and identical to it.
    assert_eq!(sha256(&file), sha256(&tiny_en()));

    let out = run(fx.cmd().args(["models", "verify", "tiny-fw"]));
    assert!(out.status.success());
    assert!(stdout(&out).contains(" ok "));
    let out = run(fx.cmd().args(["models", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(list["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "tiny-fw" && m["kind"] == "imported" && m["installed"] == true));

    let out = run(fx
        .cmd()
        .args(["transcribe", "--model", "tiny-fw", "--offline", "-q"])
        .arg("--vad-model")
        .arg(vad_model())
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    assert!(stdout(&out)
        .to_lowercase()
        .contains("ask what you can do for your country"));

    // Refusals: an existing name without --force, a registry name, a directory that is not a model.
    let out = run(fx
        .cmd()
        .args(["models", "import"])
        .arg(&ct2)
        .args(["--name", "tiny-fw"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"));
    let out = run(fx
        .cmd()
        .args(["models", "import"])
        .arg(&ct2)
        .args(["--name", "tiny.en"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("registry model name"));
    let empty = tempfile::tempdir().unwrap();
    let out = run(fx
        .cmd()
        .args(["models", "import"])
        .arg(empty.path())
        .args(["--name", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("model.bin missing"));
    assert!(!fx.store.join("ggml-x.bin").exists());
}
