//! The one data model every consumer reads: a [`Transcript`] of timed [`Segment`]s.
//!
//! Times are seconds on the original file's timeline (after VAD, offsets and windows have
//! been mapped back), so writers never need to know how the audio was cut up.

use serde::{Deserialize, Serialize};

/// A transcript of one input (a file, stdin or a live stream).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Transcript {
    /// ISO 639-1 code of the spoken language (e.g. `en`).
    pub language: String,
    /// Probability of `language` from whisper's language detection; `None` when the language
    /// was given by the user or the model is English-only.
    pub language_probability: Option<f32>,
    /// Duration of the transcribed audio in seconds.
    pub duration: f64,
    /// Segments in time order.
    pub segments: Vec<Segment>,
    /// The speakers diarization found (`--diarize`), in order of first appearance, with how
    /// long each spoke; empty without diarization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speakers: Vec<Speaker>,
    /// Who spoke when, as diarization found it (the `rttm` output); empty without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<SpeakerTurn>,
}

/// A stretch of time one speaker speaks (speakers may overlap).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SpeakerTurn {
    /// Start in seconds on the original timeline.
    pub start: f64,
    /// End in seconds on the original timeline.
    pub end: f64,
    /// The speaker's label (`S1`, ...).
    pub speaker: String,
}

/// A speaker found by diarization.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Speaker {
    /// The label segments and words carry (`S1`, `S2`, ...).
    pub id: String,
    /// Seconds of speech of this speaker (overlapping speech counts for each speaker).
    pub speech_seconds: f64,
}

/// One stretch of speech as whisper segments it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// Start in seconds on the original timeline.
    pub start: f64,
    /// End in seconds on the original timeline.
    pub end: f64,
    /// The text, trimmed.
    pub text: String,
    /// Input channel (0-based) when channels were transcribed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<usize>,
    /// Who speaks (`S1`, `S2`, ...) when the transcript was diarized; a segment never holds
    /// two speakers' words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// Mean log-probability of the segment's text tokens.
    pub avg_logprob: f32,
    /// Whisper's probability that the window holding this segment has no speech.
    pub no_speech_prob: f32,
    /// Quality flags raised by the hallucination guard (see [`Flag`]).
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Word timings, when word timestamps were requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
}

/// A word with its own timing and confidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Word {
    /// The word as whisper wrote it (punctuation attached, no leading space).
    pub text: String,
    /// Start in seconds on the original timeline.
    pub start: f64,
    /// End in seconds on the original timeline.
    pub end: f64,
    /// Mean probability of the word's tokens, 0..1.
    pub probability: f32,
    /// Who speaks the word (`S1`, ...) when the transcript was diarized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// Why the hallucination guard distrusts a segment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// A repeated n-gram loop was cut out of the text.
    RepetitionCut,
    /// The text is a known phantom phrase ("Thanks for watching!") found on speech.
    PhantomPhrase,
    /// High no-speech probability together with a low average log-probability.
    LowConfidence,
}

impl Transcript {
    /// The whole text, segments joined by single spaces.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.text.as_str()).collect();
        parts.join(" ")
    }

    /// Number of words in the transcript.
    pub fn word_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.text.split_whitespace().count())
            .sum()
    }
}

impl Segment {
    /// Who speaks, for the text formats: the diarized speaker (`S1`, ...) or the channel
    /// when channels were transcribed separately (`ch1`, `ch2`, ...).
    pub fn speaker_label(&self) -> Option<String> {
        self.speaker
            .clone()
            .or_else(|| self.channel.map(|c| format!("ch{}", c + 1)))
    }
}
