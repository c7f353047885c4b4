//! The route handlers: `/v1/audio/*` (read the multipart upload, wait for a slot, transcribe on
//! a blocking thread, answer in OpenAI's shapes), `/v1/models`, `/health` and the fallbacks for
//! unknown URLs and methods, kept apart from admission and auth so each request's path reads
//! top to bottom.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::limits::Peer;
use super::{
    auth, openai, ApiError, AppState, JobInfo, ResponseFormat, Task, MAX_FIELD_BYTES,
    MAX_PROMPT_BYTES,
};
use crate::engine::{self, Hooks, TranscribeOptions};
use crate::output::JsonMeta;
use crate::pipeline::{self, Outputs, PipelineOptions};
use crate::transcript::{Segment, Transcript};
use crate::Error;

/// Removes a job from the list when dropped.
struct Listed<'a> {
    state: &'a AppState,
    id: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        let mut jobs = self.state.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|j| j.id != self.id);
    }
}

/// Reads (and drops) a little of a refused request's body so the client sees the answer
/// instead of a reset connection; never for long.
async fn drain_briefly(state: &AppState, req: Request) {
    let _ = tokio::time::timeout(
        state.options.body_timeout.min(Duration::from_secs(5)),
        drain(req.into_body(), state.options.max_upload_bytes),
    )
    .await;
}

/// Sets the job's cancel flag when the request's future is dropped before the job is done
/// (the client went away).
struct CancelOnDrop {
    cancel: Arc<AtomicBool>,
    done: bool,
    /// What to log when it cancels (`None`: log nothing).
    log: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.store(true, Ordering::SeqCst);
            if let Some(what) = &self.log {
                eprintln!("verbatim: {what}: the client went away; cancelling its transcription");
            }
        }
    }
}

pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::bad_request(None, format!("Unknown request URL: {method} {uri}"))
        .with_status(StatusCode::NOT_FOUND)
        .with_code("unknown_url")
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::bad_request(None, format!("Method {method} is not allowed on {uri}"))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let jobs: Vec<serde_json::Value> = state
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|j| {
            let bits = j.progress.load(Ordering::Relaxed);
            let (stage, progress) = if bits == u32::MAX {
                ("preparing", 0.0)
            } else {
                ("transcribing", f32::from_bits(bits))
            };
            serde_json::json!({
                "running_seconds": (j.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                "stage": stage,
                "progress": (progress * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "jobs": jobs,
        "status": "ok",
        "model": state.options.model_id,
        "active": state.active(),
        "queued": state.queued(),
        "concurrency": state.options.concurrency,
        "queue_limit": state.options.queue,
        "uploading": state.clients.uploads(),
        "connections": state.clients.connections(),
        "threads_per_job": state.options.threads_per_job(),
        "served": state.served.load(Ordering::Relaxed),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
    .into_response()
}

pub(super) async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check_auth(&state, &headers) {
        return e.into_response();
    }
    let created = std::fs::metadata(&state.engine.model_info().path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": state.options.model_id,
            "object": "model",
            "created": created,
            "owned_by": "verbatim",
        }],
    }))
    .into_response()
}

/// A parsed transcription request.
struct AudioRequest {
    file_name: String,
    data: Vec<u8>,
    language: Option<String>,
    prompt: Option<String>,
    format: ResponseFormat,
    temperature: f32,
    words: bool,
    segments: bool,
    /// Label speakers (`diarize=true`, a verbatim extension).
    diarize: bool,
}

pub(super) async fn audio_route(
    State(state): State<Arc<AppState>>,
    req: Request,
    task: Task,
) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let response = match handle_audio(&state, req, task).await {
        Ok((response, note)) => {
            if state.options.log {
                eprintln!(
                    "verbatim: {path} 200 {note} in {:.2} s",
                    started.elapsed().as_secs_f64()
                );
            }
            response
        }
        Err(e) => {
            if state.options.log {
                eprintln!("verbatim: {path} {} {}", e.status.as_u16(), e.message);
            }
            e.into_response()
        }
    };
    state.served.fetch_add(1, Ordering::Relaxed);
    response
}

