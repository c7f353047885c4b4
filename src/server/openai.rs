//! OpenAI's transcription API shapes: request parameters, response bodies and errors.
//!
//! The shapes follow OpenAI's API reference for `POST /v1/audio/transcriptions` and
//! `POST /v1/audio/translations` (model `whisper-1`), so clients written for OpenAI parse
//! verbatim's answers unchanged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::engine::{self, Engine};
use crate::output::{Format, JsonMeta};
use crate::transcript::Transcript;

/// The `response_format` values OpenAI defines for whisper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"text": "..."}` (the default).
    Json,
    /// The text alone, `text/plain`.
    Text,
    /// SubRip subtitles.
    Srt,
    /// Text, language, duration, segments and (when asked for) words.
    VerboseJson,
    /// WebVTT subtitles.
    Vtt,
}

impl ResponseFormat {
    /// Parses a `response_format` value.
    pub fn parse(s: &str) -> Option<ResponseFormat> {
        Some(match s.trim() {
            "json" => ResponseFormat::Json,
            "text" => ResponseFormat::Text,
            "srt" => ResponseFormat::Srt,
            "verbose_json" => ResponseFormat::VerboseJson,
            "vtt" => ResponseFormat::Vtt,
            _ => return None,
        })
    }

    /// Whether the subtitle writers lay this format out word by word (needs word times).
    pub fn is_subtitle(self) -> bool {
        matches!(self, ResponseFormat::Srt | ResponseFormat::Vtt)
    }
}

/// The task a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Speech to text in the spoken language.
    Transcribe,
    /// Speech to English text.
    Translate,
}

