//! An OpenAI-compatible HTTP server around one loaded [`Engine`].
//!
//! Routes:
//! - `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`: multipart `file`,
//!   `model`, `language`, `prompt`, `response_format` (json, text, srt, verbose_json, vtt),
//!   `temperature` and `timestamp_granularities[]` (word, segment), answered in OpenAI's
//!   shapes ([`openai`]). Any `model` value is accepted (clients send `whisper-1`); the loaded
//!   model answers.
//! - `GET /v1/models`: the loaded model, in OpenAI's list shape.
//! - `GET /health`: status, running and queued jobs (no API key needed).
//!
//! Scheduling: at most [`ServerOptions::concurrency`] transcriptions run at once, each on a
//! blocking thread with its own whisper state and [`ServerOptions::threads_per_job`] threads;
//! up to [`ServerOptions::queue`] more requests wait. A request joins the queue only once its
//! upload has fully arrived: a slow upload holds no slot. Beyond that a request gets 503 with
//! `Retry-After`. A request whose client disconnects is
//! cancelled: its future is dropped, a drop guard sets the job's cancel flag, and whisper
//! stops at its next abort check.
//!
//! Hostile clients ([`limits`]): header and body read timeouts, a header size limit, caps on
//! open connections (in all and per client address) and on uploads in progress per address.
//!
//! The parts: `auth` checks the API key, `admission` enforces the queue limits and answers
//! 503, `limits` runs the accept loop and the per-client limits, `handlers` serves the routes;
//! this module holds the options, the shared state and the router.

mod admission;
mod auth;
mod handlers;
pub mod limits;
pub mod openai;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::engine::{Engine, TranscribeOptions};
use crate::subtitle::Rules;

pub use limits::{serve, MAX_HEADER_BYTES};
pub use openai::{ApiError, ResponseFormat, Task};

/// The longest `prompt` field accepted, bytes (whisper reads at most 224 tokens of it; a
/// longer one gets 400).
pub const MAX_PROMPT_BYTES: usize = 4096;

/// The longest other text field accepted (`language`, `response_format`...), bytes.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// How the server schedules, limits and authenticates requests.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Transcriptions that run at the same time.
    pub concurrency: usize,
    /// Requests that may wait for a free slot (beyond that: 503).
    pub queue: usize,
    /// Largest accepted upload (the `file` part), bytes.
    pub max_upload_bytes: u64,
    /// Longest accepted audio, seconds (`None`: no limit).
    pub max_audio_seconds: Option<f64>,
    /// When set, every `/v1` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The id `/v1/models` reports for the loaded model.
    pub model_id: String,
    /// Decoding options every request starts from (threads, beam size, VAD...); a request sets
    /// language, prompt, temperature, translation and word timestamps.
    pub transcribe: TranscribeOptions,
    /// Subtitle layout rules for `srt` and `vtt`.
    pub subtitle_rules: Rules,
    /// Log one line per request on stderr.
    pub log: bool,
    /// Time a client has to send a request's line and headers; then the connection is closed.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body (the upload); then it gets 408.
    pub body_timeout: Duration,
    /// Connections open at once; more get 503 and are closed.
    pub max_connections: usize,
    /// Connections open at once from one client address; more get 429 and are closed.
    pub max_connections_per_ip: usize,
    /// Uploads read at once from one client address; more get 429.
    pub max_uploads_per_ip: usize,
    /// Never download: the first `diarize=true` request fails when the models are missing.
    pub offline: bool,
}

impl ServerOptions {
    /// Threads each transcription uses.
    pub fn threads_per_job(&self) -> usize {
        self.transcribe.threads.max(1)
    }
}

/// The default number of concurrent transcriptions for `cores` cores: a quarter of the cores
/// (whisper scales well up to about four threads per job), at least 2 so one long file never
/// holds up every short one, at most 8.
pub fn default_concurrency(cores: usize) -> usize {
    (cores / 4).clamp(2, 8)
}

/// Threads per transcription: the cores shared out between the concurrent jobs.
pub fn threads_per_job(cores: usize, concurrency: usize) -> usize {
    (cores / concurrency.max(1)).max(1)
}

/// Shared state of a running server.
pub struct AppState {
    engine: Arc<Engine>,
    options: ServerOptions,
    slots: Arc<Semaphore>,
    /// Requests admitted and not yet finished (waiting, uploading or running).
    admitted: Arc<AtomicUsize>,
    /// Transcriptions running now.
    active: Arc<AtomicUsize>,
    /// Mean job duration in milliseconds (moving average), for `Retry-After`.
    mean_job_ms: Arc<AtomicU64>,
    /// Requests answered since start.
    served: AtomicU64,
    started: Instant,
    /// The running jobs, for `/health`.
    jobs: std::sync::Mutex<Vec<JobInfo>>,
    next_job: AtomicU64,
    /// Open connections and uploads in progress, per client address.
    clients: Arc<limits::Clients>,
    /// The diarization models, loaded by the first request that asks for speakers
    /// (`diarize=true`); the error, if they could not be, is that request's and every later
    /// one's answer.
    diarizer: std::sync::OnceLock<Result<crate::diarization::Diarizer, String>>,
}

/// A running job as `/health` shows it.
struct JobInfo {
    id: u64,
    started: Instant,
    /// Whisper's progress as `f32` bits; `u32::MAX` while the upload is decoded and VAD runs.
    progress: Arc<std::sync::atomic::AtomicU32>,
}

impl AppState {
    /// State for a server around `engine`.
    pub fn new(engine: Arc<Engine>, options: ServerOptions) -> Arc<AppState> {
        Arc::new(AppState {
            engine,
            slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
            options,
            admitted: Arc::new(AtomicUsize::new(0)),
            active: Arc::new(AtomicUsize::new(0)),
            mean_job_ms: Arc::new(AtomicU64::new(5_000)),
            served: AtomicU64::new(0),
            started: Instant::now(),
            jobs: std::sync::Mutex::new(Vec::new()),
            next_job: AtomicU64::new(0),
            clients: Arc::new(limits::Clients::default()),
            diarizer: std::sync::OnceLock::new(),
        })
    }
}

/// The router with every route, for `state`.
pub fn router(state: Arc<AppState>) -> Router {
    // The file limit is enforced while reading the `file` part; this bounds the whole body
    // (other fields, multipart framing).
    let body_limit = state.options.max_upload_bytes.saturating_add(1 << 20);
    Router::new()
        .route(
            "/v1/audio/transcriptions",
            post(|s: State<Arc<AppState>>, r: Request| {
                handlers::audio_route(s, r, Task::Transcribe)
            }),
        )
        .route(
            "/v1/audio/translations",
            post(|s: State<Arc<AppState>>, r: Request| {
                handlers::audio_route(s, r, Task::Translate)
            }),
        )
        .route("/v1/models", get(handlers::models))
        .route("/health", get(handlers::health))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(
            usize::try_from(body_limit).unwrap_or(usize::MAX),
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_defaults_follow_cores() {
        assert_eq!(default_concurrency(1), 2);
        assert_eq!(default_concurrency(2), 2);
        assert_eq!(default_concurrency(16), 4);
        assert_eq!(default_concurrency(128), 8);
        assert_eq!(threads_per_job(2, 2), 1);
        assert_eq!(threads_per_job(16, 4), 4);
        assert_eq!(threads_per_job(1, 2), 1);
    }
}
