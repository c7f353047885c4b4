//! `verbatim serve` under hostile clients (issue 23, rows S2-S7): the real binary on a free
//! port of 127.0.0.1 with tiny.en, attacked over raw sockets with short timeouts so each test
//! runs in seconds. Slow and idle uploads, a flood of connections that send only a request
//! line, oversize headers, malformed multipart, per-address caps, a 50,000-character prompt,
//! forged WAV sample rates; meanwhile `/health` and real transcriptions must keep answering.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{
    multipart, multipart_headers, parse_reply, read_reply, request, Reply, BOUNDARY,
};
use common::{audio, prerequisite_missing, reference, tiny_en, vad_model, wer};

const KEY: &str = "hostile-test-key";

/// A running `verbatim serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = common::verbatim()
            .arg("serve")
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
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start verbatim serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep the test log short under a flood of refused connections.
                if !line.contains(" 408 ") && !line.contains(" 429 ") {
                    eprintln!("[server] {line}");
                }
                if let Some(rest) = line.strip_prefix("verbatim: listening on http://") {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let addr: SocketAddr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server never printed `listening on`")
            .parse()
            .unwrap();
        let server = Server { child, addr };
        let t0 = Instant::now();
        while !matches!(server.try_health(), Ok(r) if r.status == 200) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "/health never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn try_health(&self) -> std::io::Result<Reply> {
        request(
            self.addr,
            "GET",
            "/health",
            "",
            b"",
            Duration::from_secs(10),
        )
    }

    /// `/health`, which must answer 200 within `within`; returns it and how long it took.
    fn health_within(&self, within: Duration) -> (serde_json::Value, Duration) {
        let t0 = Instant::now();
        let r = self.try_health().expect("/health did not answer");
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "/health: {}", r.text());
        assert!(took < within, "/health took {took:?}");
        (r.json(), took)
    }

    fn wait_health(&self, secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let t0 = Instant::now();
        loop {
            let h = self.health_within(Duration::from_secs(10)).0;
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

    /// The server's peak resident memory (VmHWM), bytes.
    fn peak_rss(&self) -> u64 {
        status_kb(self.child.id(), "VmHWM:") * 1024
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/PID/status (0 when the process is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// POSTs `data` as the `file` of a transcription.
fn upload(
    addr: SocketAddr,
    name: &str,
    data: &[u8],
    fields: &[(&str, &str)],
    key: Option<&str>,
) -> Reply {
    request(
        addr,
        "POST",
        "/v1/audio/transcriptions",
        &multipart_headers(key),
        &multipart(Some((name, data)), fields),
        Duration::from_secs(300),
    )
    .expect("request failed")
}

/// A real transcription of jfk, which must come back right.
fn assert_transcribes(addr: SocketAddr, key: Option<&str>) -> Duration {
    let t0 = Instant::now();
    let data = std::fs::read(audio("jfk.flac")).unwrap();
    let r = upload(addr, "jfk.flac", &data, &[], key);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.json()["text"].as_str().unwrap().to_string();
    assert!(wer(&reference("jfk.flac"), &text) < 0.1, "{text}");
    t0.elapsed()
}

/// Sends a transcription's headers (and `prefix` of its body) and returns the open socket.
fn open_upload(addr: SocketAddr, body_len: usize, prefix: &[u8], key: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {body_len}\r\n{}\r\n",
        multipart_headers(key)
    )
    .unwrap();
    s.write_all(prefix).unwrap();
    s
}

/// Whether the peer has closed `s` (EOF or reset) within `within`, and what it sent first.
fn closed_within(s: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, got);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (false, got)
            }
            Err(_) => return (true, got),
        }
    }
}

