//! Just enough of the zip format to take one member out of a remote archive (a Python wheel)
//! with HTTP Range requests: the end record, the central directory and one local header.
//!
//! Every size and offset read from the archive is checked against the archive's length before
//! anything is allocated or requested; ZIP64, encryption and methods other than stored and
//! deflate are refused (no wheel verbatim uses needs them).

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// The end-of-central-directory record's fixed length.
const END_LEN: usize = 22;
/// The archive's last bytes that must hold the end record (its comment is at most 64 KiB).
pub const TAIL_LEN: u64 = END_LEN as u64 + 0xFFFF;
/// A local file header's fixed length.
pub const LOCAL_HEADER_LEN: u64 = 30;
/// A central directory entry's fixed length.
const ENTRY_LEN: usize = 46;
/// The largest central directory read (a wheel's is a few KiB).
pub const MAX_CENTRAL_DIRECTORY: u64 = 16 << 20;

/// The end-of-central-directory record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    /// Where the central directory starts.
    pub cd_offset: u64,
    /// Its length in bytes.
    pub cd_size: u64,
    /// The number of entries in it.
    pub entries: u64,
}

/// One member, as the central directory describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// 0 (stored) or 8 (deflate).
    pub method: u16,
    /// Bytes in the archive.
    pub compressed: u64,
    /// Bytes once extracted.
    pub size: u64,
    /// Where its local header starts.
    pub header_offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Finds the end record in `tail`, the last bytes of an archive of `total` bytes.
pub fn end_record(tail: &[u8], total: u64) -> Result<EndRecord, String> {
    let tail_start = total
        .checked_sub(tail.len() as u64)
        .ok_or("the archive is shorter than its own tail")?;
    if tail.len() < END_LEN {
        return Err(format!("{total} bytes is too short for a zip archive"));
    }
    // The last signature whose comment runs exactly to the end of the archive.
    let at = (0..=tail.len() - END_LEN)
        .rev()
        .find(|&i| {
            tail[i..i + 4] == *b"PK\x05\x06"
                && i + END_LEN + usize::from(u16_at(tail, i + 20)) == tail.len()
        })
        .ok_or("no zip end-of-central-directory record (not a zip archive, or truncated)")?;
    let rec = &tail[at..];
    if u16_at(rec, 4) != 0 || u16_at(rec, 6) != 0 {
        return Err("multi-disk zip archives are not supported".into());
    }
    let entries = u16_at(rec, 10);
    let cd_size = u32_at(rec, 12);
    let cd_offset = u32_at(rec, 16);
    if entries == u16::MAX || cd_size == u32::MAX || cd_offset == u32::MAX {
        return Err("ZIP64 archives are not supported".into());
    }
    let (entries, cd_size, cd_offset) =
        (u64::from(entries), u64::from(cd_size), u64::from(cd_offset));
    let end_at = tail_start + at as u64;
    if cd_offset + cd_size > end_at {
        return Err(format!(
            "the central directory ({cd_size} bytes at {cd_offset}) runs past its end record at {end_at}"
        ));
    }
    if entries == 0 || cd_size == 0 {
        return Err("the archive is empty".into());
    }
    if cd_size > MAX_CENTRAL_DIRECTORY {
        return Err(format!(
            "a central directory of {cd_size} bytes is larger than any wheel's"
        ));
    }
    if entries * ENTRY_LEN as u64 > cd_size {
        return Err(format!(
            "{entries} entries cannot fit in a central directory of {cd_size} bytes"
        ));
    }
    Ok(EndRecord {
        cd_offset,
        cd_size,
        entries,
    })
}

/// Finds `name` in the central directory `cd` (exactly `end.cd_size` bytes).
pub fn find_member(cd: &[u8], end: &EndRecord, name: &str) -> Result<Member, String> {
    let truncated = || "the central directory is truncated".to_string();
    let mut pos = 0usize;
    for _ in 0..end.entries {
        let fixed = cd.get(pos..pos + ENTRY_LEN).ok_or_else(truncated)?;
        if fixed[..4] != *b"PK\x01\x02" {
            return Err(format!("bad central directory entry at byte {pos}"));
        }
        let name_len = usize::from(u16_at(fixed, 28));
        let extra_len = usize::from(u16_at(fixed, 30));
        let comment_len = usize::from(u16_at(fixed, 32));
        let name_at = pos + ENTRY_LEN;
        let next = name_at + name_len + extra_len + comment_len;
        if next > cd.len() {
            return Err(truncated());
        }
        if &cd[name_at..name_at + name_len] == name.as_bytes() {
            return member(fixed, end, name);
        }
        pos = next;
    }
    Err(format!("the archive has no member {name}"))
}

