//! Typing committed text into the focused window, through the tools of the desktop session:
//! `wtype`, `dotool` or `ydotool` on Wayland, `xdotool` on X11, and the clipboard (`wl-copy`,
//! `xclip`, `xsel`) when no typing tool is there or works.
//!
//! Tools run as subprocesses with the text as one argument after `--` (or on standard input for
//! `dotool`, `xclip` and `xsel`), never through a shell, so no text can become a command. Each
//! run has a timeout, and a tool that fails while keys may be held down is told to release the
//! modifiers, so a failure never leaves Shift or Ctrl pressed.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Environment variable naming a backend to use instead of the detected one.
pub const BACKEND_VAR: &str = "VERBATIM_TYPE_BACKEND";

/// Time a tool gets before it is killed, plus [`PER_CHAR`] for every character typed (`xdotool`
/// waits 12 ms between keys).
const BASE_TIMEOUT: Duration = Duration::from_secs(10);
const PER_CHAR: Duration = Duration::from_millis(20);
/// Time the modifier release after a failure gets.
const KEYUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A clipboard tool: the fallback when no typing tool is installed or works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipboardTool {
    /// `wl-copy` (wl-clipboard), Wayland.
    WlCopy,
    /// `xclip`, X11 (and XWayland).
    Xclip,
    /// `xsel`, X11 (and XWayland).
    Xsel,
}

/// A way to deliver text to the focused window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `xdotool type`, X11.
    Xdotool,
    /// `wtype`, Wayland compositors with the virtual-keyboard protocol (wlroots, KDE).
    Wtype,
    /// `dotool`, any session (a uinput keyboard; needs access to /dev/uinput).
    Dotool,
    /// `ydotool type`, any session (talks to the ydotoold daemon's uinput keyboard).
    Ydotool,
    /// Copy to the clipboard for the user to paste.
    Clipboard(ClipboardTool),
}

impl Backend {
    /// Every backend, in the order the names are listed in messages.
    pub const ALL: [Backend; 7] = [
        Backend::Wtype,
        Backend::Xdotool,
        Backend::Dotool,
        Backend::Ydotool,
        Backend::Clipboard(ClipboardTool::WlCopy),
        Backend::Clipboard(ClipboardTool::Xclip),
        Backend::Clipboard(ClipboardTool::Xsel),
    ];

