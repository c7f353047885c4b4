//! The resident dictation daemon (`verbatim listen --daemon`) and its clients, on the real
//! virtual microphone: toggle on, speech, toggle off, the text delivered; a stop in the middle
//! of speech; a stale socket; a second daemon and clients at once; the microphone going away
//! and coming back; SIGTERM.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pulse::{playable_jfk, Pulse};
use common::*;
use serde_json::Value;

/// A daemon on a virtual microphone, with its own runtime and data directories.
struct Daemon {
    child: Option<Child>,
    data: tempfile::TempDir,
    pulse: Pulse,
}

impl Daemon {
    /// Starts `verbatim listen --daemon ARGS` and waits until it answers `status`.
    fn start(args: &[&str]) -> Daemon {
        Daemon::start_with(args, &[])
    }

    /// The same with environment variables set for the daemon.
    fn start_with(args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let pulse = Pulse::start();
        let data = tempfile::tempdir().unwrap();
        let mut d = Daemon {
            child: None,
            data,
            pulse,
        };
        let mut cmd = d.spawn(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        d.child = Some(cmd.spawn().unwrap());
        d.wait_ready();
        d
    }

    /// The daemon's command line, not started.
    fn spawn(&self, args: &[&str]) -> Command {
        let mut cmd = self.verbatim();
        cmd.args(["listen", "--daemon", "--model"])
            .arg(tiny_en())
            .arg("--vad-model")
            .arg(vad_model())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `verbatim` with this daemon's environment.
    fn verbatim(&self) -> Command {
        let mut cmd = verbatim();
        self.pulse.env(&mut cmd);
        cmd.env("XDG_DATA_HOME", self.data.path());
        cmd
    }

    /// `verbatim listen ARGS`, a client.
    fn client(&self, args: &[&str]) -> Output {
        let mut cmd = self.verbatim();
        cmd.arg("listen").args(args);
        run(&mut cmd)
    }

    fn socket(&self) -> PathBuf {
        socket_in(self.pulse.runtime_dir())
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let out = self.client(&["status"]);
            if out.status.success() {
                assert!(stdout(&out).starts_with("idle"), "{}", stdout(&out));
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!("the daemon exited ({status}): {}", stderr(&out));
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the daemon did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client command and how long the daemon took to answer it.
    fn timed(&self, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let out = self.client(args);
        (out, start.elapsed())
    }

    /// SIGTERM, then the daemon's exit and output.
    fn terminate(&mut self) -> Output {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the daemon did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// `verbatim listen status --json`.
    fn status_json(&self) -> Value {
        serde_json::from_str(stdout(&self.client(&["status", "--json"])).trim()).unwrap()
    }

    fn history(&self) -> Vec<Value> {
        let out = self.client(&["history", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn socket_in(runtime: &Path) -> PathBuf {
    runtime.join("verbatim").join("dictation.sock")
}

fn words_wrong(text: &str) -> usize {
    word_errors(
        &normalize_words(&reference("jfk.flac")),
        &normalize_words(text),
    )
}

#[test]
fn toggle_on_speech_toggle_off_delivers_the_text_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    let mut d = Daemon::start(&["--output", notes.to_str().unwrap()]);
    let (on, _) = d.timed(&["toggle"]);
    assert!(on.status.success(), "{}", stderr(&on));
    assert_eq!(stdout(&on), "");
    assert_eq!(d.status_json()["state"], "listening");
    // The microphone opens when asked; give the stream a moment before speaking.
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = d.pulse.play(&playable_jfk(dir.path()));
    player.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (off, took) = d.timed(&["toggle"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let text = stdout(&off).trim().to_string();
    eprintln!("stop answered in {took:?}: {text}");
    // As `listen`'s microphone test: tiny.en reads live "my" as "am I" in some alignments.
    assert!(words_wrong(&text) <= 2, "{text:?}");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    let kept = std::fs::read_to_string(&notes).unwrap();
    assert_eq!(normalize_words(&kept), normalize_words(&text));
    let history = d.history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["text"], text.as_str());
    assert!(history[0]["duration"].as_f64().unwrap() > 10.0);
    assert!(history[0]["time"].as_str().unwrap().ends_with('Z'));
    // SIGTERM: a clean exit that removes the socket.
    let socket = d.socket();
    assert!(socket.exists());
    let out = d.terminate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("daemon stopped"), "{}", stderr(&out));
    assert!(!socket.exists());
}

#[test]
fn stop_during_speech_delivers_what_was_said_and_closes_the_microphone() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["--json"]);
    let on = d.client(&["start"]);
    assert!(on.status.success(), "{}", stderr(&on));
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = d.pulse.play(&playable_jfk(dir.path()));
    // "And so my fellow Americans, ask not what your country..." is under way at 5 s.
    std::thread::sleep(Duration::from_secs(5));
    let (off, took) = d.timed(&["stop"]);
    let text = stdout(&off).trim().to_string();
    eprintln!("stop answered in {took:?}: {text}");
    assert!(off.status.success(), "{}", stderr(&off));
    let words = normalize_words(&text);
    let fellow = normalize_words("fellow americans");
    assert!(words.windows(2).any(|w| w == fellow.as_slice()), "{text:?}");
    assert!(
        !words.contains(&"country".to_string()) || words.len() < 16,
        "{text:?}"
    );
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    player.wait().unwrap();
    // Stopped means stopped: the rest of the speech reached nobody.
    let again = d.client(&["status"]);
    assert!(stdout(&again).starts_with("idle"), "{}", stdout(&again));
    let history = d.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["text"], text.as_str());
    // A second stop is harmless and says so.
    let off2 = d.client(&["stop"]);
    assert!(off2.status.success());
    assert!(stderr(&off2).contains("not listening"), "{}", stderr(&off2));
}

#[test]
fn whole_delivers_the_dictation_read_whole_at_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    let d = Daemon::start(&["--whole", "--output", notes.to_str().unwrap()]);
    let on = d.client(&["start"]);
    assert!(on.status.success(), "{}", stderr(&on));
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = d.pulse.play(&playable_jfk(dir.path()));
    // By 9 s "And so my fellow Americans" has ended and live dictation would have delivered
    // it; read whole, nothing is delivered before the stop.
    std::thread::sleep(Duration::from_secs(9));
    let early = std::fs::read_to_string(&notes).unwrap_or_default();
    assert_eq!(early, "", "delivered before the stop");
    player.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (off, took) = d.timed(&["stop"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let text = stdout(&off).trim().to_string();
    eprintln!("stop answered in {took:?}: {text}");
    // `transcribe` reads JFK without an error; the whole reading of the microphone as well.
    assert!(words_wrong(&text) <= 1, "{text:?}");
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    let kept = std::fs::read_to_string(&notes).unwrap();
    assert_eq!(kept.lines().count(), 1, "{kept:?}");
    assert_eq!(normalize_words(&kept), normalize_words(&text));
    let history = d.history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["text"], text.as_str());
}

#[test]
fn stale_socket_second_daemon_and_clients_at_once() {
    let pulse = Pulse::start();
    let runtime = pulse.runtime_dir().to_path_buf();
    let socket = socket_in(&runtime);
    // No daemon: a clear error, exit code 1.
    let mut cmd = verbatim();
    pulse.env(&mut cmd).args(["listen", "status"]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no dictation daemon is running"),
        "{}",
        stderr(&out)
    );
    // What a crashed daemon leaves: a socket file nobody answers.
    std::fs::create_dir(socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    drop(UnixListener::bind(&socket).unwrap());
    let mut cmd = verbatim();
    pulse.env(&mut cmd).args(["listen", "status"]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is stale"), "{}", stderr(&out));

    let data = tempfile::tempdir().unwrap();
    let mut d = Daemon {
        child: None,
        data,
        pulse,
    };
    let first = d.spawn(&[]).spawn().unwrap();
    d.child = Some(first);
    d.wait_ready();
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&socket).unwrap());
    assert_eq!(mode & 0o777, 0o600);
    // A second daemon fails at once, before loading a model.
    let started = Instant::now();
    let second = run(&mut d.spawn(&[]));
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A client that connects and says nothing holds up nobody; two clients at once are both
    // answered.
    let _silent = UnixStream::connect(&socket).unwrap();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = d.verbatim();
            cmd.args(["listen", "status"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let started = Instant::now();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("idle"));
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    let out = d.terminate();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("did not exit cleanly"),
        "{}",
        stderr(&out)
    );
    assert!(!socket.exists());
}

#[test]
fn the_daemon_survives_the_microphone_going_away_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&[]);
    let on = d.client(&["start"]);
    assert!(on.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    d.pulse.kill();
    // The session notices within its stall timeout and waits for the microphone.
    let start = Instant::now();
    loop {
        let status = d.status_json();
        if status["message"]
            .as_str()
            .is_some_and(|m| m.contains("microphone"))
        {
            assert_eq!(status["state"], "listening");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no microphone problem reported: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    d.pulse.restart();
    let start = Instant::now();
    loop {
        let status = d.status_json();
        if status.get("message").is_none() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the microphone did not come back: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Listening again: speech is heard.
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = d.pulse.play(&playable_jfk(dir.path()));
    player.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let off = d.client(&["stop"]);
    let text = stdout(&off);
    assert!(words_wrong(&text) <= 2, "{text:?}");
    let out = d.terminate();
    let err = stderr(&out);
    assert!(
        err.contains("listening again when the microphone is back"),
        "{err}"
    );
    assert!(err.contains("the microphone is back"), "{err}");
}

/// One `struct input_event` (64-bit Linux: a 16-byte timeval, type, code, value).
fn key_event(code: u16, value: i32) -> Vec<u8> {
    let mut out = vec![0u8; 16];
    out.extend_from_slice(&1u16.to_ne_bytes()); // EV_KEY
    out.extend_from_slice(&code.to_ne_bytes());
    out.extend_from_slice(&value.to_ne_bytes());
    out
}

fn wait_state(d: &Daemon, state: &str) {
    let start = Instant::now();
    loop {
        let out = d.client(&["status"]);
        if stdout(&out).starts_with(state) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never {state}: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn push_to_talk_dictates_while_the_key_is_held() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    // A FIFO stands in for /dev/input/event0 (no uinput here): the daemon reads the same bytes
    // a keyboard's event device gives.
    let inputs = dir.path().join("input");
    std::fs::create_dir(&inputs).unwrap();
    let fifo = inputs.join("event0");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Read-write: opening does not wait for the daemon, and the daemon's open does not wait.
    let mut keyboard = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let notes = dir.path().join("notes.txt");
    let d = Daemon::start_with(
        &["--hotkey", "F12", "--output", notes.to_str().unwrap()],
        &[("VERBATIM_INPUT_DIR", &inputs)],
    );
    // Another key and auto-repeat do nothing.
    keyboard.write_all(&key_event(30, 1)).unwrap();
    keyboard.write_all(&key_event(30, 0)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    wait_state(&d, "idle");
    keyboard.write_all(&key_event(88, 1)).unwrap();
    wait_state(&d, "listening");
    keyboard.write_all(&key_event(88, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = d.pulse.play(&playable_jfk(dir.path()));
    player.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    keyboard.write_all(&key_event(88, 0)).unwrap();
    wait_state(&d, "idle");
    let history = d.history();
    assert_eq!(history.len(), 1, "{history:?}");
    let text = history[0]["text"].as_str().unwrap();
    assert!(words_wrong(text) <= 2, "{text:?}");
    let kept = std::fs::read_to_string(&notes).unwrap();
    assert_eq!(normalize_words(&kept), normalize_words(text));
}

#[test]
fn hotkey_without_keyboard_access_is_a_clear_error_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start();
    let mut cmd = verbatim();
    pulse
        .env(&mut cmd)
        .env("VERBATIM_INPUT_DIR", dir.path())
        // A model that does not exist: the key check must come first.
        .args([
            "listen",
            "--daemon",
            "--hotkey",
            "F12",
            "--model",
            "/nonexistent.bin",
        ]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--hotkey cannot read the keyboard"), "{err}");
    assert!(err.contains("`input` group"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut cmd = verbatim();
    pulse
        .env(&mut cmd)
        .args(["listen", "--daemon", "--hotkey", "banana"]);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown key 'banana'"),
        "{}",
        stderr(&out)
    );
}
