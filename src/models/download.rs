//! Downloads into the model store: resumable, verified, locked, atomic.
//!
//! A file in the store is always complete and verified: bytes go to `FILE.part`, which is
//! hashed and only then renamed. A dropped connection keeps the `.part` file and resumes it with
//! an HTTP Range request (within the same run, and in a later run after Ctrl-C or a crash). A lock
//! file makes a second process wait for the first instead of downloading the same file twice.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha1::Digest;

use super::registry::Checksum;

#[cfg(feature = "download")]
pub use super::transfer::download;

/// What a download is doing, for a progress display.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Another process holds the download lock for this file; waiting for it.
    Waiting {
        /// The model being waited for.
        name: &'a str,
    },
    /// A transfer starts (or resumes at `offset`).
    Start {
        /// The model name.
        name: &'a str,
        /// The URL.
        url: &'a str,
        /// Bytes already on disk from an earlier attempt.
        offset: u64,
        /// Total size when known.
        total: Option<u64>,
    },
    /// Bytes on disk so far.
    Progress {
        /// Bytes on disk, including any resumed part.
        done: u64,
    },
    /// A transient failure; the next attempt resumes.
    Retry {
        /// Why the attempt failed.
        reason: String,
        /// The next attempt's number (2 for the first retry).
        attempt: u32,
    },
    /// The transfer finished; hashing the file.
    Verifying,
}

/// Hashes a file with the checksum's algorithm; returns lowercase hex.
pub fn hash_file(path: &Path, like: &Checksum) -> io::Result<String> {
    match like {
        Checksum::Sha1(_) => digest_file::<sha1::Sha1>(path),
        Checksum::Sha256(_) => digest_file::<sha2::Sha256>(path),
    }
}

fn digest_file<D: Digest>(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = D::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes in binary units, for messages (`141.1 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