    /// The program's name, which is also the backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Xdotool => "xdotool",
            Backend::Wtype => "wtype",
            Backend::Dotool => "dotool",
            Backend::Ydotool => "ydotool",
            Backend::Clipboard(ClipboardTool::WlCopy) => "wl-copy",
            Backend::Clipboard(ClipboardTool::Xclip) => "xclip",
            Backend::Clipboard(ClipboardTool::Xsel) => "xsel",
        }
    }

    /// The backend called `name` (a program name, case-insensitive).
    pub fn from_name(name: &str) -> Option<Backend> {
        let name = name.trim();
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name))
    }

    /// The text ends up on the clipboard instead of being typed.
    pub fn is_clipboard(self) -> bool {
        matches!(self, Backend::Clipboard(_))
    }

    /// The arguments and standard input that deliver `text`.
    fn invocation(self, text: &str) -> (Vec<OsString>, Option<Vec<u8>>) {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        match self {
            // --clearmodifiers: modifiers the user still holds (the push-to-talk chord) would
            // turn the text into shortcuts; xdotool lifts them while typing and restores them.
            Backend::Xdotool => {
                let mut a = args(&["type", "--clearmodifiers", "--"]);
                a.push(text.into());
                (a, None)
            }
            Backend::Wtype => {
                let mut a = args(&["--"]);
                a.push(text.into());
                (a, None)
            }
            Backend::Ydotool => {
                let mut a = args(&["type", "--"]);
                a.push(text.into());
                (a, None)
            }
            // dotool reads one command a line: `type` takes the rest of the line verbatim
            // (leading spaces included), so each line of the text is a `type` and each line
            // break an Enter.
            Backend::Dotool => {
                let script = text
                    .split('\n')
                    .map(|line| format!("type {}\n", line.trim_end_matches('\r')))
                    .collect::<Vec<_>>()
                    .join("key enter\n");
                (Vec::new(), Some(script.into_bytes()))
            }
            Backend::Clipboard(ClipboardTool::WlCopy) => {
                let mut a = args(&["--"]);
                a.push(text.into());
                (a, None)
            }
            Backend::Clipboard(ClipboardTool::Xclip) => (
                args(&["-selection", "clipboard", "-in"]),
                Some(text.as_bytes().to_vec()),
            ),
            Backend::Clipboard(ClipboardTool::Xsel) => (
                args(&["--clipboard", "--input"]),
                Some(text.as_bytes().to_vec()),
            ),
        }
    }

    /// Arguments that release every modifier, for tools whose virtual keyboard outlives them
    /// (the X server's for xdotool, ydotoold's): a run killed mid-word could leave Shift down
    /// for the whole session. dotool's keyboard disappears when dotool exits, and with it its
    /// pressed keys; wtype only sends modifier state with its own virtual keyboard.
    fn release_modifiers(self) -> Option<&'static [&'static str]> {
        match self {
            Backend::Xdotool => Some(&["keyup", "shift", "ctrl", "alt", "super"]),
            // Linux key codes: 42 left Shift, 29 left Ctrl, 56 left Alt, 125 left Meta; `:0` = up.
            Backend::Ydotool => Some(&["key", "42:0", "29:0", "56:0", "125:0"]),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of desktop session, which decides the tools that can work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// A Wayland compositor (`WAYLAND_DISPLAY`, or `XDG_SESSION_TYPE=wayland`).
    Wayland,
    /// An X server (`DISPLAY`, or `XDG_SESSION_TYPE=x11`).
    X11,
    /// Neither: a text console or a remote shell; only uinput tools can type.
    Console,
}

impl Session {
    /// The session described by the environment. Wayland wins over `DISPLAY`, which XWayland
    /// sets too; `XDG_SESSION_TYPE` decides only when neither display variable is set.
    pub fn detect(env: &TypingEnv) -> Session {
        let set = |v: &Option<OsString>| v.as_ref().is_some_and(|v| !v.is_empty());
        let session_type = env
            .session_type
            .as_ref()
            .map(|s| s.to_string_lossy().to_ascii_lowercase());
        if set(&env.wayland_display) {
            Session::Wayland
        } else if set(&env.display) {
            Session::X11
        } else if session_type.as_deref() == Some("wayland") {
            Session::Wayland
        } else if session_type.as_deref() == Some("x11") {
            Session::X11
        } else {
            Session::Console
        }
    }

    /// Typing tools to try, best first.
    fn typing_tools(self) -> &'static [Backend] {
        match self {
            Session::Wayland => &[Backend::Wtype, Backend::Dotool, Backend::Ydotool],
            Session::X11 => &[Backend::Xdotool, Backend::Ydotool, Backend::Dotool],
            Session::Console => &[Backend::Dotool, Backend::Ydotool],
        }
    }

    /// Clipboard tools that can work here, best first.
    fn clipboard_tools(self, env: &TypingEnv) -> Vec<Backend> {
        let x = env.display.as_ref().is_some_and(|d| !d.is_empty());
        let mut tools = Vec::new();
        if self == Session::Wayland {
            tools.push(Backend::Clipboard(ClipboardTool::WlCopy));
        }
        // Under XWayland the X clipboard is synchronised with the Wayland one.
        if self == Session::X11 || x {
            tools.push(Backend::Clipboard(ClipboardTool::Xclip));
            tools.push(Backend::Clipboard(ClipboardTool::Xsel));
        }
        tools
    }

    fn label(self) -> &'static str {
        match self {
            Session::Wayland => "Wayland session",
            Session::X11 => "X11 session",
            Session::Console => "no graphical session: neither WAYLAND_DISPLAY nor DISPLAY is set",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Session::Wayland => {
                "install wtype (GNOME: dotool or ydotool) and wl-clipboard, e.g. `sudo apt-get install wtype wl-clipboard`"
            }
            Session::X11 => "install xdotool and xclip, e.g. `sudo apt-get install xdotool xclip`",
            Session::Console => {
                "install dotool or ydotool (they type through /dev/uinput), or run in a desktop session"
            }
        }
    }
}

