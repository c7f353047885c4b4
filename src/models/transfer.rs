//! The network half of model downloads (the `download` feature): HTTP with resume, retries,
//! a lock against a second process, verification before the atomic rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::download::{hash_file, human_bytes, Event};
use super::registry::{Entry, Kind};
use crate::error::Error;

/// Attempts per download before a transient failure is reported (dropped connections resume).
const ATTEMPTS: u32 = 4;

/// Bytes read from the network per write.
const CHUNK: usize = 256 * 1024;

/// Downloads `entry` from `url` to `dest` unless another process already did, verifying it.
///
/// Returns `dest`. `on_event` sees progress; it must be cheap.
pub fn download(
    entry: &Entry,
    url: &str,
    dest: &Path,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf, Error> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Store(format!(
            "cannot create the model store {}: {e}",
            dir.display()
        ))
    })?;
    let _lock = lock(dir, &entry.file, &entry.name, on_event)?;
    // Another process may have finished the same download while we waited for the lock.
    if dest.is_file() {
        return Ok(dest.to_path_buf());
    }
    let part = dir.join(format!("{}.part", entry.file));
    let agent = agent();
    let mut attempt = 1;
    loop {
        match transfer(&agent, entry, url, &part, on_event) {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(reason)) if attempt < ATTEMPTS => {
                attempt += 1;
                on_event(Event::Retry { reason, attempt });
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt - 1)));
            }
            Err(Failure::Transient(reason)) => {
                let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                let hint = if kept > 0 {
                    format!(
                        "; {} are kept and the same command resumes",
                        human_bytes(kept)
                    )
                } else {
                    let _ = std::fs::remove_file(&part);
                    String::new()
                };
                return Err(Error::Store(format!(
                    "download of {} failed after {ATTEMPTS} attempts: {reason}{hint}",
                    entry.name
                )));
            }
        }
    }
    on_event(Event::Verifying);
    let size = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if let Some(want) = entry.size.exact() {
        if size != want {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Store(format!(
                "download of {} from {url} has {size} bytes, expected {want}; the file was removed",
                entry.name
            )));
        }
    }
    let got = hash_file(&part, &entry.checksum)
        .map_err(|e| Error::Store(format!("cannot read back {}: {e}", part.display())))?;
    if got != entry.checksum.hex() {
        let _ = std::fs::remove_file(&part);
        return Err(Error::Store(format!(
            "checksum mismatch for {} downloaded from {url}: expected {}, got {}:{got}; the file was removed (a corrupted transfer or a changed upstream file)",
            entry.name, entry.checksum, entry.checksum.algorithm()
        )));
    }
    // The checksum says the bytes are the registry's; only this says whisper.cpp can load
    // them (a registry line may name the wrong kind, or a hostile file).
    let usable = match entry.kind {
        Kind::Whisper => super::ggml::validate_whisper(&part).map(|_| ()),
        Kind::Vad => super::ggml::validate_vad(&part),
    };
    if let Err(e) = usable {
        let _ = std::fs::remove_file(&part);
        let reason = match e {
            Error::Model { reason, .. } => reason,
            other => other.to_string(),
        };
        return Err(Error::Store(format!(
            "download of {} from {url} matches its checksum but is {reason}; the file was removed",
            entry.name
        )));
    }
    std::fs::rename(&part, dest)
        .map_err(|e| Error::Store(format!("cannot move {} into place: {e}", part.display())))?;
    Ok(dest.to_path_buf())
}
/// Why an attempt failed: worth retrying (the network) or not (404, disk full, a bad reply).
enum Failure {
    Transient(String),
    Fatal(Error),
}

fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        // The system CA store: ureq's bundled roots fail behind corporate proxies and here.
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("verbatim/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// One HTTP request, appending to `part` from its current length.
fn transfer(
    agent: &ureq::Agent,
    entry: &Entry,
    url: &str,
    part: &Path,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<(), Failure> {
    let fatal_io = |what: &str, e: io::Error| {
        let _ = std::fs::remove_file(part);
        Failure::Fatal(Error::Store(format!(
            "{what} {}: {}",
            part.display(),
            describe_io(&e)
        )))
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(|e| fatal_io("cannot create", e))?;
    let mut offset = file.metadata().map(|m| m.len()).unwrap_or(0);
    if entry.size.exact().is_some_and(|want| offset > want) {
        file.set_len(0)
            .map_err(|e| fatal_io("cannot truncate", e))?;
        offset = 0;
    }
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        if !token.is_empty() && url.starts_with("https://huggingface.co/") {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
    }
    let response = request.call().map_err(|e| classify(e, url))?;
    let status = response.status().as_u16();
    match status {
        200 => {
            // The server ignored the range (or there was none): start from zero.
            if offset > 0 {
                file.set_len(0)
                    .map_err(|e| fatal_io("cannot truncate", e))?;
                offset = 0;
            }
        }
        206 => {}
        416 if offset > 0 => {
            // Nothing after `offset`: the part may already be whole; the hash decides.
            return Ok(());
        }
        404 | 410 => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Fatal(Error::Store(format!(
                "model {} not found at {url} (HTTP {status}); check the name with `verbatim models list` or VERBATIM_MODEL_URL",
                entry.name
            ))));
        }
        401 | 403 => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Fatal(Error::Store(format!(
                "access to {url} refused (HTTP {status}); for a gated repository set HF_TOKEN"
            ))));
        }
        500..=599 | 429 => {
            return Err(Failure::Transient(format!("HTTP {status} from {url}")));
        }
        _ => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Fatal(Error::Store(format!(
                "unexpected HTTP {status} from {url} while downloading {}",
                entry.name
            ))));
        }
    }
    let headers = response.headers();
    let length: Option<u64> = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if status == 206 {
        // The range must start where our file ends, or the bytes would land in the wrong place.
        let start = headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if start != Some(offset) {
            file.set_len(0)
                .map_err(|e| fatal_io("cannot truncate", e))?;
            return Err(Failure::Transient(format!(
                "{url} answered a resume request with a different range; starting over"
            )));
        }
    }
    let total = length
        .map(|l| l + offset)
        .or(entry.size.exact())
        .or(Some(entry.size.bytes()));
    on_event(Event::Start {
        name: &entry.name,
        url,
        offset,
        total,
    });
    file.seek(SeekFrom::End(0))
        .map_err(|e| fatal_io("cannot seek", e))?;
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; CHUNK];
    let mut done = offset;
    let mut received: u64 = 0;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                return Err(Failure::Transient(format!(
                    "connection lost after {} ({})",
                    human_bytes(done),
                    describe_io(&e)
                )));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| fatal_io("cannot write", e))?;
        done += n as u64;
        received += n as u64;
        on_event(Event::Progress { done });
    }
    file.flush().map_err(|e| fatal_io("cannot write", e))?;
    file.sync_all().map_err(|e| fatal_io("cannot write", e))?;
    if let Some(len) = length {
        if received < len {
            return Err(Failure::Transient(format!(
                "connection closed after {} of {}",
                human_bytes(done),
                human_bytes(len + offset)
            )));
        }
    }
    Ok(())
}

/// Sorts a ureq error into retryable (network) or fatal.
fn classify(e: ureq::Error, url: &str) -> Failure {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or(url)
        .to_string();
    match e {
        ureq::Error::HostNotFound => Failure::Transient(format!(
            "cannot resolve {host} (no network, or DNS is down)"
        )),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => Failure::Transient(
            format!("connection to {host} refused (server down, or a wrong VERBATIM_MODEL_URL?)"),
        ),
        ureq::Error::Io(io) => Failure::Transient(format!("{host}: {}", describe_io(&io))),
        ureq::Error::ConnectionFailed => {
            Failure::Transient(format!("cannot connect to {host} (network down?)"))
        }
        ureq::Error::Timeout(t) => Failure::Transient(format!("{host} timed out ({t})")),
        ureq::Error::BadUri(u) => Failure::Fatal(Error::Store(format!(
            "bad download URL {u} (check VERBATIM_MODEL_URL)"
        ))),
        other => Failure::Transient(format!("{host}: {other}")),
    }
}

/// An io error in words, naming a full disk plainly.
fn describe_io(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        return "no space left on device".to_string();
    }
    e.to_string()
}

/// Takes the per-file download lock, waiting (and saying so) while another process holds it.
fn lock(
    dir: &Path,
    file: &str,
    name: &str,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<File, Error> {
    let path = dir.join(format!(".{file}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Store(format!("cannot create lock file {}: {e}", path.display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            on_event(Event::Waiting { name });
            lock.lock()
                .map_err(|e| Error::Store(format!("cannot lock {}: {e}", path.display())))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Store(format!("cannot lock {}: {e}", path.display())))
        }
    }
    Ok(lock)
}