/// The soft open-file limit of this process.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn slow_and_idle_uploads_are_cut_off_and_hold_no_queue_slot() {
    // One slot, one queue place: before the fix, two slow uploads were enough to turn
    // every other request away with 503 for as long as they dribbled.
    let timeout = 6.0;
    let mut server = Server::start(&[
        "--api-key",
        KEY,
        "--concurrency",
        "1",
        "--queue",
        "1",
        "--body-timeout",
        "6",
        "--max-uploads-per-ip",
        "20",
    ]);
    let addr = server.addr;
    let jfk = std::fs::read(audio("jfk.flac")).unwrap();
    let body = multipart(Some(("jfk.flac", &jfk)), &[]);
    // 6 send their body at 1 byte/s, 4 send nothing after the headers.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..10 {
        let s = open_upload(addr, body.len(), &body[..1], Some(KEY));
        let opened = Instant::now();
        if i < 6 {
            let mut w = s.try_clone().unwrap();
            let body = body.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for b in &body[1..] {
                    std::thread::sleep(Duration::from_secs(1));
                    if stop.load(Ordering::SeqCst) || w.write_all(&[*b]).is_err() {
                        break;
                    }
                }
            });
        }
        clients.push((s, opened, i < 6));
    }
    server.wait_health(5, "10 uploads in progress", |h| h["uploading"] == 10);
    let h = server.health_within(Duration::from_secs(2)).0;
    assert_eq!(h["queued"], 0, "uploads in progress are not queued: {h}");

    // Meanwhile a real transcription is served, and /health answers.
    let took = assert_transcribes(addr, Some(KEY));
    eprintln!("transcription during 10 slow uploads: {took:.2?}");
    // (Before the fix, it got 503: the uploads held the slot and the queue place.)

    // Every slow or idle upload is cut off at the body timeout with a 408.
    let mut answered_408 = 0;
    for (s, opened, slow) in clients.iter_mut() {
        let (closed, got) = closed_within(s, Duration::from_secs_f64(timeout + 10.0));
        let at = opened.elapsed().as_secs_f64();
        assert!(
            closed,
            "an upload was still open {at:.1} s after it started"
        );
        assert!(
            at >= timeout - 0.5,
            "cut off after {at:.1} s, before the timeout"
        );
        if let Ok(r) = parse_reply(&got) {
            assert_eq!(r.status, 408, "{}", r.text());
            assert_eq!(r.openai_error()["code"], "upload_timeout");
            answered_408 += 1;
        } else {
            assert!(*slow, "an idle upload was closed without its 408");
        }
    }
    stop.store(true, Ordering::SeqCst);
    eprintln!("{answered_408} of 10 uploads read their 408");
    assert!(answered_408 >= 4);
    server.wait_health(5, "nothing left", |h| {
        h["uploading"] == 0 && h["queued"] == 0 && h["active"] == 0
    });
    assert!(server.alive());
}

#[test]
fn a_flood_of_request_lines_does_not_stop_the_server() {
    // As many sockets as this process may open, up to 2,000 (the issue used 20,000: the
    // same code path, scaled to a test's file budget).
    let fd_limit = open_file_limit();
    let n = fd_limit.saturating_sub(300).min(2000);
    assert!(
        n >= 200,
        "open-file limit {fd_limit} too low for the flood test"
    );
    // Long enough to open the flood on a busy 2-core machine (1.3-5 s usually, 10.2 s once
    // in CI): the flood must still be open when /health and a transcription are tried.
    let header_timeout = 25.0;
    let max = (n + 200).to_string();
    let server = Server::start(&[
        "--header-timeout",
        "25",
        "--max-connections",
        &max,
        "--max-connections-per-ip",
        &max,
    ]);
    let addr = server.addr;
    let t0 = Instant::now();
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).expect("connect during the flood");
        s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
        flood.push((s, Instant::now()));
    }
    let opened = t0.elapsed();
    eprintln!("{n} connections sending only a request line, opened in {opened:.2?}");
    assert!(
        opened.as_secs_f64() < header_timeout - 2.0,
        "opening the flood took {opened:?}: too slow to test the header timeout"
    );

    // /health and a real transcription answer while every flood connection is open.
    let (h, took) = server.health_within(Duration::from_secs(2));
    eprintln!(
        "/health during the flood: {took:.2?}, {} connections",
        h["connections"]
    );
    assert!(
        h["connections"].as_u64().unwrap() >= n as u64,
        "the flood was not held open: {h}"
    );
    let took = assert_transcribes(addr, None);
    eprintln!("transcription during the flood: {took:.2?}");
    let (_, took) = server.health_within(Duration::from_secs(2));
    eprintln!("/health during the flood, after the transcription: {took:.2?}");

    // Each flood connection is closed at the header timeout.
    let mut closed = 0;
    for (s, at) in flood.iter_mut() {
        let left = (*at + Duration::from_secs_f64(header_timeout + 10.0))
            .saturating_duration_since(Instant::now());
        let (gone, _) = closed_within(s, left.max(Duration::from_millis(1)));
        if gone {
            let after = at.elapsed().as_secs_f64();
            assert!(after >= header_timeout - 0.5, "closed after {after:.1} s");
            closed += 1;
        }
    }
    assert_eq!(
        closed, n,
        "flood connections left open past the header timeout"
    );
    server.wait_health(5, "the flood to be gone", |h| h["connections"] == 1);
}

