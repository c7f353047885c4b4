//! Segment collection: turns the raw segments whisper produced (plain Rust data, read from the
//! whisper state by the FFI side in [`super`]) into final [`Segment`]s and [`Word`]s on the
//! original timeline, split at long pauses and checked by the hallucination guard.

use super::guard;
use super::vad::{Span, TimeMap};
use super::{TranscribeOptions, SAMPLES_PER_SECOND};
use crate::transcript::{Flag, Segment, Word};

/// A segment never spans a pause longer than this (seconds): it is split there.
const MAX_PAUSE_IN_SEGMENT: f64 = 1.5;
const MAX_PAUSE_SAMPLES: usize = (MAX_PAUSE_IN_SEGMENT * SAMPLES_PER_SECOND as f64) as usize;

/// A token as whisper produced it, times in centiseconds of the packed buffer.
pub(super) struct RawToken {
    pub(super) bytes: Vec<u8>,
    pub(super) t0: i64,
    pub(super) t1: i64,
    pub(super) p: f32,
    pub(super) plog: f32,
    pub(super) starts_word: bool,
}

/// A segment as whisper produced it.
pub(super) struct RawSegment {
    pub(super) t0: i64,
    pub(super) t1: i64,
    pub(super) no_speech_prob: f32,
    pub(super) tokens: Vec<RawToken>,
}

/// Turns raw whisper segments into final [`Segment`]s: maps times, splits at long pauses,
/// applies the hallucination guard and streams the result.
pub(super) struct SegmentCollector<'a, 'h> {
    pub(super) map: &'a TimeMap,
    /// Samples of the original audio before the transcribed window.
    pub(super) offset: usize,
    /// Raw (unpadded) VAD speech spans of the window, for the guard.
    pub(super) raw_spans: &'a [Span],
    pub(super) channel: Option<usize>,
    pub(super) opts: &'a TranscribeOptions,
    /// Languages written without spaces: every token is a word, words join without spaces.
    pub(super) cjk: bool,
    pub(super) used_vad: bool,
    /// The final segments so far.
    pub(super) segments: Vec<Segment>,
    pub(super) on_segment: Option<&'h mut dyn FnMut(&Segment)>,
    /// Normalized texts of the segments kept so far, for the guard's loop and echo checks.
    pub(super) recent_texts: Vec<String>,
}

impl SegmentCollector<'_, '_> {
    /// Centiseconds in the packed buffer -> samples on the original timeline.
    fn to_original(&self, cs: i64) -> usize {
        let packed = (cs.max(0) as usize) * SAMPLES_PER_SECOND / 100;
        self.map.to_original(packed)
    }

    /// Pulls `[start, end)` in to the raw (unpadded) speech it overlaps: whisper stretches a
    /// segment's last word to the segment end and starts words early, inside the padding or
    /// the silence before speech, and word times decide which speaker a word belongs to.
    /// Without VAD, or when the interval holds no raw speech, it is returned as it is.
    fn clip_to_speech(&self, start: usize, end: usize) -> (usize, usize) {
        if !self.used_vad || end <= start {
            return (start, end);
        }
        let inside = |t: usize| self.raw_spans.iter().any(|s| s.start <= t && t < s.end);
        let mut new_start = start;
        if !inside(start) {
            match self.raw_spans.iter().find(|s| s.start > start) {
                Some(s) if s.start < end => new_start = s.start,
                _ => return (start, end),
            }
        }
        let mut new_end = end;
        if !inside(end.saturating_sub(1)) {
            match self.raw_spans.iter().rev().find(|s| s.end < end) {
                Some(s) if s.end > new_start => new_end = s.end,
                _ => return (start, end),
            }
        }
        (new_start, new_end)
    }

    fn seconds(&self, samples: usize) -> f64 {
        (samples + self.offset) as f64 / SAMPLES_PER_SECOND as f64
    }

