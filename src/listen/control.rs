//! The dictation daemon's control socket: where it lives, one daemon per user, and the
//! one-line protocol its clients (`verbatim listen start|stop|toggle|status`) speak.
//!
//! A client writes one command word and a newline; the daemon answers one JSON line, a
//! [`Reply`]. The socket sits in a directory only the user can enter, and is itself 0600.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A command to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Open the microphone and dictate.
    Start,
    /// End the utterance, deliver the last words, close the microphone.
    Stop,
    /// Start when idle, stop when listening.
    Toggle,
    /// Say what the daemon is doing.
    Status,
}

impl Command {
    /// The word on the wire.
    pub fn word(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Toggle => "toggle",
            Command::Status => "status",
        }
    }
}

impl FromStr for Command {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Command, String> {
        match s.trim() {
            "start" => Ok(Command::Start),
            "stop" => Ok(Command::Stop),
            "toggle" => Ok(Command::Toggle),
            "status" => Ok(Command::Status),
            other => Err(format!(
                "unknown command '{other}' (start, stop, toggle or status)"
            )),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The microphone is closed; the model is loaded.
    Idle,
    /// Dictating.
    Listening,
}

/// The daemon's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The command was carried out.
    pub ok: bool,
    /// The state after the command.
    pub state: State,
    /// For `stop` (and a `toggle` that stopped): the text of the dictation it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A note for the user: an error, a microphone problem, "already listening".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The daemon's process id.
    pub pid: u32,
}

/// The socket: `$XDG_RUNTIME_DIR/verbatim/dictation.sock`, else a private directory under the
/// temporary directory.
pub fn socket_path() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("verbatim"),
        None => std::env::temp_dir().join(format!("verbatim-{}", own_uid())),
    };
    dir.join("dictation.sock")
}

/// The user this process runs as (the owner of its own /proc entry).
fn own_uid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// The socket's directory, created 0700 if missing, refused when another user owns it or
/// others may enter it (someone else could then replace the socket).
fn private_dir(socket: &Path) -> Result<PathBuf> {
    let dir = socket
        .parent()
        .ok_or_else(|| Error::Usage(format!("{}: no directory", socket.display())))?;
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::Device(format!(
                "{}: cannot create the daemon's directory: {e}",
                dir.display()
            )))
        }
    }
    let meta = fs::metadata(dir).map_err(io(dir))?;
    if meta.uid() != own_uid() || meta.mode() & 0o077 != 0 {
        return Err(Error::Device(format!(
            "{}: the daemon's directory must belong to you with mode 0700 (it is {:o}, owner {})",
            dir.display(),
            meta.mode() & 0o777,
            meta.uid()
        )));
    }
    Ok(dir.to_path_buf())
}

/// An I/O error as a one-line error naming `path`.
fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Device(format!("{}: {e}", path.display()))
}

/// A bound control socket; dropping it removes the socket file.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// Held (flock) for the daemon's life: one daemon per user.
    _lock: File,
}

impl Server {
    /// Binds `path`, one daemon per user. A socket file that no daemon answers (left by one that
    /// crashed) is removed, and the returned notice says so.
    pub fn bind(path: &Path) -> Result<(Server, Option<String>)> {
        let dir = private_dir(path)?;
        let lock_path = dir.join("dictation.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::Device(format!("{}: {e}", lock_path.display())))?;
        let running = || {
            Error::Device(format!(
                "a dictation daemon is already running ({}); `verbatim listen status` asks it",
                path.display()
            ))
        };
        if lock.try_lock().is_err() {
            return Err(running());
        }
        let mut notice = None;
        if fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).is_ok() {
                return Err(running());
            }
            fs::remove_file(path)
                .map_err(|e| Error::Device(format!("{}: cannot remove: {e}", path.display())))?;
            notice = Some(format!(
                "removed {}, left by a daemon that did not exit cleanly",
                path.display()
            ));
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::Device(format!("{}: cannot listen: {e}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        Ok((
            Server {
                listener,
                path: path.to_path_buf(),
                _lock: lock,
            },
            notice,
        ))
    }

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads one command from a client (a client that says nothing for `timeout` is dropped).
pub fn read_command(
    stream: &UnixStream,
    timeout: Duration,
) -> std::result::Result<Command, String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    // One short word: a client cannot make the daemon buffer more.
    BufReader::new(std::io::Read::take(stream, 64))
        .read_line(&mut line)
        .map_err(|e| format!("reading the command: {e}"))?;
    line.parse()
}

/// Writes a reply line.
pub fn write_reply(mut stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Sends `command` to the daemon at `path` and waits up to `timeout` for its reply.
pub fn request(path: &Path, command: Command, timeout: Duration) -> Result<Reply> {
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => Error::Device(format!(
            "no dictation daemon is running ({} {}); start one with `verbatim listen --daemon`",
            path.display(),
            if e.kind() == ErrorKind::NotFound {
                "does not exist"
            } else {
                "is stale"
            }
        )),
        _ => Error::Device(format!("{}: cannot connect: {e}", path.display())),
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io(path))?;
    writeln!(stream, "{}", command.word()).map_err(io(path))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| Error::Device(format!("the daemon did not answer '{command}': {e}")))?;
    serde_json::from_str(&line).map_err(|e| {
        Error::Device(format!(
            "the daemon's answer to '{command}' is not understood ({e}): {}",
            line.trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_unknown_ones_are_named() {
        for c in [
            Command::Start,
            Command::Stop,
            Command::Toggle,
            Command::Status,
        ] {
            assert_eq!(c.word().parse::<Command>().unwrap(), c);
        }
        assert!("reboot".parse::<Command>().unwrap_err().contains("reboot"));
    }

    #[test]
    fn one_daemon_per_socket_and_stale_sockets_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v").join("dictation.sock");
        let (server, notice) = Server::bind(&path).unwrap();
        assert!(notice.is_none());
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = Server::bind(&path).unwrap_err().to_string();
        assert!(second.contains("already running"), "{second}");
        drop(server);
        assert!(!path.exists());
        // A socket nobody answers: what a crashed daemon leaves.
        drop(UnixListener::bind(&path).unwrap());
        let (_server, notice) = Server::bind(&path).unwrap();
        assert!(notice.unwrap().contains("did not exit cleanly"));
    }
}