/// Checks one central directory entry (`fixed`, its first 46 bytes) and describes it.
fn member(fixed: &[u8], end: &EndRecord, name: &str) -> Result<Member, String> {
    let flags = u16_at(fixed, 8);
    let method = u16_at(fixed, 10);
    let compressed = u32_at(fixed, 20);
    let size = u32_at(fixed, 24);
    let header_offset = u32_at(fixed, 42);
    if flags & 1 != 0 {
        return Err(format!("{name} is encrypted in the archive"));
    }
    if compressed == u32::MAX || size == u32::MAX || header_offset == u32::MAX {
        return Err(format!("{name} is a ZIP64 member, which is not supported"));
    }
    let m = Member {
        method,
        compressed: u64::from(compressed),
        size: u64::from(size),
        header_offset: u64::from(header_offset),
    };
    match method {
        0 if m.compressed != m.size => {
            return Err(format!(
                "{name} is stored uncompressed yet {} bytes in the archive and {} extracted",
                m.compressed, m.size
            ))
        }
        0 | 8 => {}
        other => {
            return Err(format!(
            "{name} uses compression method {other}; only stored (0) and deflate (8) are supported"
        ))
        }
    }
    if m.compressed == 0 {
        return Err(format!("{name} is empty in the archive"));
    }
    if m.header_offset + LOCAL_HEADER_LEN + m.compressed > end.cd_offset {
        return Err(format!(
            "{name} ({} bytes at {}) runs into the central directory at {}",
            m.compressed, m.header_offset, end.cd_offset
        ));
    }
    Ok(m)
}

/// Where `member`'s data starts, from its local header (at least `LOCAL_HEADER_LEN` bytes).
pub fn data_offset(header: &[u8], member: &Member, end: &EndRecord) -> Result<u64, String> {
    if header.len() < LOCAL_HEADER_LEN as usize || header[..4] != *b"PK\x03\x04" {
        return Err(format!(
            "no local file header at byte {} of the archive",
            member.header_offset
        ));
    }
    let start = member.header_offset
        + LOCAL_HEADER_LEN
        + u64::from(u16_at(header, 26))
        + u64::from(u16_at(header, 28));
    if start + member.compressed > end.cd_offset {
        return Err(format!(
            "the member's data ({} bytes at {start}) runs into the central directory",
            member.compressed
        ));
    }
    Ok(start)
}

/// Extracts a member as its bytes arrive: memory is one output buffer and the inflater's
/// 32 KiB window, whatever the member's size.
pub struct Extractor {
    state: Option<Box<InflateState>>,
    out: Vec<u8>,
    written: u64,
    limit: u64,
    finished: bool,
}

impl Extractor {
    /// An extractor for `member`, which must come to exactly `member.size` bytes.
    pub fn new(member: &Member) -> Extractor {
        let deflate = member.method == 8;
        Extractor {
            state: deflate.then(|| InflateState::new_boxed(DataFormat::Raw)),
            out: if deflate {
                vec![0; 256 * 1024]
            } else {
                Vec::new()
            },
            written: 0,
            limit: member.size,
            finished: !deflate,
        }
    }

    /// Feeds the next compressed bytes; `write` gets each piece of extracted data.
    pub fn push(
        &mut self,
        mut input: &[u8],
        write: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ExtractError> {
        let Some(state) = self.state.as_mut() else {
            self.written += input.len() as u64;
            if self.written > self.limit {
                return Err(ExtractError::Data(
                    "the member is longer than its size".into(),
                ));
            }
            return write(input).map_err(ExtractError::Io);
        };
        loop {
            if self.finished {
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(ExtractError::Data(
                        "bytes after the end of the deflate stream".into(),
                    ))
                };
            }
            let r = inflate(state, input, &mut self.out, MZFlush::None);
            input = &input[r.bytes_consumed..];
            self.written += r.bytes_written as u64;
            if self.written > self.limit {
                return Err(ExtractError::Data(format!(
                    "the member inflates past its size of {} bytes",
                    self.limit
                )));
            }
            if r.bytes_written > 0 {
                write(&self.out[..r.bytes_written]).map_err(ExtractError::Io)?;
            }
            if r.bytes_consumed == 0
                && r.bytes_written == 0
                && !input.is_empty()
                && r.status == Ok(MZStatus::Ok)
            {
                return Err(ExtractError::Data(
                    "the deflate stream makes no progress".into(),
                ));
            }
            match r.status {
                Ok(MZStatus::StreamEnd) => self.finished = true,
                Ok(_) if input.is_empty() && r.bytes_written < self.out.len() => return Ok(()),
                Ok(_) => {}
                Err(MZError::Buf) if input.is_empty() => return Ok(()),
                Err(e) => return Err(ExtractError::Data(format!("corrupt deflate data ({e:?})"))),
            }
        }
    }

