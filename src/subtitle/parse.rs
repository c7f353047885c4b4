//! Reading SRT and WebVTT files back into cues.

use super::Cue;

/// Parses SubRip or WebVTT text into cues.
///
/// Accepted: a UTF-8 BOM, CRLF or CR line ends, SRT with or without cue numbers, WebVTT
/// headers, `NOTE`, `STYLE` and `REGION` blocks, cue identifiers, cue settings after the end
/// time (`align:start line:0`), times with `,` or `.` before the milliseconds and WebVTT
/// times without hours (`01:02.500`). Lines are kept as written, tags included; [`super::check`]
/// ignores tags when it counts characters. Errors name the 1-based line.
pub fn parse_subtitles(text: &str) -> Result<Vec<Cue>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let vtt = lines
        .first()
        .is_some_and(|l| l.trim_start().starts_with("WEBVTT"));

    // Blocks of non-blank lines, with the 1-based number of their first line.
    let mut blocks: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            if let Some(b) = current.take() {
                blocks.push(b);
            }
        } else {
            current
                .get_or_insert_with(|| (i + 1, Vec::new()))
                .1
                .push(line);
        }
    }
    if let Some(b) = current.take() {
        blocks.push(b);
    }
    if blocks.is_empty() {
        return Err("no subtitle cues found (expected SRT or WebVTT)".into());
    }

    let mut cues = Vec::new();
    for (index, (first, block)) in blocks.iter().enumerate() {
        if vtt {
            if index == 0 {
                continue; // WEBVTT header and its metadata lines
            }
            let head = block[0].trim_start();
            if ["NOTE", "STYLE", "REGION"].iter().any(|k| {
                head == *k
                    || head.starts_with(&format!("{k} "))
                    || head.starts_with(&format!("{k}\t"))
            }) {
                continue;
            }
        }
        // The timing line is the first line, or the second after a number / identifier.
        let Some(t) = block.iter().take(2).position(|l| l.contains("-->")) else {
            // After a cue number the time line was expected on the next line.
            let numbered = block.len() > 1 && block[0].trim().bytes().all(|b| b.is_ascii_digit());
            let at = usize::from(numbered);
            return Err(format!(
                "line {}: expected a cue time line such as `00:00:01,000 --> 00:00:02,500`, found `{}`",
                first + at,
                block[at].trim()
            ));
        };
        let line_no = first + t;
        let (a, b) = block[t].split_once("-->").unwrap_or_default();
        let end_text = b.split_whitespace().next().unwrap_or("");
        let start = crate::timecode::parse_cue(a.trim(), vtt)
            .ok_or_else(|| format!("line {line_no}: invalid start time `{}`", a.trim()))?;
        let end = crate::timecode::parse_cue(end_text, vtt)
            .ok_or_else(|| format!("line {line_no}: invalid end time `{end_text}`"))?;
        cues.push(Cue {
            start,
            end,
            lines: block[t + 1..]
                .iter()
                .map(|l| l.trim_end().to_string())
                .collect(),
            speaker: None,
            words: Vec::new(),
        });
    }
    if cues.is_empty() && !vtt {
        return Err("no subtitle cues found (expected SRT or WebVTT)".into());
    }
    Ok(cues)
}