async fn handle_audio(
    state: &Arc<AppState>,
    req: Request,
    task: Task,
) -> Result<(Response, String), ApiError> {
    auth::check_auth(state, req.headers())?;
    let too_large = |what: String| {
        ApiError::bad_request(
            Some("file"),
            format!(
                "{what}; the limit is {} MB (--max-upload-mb).",
                state.options.max_upload_bytes as f64 / 1e6
            ),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_code("file_too_large")
    };
    // A declared length over the limit is refused before a byte of the body is read (a
    // client sending `Expect: 100-continue` never uploads it).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > state.options.max_upload_bytes.saturating_add(1 << 20) {
            return Err(too_large(format!(
                "The request body is {:.1} MB",
                len as f64 / 1e6
            )));
        }
    }

    // At most --max-uploads-per-ip bodies are read at once from one address.
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let upload = match peer {
        None => None,
        Some(ip) => match state
            .clients
            .start_upload(ip, state.options.max_uploads_per_ip)
        {
            Some(guard) => Some(guard),
            None => {
                drain_briefly(state, req).await;
                return Err(ApiError::bad_request(
                    None,
                    format!(
                        "Too many uploads in progress from your address (--max-uploads-per-ip {}); retry when one has finished.",
                        state.options.max_uploads_per_ip
                    ),
                )
                .with_status(StatusCode::TOO_MANY_REQUESTS)
                .with_code("too_many_uploads"));
            }
        },
    };

    // The upload is read before the request joins the queue, so a slow client holds no slot;
    // it must arrive within --body-timeout.
    let body_timeout = state.options.body_timeout;
    let request =
        match tokio::time::timeout(body_timeout, read_request(state, req, &too_large)).await {
            Ok(request) => request?,
            Err(_) => {
                return Err(ApiError::bad_request(
                    None,
                    format!(
                        "The upload did not arrive within {} s (--body-timeout).",
                        body_timeout.as_secs_f64()
                    ),
                )
                .with_status(StatusCode::REQUEST_TIMEOUT)
                .with_code("upload_timeout"))
            }
        };
    drop(upload);

    let Some(admission) = state.admit() else {
        return Err(state.busy());
    };
    let note = format!(
        "{} ({})",
        request.file_name,
        crate::models::download::human_bytes(request.data.len() as u64)
    );

    // Wait for a slot. Dropping this future (client gone) leaves the queue.
    let permit = state.slot().await?;

    let cancel = Arc::new(AtomicBool::new(false));
    let mut cancel_on_drop = CancelOnDrop {
        cancel: cancel.clone(),
        done: false,
        log: state.options.log.then(|| note.clone()),
    };
    let job_state = state.clone();
    let job_cancel = cancel.clone();
    let job_note = note.clone();
    let running = state.running();
    let handle = tokio::task::spawn_blocking(move || {
        // Owned by the job: the slot and the place are given back when whisper has stopped,
        // not when the client goes, so the concurrency limit holds.
        let _permit = permit;
        let _admission = admission;
        let _running = running;
        let t0 = Instant::now();
        let result = run_job(&job_state, request, task, &job_cancel);
        if job_state.options.log && matches!(&result, Err(e) if e.status.as_u16() == 499) {
            eprintln!(
                "verbatim: {job_note}: cancelled; whisper stopped after {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
        job_state.record_job_ms(t0.elapsed().as_millis() as u64);
        result
    });
    let result = handle.await;
    cancel_on_drop.done = true;
    let result =
        result.map_err(|e| ApiError::internal(format!("the transcription job failed: {e}")))?;
    result.map(|(response, detail)| (response, format!("{note} {detail}")))
}

/// Reads and discards a body, up to `limit` bytes.
async fn drain(body: Body, limit: u64) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            seen += data.len() as u64;
            if seen > limit.saturating_add(1 << 20) {
                break;
            }
        }
    }
}

