//! Laying out a transcript as cues: choosing where cues break (a shortest-path search over
//! word positions), then their times, then their lines.

use super::text::{self, break_cost, break_lines, is_cjk, joiner, reading_chars};
use super::{check, Cue, Layout, Rules};
use crate::transcript::{Transcript, Word};

/// A word of the stream, times in integer milliseconds so that every rule is checked
/// exactly (no float drift between the engine and the checker).
struct Token {
    word: Word,
    start: i64,
    end: i64,
    /// Who speaks (`S1`, or `ch1` for split channels): a cue never mixes two.
    speaker: Option<String>,
}

/// Cost of one broken rule: higher than any layout preference, so the search breaks a rule
/// only when every alternative breaks more.
const VIOLATION: f64 = 10_000.0;
/// Cost of one more cue: fewer, fuller cues are easier to follow than many flashing ones.
const PER_CUE: f64 = 10.0;
/// Cost of a cue that starts a new sentence after finishing one, and stops mid-sentence.
const SENTENCE_CARRIED: f64 = 25.0;

pub(crate) fn ms(t: f64) -> i64 {
    if t.is_finite() {
        (t * 1000.0).round() as i64
    } else {
        0
    }
}

/// Lays `transcript` out as cues that follow `rules`.
///
/// Cues are built from word timestamps; a segment without words is split into its
/// whitespace-separated words (CJK text into characters) spread over the segment's time in
/// proportion to their length. Cue breaks are chosen over the whole stream at once, so a cue
/// ends at a sentence end, a clause, a pause or at least not after a weak word whenever the
/// rules allow it. A cue never covers a silence longer than `max_silence` and never mixes
/// speakers (diarized speakers, or channels). Each cue starts with its first word and ends
/// `linger` after its last one, extended into the following silence when the minimum
/// duration or the reading speed ask for it (never closer than `min_gap` to the next cue). Whatever rule the input still makes
/// impossible is in [`Layout::violations`].
pub fn layout(transcript: &Transcript, rules: &Rules) -> Layout {
    let tokens = tokens(transcript);
    let texts: Vec<&str> = tokens.iter().map(|t| t.word.text.as_str()).collect();
    let n = tokens.len();
    let r = MsRules::new(rules);

    // Cost of a cue break after each word (stream-wide), and the separator widths.
    let gaps: Vec<i64> = (0..n)
        .map(|k| match tokens.get(k + 1) {
            Some(next) => (next.start - tokens[k].end).max(0),
            None => i64::MAX,
        })
        .collect();
    let stream_break: Vec<f64> = (0..n)
        .map(|k| {
            let hard =
                k + 1 == n || gaps[k] > r.max_silence || tokens[k].speaker != tokens[k + 1].speaker;
            if hard {
                0.0
            } else {
                break_cost(&texts, k, gaps[k] as f64 / 1000.0)
            }
        })
        .collect();
    let widths: Vec<usize> = texts.iter().map(|t| text::line_chars(t)).collect();
    let seps: Vec<usize> = (0..n.saturating_sub(1))
        .map(|k| joiner(texts[k], texts[k + 1]).len())
        .collect();
    let capacity = rules.max_chars_per_line * rules.max_lines + rules.max_lines;

    // best[j]: cheapest layout of words 0..j; prev[j]: where its last cue starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut prev = vec![0usize; n + 1];
    best[0] = 0.0;
    for j in 1..=n {
        let mut chars = 0usize;
        for i in (0..j).rev() {
            chars += widths[i] + if i + 1 < j { seps[i] } else { 0 };
            let single = i + 1 == j;
            if !single {
                // Hard limits: extending the cue further back only makes them worse.
                if gaps[i] > r.max_silence
                    || tokens[i].speaker != tokens[i + 1].speaker
                    || tokens[j - 1].end - tokens[i].start > r.max_duration
                    || chars > capacity
                {
                    break;
                }
            }
            if !best[i].is_finite() {
                continue;
            }
            let extra = label_width(tokens[i].speaker.as_deref());
            let lines = break_lines(
                &widths[i..j],
                &seps[i..j - 1],
                &stream_break[i..j - 1],
                rules.max_chars_per_line,
                rules.max_lines,
                extra,
            );
            let (line_cost, mut violations) = match lines {
                Some((_, c)) => (c, 0.0),
                None if single => (0.0, 1.0),
                None => break,
            };
            // Time this cue can have if the next cue starts with its first word.
            let start = tokens[i].start;
            let limit = cue_limit(&tokens, &r, start, j);
            let text_chars = reading_count(&texts[i..j]);
            let available = limit - start;
            if available < r.min_duration {
                violations += 1.0;
            }
            if (text_chars as f64) * 1000.0 > rules.max_cps * available as f64 {
                violations += 1.0;
            }
            // A cue that finishes one sentence and then starts another it does not finish
            // leaves the reader with half a thought: cost it like a poor break.
            let mut carried = 0.0;
            if !text::ends_sentence(texts[j - 1])
                && texts[i..j - 1].iter().any(|w| text::ends_sentence(w))
            {
                carried = SENTENCE_CARRIED;
            }
            let cost = best[i]
                + carried
                + PER_CUE
                + stream_break[j - 1]
                + line_cost
                + VIOLATION * violations;
            if cost < best[j] {
                best[j] = cost;
                prev[j] = i;
            }
        }
    }

    // Walk the cheapest path back into cue spans.
    let mut spans = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = prev[j];
        spans.push((i, j));
        j = i;
    }
    spans.reverse();

    let media_end = ms(transcript.duration);
    let mut cues: Vec<Cue> = Vec::with_capacity(spans.len());
    let mut prev_end: Option<i64> = None;
    for &(i, j) in &spans {
        let mut start = tokens[i].start.max(0);
        if let Some(p) = prev_end {
            start = start.max(p + r.min_gap);
        }
        let text_chars = reading_count(&texts[i..j]) as f64;
        let need = (tokens[j - 1].end + r.linger)
            .max(start + r.min_duration)
            .max(start + (text_chars * 1000.0 / rules.max_cps).ceil() as i64);
        let mut end = need.min(cue_limit(&tokens, &r, start, j));
        if j == n && media_end > tokens[j - 1].end {
            // The last cue never outlasts the audio: at the end of a file, or at the cut
            // between two windows of a long recording, where the next window's first cue
            // must still find `min_gap` free.
            end = end.min((media_end - r.min_gap).max(tokens[j - 1].end));
        }
        if end <= start {
            end = start + 1;
        }
        prev_end = Some(end);

        let extra = label_width(tokens[i].speaker.as_deref());
        let starts = break_lines(
            &widths[i..j],
            &seps[i..j - 1],
            &stream_break[i..j - 1],
            rules.max_chars_per_line,
            rules.max_lines,
            extra,
        )
        .map(|(s, _)| s)
        .unwrap_or_default();
        let mut bounds = vec![i];
        bounds.extend(starts.iter().map(|s| s + i));
        bounds.push(j);
        let lines = bounds
            .windows(2)
            .map(|b| {
                let mut line = String::new();
                for k in b[0]..b[1] {
                    if k > b[0] {
                        line.push_str(joiner(texts[k - 1], texts[k]));
                    }
                    line.push_str(texts[k]);
                }
                line
            })
            .collect();
        cues.push(Cue {
            start: start as f64 / 1000.0,
            end: end as f64 / 1000.0,
            lines,
            speaker: tokens[i].speaker.clone(),
            words: tokens[i..j].iter().map(|t| t.word.clone()).collect(),
        });
    }
    let violations = check(&cues, rules);
    Layout { cues, violations }
}

