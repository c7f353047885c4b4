//! A real virtual microphone for tests: a private PulseAudio daemon with a null sink `vsink`,
//! whose monitor `vsink.monitor` is the default source. ALSA's `default` device routes to
//! PulseAudio whenever a daemon answers (libasound2-plugins' pulse hook), so `verbatim` and cpal
//! capture whatever [`Pulse::play`] plays into the sink.
//!
//! Every [`Pulse`] is its own daemon in its own `XDG_RUNTIME_DIR`, so tests running in parallel
//! never share audio; the environment reaches only the commands given to [`Pulse::env`], never
//! this process. Needs `pulseaudio`, `pulseaudio-utils` (pactl, paplay) and `libasound2-plugins`.
#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The null sink that stands in for the room; its monitor is the microphone.
pub const SINK: &str = "vsink";
/// The default source: what ALSA's `default` capture device records.
pub const SOURCE: &str = "vsink.monitor";

/// How long the daemon gets to answer `pactl info`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private PulseAudio daemon (killed on drop).
pub struct Pulse {
    runtime_dir: tempfile::TempDir,
    pid: Option<u32>,
    /// The low-latency recorder that keeps the null sink awake (see [`Pulse::start`]).
    keeper: Mutex<Option<Child>>,
}

impl Pulse {
    /// Starts a daemon (as root too: it warns and runs) with the null sink, waits until
    /// `pactl info` answers, and makes the sink's monitor the default source.
    ///
    /// Panics, with the daemon's log, when it cannot start: a test that needs a microphone
    /// proves nothing without one, here or under CI.
    pub fn start() -> Pulse {
        let mut pulse = Pulse {
            runtime_dir: runtime_dir(),
            pid: None,
            keeper: Mutex::new(None),
        };
        pulse.launch();
        pulse
    }