async fn read_request(
    state: &AppState,
    req: Request,
    too_large: &impl Fn(String) -> ApiError,
) -> Result<AudioRequest, ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase())
        .is_some_and(|v| v.starts_with("multipart/form-data") && v.contains("boundary="));
    if !is_multipart {
        drain_briefly(state, req).await;
        return Err(ApiError::bad_request(
            None,
            "The request must be multipart/form-data (with a boundary) with the audio in a `file` field.",
        ));
    }
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(None, format!("Invalid multipart body: {e}")))?;
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large("The upload is too large".into())
        } else {
            ApiError::bad_request(None, format!("Invalid multipart body: {}", e.body_text()))
        }
    };
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut language = None;
    let mut prompt = None;
    let mut format = None;
    let mut temperature = None;
    let mut granularities: Vec<String> = Vec::new();
    let mut diarize = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload").to_string();
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if (data.len() + chunk.len()) as u64 > state.options.max_upload_bytes {
                    // Read the rest (bounded by the body limit) so the client gets the answer
                    // instead of a reset connection.
                    drop(data);
                    while let Ok(Some(_)) = field.chunk().await {}
                    drop(field);
                    while let Ok(Some(mut f)) = multipart.next_field().await {
                        while let Ok(Some(_)) = f.chunk().await {}
                    }
                    return Err(too_large(format!("The file {file_name} is too large")));
                }
                data.extend_from_slice(&chunk);
            }
            file = Some((file_name, data));
            continue;
        }
        let limit = if name == "prompt" {
            MAX_PROMPT_BYTES
        } else {
            MAX_FIELD_BYTES
        };
        let value = match read_text(&mut field, limit)
            .await
            .map_err(multipart_error)?
        {
            Ok(value) => value,
            Err(len) => {
                // Read the rest (bounded by the body limit) so the client gets the answer
                // instead of a reset connection.
                drop(field);
                while let Ok(Some(mut f)) = multipart.next_field().await {
                    while let Ok(Some(_)) = f.chunk().await {}
                }
                let (param, code): (&'static str, &'static str) = if name == "prompt" {
                    ("prompt", "prompt_too_long")
                } else {
                    ("", "field_too_long")
                };
                return Err(ApiError::bad_request(
                    (!param.is_empty()).then_some(param),
                    format!(
                        "The `{}` field is {len} bytes; the limit is {limit} bytes.",
                        name.chars().take(64).collect::<String>()
                    ),
                )
                .with_code(code));
            }
        };
        match name.as_str() {
            "language" => language = Some(value),
            "prompt" => prompt = Some(value),
            "response_format" => format = Some(value),
            "temperature" => temperature = Some(value),
            "diarize" => diarize = Some(value),
            "timestamp_granularities[]" | "timestamp_granularities" => {
                granularities.extend(value.split(',').map(|s| s.trim().to_string()))
            }
            // `model` is accepted and ignored: the loaded model answers. Fields OpenAI added
            // for other models (stream, include[], chunking_strategy) are ignored too.
            _ => {}
        }
    }

    let Some((file_name, data)) = file else {
        return Err(ApiError::bad_request(
            Some("file"),
            "Missing required parameter: 'file'.",
        ));
    };
    if data.is_empty() {
        return Err(ApiError::bad_request(
            Some("file"),
            format!("The audio file {file_name} is empty."),
        ));
    }
    let format = match format.as_deref().map(str::trim) {
        None | Some("") => ResponseFormat::Json,
        Some(f) => ResponseFormat::parse(f).ok_or_else(|| {
            ApiError::bad_request(
                Some("response_format"),
                format!(
                    "Invalid response_format '{f}': expected json, text, srt, verbose_json or vtt."
                ),
            )
        })?,
    };
    let temperature = match temperature.as_deref().map(str::trim) {
        None | Some("") => 0.0,
        Some(t) => match t.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                return Err(ApiError::bad_request(
                    Some("temperature"),
                    format!("Invalid temperature '{t}': expected a number from 0 to 1."),
                ))
            }
        },
    };
    let language = match language.as_deref().map(|l| l.trim().to_ascii_lowercase()) {
        None => None,
        Some(l) if l.is_empty() || l == "auto" => None,
        Some(l) => {
            if engine::language_id(&l).is_none() {
                return Err(ApiError::bad_request(
                    Some("language"),
                    format!("Unknown language '{l}': use an ISO-639-1 code such as en, de, fr."),
                ));
            }
            Some(l)
        }
    };
    let diarize = match diarize.as_deref().map(|d| d.trim().to_ascii_lowercase()) {
        None => false,
        Some(d) => match d.as_str() {
            "" | "false" | "0" => false,
            "true" | "1" => true,
            _ => {
                return Err(ApiError::bad_request(
                    Some("diarize"),
                    format!("Invalid diarize '{d}': expected true or false."),
                ))
            }
        },
    };
    let mut words = false;
    let mut segments = granularities.is_empty();
    for g in granularities.iter().filter(|g| !g.is_empty()) {
        match g.as_str() {
            "word" => words = true,
            "segment" => segments = true,
            other => {
                return Err(ApiError::bad_request(
                    Some("timestamp_granularities"),
                    format!("Invalid timestamp granularity '{other}': expected word or segment."),
                ))
            }
        }
    }
    if !words && !segments {
        segments = true;
    }
    Ok(AudioRequest {
        file_name,
        data,
        language,
        prompt: prompt.filter(|p| !p.trim().is_empty()),
        format,
        temperature,
        words,
        segments,
        diarize,
    })
}