/// The rules in integer milliseconds.
struct MsRules {
    min_duration: i64,
    max_duration: i64,
    min_gap: i64,
    max_silence: i64,
    linger: i64,
}

impl MsRules {
    fn new(rules: &Rules) -> Self {
        MsRules {
            min_duration: ms(rules.min_duration),
            max_duration: ms(rules.max_duration),
            min_gap: ms(rules.min_gap),
            max_silence: ms(rules.max_silence),
            linger: ms(rules.linger).min(ms(rules.max_silence)),
        }
    }
}

/// The latest end of a cue starting at `start` whose words end before token `j`: `min_gap`
/// before the next word, at most `max_silence` after its last word, at most `max_duration`.
fn cue_limit(tokens: &[Token], r: &MsRules, start: i64, j: usize) -> i64 {
    let mut limit = (tokens[j - 1].end + r.max_silence).min(start + r.max_duration);
    if let Some(next) = tokens.get(j) {
        limit = limit.min(next.start - r.min_gap);
    }
    limit
}

/// Reading characters of words joined as they are displayed.
fn reading_count(words: &[&str]) -> usize {
    let mut text = String::new();
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            text.push_str(joiner(words[k - 1], w));
        }
        text.push_str(w);
    }
    reading_chars(&text)
}

/// Characters the `[S1] ` (or `[ch1] `) speaker label takes on a cue's first line.
fn label_width(speaker: Option<&str>) -> usize {
    speaker.map_or(0, |l| format!("[{l}] ").len())
}

/// The word stream of a transcript, with monotonic millisecond times.
fn tokens(transcript: &Transcript) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    for seg in &transcript.segments {
        let words: Vec<Word> = match &seg.words {
            Some(ws) if ws.iter().any(|w| !w.text.trim().is_empty()) => ws
                .iter()
                .flat_map(|w| {
                    // A "word" with inner spaces is displayed as its parts, same times.
                    w.text.split_whitespace().map(|t| Word {
                        text: t.to_string(),
                        ..w.clone()
                    })
                })
                .collect(),
            _ => spread(&seg.text, seg.start, seg.end),
        };
        for word in words {
            let mut start = ms(word.start);
            if let Some(last) = out.last() {
                start = start.max(last.start);
            }
            let end = ms(word.end).max(start);
            // The cue keeps the times the engine used, so `check` sees the same silences.
            let word = Word {
                start: start as f64 / 1000.0,
                end: end as f64 / 1000.0,
                ..word
            };
            out.push(Token {
                word,
                start,
                end,
                speaker: seg.speaker_label(),
            });
        }
    }
    out
}

/// Words of a segment that has no word times: whitespace-separated words, CJK text one
/// character at a time (punctuation stays with the character before it), each given a share
/// of the segment's time in proportion to its length.
fn spread(text: &str, start: f64, end: f64) -> Vec<Word> {
    let mut pieces: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if !word.chars().any(is_cjk) {
            pieces.push(word.to_string());
            continue;
        }
        let mut current = String::new();
        for c in word.chars() {
            let attach = !c.is_alphanumeric() && !current.is_empty();
            let starts_new = is_cjk(c) && c.is_alphanumeric();
            if starts_new && !current.is_empty() && !attach {
                pieces.push(std::mem::take(&mut current));
            }
            current.push(c);
        }
        if !current.is_empty() {
            pieces.push(current);
        }
    }
    let total: usize = pieces.iter().map(|p| p.chars().count() + 1).sum();
    let span = (end - start).max(0.0);
    let mut t = start;
    pieces
        .into_iter()
        .map(|p| {
            let d = span * (p.chars().count() + 1) as f64 / total.max(1) as f64;
            let w = Word {
                speaker: None,
                text: p,
                start: t,
                end: t + d,
                probability: 1.0,
            };
            t += d;
            w
        })
        .collect()
}
