//! The network half of model downloads (the `download` feature): HTTP with resume, retries,
//! a lock against a second process, verification before the atomic rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::download::{hash_file, human_bytes, Event};
use super::registry::{Entry, Kind};
use super::zip;
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
        let result = match entry.member() {
            Some(member) => transfer_member(&agent, entry, url, member, &part, on_event),
            None => transfer(&agent, entry, url, &part, on_event),
        };
        match result {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => {
                if entry.member().is_some() {
                    let _ = std::fs::remove_file(&part);
                }
                return Err(e);
            }
            Err(Failure::Transient(reason)) if attempt < ATTEMPTS => {
                attempt += 1;
                on_event(Event::Retry { reason, attempt });
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt - 1)));
            }
            Err(Failure::Transient(reason)) => {
                let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                // A half-extracted member cannot resume: its next run starts over.
                let hint = if kept > 0 && entry.member().is_none() {
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
    // Messages name the member too, for a file taken out of an archive.
    let url = &match entry.member() {
        Some(member) => format!("{url}#{member}"),
        None => url.to_string(),
    };
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
        Kind::Diarize => diarize::pt::Weights::load(&part)
            .map(|_| ())
            .map_err(|e| Error::Model {
                path: part.clone(),
                reason: format!("not a PyTorch checkpoint the diarizer can read ({e})"),
                source: None,
            }),
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
    let fatal_io = |what: &str, e: io::Error| fatal_io(part, what, e);
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
        other => {
            let failure = status_failure(other, entry, url);
            if let Failure::Fatal(_) = failure {
                let _ = std::fs::remove_file(part);
            }
            return Err(failure);
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

/// What an HTTP status other than success means for a download.
fn status_failure(status: u16, entry: &Entry, url: &str) -> Failure {
    match status {
        404 | 410 => Failure::Fatal(Error::Store(format!(
            "model {} not found at {url} (HTTP {status}); check the name with `verbatim models list` or VERBATIM_MODEL_URL",
            entry.name
        ))),
        401 | 403 => Failure::Fatal(Error::Store(format!(
            "access to {url} refused (HTTP {status}); for a gated repository set HF_TOKEN"
        ))),
        500..=599 | 429 => Failure::Transient(format!("HTTP {status} from {url}")),
        _ => Failure::Fatal(Error::Store(format!(
            "unexpected HTTP {status} from {url} while downloading {}",
            entry.name
        ))),
    }
}

/// One attempt at a zip member: the archive's tail (end record and, in a wheel, the central
/// directory), the member's local header, then its data, extracted into `part` as it arrives.
fn transfer_member(
    agent: &ureq::Agent,
    entry: &Entry,
    url: &str,
    member: &str,
    part: &Path,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<(), Failure> {
    let fatal_io = |what: &str, e: io::Error| fatal_io(part, what, e);
    let bad_archive = |reason: String| {
        let _ = std::fs::remove_file(part);
        Failure::Fatal(Error::Store(format!(
            "cannot extract {member} for {} from {url}: {reason}",
            entry.name
        )))
    };
    let (tail, tail_start, total) =
        get_bytes(agent, entry, url, member, Span::Last(zip::TAIL_LEN))?;
    let end = zip::end_record(&tail, total).map_err(bad_archive)?;
    let cd = match end.cd_offset.checked_sub(tail_start) {
        Some(at) => tail[at as usize..][..end.cd_size as usize].to_vec(),
        None => {
            let span = Span::At(end.cd_offset, end.cd_size);
            get_bytes(agent, entry, url, member, span)?.0
        }
    };
    let found = zip::find_member(&cd, &end, member).map_err(bad_archive)?;
    if let Some(want) = entry.size.exact() {
        if found.size != want {
            return Err(bad_archive(format!(
                "the member has {} bytes, the registry says {want}",
                found.size
            )));
        }
    }
    let span = Span::At(found.header_offset, zip::LOCAL_HEADER_LEN);
    let header = get_bytes(agent, entry, url, member, span)?.0;
    let start = zip::data_offset(&header, &found, &end).map_err(bad_archive)?;
    let (response, _) = get_range(agent, entry, url, member, Span::At(start, found.compressed))?;
    // Always from the start: a half-extracted member cannot be resumed.
    let mut file = File::create(part).map_err(|e| fatal_io("cannot create", e))?;
    let location = entry.location("");
    on_event(Event::Start {
        name: &entry.name,
        url: &location,
        offset: 0,
        total: Some(found.compressed),
    });
    let mut extractor = zip::Extractor::new(&found);
    let mut body = response.into_body().into_reader().take(found.compressed);
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    let mut write = |bytes: &[u8]| file.write_all(bytes);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Transient(format!(
                    "connection lost after {} ({})",
                    human_bytes(done),
                    describe_io(&e)
                )))
            }
        };
        extractor.push(&buf[..n], &mut write).map_err(|e| match e {
            zip::ExtractError::Data(reason) => bad_archive(reason),
            zip::ExtractError::Io(e) => fatal_io("cannot write", e),
        })?;
        done += n as u64;
        on_event(Event::Progress { done });
    }
    if done < found.compressed {
        return Err(Failure::Transient(format!(
            "connection closed after {} of {}",
            human_bytes(done),
            human_bytes(found.compressed)
        )));
    }
    extractor.finish().map_err(|e| match e {
        zip::ExtractError::Data(reason) => bad_archive(reason),
        zip::ExtractError::Io(e) => fatal_io("cannot write", e),
    })?;
    file.sync_all().map_err(|e| fatal_io("cannot write", e))?;
    Ok(())
}