    /// Takes one raw segment as whisper finalised it.
    pub(super) fn accept(&mut self, raw: RawSegment) {
        let words = self.words(&raw);
        let avg_logprob = if raw.tokens.is_empty() {
            0.0
        } else {
            raw.tokens.iter().map(|t| t.plog).sum::<f32>() / raw.tokens.len() as f32
        };
        // Split at long pauses (real gaps stay gaps), using word times.
        let mut groups: Vec<Vec<(Word, usize, usize)>> = Vec::new();
        for w in words {
            let new_group = match groups.last().and_then(|g| g.last()) {
                Some((_, _, prev_end)) => {
                    (w.1.saturating_sub(*prev_end)) as f64 / SAMPLES_PER_SECOND as f64
                        > MAX_PAUSE_IN_SEGMENT
                }
                None => true,
            };
            if new_group {
                groups.push(Vec::new());
            }
            if let Some(g) = groups.last_mut() {
                g.push(w);
            }
        }
        if groups.is_empty() {
            return;
        }
        let single = groups.len() == 1;
        for group in groups {
            let (mut start, mut end) = if single {
                (
                    self.map.snap_start(self.to_original(raw.t0)),
                    self.map.snap_end(self.to_original(raw.t1)),
                )
            } else {
                (group[0].1, group[group.len() - 1].2)
            };
            (start, end) = self.clip_to_speech(start, end);
            // Keep the segment around its words: whisper's segment ends drift into silence.
            let first_word = group[0].1;
            let last_word = group[group.len() - 1].2;
            start = start.min(first_word);
            end = end
                .min(self.map.run_end(start, MAX_PAUSE_SAMPLES))
                .max(last_word);
            if end <= start {
                end = start + SAMPLES_PER_SECOND / 100;
            }
            let text = if self.cjk {
                group
                    .iter()
                    .map(|(w, _, _)| w.text.as_str())
                    .collect::<String>()
            } else {
                group
                    .iter()
                    .map(|(w, _, _)| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let words: Vec<Word> = group.into_iter().map(|(w, _, _)| w).collect();
            let segment = Segment {
                speaker: None,
                start: self.seconds(start),
                end: self.seconds(end),
                text,
                channel: self.channel,
                avg_logprob,
                no_speech_prob: raw.no_speech_prob,
                flags: Vec::new(),
                words: Some(words),
            };
            self.finish(segment, start, end);
        }
    }

    /// Groups tokens into words with original-timeline sample positions.
    fn words(&self, raw: &RawSegment) -> Vec<(Word, usize, usize)> {
        struct Acc {
            bytes: Vec<u8>,
            t0: i64,
            t1: i64,
            probs: Vec<f32>,
        }
        let mut accs: Vec<Acc> = Vec::new();
        for tok in &raw.tokens {
            let new_word = self.cjk || tok.starts_word || accs.is_empty();
            if new_word {
                accs.push(Acc {
                    bytes: Vec::new(),
                    t0: tok.t0,
                    t1: tok.t1,
                    probs: Vec::new(),
                });
            }
            if let Some(acc) = accs.last_mut() {
                acc.bytes.extend_from_slice(&tok.bytes);
                acc.t1 = tok.t1.max(acc.t1);
                acc.probs.push(tok.p);
            }
        }
        accs.into_iter()
            .filter_map(|acc| {
                let text = String::from_utf8_lossy(&acc.bytes).trim().to_string();
                if text.is_empty() {
                    return None;
                }
                let t0 = if acc.t0 >= 0 { acc.t0 } else { raw.t0 };
                let t1 = if acc.t1 >= 0 { acc.t1 } else { raw.t1 };
                let start = self.map.snap_start(self.to_original(t0));
                let end = self
                    .map
                    .snap_end(self.to_original(t1))
                    .min(self.map.run_end(start, MAX_PAUSE_SAMPLES))
                    .max(start);
                let (start, end) = self.clip_to_speech(start, end);
                let probability = acc.probs.iter().sum::<f32>() / acc.probs.len().max(1) as f32;
                Some((
                    Word {
                        speaker: None,
                        text,
                        start: self.seconds(start),
                        end: self.seconds(end),
                        probability,
                    },
                    start,
                    end,
                ))
            })
            .collect()
    }

    /// Fraction of `[start, end)` covered by raw VAD speech.
    fn speech_overlap(&self, start: usize, end: usize) -> f64 {
        if end <= start {
            return 0.0;
        }
        let covered: usize = self
            .raw_spans
            .iter()
            .map(|s| s.end.min(end).saturating_sub(s.start.max(start)))
            .sum();
        covered as f64 / (end - start) as f64
    }

    fn finish(&mut self, mut segment: Segment, start: usize, end: usize) {
        if self.opts.hallucination_guard {
            let (cut, changed) = guard::cut_repetitions(&segment.text);
            if changed {
                segment.text = cut;
                segment.flags.push(Flag::RepetitionCut);
                // Word timings no longer line up with the cut text; keep the words that
                // survived in order.
                if let Some(words) = &mut segment.words {
                    let kept: Vec<&str> = segment.text.split_whitespace().collect();
                    let mut out = Vec::new();
                    let mut k = 0;
                    for w in words.iter() {
                        if k < kept.len() && w.text == kept[k] {
                            out.push(w.clone());
                            k += 1;
                        }
                    }
                    *words = out;
                }
            }
            let on_speech = if self.used_vad {
                self.speech_overlap(start, end) >= 0.5
            } else {
                segment.no_speech_prob < 0.5
            };
            if guard::is_phantom_phrase(&segment.text) {
                if !on_speech {
                    return;
                }
                segment.flags.push(Flag::PhantomPhrase);
            }
            if segment.no_speech_prob > self.opts.no_speech_threshold
                && segment.avg_logprob < self.opts.logprob_threshold
            {
                if !on_speech {
                    return;
                }
                segment.flags.push(Flag::LowConfidence);
            } else if segment.avg_logprob < self.opts.logprob_threshold {
                segment.flags.push(Flag::LowConfidence);
            }
            // The same sentence three times in a row is a loop, not speech; a long one twice
            // is an echo of the prompt.
            let norm = guard::normalize(&segment.text);
            if guard::repeats_recent(&self.recent_texts, &norm) {
                return;
            }
            self.recent_texts.push(norm);
        }
        if segment.text.trim().is_empty() {
            return;
        }
        if !self.opts.word_timestamps {
            segment.words = None;
        }
        if let Some(cb) = self.on_segment.as_mut() {
            cb(&segment);
        }
        self.segments.push(segment);
    }
}
