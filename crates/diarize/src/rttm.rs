//! RTTM, the standard diarization format: reading and writing.
//!
//! Only `SPEAKER` records matter here. A record is ten whitespace-separated fields:
//!
//! ```text
//! SPEAKER <file-id> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>
//! ```
//!
//! with onset and duration in seconds. [`parse`] reads every `SPEAKER` record of a text
//! (blank lines and `;;` comments skipped, other record types such as `SPKR-INFO` ignored);
//! [`parse_by_file`] keeps the file ids apart; [`write`] produces lines the way
//! pyannote.core's `Annotation.write_rttm` and dscore do (times with 3 decimals, channel 1).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One speaker turn: `speaker` talks from `start` to `end` (seconds, `start <= end`).
///
/// Used for reference and hypothesis alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub start: f64,
    pub end: f64,
    pub speaker: String,
}

impl Turn {
    pub fn new(start: f64, end: f64, speaker: impl Into<String>) -> Self {
        Turn {
            start,
            end,
            speaker: speaker.into(),
        }
    }

    pub fn duration(&self) -> f64 {
        self.end - self.start
    }
}

/// A malformed RTTM line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("RTTM line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// Every `SPEAKER` record of `text`, in file order, whatever its file id.
pub fn parse(text: &str) -> Result<Vec<Turn>, ParseError> {
    Ok(parse_records(text)?.into_iter().map(|(_, t)| t).collect())
}

/// The `SPEAKER` records of `text` grouped by file id (each group in file order).
pub fn parse_by_file(text: &str) -> Result<BTreeMap<String, Vec<Turn>>, ParseError> {
    let mut files: BTreeMap<String, Vec<Turn>> = BTreeMap::new();
    for (file, turn) in parse_records(text)? {
        files.entry(file).or_default().push(turn);
    }
    Ok(files)
}

fn parse_records(text: &str) -> Result<Vec<(String, Turn)>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |reason: String| ParseError { line, reason };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(";;") {
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        if fields[0] != "SPEAKER" {
            continue;
        }
        if fields.len() < 8 {
            return Err(err(format!(
                "SPEAKER record has {} fields, expected 10 (at least 8)",
                fields.len()
            )));
        }
        let number = |idx: usize, what: &str| -> Result<f64, ParseError> {
            let v: f64 = fields[idx]
                .parse()
                .map_err(|_| err(format!("{what} {:?} is not a number", fields[idx])))?;
            if !v.is_finite() {
                return Err(err(format!("{what} {:?} is not finite", fields[idx])));
            }
            if v < 0.0 {
                return Err(err(format!("{what} {} is negative", fields[idx])));
            }
            Ok(v)
        };
        let onset = number(3, "onset")?;
        let duration = number(4, "duration")?;
        let end = onset + duration;
        if !end.is_finite() {
            return Err(err("onset + duration overflows".into()));
        }
        out.push((
            fields[1].to_string(),
            Turn {
                start: onset,
                end,
                speaker: fields[7].to_string(),
            },
        ));
    }
    Ok(out)
}

/// Replace whitespace (which would break the field layout) by `_`; empty becomes `<NA>`.
fn field(s: &str) -> String {
    if s.trim().is_empty() {
        return "<NA>".to_string();
    }
    s.trim()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// RTTM text for `turns` of one file: one `SPEAKER` line per turn, in the given order,
/// onset and duration with 3 decimals. Whitespace inside `file_id` or a speaker name
/// is replaced by `_`.
pub fn write(file_id: &str, turns: &[Turn]) -> String {
    let file = field(file_id);
    let mut s = String::new();
    for t in turns {
        let _ = writeln!(
            s,
            "SPEAKER {file} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
            t.start,
            t.end - t.start,
            field(&t.speaker)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let turns = vec![
            Turn::new(0.5, 2.25, "spk0"),
            Turn::new(1.0, 1.5, "spk1"),
            Turn::new(10.125, 13.0, "spk0"),
        ];
        let text = write("my file", &turns);
        assert_eq!(
            text.lines().next().unwrap(),
            "SPEAKER my_file 1 0.500 1.750 <NA> <NA> spk0 <NA> <NA>"
        );
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in turns.iter().zip(&back) {
            assert_eq!(a.speaker, b.speaker);
            assert!((a.start - b.start).abs() < 1e-9);
            assert!((a.end - b.end).abs() < 1e-9);
        }
        let files = parse_by_file(&text).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), vec!["my_file"]);
    }

    #[test]
    fn skips_comments_blank_and_other_records() {
        let text = ";; a comment\n\n  \nSPKR-INFO f 1 <NA> <NA> <NA> unknown A <NA> <NA>\n\
                    SPEAKER f 1 1.0 2.0 <NA> <NA> A <NA> <NA>\n\
                    SPEAKER g 1 0 1 <NA> <NA> B\n";
        let turns = parse(text).unwrap();
        assert_eq!(
            turns,
            vec![Turn::new(1.0, 3.0, "A"), Turn::new(0.0, 1.0, "B")]
        );
        let files = parse_by_file(text).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files["g"], vec![Turn::new(0.0, 1.0, "B")]);
    }

    #[test]
    fn errors_name_line_and_reason() {
        let e = parse("SPEAKER f 1 1.0 -2 <NA> <NA> A <NA> <NA>").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("negative"), "{e}");
        let e = parse("\nSPEAKER f 1 x 2 <NA> <NA> A <NA> <NA>").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("not a number"), "{e}");
        let e = parse("SPEAKER f 1 NaN 2 <NA> <NA> A").unwrap_err();
        assert!(e.reason.contains("finite"), "{e}");
        let e = parse("SPEAKER f 1 inf 2 <NA> <NA> A").unwrap_err();
        assert!(e.reason.contains("finite"), "{e}");
        let e = parse(";;\nSPEAKER f 1 0 2").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("RTTM line 2:"), "{e}");
    }
}