/// What [`Typer`] reads from the environment, separate so tests can pass their own.
#[derive(Debug, Clone, Default)]
pub struct TypingEnv {
    /// `PATH`, searched for the tools.
    pub path: Option<OsString>,
    /// `WAYLAND_DISPLAY`.
    pub wayland_display: Option<OsString>,
    /// `DISPLAY`.
    pub display: Option<OsString>,
    /// `XDG_SESSION_TYPE`.
    pub session_type: Option<OsString>,
    /// `VERBATIM_TYPE_BACKEND`: a backend name (`wtype`, `xdotool`, `wl-copy`, ...) or
    /// `clipboard`.
    pub backend: Option<OsString>,
}

impl TypingEnv {
    /// The environment of this process.
    pub fn from_process() -> TypingEnv {
        TypingEnv {
            path: std::env::var_os("PATH"),
            wayland_display: std::env::var_os("WAYLAND_DISPLAY"),
            display: std::env::var_os("DISPLAY"),
            session_type: std::env::var_os("XDG_SESSION_TYPE"),
            backend: std::env::var_os(BACKEND_VAR),
        }
    }

    /// The executable called `name` on this environment's `PATH` (not the process's, so tests
    /// can point it at fake tools).
    fn find(&self, name: &str) -> Option<PathBuf> {
        // Empty entries would mean the working directory to `which`; a typing tool is never
        // picked up from there.
        let dirs = std::env::split_paths(self.path.as_ref()?)
            .filter(|dir| !dir.as_os_str().is_empty())
            .collect::<Vec<_>>();
        if dirs.is_empty() {
            return None;
        }
        let path = std::env::join_paths(dirs).ok()?;
        which::which_in_global(name, Some(path)).ok()?.next()
    }
}

/// One tool of the chain.
#[derive(Debug, Clone)]
struct Tool {
    backend: Backend,
    path: PathBuf,
}

/// Types text into the focused window with the best tool of the session, falling back to the
/// next tool and finally to the clipboard.
#[derive(Debug)]
pub struct Typer {
    session: Session,
    chain: Vec<Tool>,
    notice: Option<String>,
    timeout: Duration,
}

/// A tool that did not deliver the text, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The tool.
    pub backend: Backend,
    /// One line: `exit code 1: Compositor does not support the virtual keyboard protocol`,
    /// `timed out after 10 s`, `not found`.
    pub reason: String,
}

/// What [`Typer::type_text`] did. Its `Display` is the line to show: `typed with wtype`, or
/// `xdotool failed (exit code 1: ...); copied to the clipboard with wl-copy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeOutcome {
    /// The tool that delivered the text.
    pub backend: Backend,
    /// Tools tried before it, in order.
    pub failures: Vec<Failure>,
}

impl TypeOutcome {
    /// The text is on the clipboard, not typed: the user has to paste it.
    pub fn copied(&self) -> bool {
        self.backend.is_clipboard()
    }

    /// Something the user should hear about happened: a tool failed first, or the text is on the
    /// clipboard rather than typed. Callers print the outcome only then.
    pub fn fell_back(&self) -> bool {
        !self.failures.is_empty() || self.copied()
    }
}

impl fmt::Display for TypeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            write!(f, "{failure}; ")?;
        }
        if self.copied() {
            write!(f, "copied to the clipboard with {}", self.backend)
        } else {
            write!(f, "typed with {}", self.backend)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({})", self.backend, self.reason)
    }
}

/// Why one run of a tool failed.
enum RunError {
    /// The program is gone (removed since detection): never worth trying again.
    Missing,
    /// Killed after the timeout: a hung tool would stall every later utterance too.
    Timeout(Duration),
    /// Started but failed, or could not be started.
    Failed(String),
}