/// Reads a text field, keeping at most `limit` bytes: `Ok(Err(length))` when it is longer (the
/// rest is read and dropped).
async fn read_text(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<Result<String, usize>, axum::extract::multipart::MultipartError> {
    let mut data = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = field.chunk().await? {
        len = len.saturating_add(chunk.len());
        if len <= limit {
            data.extend_from_slice(&chunk);
        } else {
            data = Vec::new();
        }
    }
    if len > limit {
        return Ok(Err(len));
    }
    Ok(Ok(String::from_utf8_lossy(&data).into_owned()))
}

/// Decodes and transcribes one request on a blocking thread.
fn run_job(
    state: &AppState,
    request: AudioRequest,
    task: Task,
    cancel: &AtomicBool,
) -> Result<(Response, String), ApiError> {
    let AudioRequest {
        file_name,
        data,
        language,
        prompt,
        format,
        temperature,
        words,
        segments,
        diarize,
    } = request;
    if cancel.load(Ordering::SeqCst) {
        return Err(cancelled());
    }
    let progress = Arc::new(std::sync::atomic::AtomicU32::new(u32::MAX));
    let id = state.next_job.fetch_add(1, Ordering::Relaxed);
    state
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(JobInfo {
            id,
            started: Instant::now(),
            progress: progress.clone(),
        });
    let _listed = Listed { state, id };
    let options = TranscribeOptions {
        language,
        translate: task == Task::Translate,
        temperature,
        initial_prompt: prompt,
        word_timestamps: words || format.is_subtitle(),
        ..state.options.transcribe.clone()
    };
    let diarizer = if diarize {
        let loaded = state.diarizer.get_or_init(|| {
            let log = state.options.log;
            let mut on_event = |e: crate::models::download::Event<'_>| {
                if let (true, crate::models::download::Event::Start { name, url, .. }) = (log, e) {
                    eprintln!(
                        "verbatim: downloading {name} from {url} for the first diarize request"
                    );
                }
            };
            crate::diarization::ensure_models(state.options.offline, &mut on_event)
                .and_then(|m| crate::diarization::Diarizer::load(&m, Default::default()))
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok(d) => Some(d.clone()),
            Err(e) => {
                return Err(ApiError::bad_request(
                    Some("diarize"),
                    format!("This server cannot diarize: {e}"),
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_code("diarization_unavailable"))
            }
        }
    } else {
        None
    };
    let pipeline_options = PipelineOptions {
        transcribe: options.clone(),
        max_seconds: state.options.max_audio_seconds,
        diarize: diarizer,
        ..PipelineOptions::default()
    };
    let mut segments_out = Vec::new();
    let mut on_segment = |seg: &Segment| segments_out.push(seg.clone());
    let mut on_progress = |fraction: f32| progress.store(fraction.to_bits(), Ordering::Relaxed);
    let mut hooks = Hooks {
        cancel: Some(cancel),
        on_progress: Some(&mut on_progress),
        on_segment: Some(&mut on_segment),
    };
    // No output files: the segments come back through the hook and go out in the response.
    let outputs = Outputs {
        files: Vec::new(),
        meta: JsonMeta::for_run(
            &state.engine,
            file_name.clone(),
            &options,
            state.options.subtitle_rules.clone(),
        ),
        keep_words: true,
    };
    let t0 = Instant::now();
    let summary = pipeline::transcribe_reader(
        &state.engine,
        &file_name,
        &mut data.as_slice(),
        &outputs,
        &pipeline_options,
        &mut hooks,
    )
    .map_err(|e| match e {
        Error::Cancelled => cancelled(),
        Error::TooLong { .. } => ApiError::bad_request(
            Some("file"),
            format!("{e} (--max-audio-seconds)."),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_code("audio_too_long"),
        Error::Input { .. } => ApiError::bad_request(
            Some("file"),
            format!("Invalid file format: {e}. Send audio or video such as flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav or webm."),
        )
        .with_code("invalid_file_format"),
        other => ApiError::internal(other.to_string()),
    })?;
    drop(data);
    let duration = summary.duration;
    let transcript = Transcript {
        speakers: summary.speakers,
        turns: summary.turns,
        language: summary.language,
        language_probability: summary.language_probability,
        duration,
        segments: segments_out,
    };
    let meta = JsonMeta::for_run(
        &state.engine,
        file_name,
        &options,
        state.options.subtitle_rules.clone(),
    );
    let response = openai::render(&openai::RenderInput {
        transcript: &transcript,
        engine: &state.engine,
        format,
        task,
        words,
        segments,
        temperature,
        meta: &meta,
    });
    Ok((
        response,
        format!(
            "{duration:.1} s audio, {:.2} s whisper",
            t0.elapsed().as_secs_f64()
        ),
    ))
}

fn cancelled() -> ApiError {
    // The client is gone; nobody reads this. 499 is nginx's "client closed request".
    ApiError::internal("the client closed the request")
        .with_status(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST))
}
