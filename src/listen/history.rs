//! The dictation history: each session's committed text, one JSON line per session in
//! `$XDG_DATA_HOME/verbatim/history.jsonl`, bounded in size (the oldest entries go first).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The size past which the oldest entries are dropped, down to half of it.
pub const MAX_BYTES: u64 = 1 << 20;

/// One dictation session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it started, RFC 3339 UTC.
    pub time: String,
    /// How long it listened (s).
    pub duration: f64,
    /// Its committed text.
    pub text: String,
}

impl Entry {
    /// An entry for a session that started at `start` and listened `duration` seconds.
    pub fn new(start: SystemTime, duration: f64, text: String) -> Entry {
        Entry {
            time: humantime::format_rfc3339_seconds(start).to_string(),
            duration: (duration * 100.0).round() / 100.0,
            text,
        }
    }
}

/// `$XDG_DATA_HOME/verbatim/history.jsonl`, else `~/.local/share/verbatim/history.jsonl`.
pub fn default_path() -> PathBuf {
    let base =
        crate::xdg::base_dir("XDG_DATA_HOME", ".local/share").unwrap_or_else(|| PathBuf::from("."));
    base.join("verbatim").join("history.jsonl")
}

/// Appends `entry`; past `max_bytes` keeps the newest entries that fit in half of it (always
/// the new one), rewritten through a temporary file so a crash never leaves half a history.
pub fn append(path: &Path, entry: &Entry, max_bytes: u64) -> Result<()> {
    let fail = |e: std::io::Error| Error::Device(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut line = serde_json::to_string(entry).map_err(|e| Error::Device(e.to_string()))?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(line.as_bytes()).map_err(fail)?;
    drop(file);
    if fs::metadata(path).map_err(fail)?.len() <= max_bytes {
        return Ok(());
    }
    let all = fs::read_to_string(path).map_err(fail)?;
    let mut kept: Vec<&str> = Vec::new();
    let mut size = 0u64;
    for l in all.lines().rev() {
        size += l.len() as u64 + 1;
        if size > max_bytes / 2 && !kept.is_empty() {
            break;
        }
        kept.push(l);
    }
    kept.reverse();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    for l in kept {
        writeln!(tmp, "{l}").map_err(fail)?;
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The last `n` entries, oldest first (lines that do not parse are skipped).
pub fn last(path: &Path, n: usize) -> Result<Vec<Entry>> {
    let all = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Device(format!("{}: {e}", path.display()))),
    };
    let mut entries: Vec<Entry> = all
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(n)
        .collect();
    entries.reverse();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h").join("history.jsonl");
        for i in 0..200 {
            let e = Entry::new(
                SystemTime::UNIX_EPOCH,
                1.0,
                format!("entry {i} {}", "x".repeat(40)),
            );
            append(&path, &e, 4096).unwrap();
            assert!(fs::metadata(&path).unwrap().len() <= 4096);
        }
        let kept = last(&path, 1000).unwrap();
        assert!(kept.len() > 10 && kept.len() < 100, "{}", kept.len());
        assert!(kept.last().unwrap().text.starts_with("entry 199 "));
        assert_eq!(last(&path, 2).unwrap().len(), 2);
        assert_eq!(kept[0].time, "1970-01-01T00:00:00Z");
        assert!(last(&dir.path().join("none"), 5).unwrap().is_empty());
    }
}