impl Task {
    /// The name OpenAI reports in `verbose_json` (`transcribe` or `translate`).
    pub fn name(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with its
/// HTTP status and optional extra headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// The request parameter at fault, if any.
    pub param: Option<&'static str>,
    /// A short machine-readable code, if any.
    pub code: Option<&'static str>,
    /// Seconds to send in `Retry-After` (503 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn bad_request(param: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
            retry_after: None,
        }
    }

    /// Sets the code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// A 500 `server_error`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        }
    }

    /// The JSON body alone, for answers written outside axum (a refused connection).
    pub fn json_body(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_else(|_| "{}".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `verbose_json`: OpenAI's `TranscriptionVerbose`.
#[derive(Debug, Serialize)]
pub struct VerboseJson {
    /// `transcribe` or `translate`.
    pub task: &'static str,
    /// The language's English name in lower case (`english`), as OpenAI reports it.
    pub language: String,
    /// Duration of the input audio, seconds.
    pub duration: f64,
    /// The whole text.
    pub text: String,
    /// Segments; left out when only word timestamps were asked for, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<VerboseSegment>>,
    /// Words; only when `timestamp_granularities[]` includes `word`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<VerboseWord>>,
    /// The speakers, with `diarize=true` (a verbatim extension): `id` and `speech_seconds`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub speakers: Vec<crate::transcript::Speaker>,
}

/// OpenAI's `TranscriptionSegment`.
#[derive(Debug, Serialize)]
pub struct VerboseSegment {
    /// Index of the segment.
    pub id: usize,
    /// The segment's start in 10 ms frames. (OpenAI reports the start of the 30 s window the
    /// segment was decoded in; verbatim packs speech into windows after VAD, so the segment's
    /// own start is the closest honest value.)
    pub seek: u64,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The text, with the leading space OpenAI's segments carry.
    pub text: String,
    /// Token ids of the text in the model's vocabulary.
    pub tokens: Vec<i32>,
    /// The request's (initial) decoding temperature.
    pub temperature: f32,
    /// Mean log-probability of the segment's tokens.
    pub avg_logprob: f32,
    /// Length of the UTF-8 text over its zlib-compressed length (as whisper computes it).
    pub compression_ratio: f64,
    /// Whisper's probability that the window holds no speech.
    pub no_speech_prob: f32,
    /// Who speaks (`S1`, ...), with `diarize=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// OpenAI's `TranscriptionWord`.
#[derive(Debug, Serialize)]
pub struct VerboseWord {
    /// The word (no leading space).
    pub word: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Who speaks (`S1`, ...), with `diarize=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// Whisper's compression ratio of a text: bytes over zlib-compressed bytes (level 6, as
/// Python's `zlib.compress`).
pub fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6);
    bytes.len() as f64 / compressed.len().max(1) as f64
}

/// Seconds rounded to milliseconds, so the JSON shows `1.23`, not `1.2300000190734863`.
fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Everything needed to render one response.
pub struct RenderInput<'a> {
    /// The transcript (with word times when `words` or a subtitle format was asked for).
    pub transcript: &'a Transcript,
    /// The engine (for token ids and the model's facts).
    pub engine: &'a Engine,
    /// What was asked.
    pub format: ResponseFormat,
    /// The task.
    pub task: Task,
    /// Whether `timestamp_granularities[]` includes `word`.
    pub words: bool,
    /// Whether `timestamp_granularities[]` includes `segment` (or no granularity was given).
    pub segments: bool,
    /// The request's temperature.
    pub temperature: f32,
    /// Metadata for the subtitle writers (rules, model).
    pub meta: &'a JsonMeta,
}

/// Renders a transcript as the HTTP response OpenAI would send.
pub fn render(input: &RenderInput<'_>) -> Response {
    let t = input.transcript;
    match input.format {
        ResponseFormat::Json => axum::Json(serde_json::json!({ "text": t.text() })).into_response(),
        ResponseFormat::Text => text_response(format!("{}\n", t.text()), "text/plain"),
        ResponseFormat::Srt => text_response(Format::Srt.render(t, input.meta), "text/plain"),
        ResponseFormat::Vtt => text_response(Format::Vtt.render(t, input.meta), "text/vtt"),
        ResponseFormat::VerboseJson => axum::Json(verbose_json(input)).into_response(),
    }
}

fn text_response(body: String, mime: &'static str) -> Response {
    let value = match mime {
        "text/vtt" => "text/vtt; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(value))],
        body,
    )
        .into_response()
}

/// The `verbose_json` body.
pub fn verbose_json(input: &RenderInput<'_>) -> VerboseJson {
    let t = input.transcript;
    let language = match input.task {
        // The text of a translation is English, and OpenAI reports it so.
        Task::Translate => "english".to_string(),
        Task::Transcribe => engine::language_name(&t.language)
            .map(str::to_string)
            .unwrap_or_else(|| t.language.clone()),
    };
    let segments = input.segments.then(|| {
        t.segments
            .iter()
            .enumerate()
            .map(|(id, s)| VerboseSegment {
                id,
                seek: (s.start.max(0.0) * 100.0).round() as u64,
                start: ms(s.start),
                end: ms(s.end),
                text: format!(" {}", s.text),
                tokens: input.engine.tokenize(&format!(" {}", s.text)),
                temperature: input.temperature,
                avg_logprob: s.avg_logprob,
                compression_ratio: compression_ratio(&s.text),
                no_speech_prob: s.no_speech_prob,
                speaker: s.speaker.clone(),
            })
            .collect()
    });
    let words = input.words.then(|| {
        t.segments
            .iter()
            .flat_map(|s| s.words.iter().flatten())
            .map(|w| VerboseWord {
                word: w.text.clone(),
                start: ms(w.start),
                end: ms(w.end),
                speaker: w.speaker.clone(),
            })
            .collect()
    });
    VerboseJson {
        task: input.task.name(),
        language,
        duration: ms(t.duration),
        text: t.text(),
        segments,
        words,
        speakers: t.speakers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_format_and_nothing_else() {
        for (s, f) in [
            ("json", ResponseFormat::Json),
            ("text", ResponseFormat::Text),
            ("srt", ResponseFormat::Srt),
            ("verbose_json", ResponseFormat::VerboseJson),
            ("vtt", ResponseFormat::Vtt),
        ] {
            assert_eq!(ResponseFormat::parse(s), Some(f));
        }
        assert_eq!(ResponseFormat::parse("xml"), None);
        assert_eq!(ResponseFormat::parse(""), None);
    }

    #[test]
    fn compression_ratio_rises_with_repetition() {
        let plain = compression_ratio("And so my fellow Americans, ask not.");
        let looped = compression_ratio(&"thank you ".repeat(30));
        assert!(plain < 1.5, "{plain}");
        assert!(looped > 2.4, "{looped}");
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn error_body_has_openai_shape() {
        let e = ApiError::bad_request(Some("file"), "nope").with_code("bad");
        let body = ErrorBody {
            error: ErrorDetail {
                message: &e.message,
                kind: e.kind,
                param: e.param,
                code: e.code,
            },
        };
        let v = serde_json::to_value(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "nope", "type": "invalid_request_error", "param": "file", "code": "bad"}})
        );
    }
}
