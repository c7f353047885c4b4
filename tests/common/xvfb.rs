//! A real X server for the typing tests: a private Xvfb, and `xev` as the focused window that
//! records every key it receives, so a test reads back exactly what a typing tool typed.
//! Needs `xvfb`, `x11-utils` (xev), `x11-xkb-utils` (setxkbmap), `xdotool` and `xclip`.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Xvfb (killed on drop).
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Starts Xvfb on a free display (it picks one and says which on `-displayfd`). `None` when
    /// Xvfb is not installed.
    pub fn start() -> Option<Xvfb> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "640x480x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let number = line.trim();
        assert!(!number.is_empty(), "Xvfb did not report its display");
        Some(Xvfb {
            child,
            display: format!(":{number}"),
        })
    }

    /// `:N`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A command on this display only: no Wayland, no other X server.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd
    }

    /// Points `cmd` at this display.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DISPLAY", &self.display)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("XDG_SESSION_TYPE")
    }

    /// Sets the keyboard layout (`us`, `de`, ...).
    pub fn layout(&self, layout: &str) {
        let status = self
            .command("setxkbmap")
            .arg(layout)
            .status()
            .expect("setxkbmap (x11-xkb-utils)");
        assert!(status.success(), "setxkbmap {layout}");
    }

    /// Opens an `xev` window, focuses it, and returns it: keys typed from now on land there.
    pub fn recorder(&self) -> KeyRecorder {
        let name = format!("verbatim-keys-{}", std::process::id());
        // A file, not a pipe: nobody reads a pipe until the end, and a full one would stall xev.
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = self
            .command("stdbuf")
            // Unbuffered: xev's stdio would keep the last events in its buffer when killed.
            .args(["-o0", "xev", "-name", &name, "-event", "keyboard"])
            .stdout(log.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("xev (x11-utils)");
        let start = Instant::now();
        loop {
            let found = self
                .command("xdotool")
                .args(["search", "--name", &name, "windowfocus", "--sync"])
                .output()
                .expect("xdotool");
            if found.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the xev window did not appear"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        KeyRecorder { child, log }
    }

    /// The X clipboard's text.
    pub fn clipboard(&self) -> String {
        let out = self
            .command("xclip")
            .args(["-selection", "clipboard", "-out"])
            .output()
            .expect("xclip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `xev` window recording key presses.
pub struct KeyRecorder {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl KeyRecorder {
    /// Ends the recording and returns the text of every key press, as the window's input method
    /// decoded it (Return as `\n`).
    pub fn text(mut self) -> String {
        // Give the last events a moment to arrive.
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(self.log.path()).unwrap();
        let mut text = String::new();
        for event in log.split("\n\n") {
            if !event.trim_start().starts_with("KeyPress") {
                continue;
            }
            if event.contains("(keysym 0xff0d, Return)") {
                text.push('\n');
                continue;
            }
            // `XmbLookupString gives 2 bytes: (c3 bc) "ü"`
            if let Some(line) = event.lines().find(|l| l.contains("XmbLookupString gives")) {
                if let (Some(a), Some(b)) = (line.find('"'), line.rfind('"')) {
                    if b > a {
                        text.push_str(&line[a + 1..b]);
                    }
                }
            }
        }
        text
    }
}