    /// Checks that the member ended where it should, after its last bytes were pushed.
    pub fn finish(&self) -> Result<(), ExtractError> {
        if !self.finished {
            return Err(ExtractError::Data("the deflate stream ends early".into()));
        }
        if self.written != self.limit {
            return Err(ExtractError::Data(format!(
                "the member extracted to {} bytes, not {}",
                self.written, self.limit
            )));
        }
        Ok(())
    }
}

/// Why extraction stopped: the archive's bytes, or writing the result.
#[derive(Debug)]
pub enum ExtractError {
    /// The compressed data is not what the archive says.
    Data(String),
    /// Writing the extracted bytes failed.
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip of `(name, data, deflate)` members and an archive comment; returns the archive.
    fn build(members: &[(&str, &[u8], bool)], comment: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data, deflate) in members {
            let body = if *deflate {
                miniz_oxide::deflate::compress_to_vec(data, 6)
            } else {
                data.to_vec()
            };
            let offset = out.len() as u32;
            let method: u16 = if *deflate { 8 } else { 0 };
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (not checked)
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&3u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"xyz");
            out.extend_from_slice(&body);
            cd.extend_from_slice(b"PK\x01\x02");
            cd.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            cd.extend_from_slice(&method.to_le_bytes());
            cd.extend_from_slice(&[0; 8]);
            cd.extend_from_slice(&(body.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
            cd.extend_from_slice(&offset.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        let n = members.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        out.extend_from_slice(comment);
        out
    }

    /// Extracts `name` from `zip` the way a download does, in `chunk`-byte pieces.
    fn extract(zip: &[u8], name: &str, chunk: usize) -> Result<Vec<u8>, String> {
        let tail_len = zip.len().min(TAIL_LEN as usize);
        let end = end_record(&zip[zip.len() - tail_len..], zip.len() as u64)?;
        let cd = &zip[end.cd_offset as usize..(end.cd_offset + end.cd_size) as usize];
        let m = find_member(cd, &end, name)?;
        let header = &zip[m.header_offset as usize..][..LOCAL_HEADER_LEN as usize];
        let start = data_offset(header, &m, &end)? as usize;
        let mut x = Extractor::new(&m);
        let mut got = Vec::new();
        for piece in zip[start..start + m.compressed as usize].chunks(chunk) {
            x.push(piece, &mut |b: &[u8]| -> std::io::Result<()> {
                got.extend_from_slice(b);
                Ok(())
            })
            .map_err(|e| format!("{e:?}"))?;
        }
        x.finish().map_err(|e| format!("{e:?}"))?;
        Ok(got)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn stored_and_deflated_members_come_out_whole() {
        let big = sample(700_000);
        let zip = build(
            &[
                ("a/readme.txt", b"hello", false),
                ("m/model.bin", &big, true),
            ],
            b"a comment with PK\x05\x06 in it",
        );
        assert_eq!(
            extract(&zip, "m/model.bin", 1).unwrap_or_default().len(),
            big.len()
        );
        assert_eq!(extract(&zip, "m/model.bin", 8191).unwrap(), big);
        assert_eq!(extract(&zip, "m/model.bin", usize::MAX).unwrap(), big);
        assert_eq!(extract(&zip, "a/readme.txt", 2).unwrap(), b"hello");
        let err = extract(&zip, "m/other.bin", 10).unwrap_err();
        assert!(err.contains("no member m/other.bin"), "{err}");
    }

    #[test]
    fn truncated_or_foreign_tails_are_refused() {
        let zip = build(&[("x", b"data", false)], b"");
        for cut in [1, 10, 21] {
            let tail = &zip[..zip.len() - cut];
            assert!(end_record(tail, tail.len() as u64).is_err(), "cut {cut}");
        }
        assert!(end_record(b"short", 5).is_err());
        assert!(end_record(&[0u8; 100], 100).is_err());
        // A tail said to be longer than the archive.
        assert!(end_record(&zip, 3).is_err());
        // A comment length that runs past the end.
        let mut bad = zip.clone();
        let n = bad.len();
        bad[n - 2] = 5;
        assert!(end_record(&bad, n as u64).is_err());
    }

    /// The archive with bytes at `at` (from the end record's start) replaced.
    fn with_end(zip: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut z = zip.to_vec();
        let end = z.len() - END_LEN;
        z[end + at..end + at + bytes.len()].copy_from_slice(bytes);
        z
    }

    #[test]
    fn offsets_and_sizes_outside_the_archive_are_refused() {
        let zip = build(&[("x", b"data", false)], b"");
        let total = zip.len() as u64;
        let end_of = |z: &[u8]| end_record(&z[z.len() - END_LEN..], total);
        // The central directory past the end record, or huge, or ZIP64.
        assert!(end_of(&with_end(&zip, 16, &(total as u32).to_le_bytes())).is_err());
        assert!(end_of(&with_end(&zip, 12, &0x7fff_ffffu32.to_le_bytes())).is_err());
        let err = end_of(&with_end(&zip, 16, &u32::MAX.to_le_bytes())).unwrap_err();
        assert!(err.contains("ZIP64"), "{err}");
        // More entries than the directory can hold.
        let err = end_of(&with_end(&zip, 10, &1000u16.to_le_bytes())).unwrap_err();
        assert!(err.contains("entries"), "{err}");
        // Multi-disk.
        assert!(end_of(&with_end(&zip, 4, &1u16.to_le_bytes())).is_err());

        let end = end_of(&zip).unwrap();
        let cd = zip[end.cd_offset as usize..][..end.cd_size as usize].to_vec();
        let edit = |at: usize, bytes: &[u8]| {
            let mut c = cd.clone();
            c[at..at + bytes.len()].copy_from_slice(bytes);
            find_member(&c, &end, "x")
        };
        // Sizes and offsets that run past the directory, or huge ones.
        assert!(edit(20, &0xffff_fff0u32.to_le_bytes()).is_err());
        assert!(edit(24, &u32::MAX.to_le_bytes()).is_err());
        assert!(edit(42, &(end.cd_offset as u32).to_le_bytes()).is_err());
        // A name length past the directory's end.
        let err = edit(28, &u16::MAX.to_le_bytes()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        // Encrypted, unknown method, stored with two sizes.
        assert!(edit(8, &1u16.to_le_bytes())
            .unwrap_err()
            .contains("encrypted"));
        assert!(edit(10, &12u16.to_le_bytes())
            .unwrap_err()
            .contains("method 12"));
        assert!(edit(20, &3u32.to_le_bytes()).is_err());
        // A truncated directory and a directory that is not one.
        assert!(find_member(&cd[..cd.len() - 1], &end, "x").is_err());
        assert!(find_member(&[0u8; 46], &end, "x").is_err());

        // A local header whose name and extra lengths run into the directory.
        let m = find_member(&cd, &end, "x").unwrap();
        let mut header = zip[..LOCAL_HEADER_LEN as usize].to_vec();
        assert!(data_offset(&header, &m, &end).is_ok());
        header[26..28].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(data_offset(&header, &m, &end).is_err());
        assert!(data_offset(&header[..10], &m, &end).is_err());
        assert!(data_offset(&[0u8; 30], &m, &end).is_err());
    }

    #[test]
    fn corrupt_or_overlong_deflate_data_is_an_error() {
        let data = sample(100_000);
        let zip = build(&[("m", &data, true)], b"");
        let end = end_record(&zip[zip.len() - END_LEN..], zip.len() as u64).unwrap();
        let cd = &zip[end.cd_offset as usize..][..end.cd_size as usize];
        let m = find_member(cd, &end, "m").unwrap();
        let start = data_offset(&zip[..30], &m, &end).unwrap() as usize;
        let body = &zip[start..start + m.compressed as usize];
        fn sink(_: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        // Cut short: no stream end.
        let mut x = Extractor::new(&m);
        x.push(&body[..body.len() / 2], &mut sink).unwrap();
        assert!(x.finish().is_err());
        // A member that says it is smaller than its data inflates past its size.
        let small = Member { size: 10, ..m };
        assert!(Extractor::new(&small).push(body, &mut sink).is_err());
        // Garbage instead of deflate data.
        let mut x = Extractor::new(&m);
        let bad = x.push(&[0xff; 64], &mut sink).is_err() || x.finish().is_err();
        assert!(bad);
        // A stored member with more bytes than its size.
        let stored = Member {
            method: 0,
            compressed: 4,
            size: 4,
            ..m
        };
        assert!(Extractor::new(&stored).push(b"12345", &mut sink).is_err());
    }
}
