//! Putting speaker turns onto a transcript: each word goes to the speaker whose turns cover
//! most of it, and a segment is split wherever the speaker changes, so a turn change inside
//! a whisper segment is not lost.

use crate::transcript::{Segment, Speaker, SpeakerTurn, Transcript, Word};

/// A turn as diarization found it: times in seconds and the speaker's cluster number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawTurn {
    pub start: f64,
    pub end: f64,
    pub speaker: usize,
}

/// Labels speakers `S1`, `S2`, ... in order of first appearance, gives every word and
/// segment its speaker (splitting segments at speaker changes), and fills the transcript's
/// `speakers` and `turns`. A speaker no word goes to is dropped (a voice in noise, a cough):
/// with no turns or no words (silence, noise) the transcript is left as it is, without
/// speakers.
pub fn assign_speakers(transcript: &mut Transcript, turns: &[RawTurn]) {
    let turns: Vec<RawTurn> = turns
        .iter()
        .copied()
        .filter(|t| t.end > t.start && t.start.is_finite() && t.end.is_finite())
        .collect();
    let all: Vec<(f64, f64, usize)> = turns.iter().map(|t| (t.start, t.end, t.speaker)).collect();
    let mut speaking: Vec<usize> = Vec::new();
    for seg in &transcript.segments {
        let spans: Vec<(f64, f64)> = match &seg.words {
            Some(words) if !words.is_empty() => words.iter().map(|w| (w.start, w.end)).collect(),
            _ => vec![(seg.start, seg.end)],
        };
        for (start, end) in spans {
            if !all.is_empty() {
                let k = speaker_of(start, end.max(start + 0.001), &all);
                if !speaking.contains(&k) {
                    speaking.push(k);
                }
            }
        }
    }
    let mut turns: Vec<RawTurn> = turns
        .into_iter()
        .filter(|t| speaking.contains(&t.speaker))
        .collect();
    if turns.is_empty() {
        return;
    }
    turns.sort_by(|a, b| a.start.total_cmp(&b.start));
    // Cluster numbers -> labels by first appearance.
    let mut order: Vec<usize> = Vec::new();
    for t in &turns {
        if !order.contains(&t.speaker) {
            order.push(t.speaker);
        }
    }
    let rank = |cluster: usize| order.iter().position(|&c| c == cluster).unwrap_or(0);
    let labelled: Vec<(f64, f64, usize)> = turns
        .iter()
        .map(|t| (t.start, t.end, rank(t.speaker)))
        .collect();
    let label = |k: usize| format!("S{}", k + 1);

    let segments = std::mem::take(&mut transcript.segments);
    for seg in segments {
        transcript
            .segments
            .extend(split_by_speaker(seg, &labelled, &label));
    }
    transcript.turns = merged_turns(&labelled)
        .into_iter()
        .map(|(start, end, k)| SpeakerTurn {
            start,
            end,
            speaker: label(k),
        })
        .collect();
    transcript.speakers = (0..order.len())
        .map(|k| Speaker {
            id: label(k),
            speech_seconds: round_ms(
                transcript
                    .turns
                    .iter()
                    .filter(|t| t.speaker == label(k))
                    .map(|t| t.end - t.start)
                    .sum(),
            ),
        })
        .collect();
}

fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// The speaker of `[start, end)`: the one whose turns overlap it most, else the one whose
/// turn is nearest in time (a word in a pause the diarizer left out).
fn speaker_of(start: f64, end: f64, turns: &[(f64, f64, usize)]) -> usize {
    let speakers = turns.iter().map(|t| t.2).max().unwrap_or(0) + 1;
    let mut overlap = vec![0.0f64; speakers];
    for &(s, e, k) in turns {
        overlap[k] += (e.min(end) - s.max(start)).max(0.0);
    }
    let (best, most) =
        overlap.iter().enumerate().fold(
            (0, 0.0),
            |acc, (k, &o)| if o > acc.1 { (k, o) } else { acc },
        );
    if most > 0.0 {
        return best;
    }
    let mid = (start + end) / 2.0;
    turns
        .iter()
        .min_by(|a, b| distance(mid, a).total_cmp(&distance(mid, b)))
        .map_or(0, |t| t.2)
}

fn distance(t: f64, turn: &(f64, f64, usize)) -> f64 {
    if t < turn.0 {
        turn.0 - t
    } else if t > turn.1 {
        t - turn.1
    } else {
        0.0
    }
}

/// One segment per run of words with the same speaker.
fn split_by_speaker(
    seg: Segment,
    turns: &[(f64, f64, usize)],
    label: &dyn Fn(usize) -> String,
) -> Vec<Segment> {
    let words = match &seg.words {
        Some(words) if !words.is_empty() => words.clone(),
        _ => {
            let speaker = label(speaker_of(seg.start, seg.end, turns));
            return vec![Segment {
                speaker: Some(speaker),
                ..seg
            }];
        }
    };
    // Words written without spaces (CJK) are joined the way the engine joined them.
    let spaced = words.len() < 2 || seg.text.contains(' ');
    let mut groups: Vec<(usize, Vec<Word>)> = Vec::new();
    for w in words {
        let k = speaker_of(w.start, w.end.max(w.start + 0.001), turns);
        let word = Word {
            speaker: Some(label(k)),
            ..w
        };
        match groups.last_mut() {
            Some((last, ws)) if *last == k => ws.push(word),
            _ => groups.push((k, vec![word])),
        }
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (k, ws))| {
            let start = if i == 0 { seg.start } else { ws[0].start };
            let end = if i + 1 == n {
                seg.end
            } else {
                ws[ws.len() - 1].end
            };
            let text = ws
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(if spaced { " " } else { "" });
            Segment {
                start,
                end: end.max(start),
                text: if n == 1 { seg.text.clone() } else { text },
                speaker: Some(label(k)),
                words: Some(ws),
                ..seg.clone()
            }
        })
        .collect()
}