#[test]
fn connection_caps_answer_429_and_503_in_openai_shape() {
    // Per address: the 6th connection from 127.0.0.1 is turned away with 429 while five are
    // open. The header timeout is long so that a slow machine cannot close the idle ones
    // before the 6th arrives (closing at the header timeout has its own tests above).
    let server = Server::start(&["--max-connections-per-ip", "5", "--header-timeout", "30"]);
    let addr = server.addr;
    let idle = hold_open(addr, 5);
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_reply(&mut extra).expect("no answer to the refused connection");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.openai_error()["code"], "too_many_connections");
    assert!(
        r.text().contains("--max-connections-per-ip 5"),
        "{}",
        r.text()
    );
    // Once the idle ones are closed, this address is served again.
    drop(idle);
    let t0 = Instant::now();
    while !matches!(server.try_health(), Ok(r) if r.status == 200) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "this address was not served again after its connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // In all: past --max-connections, 503.
    let server = Server::start(&["--max-connections", "4", "--header-timeout", "30"]);
    let idle = hold_open(server.addr, 4);
    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_reply(&mut extra).expect("no answer to the refused connection");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.openai_error()["code"], "too_many_connections");
    drop(idle);
    let t0 = Instant::now();
    while !matches!(server.try_health(), Ok(r) if r.status == 200) {
        assert!(t0.elapsed() < Duration::from_secs(10), "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens `n` idle connections that the server has accepted and holds. A connection it
/// refused (the /health poll of `Server::start` may still be counted for a moment after its
/// client closed it) has an answer or an end waiting, and is replaced.
fn hold_open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        while held.len() < n {
            held.push(TcpStream::connect(addr).unwrap());
        }
        std::thread::sleep(Duration::from_millis(500));
        held.retain(|s| {
            s.set_nonblocking(true).unwrap();
            let open = matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            open
        });
        if held.len() == n {
            return held;
        }
    }
    panic!("the server did not hold {n} idle connections open");
}

#[test]
fn oversize_headers_get_431_and_others_are_served() {
    let server = Server::start(&[]);
    let addr = server.addr;
    // One huge header, then many small ones.
    let huge = format!("X-Junk: {}\r\n", "a".repeat(100_000));
    let many: String = (0..400).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, headers) in [("a 100 kB header", huge), ("400 headers", many)] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        let r = read_reply(&mut s).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(r.status, 431, "{what}: {}", r.text());
        server.health_within(Duration::from_secs(2));
    }
    assert_transcribes(addr, None);
}

