//! Checking cues against the rules.

use super::layout::ms;
use super::text::{line_chars, reading_chars};
use super::{Cue, Rule, Rules, Violation};

/// Every rule `cues` break, in cue order: line length, lines per cue, minimum and maximum
/// duration, minimum gap and overlap with the next cue, reading speed, and (for cues that
/// carry their words' times) silence covered. Times are compared in whole milliseconds, as
/// the files store them. Formatting tags (`<i>`, `{\an8}`) do not count as characters.
pub fn check(cues: &[Cue], rules: &Rules) -> Vec<Violation> {
    let mut out = Vec::new();
    let min_duration = ms(rules.min_duration);
    let max_duration = ms(rules.max_duration);
    let min_gap = ms(rules.min_gap);
    let max_silence = ms(rules.max_silence);
    for (k, cue) in cues.iter().enumerate() {
        let mut report = |rule: Rule, detail: String| {
            out.push(Violation {
                cue: k + 1,
                start: cue.start,
                rule,
                detail,
            })
        };
        let (start, end) = (ms(cue.start), ms(cue.end));
        let label = cue
            .speaker
            .as_ref()
            .map_or(0, |s| format!("[{s}] ").chars().count());
        let lines: Vec<String> = cue.lines.iter().map(|l| strip_tags(l)).collect();
        let longest = lines
            .iter()
            .enumerate()
            .map(|(i, l)| line_chars(l) + if i == 0 { label } else { 0 })
            .max()
            .unwrap_or(0);
        if longest > rules.max_chars_per_line {
            report(
                Rule::LineLength,
                format!("line of {longest} chars > {}", rules.max_chars_per_line),
            );
        }
        if lines.len() > rules.max_lines {
            report(
                Rule::LinesPerCue,
                format!("{} lines > {}", lines.len(), rules.max_lines),
            );
        }
        let duration = end - start;
        if duration < min_duration {
            report(
                Rule::MinDuration,
                format!(
                    "duration {:.3} s < {}",
                    duration as f64 / 1000.0,
                    rules.min_duration
                ),
            );
        }
        if duration > max_duration {
            report(
                Rule::MaxDuration,
                format!(
                    "duration {:.3} s > {}",
                    duration as f64 / 1000.0,
                    rules.max_duration
                ),
            );
        }
        if let Some(next) = cues.get(k + 1) {
            let gap = ms(next.start) - end;
            if gap < 0 {
                report(
                    Rule::Overlap,
                    format!("overlaps the next cue by {:.3} s", -gap as f64 / 1000.0),
                );
            } else if gap < min_gap {
                report(
                    Rule::MinGap,
                    format!(
                        "gap to the next cue {:.3} s < {}",
                        gap as f64 / 1000.0,
                        rules.min_gap
                    ),
                );
            }
        }
        let chars = reading_chars(&lines.join("\n"));
        if chars > 0 && (chars as f64) * 1000.0 > rules.max_cps * duration.max(0) as f64 {
            let cps = if duration > 0 {
                format!("{:.1}", chars as f64 * 1000.0 / duration as f64)
            } else {
                "infinite".to_string()
            };
            report(
                Rule::ReadingSpeed,
                format!("reading speed {cps} chars/s > {}", rules.max_cps),
            );
        }
        if !cue.words.is_empty() {
            // The longest stretch on screen without speech: between words, or after the
            // last word (a cue starts with its first word, or later when pushed by the cue
            // before, so there is no silence at its start).
            let mut longest = 0i64;
            let mut spoken_until = start;
            for w in &cue.words {
                longest = longest.max(ms(w.start) - spoken_until);
                spoken_until = spoken_until.max(ms(w.end));
            }
            longest = longest.max(end - spoken_until);
            if longest > max_silence {
                report(
                    Rule::Silence,
                    format!(
                        "covers {:.3} s of silence > {}",
                        longest as f64 / 1000.0,
                        rules.max_silence
                    ),
                );
            }
        }
    }
    out
}

/// The text as displayed: without formatting tags (HTML-like `<i>`, `</i>`, `<v Name>`,
/// `<00:01.000>`, ASS overrides such as `{\an8}`) and with WebVTT's character references
/// (`&amp;`, `&lt;`, `&gt;`, `&nbsp;`) decoded.
pub(crate) fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' if text.contains('>') => {
                for d in chars.by_ref() {
                    if d == '>' {
                        break;
                    }
                }
            }
            '{' if chars.peek() == Some(&'\\') => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    if out.contains('&') {
        out = out
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&nbsp;", "\u{a0}")
            .replace("&lrm;", "")
            .replace("&rlm;", "")
            .replace("&amp;", "&");
    }
    out
}