/// Each speaker's turns with overlaps and touching turns of the same speaker merged, sorted
/// by start.
fn merged_turns(turns: &[(f64, f64, usize)]) -> Vec<(f64, f64, usize)> {
    let mut out: Vec<(f64, f64, usize)> = Vec::new();
    let speakers = turns.iter().map(|t| t.2).max().map_or(0, |m| m + 1);
    for k in 0..speakers {
        let mut mine: Vec<(f64, f64, usize)> = turns.iter().copied().filter(|t| t.2 == k).collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64, usize)> = Vec::new();
        for t in mine {
            match merged.last_mut() {
                Some(last) if t.0 <= last.1 => last.1 = last.1.max(t.1),
                _ => merged.push(t),
            }
        }
        out.extend(merged);
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start: f64, end: f64) -> Word {
        Word {
            text: text.into(),
            start,
            end,
            probability: 0.9,
            speaker: None,
        }
    }

    fn segment(words: Vec<Word>) -> Segment {
        Segment {
            start: words[0].start,
            end: words[words.len() - 1].end,
            text: words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            words: Some(words),
            ..Default::default()
        }
    }

    fn turn(start: f64, end: f64, speaker: usize) -> RawTurn {
        RawTurn {
            start,
            end,
            speaker,
        }
    }

    #[test]
    fn a_turn_change_inside_a_segment_splits_it_word_by_word() {
        let mut t = Transcript {
            segments: vec![segment(vec![
                word("Are", 0.0, 0.3),
                word("you", 0.3, 0.5),
                word("there?", 0.5, 0.9),
                word("Yes,", 1.1, 1.4),
                word("I", 1.4, 1.5),
                word("am.", 1.5, 1.9),
            ])],
            ..Default::default()
        };
        // Cluster 7 speaks first, so it is S1; the boundary falls inside "Yes," (mostly S2).
        assign_speakers(&mut t, &[turn(0.0, 1.2, 7), turn(1.2, 2.0, 3)]);
        let texts: Vec<(&str, Option<&str>)> = t
            .segments
            .iter()
            .map(|s| (s.text.as_str(), s.speaker.as_deref()))
            .collect();
        assert_eq!(
            texts,
            vec![("Are you there?", Some("S1")), ("Yes, I am.", Some("S2"))]
        );
        assert!((t.segments[1].start - 1.1).abs() < 1e-9);
        assert!(t.segments[0]
            .words
            .as_ref()
            .unwrap()
            .iter()
            .all(|w| w.speaker.as_deref() == Some("S1")));
        let ids: Vec<&str> = t.speakers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["S1", "S2"]);
        assert!((t.speakers[0].speech_seconds - 1.2).abs() < 1e-9);
        assert!((t.speakers[1].speech_seconds - 0.8).abs() < 1e-9);
        assert_eq!(t.turns.len(), 2);
    }

    #[test]
    fn a_word_in_a_pause_goes_to_the_nearest_turn_and_overlaps_count_per_speaker() {
        let mut t = Transcript {
            segments: vec![segment(vec![word("Hi.", 0.5, 1.0), word("Hmm.", 5.0, 5.2)])],
            ..Default::default()
        };
        assign_speakers(
            &mut t,
            &[
                turn(0.0, 2.0, 0),
                turn(1.5, 3.0, 1),
                turn(1.0, 2.5, 0),
                turn(4.0, 4.5, 1),
            ],
        );
        assert_eq!(t.segments[1].text, "Hmm.");
        assert_eq!(t.segments[1].speaker.as_deref(), Some("S2"));
        // S1's two turns overlap and merge: 0.0-2.5.
        assert!((t.speakers[0].speech_seconds - 2.5).abs() < 1e-9);
        assert!((t.speakers[1].speech_seconds - 2.0).abs() < 1e-9);
        assert_eq!(t.turns.len(), 3);
    }

    #[test]
    fn a_speaker_without_words_is_dropped() {
        let mut t = Transcript {
            segments: vec![segment(vec![word("Hello.", 3.0, 3.5)])],
            ..Default::default()
        };
        // Cluster 4 is a voice in the noise before the talk: it says no word.
        assign_speakers(&mut t, &[turn(0.0, 1.0, 4), turn(2.8, 3.6, 1)]);
        assert_eq!(t.speakers.len(), 1);
        assert_eq!(t.speakers[0].id, "S1");
        assert_eq!(t.turns.len(), 1);
        assert_eq!(t.segments[0].speaker.as_deref(), Some("S1"));
    }

    #[test]
    fn no_turns_means_no_speakers() {
        let mut t = Transcript {
            segments: vec![segment(vec![word("Noise.", 0.0, 1.0)])],
            ..Default::default()
        };
        let before = t.clone();
        assign_speakers(&mut t, &[]);
        assert_eq!(t, before);
    }
}