#[test]
fn malformed_multipart_gets_400_and_others_are_served() {
    let server = Server::start(&["--body-timeout", "10"]);
    let addr = server.addr;
    let jfk = std::fs::read(audio("jfk.flac")).unwrap();
    let good = multipart(Some(("jfk.flac", &jfk)), &[]);
    // The answer may come before the body is sent: write what the server takes, then read.
    let post = |content_type: &str, body: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = write!(
            s,
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(body);
        read_reply(&mut s).unwrap_or_else(|e| panic!("{content_type}: no answer: {e}"))
    };
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let truncated = &good[..good.len() / 2];
    let no_end = &good[..good.len() - format!("--{BOUNDARY}--\r\n").len()];
    let garbage_part =
        format!("--{BOUNDARY}\r\nthis is not a part header\r\n\r\nxx\r\n--{BOUNDARY}--\r\n");
    let no_disposition =
        format!("--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nxx\r\n--{BOUNDARY}--\r\n");
    let long_part_header = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\nxx\r\n--{BOUNDARY}--\r\n",
        "n".repeat(200_000)
    );
    let huge_field = multipart(None, &[("language", &"x".repeat(200_000))]);
    let cases: Vec<(&str, Reply)> = vec![
        ("no boundary", post("multipart/form-data", &good)),
        (
            "another boundary",
            post("multipart/form-data; boundary=other", &good),
        ),
        ("truncated body", post(&ct, truncated)),
        ("no closing boundary", post(&ct, no_end)),
        ("garbage part header", post(&ct, garbage_part.as_bytes())),
        (
            "part without disposition",
            post(&ct, no_disposition.as_bytes()),
        ),
        ("200 kB part header", post(&ct, long_part_header.as_bytes())),
        ("200 kB text field", post(&ct, &huge_field)),
    ];
    for (what, r) in cases {
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        r.openai_error();
        server.health_within(Duration::from_secs(2));
    }
    let h = server.health_within(Duration::from_secs(2)).0;
    assert_eq!(h["uploading"], 0, "{h}");
    assert_transcribes(addr, None);
}

#[test]
fn uploads_in_progress_are_capped_per_address() {
    let server = Server::start(&["--max-uploads-per-ip", "2", "--body-timeout", "5"]);
    let addr = server.addr;
    let jfk = std::fs::read(audio("jfk.flac")).unwrap();
    let body_len = multipart(Some(("jfk.flac", &jfk)), &[]).len();
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| open_upload(addr, body_len, b"", None))
        .collect();
    server.wait_health(5, "2 uploads in progress", |h| h["uploading"] == 2);
    // A third upload from the same address: 429, at once.
    let t0 = Instant::now();
    let r = upload(addr, "jfk.flac", &jfk, &[], None);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.openai_error()["code"], "too_many_uploads");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    // The idle ones are cut off at the body timeout; then uploads are taken again.
    for s in idle.iter_mut() {
        let (closed, got) = closed_within(s, Duration::from_secs(15));
        assert!(closed);
        assert_eq!(parse_reply(&got).unwrap().status, 408);
    }
    assert_transcribes(addr, None);
}

#[test]
fn health_does_not_show_file_names_while_a_job_runs() {
    let server = Server::start(&["--api-key", KEY]);
    let addr = server.addr;
    let name = "secret-board-minutes-7d41.flac";
    let data = std::fs::read(audio("long_ls_2609_3080_concat.flac")).unwrap();
    let body = multipart(Some((name, &data)), &[]);
    let s = open_upload(addr, body.len(), &body, Some(KEY));
    server.wait_health(60, "the job to run", |h| h["active"] == 1);
    for _ in 0..5 {
        let r = server.try_health().unwrap();
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            r.json()["jobs"].as_array().is_some_and(|j| j.len() == 1),
            "{text}"
        );
        assert!(
            !text.contains("secret"),
            "/health shows the file name: {text}"
        );
        assert!(
            !text.contains("7d41"),
            "/health shows the file name: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The client goes: the job is cancelled.
    let _ = s.shutdown(std::net::Shutdown::Both);
    drop(s);
    server.wait_health(60, "the job to stop", |h| h["active"] == 0);
}

#[test]
fn a_50000_character_prompt_gets_400_and_the_server_lives() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let jfk = std::fs::read(audio("jfk.flac")).unwrap();
    let prompt = "x".repeat(50_000);
    let t0 = Instant::now();
    let r = upload(addr, "jfk.flac", &jfk, &[("prompt", &prompt)], None);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.openai_error();
    assert_eq!(e["param"], "prompt", "{e}");
    assert_eq!(e["code"], "prompt_too_long", "{e}");
    assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // One byte over the bound is refused too; the server is alive and transcribes.
    let r = upload(
        addr,
        "jfk.flac",
        &jfk,
        &[("prompt", &"y".repeat(4097))],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(server.alive());
    server.health_within(Duration::from_secs(2));
    assert_transcribes(addr, None);
    assert!(server.alive());
}

/// jfk as a 16 kHz mono 16-bit WAV, made with sox.
fn jfk_wav(dir: &Path) -> Option<Vec<u8>> {
    let out = dir.join("jfk16.wav");
    let ok = Command::new("sox")
        .arg(audio("jfk.flac"))
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&out)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        prerequisite_missing("sox (apt-get install sox)");
        return None;
    }
    Some(std::fs::read(out).unwrap())
}