impl RunError {
    fn reason(&self) -> String {
        match self {
            RunError::Missing => "not found".into(),
            RunError::Timeout(t) => format!("timed out after {} s", t.as_secs_f64()),
            RunError::Failed(r) => r.clone(),
        }
    }
}

impl Typer {
    /// Detects the session (`WAYLAND_DISPLAY`, `DISPLAY`, `XDG_SESSION_TYPE`) and the tools on
    /// `PATH`, in preference order: Wayland: wtype, dotool, ydotool; X11: xdotool, ydotool,
    /// dotool; then the clipboard (wl-copy on Wayland, xclip, xsel with an X display), with a
    /// [`notice`](Typer::notice) when only the clipboard is left. `VERBATIM_TYPE_BACKEND` forces
    /// a backend (the clipboard stays the fallback).
    pub fn detect() -> Result<Typer> {
        Typer::detect_in(&TypingEnv::from_process())
    }

    /// [`Typer::detect`] with the given environment instead of the process's.
    pub fn detect_in(env: &TypingEnv) -> Result<Typer> {
        let session = Session::detect(env);
        let clipboard: Vec<Tool> = session
            .clipboard_tools(env)
            .into_iter()
            .filter_map(|b| tool(env, b))
            .collect();

        let forced = env
            .backend
            .as_ref()
            .map(|b| b.to_string_lossy().trim().to_string())
            .filter(|b| !b.is_empty());
        let chain = match forced {
            Some(name) => forced_chain(env, session, &name, clipboard)?,
            None => {
                let mut chain: Vec<Tool> = session
                    .typing_tools()
                    .iter()
                    .filter_map(|&b| tool(env, b))
                    .collect();
                chain.extend(clipboard);
                chain
            }
        };

        let Some(first) = chain.first() else {
            let typing = names(session.typing_tools());
            let clip = names(&session.clipboard_tools(env));
            return Err(Error::Device(format!(
                "cannot type the dictated text: none of {typing}{} is on PATH ({}); {}",
                if clip.is_empty() {
                    String::new()
                } else {
                    format!(" (typing) or {clip} (clipboard)")
                },
                session.label(),
                session.install_hint()
            )));
        };
        let notice = first.backend.is_clipboard().then(|| {
            format!(
                "no tool to type text is installed ({}); dictated text is copied to the clipboard \
                 with {} for you to paste; {}",
                session.label(),
                first.backend,
                session.install_hint()
            )
        });
        Ok(Typer {
            session,
            chain,
            notice,
            timeout: BASE_TIMEOUT,
        })
    }

    /// The session that was detected.
    pub fn session(&self) -> Session {
        self.session
    }

    /// The backend tried first.
    pub fn backend(&self) -> Backend {
        self.chain[0].backend
    }

    /// The name of the backend tried first (`wtype`, `xdotool`, `wl-copy`, ...).
    pub fn backend_name(&self) -> &str {
        self.backend().name()
    }

    /// Every backend in the order they are tried.
    pub fn chain(&self) -> Vec<Backend> {
        self.chain.iter().map(|t| t.backend).collect()
    }