    /// Starts the daemon again in the same runtime directory after [`Pulse::kill`], as when a
    /// USB microphone is plugged back in or the sound server restarts: clients pointed at it
    /// find the same socket and the same default source.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let dir = self.runtime_dir.path();
        let log = dir.join("daemon.log");
        let launcher_log = std::fs::File::create(dir.join("launcher.log")).unwrap();
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "--daemonize=yes",
            // No default.pa: only the modules below, so the sink and source are known.
            "-n",
            "--exit-idle-time=-1",
            "--use-pid-file=yes",
            "--log-level=info",
        ])
        .arg(format!("--log-target=file:{}", log.display()))
        // auth-anonymous: clients need no cookie, so daemons never race to create the one in
        // $HOME and a client's $HOME does not matter.
        .arg("--load=module-native-protocol-unix auth-anonymous=1")
        .arg(format!(
            "--load=module-null-sink sink_name={SINK} sink_properties=device.description=verbatim-test-sink"
        ))
        .env("XDG_RUNTIME_DIR", dir)
        // The daemon's state (cookie, device databases) stays in the throwaway directory.
        .env("HOME", dir)
        .env_remove("PULSE_SERVER")
        .env_remove("PULSE_RUNTIME_PATH")
        .env_remove("PULSE_STATE_PATH")
        .stdin(Stdio::null())
        // Files, not pipes: the daemonised child inherits them and would keep a pipe open.
        .stdout(launcher_log.try_clone().unwrap())
        .stderr(launcher_log);
        let status = match cmd.status() {
            Ok(status) => status,
            Err(e) => panic!(
                "cannot run pulseaudio ({e}); the audio tests need it: \
                 sudo apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
            ),
        };
        let pulse = self;
        if !status.success() {
            pulse.fail(&format!("pulseaudio -D exited with {status}"));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = pulse.pactl(&["info"]);
            if out.status.success() {
                break;
            }
            if Instant::now() >= deadline {
                pulse.fail(&format!(
                    "pactl info did not answer within {} s: {}",
                    START_TIMEOUT.as_secs(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pulse.pid = std::fs::read_to_string(pulse.socket_dir().join("pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // With only the null sink loaded its monitor is already the default; say so anyway, so
        // a PulseAudio that picks defaults differently still records the sink.
        let out = pulse.pactl(&["set-default-source", SOURCE]);
        if !out.status.success() {
            pulse.fail(&format!(
                "pactl set-default-source {SOURCE}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        pulse.keep_awake();
    }

    /// An idle null sink renders in blocks of its full 2 s latency, so a client that starts
    /// recording waits up to 2 s for its first sample and misses what was played meanwhile.
    /// A recorder that asks for 10 ms and stays connected keeps the sink rendering in 10 ms
    /// blocks; once its first bytes arrive (within one 2 s block), every later client gets
    /// audio at once.
    fn keep_awake(&self) {
        let mut cmd = Command::new("parec");
        cmd.args(["--raw", "--latency-msec=10"])
            .arg(format!("--device={SOURCE}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run parec ({e}): sudo apt-get install pulseaudio-utils")
        });
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut first = Some(tx);
            // Drain until parec exits (killed with the daemon), so it never blocks on a full pipe.
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
        });
        *self.keeper.lock().unwrap() = Some(child);
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            self.fail("the null sink's monitor delivered no audio to parec");
        }
    }

    /// The daemon's `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> &Path {
        self.runtime_dir.path()
    }

    /// `$XDG_RUNTIME_DIR/pulse`: the socket `native` and the `pid` file.
    fn socket_dir(&self) -> PathBuf {
        self.runtime_dir().join("pulse")
    }

    /// `unix:$XDG_RUNTIME_DIR/pulse/native`.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket_dir().join("native").display())
    }

    /// Points `cmd` at this daemon: its runtime directory and server, and no inherited PulseAudio
    /// or ALSA overrides that would send it elsewhere.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PULSE_SERVER", self.server())
            .env_remove("PULSE_SINK")
            .env_remove("PULSE_SOURCE")
            .env_remove("PULSE_RUNTIME_PATH")
            .env_remove("ALSA_CONFIG_PATH")
            .env_remove("ALSA_CARD")
            .env_remove("ALSA_PCM_CARD")
    }

    /// Runs `pactl ARGS` against this daemon.
    pub fn pactl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("pactl");
        cmd.args(args).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().unwrap_or_else(|e| {
            panic!("cannot run pactl ({e}): sudo apt-get install pulseaudio-utils")
        })
    }

    /// Plays `file` (wav, flac, ... through libsndfile) into the sink, i.e. into the default
    /// microphone. The caller waits for or kills the child.
    pub fn play(&self, file: &Path) -> Child {
        let mut cmd = Command::new("paplay");
        cmd.arg(format!("--device={SINK}"))
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.env(&mut cmd);
        cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run paplay ({e}): sudo apt-get install pulseaudio-utils")
        })
    }

    /// Kills the daemon at once (SIGKILL), as when a USB microphone is pulled or the sound
    /// server crashes: open streams break and the device disappears. Waits until it is gone.
    pub fn kill(&self) {
        if let Some(mut keeper) = self.keeper.lock().unwrap().take() {
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
        let Some(pid) = self.pid else { return };
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the daemon and panics with what it logged.
    fn fail(&self, what: &str) -> ! {
        let read =
            |name: &str| std::fs::read_to_string(self.runtime_dir().join(name)).unwrap_or_default();
        let launcher = read("launcher.log");
        let daemon = read("daemon.log");
        self.kill();
        self.kill_from_pid_file();
        panic!(
            "PulseAudio test daemon failed to start{}: {what}\n--- pulseaudio stderr ---\n{}\n--- daemon log ---\n{}",
            if super::under_ci() {
                " (CI)"
            } else {
                ""
            },
            launcher.trim(),
            daemon.trim()
        );
    }

    /// For a daemon that started but never answered: its pid file is all there is.
    fn kill_from_pid_file(&self) {
        if let Some(pid) = std::fs::read_to_string(self.socket_dir().join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh runtime directory (mode 0700, as PulseAudio requires). Short, because the socket's
/// path must fit in 108 bytes.
fn runtime_dir() -> tempfile::TempDir {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix("vpulse-")
        .tempdir_in(base)
        .expect("cannot create a runtime directory for PulseAudio")
}

/// The process exists and is not a zombie (the daemon is nobody's child here once it has
/// daemonised, so nobody may reap it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// jfk as a 16-bit WAV in `dir`: paplay (libsndfile) garbles the shared file's 24-bit FLAC into
/// noise, measured here, so the virtual microphone gets a format it plays right.
pub fn playable_jfk(dir: &Path) -> PathBuf {
    let wav = dir.join("jfk16.wav");
    let status = Command::new("sox")
        .arg(super::audio("jfk.flac"))
        .args(["-b", "16"])
        .arg(&wav)
        .status()
        .expect("sox is needed for the microphone tests (apt-get install sox)");
    assert!(status.success());
    wav
}
