//! Speech spans from Silero VAD, and the map between the packed speech-only audio whisper
//! sees and the original timeline.
//!
//! whisper.cpp's own VAD through `FullParams` is silently ignored in whisper-rs 0.16, so the
//! packing and the time mapping live here.

use super::SAMPLES_PER_SECOND;

/// Options for voice activity detection.
#[derive(Debug, Clone)]
pub struct VadOptions {
    /// Speech probability threshold (0..1).
    pub threshold: f32,
    /// Speech shorter than this is ignored (ms).
    pub min_speech_ms: u32,
    /// Silence shorter than this does not end speech (ms).
    pub min_silence_ms: u32,
    /// Padding added on both sides of each speech span (ms).
    pub pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 300,
            pad_ms: 200,
        }
    }
}

/// A span of the original audio, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
}

/// Pads spans, clamps them to `len` and merges those that touch.
pub fn pad_and_merge(spans: &[Span], pad: usize, len: usize) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        let start = s.start.saturating_sub(pad);
        let end = (s.end + pad).min(len);
        if end <= start {
            continue;
        }
        match out.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => out.push(Span { start, end }),
        }
    }
    out
}

/// One piece of original audio placed into the packed buffer.
#[derive(Debug, Clone, Copy)]
struct Piece {
    packed_start: usize,
    orig_start: usize,
    len: usize,
}

/// Packs speech spans into one buffer (with a short silence between spans so whisper still
/// hears a pause) and maps packed times back to the original timeline.
#[derive(Debug, Clone)]
pub struct TimeMap {
    pieces: Vec<Piece>,
}

/// Silence put between packed spans: enough for whisper to end a sentence, short enough to
/// waste no decoding time.
const JOIN_SILENCE: usize = SAMPLES_PER_SECOND / 5;

impl TimeMap {
    /// The identity map for audio that was not cut.
    pub fn identity(len: usize) -> Self {
        TimeMap {
            pieces: vec![Piece {
                packed_start: 0,
                orig_start: 0,
                len,
            }],
        }
    }

    /// Packs `spans` of `audio` into a new buffer and returns it with its map.
    pub fn pack(audio: &[f32], spans: &[Span]) -> (Vec<f32>, TimeMap) {
        let total: usize = spans.iter().map(|s| s.end - s.start).sum();
        let mut packed = Vec::with_capacity(total + spans.len() * JOIN_SILENCE);
        let mut pieces = Vec::with_capacity(spans.len());
        let mut prev_end: Option<usize> = None;
        for s in spans {
            if let Some(prev) = prev_end {
                let gap = s.start.saturating_sub(prev).min(JOIN_SILENCE);
                packed.resize(packed.len() + gap, 0.0);
            }
            pieces.push(Piece {
                packed_start: packed.len(),
                orig_start: s.start,
                len: s.end - s.start,
            });
            packed.extend_from_slice(&audio[s.start..s.end]);
            prev_end = Some(s.end);
        }
        (packed, TimeMap { pieces })
    }

    /// Maps a packed position (samples) to the original timeline. Positions in the silence
    /// between pieces map into the start of the real gap that follows the earlier piece.
    pub fn to_original(&self, packed: usize) -> usize {
        let idx = self
            .pieces
            .partition_point(|p| p.packed_start <= packed)
            .saturating_sub(1);
        match self.pieces.get(idx) {
            Some(p) => p.orig_start + (packed.saturating_sub(p.packed_start)),
            None => packed,
        }
    }

    /// Moves a start time that falls in a removed gap forward to the next speech.
    pub fn snap_start(&self, orig: usize) -> usize {
        for p in &self.pieces {
            if orig < p.orig_start {
                return p.orig_start;
            }
            if orig < p.orig_start + p.len {
                return orig;
            }
        }
        orig
    }

    /// Moves an end time that falls in a removed gap back to the end of the previous speech.
    pub fn snap_end(&self, orig: usize) -> usize {
        let mut best = orig;
        for p in &self.pieces {
            let end = p.orig_start + p.len;
            if orig <= end {
                return if orig < p.orig_start { best } else { orig };
            }
            best = end;
        }
        best.min(orig)
    }

    /// End of the run of speech that contains `orig`, where pieces closer than `max_gap`
    /// samples count as one run. Whisper's timestamps are fuzzy at piece joins; clamping an
    /// end to this keeps a word or segment from spanning a long removed silence.
    pub fn run_end(&self, orig: usize, max_gap: usize) -> usize {
        let Some(mut idx) = self.pieces.iter().position(|p| orig < p.orig_start + p.len) else {
            return usize::MAX;
        };
        while let Some(next) = self.pieces.get(idx + 1) {
            let end = self.pieces[idx].orig_start + self.pieces[idx].len;
            if next.orig_start.saturating_sub(end) > max_gap {
                break;
            }
            idx += 1;
        }
        self.pieces[idx].orig_start + self.pieces[idx].len
    }

    /// Number of packed pieces.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// True when nothing was packed.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_maps_times_back_and_snaps_into_speech() {
        let sr = SAMPLES_PER_SECOND;
        let audio = vec![0.5f32; 70 * sr];
        let spans = [
            Span {
                start: 5 * sr,
                end: 12 * sr,
            },
            Span {
                start: 57 * sr,
                end: 62 * sr,
            },
        ];
        let (packed, map) = TimeMap::pack(&audio, &spans);
        assert_eq!(packed.len(), 12 * sr + JOIN_SILENCE);
        assert_eq!(map.to_original(0), 5 * sr);
        assert_eq!(map.to_original(7 * sr - 1), 12 * sr - 1);
        // Inside the join silence: maps into the start of the real gap.
        assert_eq!(map.to_original(7 * sr + 10), 12 * sr + 10);
        // First sample of the second piece.
        assert_eq!(map.to_original(7 * sr + JOIN_SILENCE), 57 * sr);
        assert_eq!(map.snap_start(12 * sr + 10), 57 * sr);
        assert_eq!(map.snap_end(12 * sr + 10), 12 * sr);
        assert_eq!(map.snap_end(58 * sr), 58 * sr);
        assert_eq!(map.snap_start(2 * sr), 5 * sr);
        assert_eq!(map.run_end(6 * sr, sr), 12 * sr);
        assert_eq!(map.run_end(6 * sr, 60 * sr), 62 * sr);
    }

    #[test]
    fn padding_merges_close_spans() {
        let spans = [
            Span {
                start: 100,
                end: 200,
            },
            Span {
                start: 250,
                end: 300,
            },
            Span {
                start: 900,
                end: 1000,
            },
        ];
        let merged = pad_and_merge(&spans, 30, 1010);
        assert_eq!(
            merged,
            vec![
                Span {
                    start: 70,
                    end: 330
                },
                Span {
                    start: 870,
                    end: 1010
                }
            ]
        );
    }
}