    /// A message for the user when no typing tool was found and text only goes to the
    /// clipboard.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Changes the base time a tool gets before it is killed (default 10 s; typing tools get
    /// 20 ms more per character).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Types `text` into the focused window. A tool that fails (non-zero exit, missing, timed
    /// out) hands over to the next one and finally to the clipboard; the outcome says which tool
    /// delivered the text and what failed before. A tool that is missing or timed out is dropped
    /// for later calls, so one hung tool does not stall every utterance. Fails only when no tool
    /// delivered the text, with every tool's reason.
    pub fn type_text(&mut self, text: &str) -> Result<TypeOutcome> {
        let mut failures = Vec::new();
        let mut dropped = Vec::new();
        if text.is_empty() {
            return Ok(TypeOutcome {
                backend: self.backend(),
                failures,
            });
        }
        let mut delivered = None;
        for (i, tool) in self.chain.iter().enumerate() {
            let timeout = if tool.backend.is_clipboard() {
                self.timeout
            } else {
                self.timeout + PER_CHAR * text.chars().count() as u32
            };
            let (args, stdin) = tool.backend.invocation(text);
            match run(&tool.path, &args, stdin, timeout) {
                Ok(()) => {
                    delivered = Some(tool.backend);
                    break;
                }
                Err(e) => {
                    if let Some(keyup) = tool.backend.release_modifiers() {
                        let args: Vec<OsString> = keyup.iter().map(OsString::from).collect();
                        let _ = run(&tool.path, &args, None, KEYUP_TIMEOUT);
                    }
                    if matches!(e, RunError::Missing | RunError::Timeout(_)) {
                        dropped.push(i);
                    }
                    failures.push(Failure {
                        backend: tool.backend,
                        reason: e.reason(),
                    });
                }
            }
        }
        // Keep at least one tool, so the next call still has something to try.
        if dropped.len() == self.chain.len() {
            dropped.pop();
        }
        for &i in dropped.iter().rev() {
            self.chain.remove(i);
        }
        match delivered {
            Some(backend) => Ok(TypeOutcome { backend, failures }),
            None => Err(Error::Device(format!(
                "could not type or copy the text: {}",
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }
}

/// The tool for `backend`, when its program is on PATH.
fn tool(env: &TypingEnv, backend: Backend) -> Option<Tool> {
    env.find(backend.name()).map(|path| Tool { backend, path })
}

/// The chain for `VERBATIM_TYPE_BACKEND=name`: that tool, then the clipboard so no text is lost.
fn forced_chain(
    env: &TypingEnv,
    session: Session,
    name: &str,
    clipboard: Vec<Tool>,
) -> Result<Vec<Tool>> {
    if name.eq_ignore_ascii_case("clipboard") {
        // Any clipboard tool on PATH, the session's best first.
        let mut chain = clipboard;
        for backend in Backend::ALL.into_iter().filter(|b| b.is_clipboard()) {
            if !chain.iter().any(|t| t.backend == backend) {
                chain.extend(tool(env, backend));
            }
        }
        if chain.is_empty() {
            return Err(Error::Device(format!(
                "{BACKEND_VAR}=clipboard, but none of wl-copy, xclip, xsel is on PATH ({})",
                session.label()
            )));
        }
        return Ok(chain);
    }
    let backend = Backend::from_name(name).ok_or_else(|| {
        Error::Usage(format!(
            "{BACKEND_VAR}={name} is not a typing backend; use one of {}, clipboard",
            names(&Backend::ALL)
        ))
    })?;
    let first = tool(env, backend).ok_or_else(|| {
        Error::Device(format!(
            "{BACKEND_VAR}={name}, but {} is not on PATH",
            backend.name()
        ))
    })?;
    let mut chain = vec![first];
    chain.extend(clipboard.into_iter().filter(|t| t.backend != backend));
    Ok(chain)
}

fn names(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `program args` with `stdin` as its input, killing it after `timeout`.
///
/// Standard output is discarded and standard error goes to an unnamed temporary file rather than
/// a pipe: `wl-copy`, `xclip` and `xsel` leave a child behind that serves the clipboard and
/// inherits both, and a pipe would not reach end-of-file until that child exits.
fn run(
    program: &Path,
    args: &[OsString],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> std::result::Result<(), RunError> {
    let mut stderr = tempfile::tempfile().map_err(|e| RunError::Failed(e.to_string()))?;
    let mut child = spawn(program, args, stdin.is_some(), &stderr)?;
    let writer = match (stdin, child.stdin.take()) {
        // A thread, so a tool that never reads cannot block us past the timeout.
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if status.success() {
        return Ok(());
    }
    let mut message = String::new();
    let _ = stderr.rewind();
    let _ = stderr.take(4096).read_to_string(&mut message);
    let message = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    let status = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(), // killed by a signal
    };
    Err(RunError::Failed(format!("{status}{message}")))
}

fn spawn(
    program: &Path,
    args: &[OsString],
    piped_stdin: bool,
    stderr: &std::fs::File,
) -> std::result::Result<std::process::Child, RunError> {
    let stderr = stderr
        .try_clone()
        .map_err(|e| RunError::Failed(e.to_string()))?;
    let mut attempts = 0;
    loop {
        let result = Command::new(program)
            .args(args)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(
                stderr
                    .try_clone()
                    .map_err(|e| RunError::Failed(e.to_string()))?,
            )
            .spawn();
        match result {
            Ok(child) => return Ok(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RunError::Missing),
            // ETXTBSY: the program file was just written (a tool installed this instant, or a
            // test's stand-in) and another thread's fork still holds it open for writing.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(RunError::Failed(format!(
                    "cannot run {}: {e}",
                    program.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    /// Fake tools are written and run by several tests; one at a time keeps a freshly written
    /// script from being exec'd while another test's fork still holds it open (ETXTBSY).
    static LOCK: Mutex<()> = Mutex::new(());

    /// A directory of stand-in tools that append `name [arg] [arg]...` (and, for the tools that
    /// read it, `< stdin`) to `log`, and exit 1 when a file `fail-NAME` exists or hang when
    /// `hang-NAME` exists.
    struct Fakes {
        dir: tempfile::TempDir,
    }

    impl Fakes {
        fn new(tools: &[&str]) -> Fakes {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let script = format!(
                r#"#!/bin/sh
name=${{0##*/}}
{{ printf '%s' "$name"; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\n'; }} >> "{d}/log"
case "$name" in dotool|xclip|xsel) printf '< ' >> "{d}/log"; cat >> "{d}/log"; printf '\n' >> "{d}/log";; esac
[ -e "{d}/hang-$name" ] && exec sleep 30
[ -e "{d}/fail-$name" ] && {{ echo "$name: simulated failure" >&2; exit 1; }}
exit 0
"#
            );
            for tool in tools {
                let path = dir.path().join(tool);
                std::fs::write(&path, &script).unwrap();
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                }
            }
            Fakes { dir }
        }

        fn fail(&self, tool: &str) {
            std::fs::write(self.dir.path().join(format!("fail-{tool}")), "").unwrap();
        }

        fn hang(&self, tool: &str) {
            std::fs::write(self.dir.path().join(format!("hang-{tool}")), "").unwrap();
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }

        fn env(&self, session: Session) -> TypingEnv {
            let mut env = TypingEnv {
                path: Some(self.dir.path().as_os_str().to_os_string()),
                ..TypingEnv::default()
            };
            match session {
                Session::Wayland => env.wayland_display = os("wayland-0"),
                Session::X11 => env.display = os(":0"),
                Session::Console => {}
            }
            env
        }
    }

    const ALL_TOOLS: [&str; 7] = [
        "xdotool", "wtype", "dotool", "ydotool", "wl-copy", "xclip", "xsel",
    ];

    fn chain(env: &TypingEnv) -> Vec<&'static str> {
        Typer::detect_in(env)
            .unwrap()
            .chain()
            .iter()
            .map(|b| b.name())
            .collect()
    }

    #[test]
    fn session_detection() {
        let env = |w: Option<&str>, d: Option<&str>, t: Option<&str>| TypingEnv {
            wayland_display: w.and_then(os),
            display: d.and_then(os),
            session_type: t.and_then(os),
            ..TypingEnv::default()
        };
        assert_eq!(
            Session::detect(&env(Some("wayland-0"), Some(":0"), None)),
            Session::Wayland
        );
        assert_eq!(
            Session::detect(&env(None, Some(":0"), Some("wayland"))),
            Session::X11
        );
        assert_eq!(
            Session::detect(&env(None, None, Some("wayland"))),
            Session::Wayland
        );
        assert_eq!(Session::detect(&env(None, None, Some("x11"))), Session::X11);
        assert_eq!(
            Session::detect(&env(Some(""), None, Some("tty"))),
            Session::Console
        );
    }

    #[test]
    fn preference_order_per_session() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&ALL_TOOLS);
        assert_eq!(
            chain(&fakes.env(Session::Wayland)),
            ["wtype", "dotool", "ydotool", "wl-copy"]
        );
        let mut xwayland = fakes.env(Session::Wayland);
        xwayland.display = os(":0");
        assert_eq!(
            chain(&xwayland),
            ["wtype", "dotool", "ydotool", "wl-copy", "xclip", "xsel"]
        );
        assert_eq!(
            chain(&fakes.env(Session::X11)),
            ["xdotool", "ydotool", "dotool", "xclip", "xsel"]
        );
        assert_eq!(chain(&fakes.env(Session::Console)), ["dotool", "ydotool"]);

        let only = Fakes::new(&["ydotool", "xdotool", "wl-copy"]);
        assert_eq!(chain(&only.env(Session::Wayland)), ["ydotool", "wl-copy"]);
        assert_eq!(chain(&only.env(Session::X11)), ["xdotool", "ydotool"]);
        let typer = Typer::detect_in(&only.env(Session::Wayland)).unwrap();
        assert_eq!(typer.backend_name(), "ydotool");
        assert!(typer.notice().is_none());
    }

    #[test]
    fn forced_backend() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&ALL_TOOLS);
        let mut env = fakes.env(Session::Wayland);
        env.backend = os("XDOTOOL");
        assert_eq!(chain(&env), ["xdotool", "wl-copy"]);
        env.backend = os("clipboard");
        assert_eq!(chain(&env), ["wl-copy", "xclip", "xsel"]);
        env.backend = os("xsel");
        assert_eq!(chain(&env), ["xsel", "wl-copy"]);
        env.backend = os("enigo");
        let e = Typer::detect_in(&env).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("use one of wtype, xdotool"), "{e}");

        let none = Fakes::new(&["wl-copy"]);
        let mut env = none.env(Session::Wayland);
        env.backend = os("wtype");
        let e = Typer::detect_in(&env).unwrap_err().to_string();
        assert_eq!(e, "VERBATIM_TYPE_BACKEND=wtype, but wtype is not on PATH");
    }

    #[test]
    fn types_with_the_first_tool_and_passes_text_as_one_argument() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["wtype", "wl-copy", "xdotool", "dotool"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap();
        // Shell metacharacters and a leading dash stay literal text.
        let text = " -n $(touch pwned); it's \"quoted\" `x` *";
        let outcome = typer.type_text(text).unwrap();
        assert_eq!(outcome.to_string(), "typed with wtype");
        assert!(!outcome.copied() && !outcome.fell_back());
        assert_eq!(fakes.log(), format!("wtype [--] [{text}]\n"));
        assert!(!fakes.dir.path().join("pwned").exists());
        assert!(!Path::new("pwned").exists());

        let mut typer = Typer::detect_in(&fakes.env(Session::X11)).unwrap();
        typer.type_text("hello world").unwrap();
        assert!(fakes
            .log()
            .ends_with("xdotool [type] [--clearmodifiers] [--] [hello world]\n"));

        let mut typer = Typer::detect_in(&fakes.env(Session::Console)).unwrap();
        typer.type_text(" two\nlines").unwrap();
        assert!(
            fakes
                .log()
                .ends_with("dotool\n< type  two\nkey enter\ntype lines\n\n"),
            "{}",
            fakes.log()
        );
    }

    #[test]
    fn falls_back_along_the_chain_then_to_the_clipboard() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["wtype", "ydotool", "wl-copy"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap();
        fakes.fail("wtype");
        let outcome = typer.type_text("hi").unwrap();
        assert_eq!(outcome.backend, Backend::Ydotool);
        assert!(outcome.fell_back() && !outcome.copied());
        assert_eq!(
            outcome.to_string(),
            "wtype failed (exit code 1: wtype: simulated failure); typed with ydotool"
        );

        fakes.fail("ydotool");
        let outcome = typer.type_text("hi").unwrap();
        assert!(outcome.copied());
        assert_eq!(
            outcome.to_string(),
            "wtype failed (exit code 1: wtype: simulated failure); ydotool failed (exit \
             code 1: ydotool: simulated failure); copied to the clipboard with wl-copy"
        );
        // ydotool is told to release the modifiers after its failure; wtype is not.
        let log = fakes.log();
        assert!(
            log.ends_with(
                "wtype [--] [hi]\nydotool [type] [--] [hi]\nydotool [key] [42:0] [29:0] [56:0] [125:0]\nwl-copy [--] [hi]\n"
            ),
            "{log}"
        );

        fakes.fail("wl-copy");
        let e = typer.type_text("hi").unwrap_err();
        assert!(matches!(e, Error::Device(_)));
        assert!(e
            .to_string()
            .starts_with("could not type or copy the text: wtype failed (exit code 1"));
        assert!(e
            .to_string()
            .contains("wl-copy failed (exit code 1: wl-copy: simulated"));
    }

    #[test]
    fn xdotool_failure_releases_the_modifiers() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["xdotool", "xclip"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::X11)).unwrap();
        fakes.fail("xdotool");
        let outcome = typer.type_text("Hello").unwrap();
        assert_eq!(outcome.backend, Backend::Clipboard(ClipboardTool::Xclip));
        assert_eq!(
            fakes.log(),
            "xdotool [type] [--clearmodifiers] [--] [Hello]\n\
             xdotool [keyup] [shift] [ctrl] [alt] [super]\n\
             xclip [-selection] [clipboard] [-in]\n< Hello\n"
        );
    }

    #[test]
    fn hung_tool_is_killed_and_dropped() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["wtype", "wl-copy"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap();
        typer.set_timeout(Duration::from_millis(300));
        fakes.hang("wtype");
        let started = Instant::now();
        let outcome = typer.type_text("a").unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            outcome.to_string(),
            "wtype failed (timed out after 0.32 s); copied to the clipboard with wl-copy"
        );
        // Not tried again: every utterance would wait for it.
        assert_eq!(typer.chain(), [Backend::Clipboard(ClipboardTool::WlCopy)]);
    }

    #[test]
    fn missing_tool_falls_back() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["wtype", "wl-copy"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap();
        std::fs::remove_file(fakes.dir.path().join("wtype")).unwrap();
        let outcome = typer.type_text("a").unwrap();
        assert_eq!(
            outcome.to_string(),
            "wtype failed (not found); copied to the clipboard with wl-copy"
        );
        assert_eq!(typer.backend_name(), "wl-copy");
    }

    #[test]
    fn clipboard_only_comes_with_a_notice() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["wl-copy"]);
        let mut typer = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap();
        assert_eq!(typer.backend_name(), "wl-copy");
        let notice = typer.notice().unwrap();
        assert!(
            notice.starts_with("no tool to type text is installed (Wayland session)"),
            "{notice}"
        );
        assert!(notice.contains("wtype"), "{notice}");
        assert_eq!(
            typer.type_text("x").unwrap().to_string(),
            "copied to the clipboard with wl-copy"
        );
    }

    #[test]
    fn no_backend_at_all() {
        let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fakes = Fakes::new(&["xdotool"]);
        let e = Typer::detect_in(&fakes.env(Session::Wayland)).unwrap_err();
        assert!(matches!(e, Error::Device(_)));
        assert_eq!(
            e.to_string(),
            "cannot type the dictated text: none of wtype, dotool, ydotool (typing) or wl-copy \
             (clipboard) is on PATH (Wayland session); install wtype (GNOME: dotool or ydotool) \
             and wl-clipboard, e.g. `sudo apt-get install wtype wl-clipboard`"
        );
        let e = Typer::detect_in(&fakes.env(Session::Console))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot type the dictated text: none of dotool, ydotool is on PATH (no graphical session"), "{e}");
        let empty = TypingEnv::default();
        assert!(Typer::detect_in(&empty).is_err());
    }
}