/// A byte range of a remote file.
#[derive(Clone, Copy)]
enum Span {
    /// The last N bytes (all of them when the file is shorter).
    Last(u64),
    /// N bytes from an offset.
    At(u64, u64),
}

/// A Range request for `span`; returns the response and the file's total length, after
/// checking that the server answered with exactly that range.
fn get_range(
    agent: &ureq::Agent,
    entry: &Entry,
    url: &str,
    member: &str,
    span: Span,
) -> Result<(ureq::http::Response<ureq::Body>, u64), Failure> {
    let header = match span {
        Span::Last(n) => format!("bytes=-{n}"),
        Span::At(start, len) => format!("bytes={start}-{}", start + len - 1),
    };
    let response = agent
        .get(url)
        .header("Range", &header)
        .call()
        .map_err(|e| classify(e, url))?;
    let status = response.status().as_u16();
    if status == 200 {
        // Reading on would mean the whole archive: say what is needed instead.
        return Err(Failure::Fatal(Error::Store(format!(
            "{url} ignores HTTP Range requests, which taking {member} out of the archive for {} needs; download the archive and extract {member} into the store as {} instead",
            entry.name, entry.file
        ))));
    }
    if status != 206 {
        return Err(status_failure(status, entry, url));
    }
    let range = response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range);
    let bad = || {
        Failure::Transient(format!(
            "{url} answered the Range request {header} with a different range"
        ))
    };
    let Some((first, last, total)) = range else {
        return Err(bad());
    };
    let ok = match span {
        Span::Last(n) => last + 1 == total && total - first == n.min(total),
        Span::At(start, len) => first == start && last + 1 == start + len && last < total,
    };
    if !ok {
        return Err(bad());
    }
    Ok((response, total))
}

/// A small range read whole: its bytes, where they start, and the file's total length.
fn get_bytes(
    agent: &ureq::Agent,
    entry: &Entry,
    url: &str,
    member: &str,
    span: Span,
) -> Result<(Vec<u8>, u64, u64), Failure> {
    let (response, total) = get_range(agent, entry, url, member, span)?;
    let (start, len) = match span {
        Span::Last(n) => (total - n.min(total), n.min(total)),
        Span::At(start, len) => (start, len),
    };
    // Callers ask for the tail, a central directory or a header: all capped in `zip`.
    let mut bytes = Vec::with_capacity(len as usize);
    response
        .into_body()
        .into_reader()
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Transient(format!("reading {url}: {}", describe_io(&e))))?;
    if bytes.len() as u64 != len {
        return Err(Failure::Transient(format!(
            "connection closed after {} of {len} bytes from {url}",
            bytes.len()
        )));
    }
    Ok((bytes, start, total))
}

/// `bytes FIRST-LAST/TOTAL` as numbers.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
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

/// A local write failure: the partial file is removed, as retrying cannot help.
fn fatal_io(part: &Path, what: &str, e: io::Error) -> Failure {
    let _ = std::fs::remove_file(part);
    Failure::Fatal(Error::Store(format!(
        "{what} {}: {}",
        part.display(),
        describe_io(&e)
    )))
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
