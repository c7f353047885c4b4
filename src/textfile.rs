//! Reading the small text files a user points verbatim at (config, model registry, input
//! lists) without trusting their size: `/dev/zero` or a huge file is an error, not a
//! memory exhaustion.

use std::io::Read;
use std::path::Path;

/// Reads `path` as UTF-8 text of at most `max_bytes` bytes; a larger file (or an endless
/// device) gives an `InvalidData` error saying so, after reading no more than the limit.
pub fn read_limited(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} KiB, too large for this kind of file",
                max_bytes / 1024
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_and_large_inputs_are_refused() {
        let err = read_limited(Path::new("/dev/zero"), 4096).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(read_limited(&p, 6).unwrap(), "a = 1\n");
        assert!(read_limited(&p, 5).is_err());
        std::fs::write(&p, [0xffu8, 0xfe]).unwrap();
        assert!(read_limited(&p, 10).is_err());
    }
}
