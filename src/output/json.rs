//! JSON: the transcript with the tool, model, source and options that produced it.
//! The schema is documented in the README ("JSON output").

use serde::Serialize;

use super::{OutputFormat, WriterState};
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

impl JsonMeta {
    /// The context for a run of `engine` on `source` with `options`, laying subtitles out by
    /// `subtitle_rules`.
    pub fn for_run(
        engine: &crate::engine::Engine,
        source: String,
        options: &crate::engine::TranscribeOptions,
        subtitle_rules: crate::subtitle::Rules,
    ) -> JsonMeta {
        let info = engine.model_info();
        JsonMeta {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            whisper_cpp_version: crate::engine::whisper_cpp_version().to_string(),
            model: info.path.display().to_string(),
            model_type: info.kind.clone(),
            multilingual: info.multilingual,
            source,
            options: serde_json::to_value(options).unwrap_or_default(),
            subtitle_rules,
        }
    }
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
struct Head<'a> {
    tool: Tool<'a>,
    model: Model<'a>,
    source: &'a str,
    options: &'a serde_json::Value,
}

#[derive(Serialize)]
struct Tail<'a> {
    language: &'a str,
    language_probability: Option<f64>,
    duration: f64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    speakers: &'a [crate::transcript::Speaker],
}

#[derive(Serialize)]
struct JsonSegment<'a> {
    id: usize,
    start: f64,
    end: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker: Option<&'a str>,
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
        speaker: s.speaker.as_deref(),
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
                    speaker: w.speaker.as_deref(),
                })
                .collect()
        }),
    }
}

/// The JSON document is written as its parts become known, so a long recording streams: the
/// header, then one segment per line, then language and duration, then `text` (all segments'
/// text, kept aside while streaming) last.
impl OutputFormat for JsonOutput {
    fn begin(&self, _head: &Transcript, meta: &JsonMeta) -> String {
        let head = Head {
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
        };
        let mut out = to_json(&head);
        // Reopen the object to append the segments array.
        out.pop();
        out.push_str(",\n\"segments\": [");
        out
    }

    fn chunk(&self, part: &Transcript, _meta: &JsonMeta, state: &mut WriterState) -> String {
        let mut out = String::new();
        for s in &part.segments {
            out.push_str(if state.items == 0 { "\n  " } else { ",\n  " });
            out.push_str(&to_json(&segment(state.items, s)));
            state.items += 1;
        }
        out
    }

    fn end(&self, summary: &Transcript, _meta: &JsonMeta, _state: &WriterState) -> String {
        let tail = Tail {
            language: &summary.language,
            language_probability: summary.language_probability.map(score),
            duration: ms(summary.duration),
            speakers: &summary.speakers,
        };
        let tail = to_json(&tail);
        // `],` + the tail's fields + the opening of "text".
        format!("\n],\n{},\n\"text\": \"", &tail[1..tail.len() - 1])
    }

    fn aside(&self, part: &Transcript, state: &mut WriterState) -> String {
        let mut out = String::new();
        for s in &part.segments {
            if state.aside_items > 0 {
                out.push(' ');
            }
            let quoted = to_json(&s.text);
            out.push_str(&quoted[1..quoted.len() - 1]);
            state.aside_items += 1;
        }
        out
    }

    fn close(&self) -> String {
        "\"}\n".to_string()
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
