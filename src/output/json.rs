//! JSON: the transcript with the tool, model, source and options that produced it.
//! The schema is documented in the README ("JSON output").

use serde::Serialize;

use super::OutputFormat;
use crate::transcript::{Segment, Transcript};

/// The render context: what the JSON output writes next to the transcript, and the rules
/// the subtitle writers (srt, vtt, ass) lay cues out by.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JsonMeta {
    /// verbatim's version.
    pub tool_version: String,
    /// whisper.cpp's version.
    pub whisper_cpp_version: String,
    /// Model path.
    pub model: String,
    /// Model size class (`tiny`, `base`, ...).
    pub model_type: String,
    /// Whether the model is multilingual.
    pub multilingual: bool,
    /// Input path (`-` for stdin).
    pub source: String,
    /// The options used, as JSON.
    pub options: serde_json::Value,
    /// Rules for the subtitle formats (default: the Netflix-like preset).
    pub subtitle_rules: crate::subtitle::Rules,
}

/// JSON writer.
pub struct JsonOutput;

#[derive(Serialize)]
struct Tool<'a> {
    name: &'static str,
    version: &'a str,
    whisper_cpp: &'a str,
}

#[derive(Serialize)]
struct Model<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    multilingual: bool,
}

#[derive(Serialize)]
struct Document<'a> {
    tool: Tool<'a>,
    model: Model<'a>,
    source: &'a str,
    options: &'a serde_json::Value,
    language: &'a str,
    language_probability: Option<f64>,
    duration: f64,
    text: String,
    segments: Vec<JsonSegment<'a>>,
}

#[derive(Serialize)]
struct JsonSegment<'a> {
    id: usize,
    start: f64,
    end: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<usize>,
    avg_logprob: f64,
    no_speech_prob: f64,
    flags: &'a [crate::Flag],
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<JsonWord<'a>>>,
}

#[derive(Serialize)]
struct JsonWord<'a> {
    text: &'a str,
    start: f64,
    end: f64,
    probability: f64,
}

/// Rounds to milliseconds (times) or 4 decimals (scores) so the file stays readable.
fn ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

fn score(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

fn segment(id: usize, s: &Segment) -> JsonSegment<'_> {
    JsonSegment {
        id,
        start: ms(s.start),
        end: ms(s.end),
        text: &s.text,
        channel: s.channel,
        avg_logprob: score(s.avg_logprob),
        no_speech_prob: score(s.no_speech_prob),
        flags: &s.flags,
        words: s.words.as_ref().map(|ws| {
            ws.iter()
                .map(|w| JsonWord {
                    text: &w.text,
                    start: ms(w.start),
                    end: ms(w.end),
                    probability: score(w.probability),
                })
                .collect()
        }),
    }
}

impl OutputFormat for JsonOutput {
    fn render(&self, transcript: &Transcript, meta: &JsonMeta) -> String {
        let doc = Document {
            tool: Tool {
                name: "verbatim",
                version: &meta.tool_version,
                whisper_cpp: &meta.whisper_cpp_version,
            },
            model: Model {
                path: &meta.model,
                kind: &meta.model_type,
                multilingual: meta.multilingual,
            },
            source: &meta.source,
            options: &meta.options,
            language: &transcript.language,
            language_probability: transcript.language_probability.map(score),
            duration: ms(transcript.duration),
            text: transcript.text(),
            segments: transcript
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| segment(i, s))
                .collect(),
        };
        let mut out =
            serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        out.push('\n');
        out
    }
}