#[test]
fn forged_wav_sample_rates_get_4xx_quickly_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let Some(wav) = jfk_wav(dir.path()) else {
        return;
    };
    assert_eq!(&wav[12..16], b"fmt ");
    let mut server = Server::start(&[]);
    let addr = server.addr;
    // A watchdog: a server past 2 GB is killed at once rather than left to take the
    // machine (the issue saw 23 GB); the test then fails on memory.
    let pid = server.child.id();
    let worst_kb = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let worst_kb = worst_kb.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let rss = status_kb(pid, "VmRSS:");
                worst_kb.fetch_max(rss, Ordering::SeqCst);
                if rss > 2_000_000 {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let limit: u64 = 1_500_000_000;
    let mut failures = Vec::new();
    for rate in [1u32, 8, 100_000_007, 4_294_967_295] {
        let mut forged = wav.clone();
        forged[24..28].copy_from_slice(&rate.to_le_bytes());
        let t0 = Instant::now();
        let r = request(
            addr,
            "POST",
            "/v1/audio/transcriptions",
            &multipart_headers(None),
            &multipart(Some((&format!("sr{rate}.wav"), &forged)), &[]),
            Duration::from_secs(60),
        );
        let took = t0.elapsed();
        let peak = server.peak_rss();
        let alive = server.alive();
        let seen = worst_kb.load(Ordering::SeqCst) * 1024;
        eprintln!(
            "sample rate {rate}: {} in {took:.2?}; server peak {:.0} MB, alive {alive}",
            match &r {
                Ok(r) => format!("{} {}", r.status, r.text().trim()),
                Err(e) => format!("no answer ({e})"),
            },
            peak.max(seen) as f64 / 1e6
        );
        let status = r.as_ref().map(|r| r.status).unwrap_or(0);
        if !(400..500).contains(&status) {
            failures.push(format!("rate {rate}: status {status}, not 4xx"));
        }
        if took > Duration::from_secs(30) {
            failures.push(format!("rate {rate}: took {took:?}"));
        }
        if peak.max(seen) > limit {
            failures.push(format!(
                "rate {rate}: server peak {:.0} MB",
                peak.max(seen) as f64 / 1e6
            ));
        }
        if !alive {
            failures.push(format!("rate {rate}: the server died"));
            break;
        }
        if server.try_health().map(|r| r.status).ok() != Some(200) {
            failures.push(format!("rate {rate}: /health did not answer afterwards"));
        }
    }
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    assert!(failures.is_empty(), "forged WAV uploads: {failures:#?}");
    assert_transcribes(addr, None);
}

#[test]
fn slow_headers_and_idle_keep_alive_are_closed_at_the_header_timeout() {
    let server = Server::start(&["--header-timeout", "3"]);
    let addr = server.addr;
    // Headers sent a byte every 200 ms: the timeout is for the whole head, not per byte.
    let mut slow = TcpStream::connect(addr).unwrap();
    let opened = Instant::now();
    let mut writer = slow.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter())
        {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // A keep-alive connection that made one request, then says nothing.
    let mut idle = TcpStream::connect(addr).unwrap();
    write!(idle, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let answered = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !String::from_utf8_lossy(&got).contains("\"status\":\"ok\"") {
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let (closed, _) = closed_within(&mut slow, Duration::from_secs(10));
    let at = opened.elapsed().as_secs_f64();
    assert!(
        closed && (2.5..8.0).contains(&at),
        "slow headers: closed {closed} after {at:.1} s"
    );
    let (closed, _) = closed_within(&mut idle, Duration::from_secs(10));
    let at = answered.elapsed().as_secs_f64();
    assert!(
        closed && at < 8.0,
        "idle keep-alive: closed {closed} after {at:.1} s"
    );
    dribble.join().unwrap();
    server.health_within(Duration::from_secs(2));
}
