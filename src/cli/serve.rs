//! `verbatim serve`: an OpenAI-compatible transcription server (see `verbatim::server`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use verbatim::engine;
use verbatim::server::{self, AppState, ServerOptions};

use super::device::DeviceArgs;
use super::error::CliError;
use super::exit_code;
use super::options::{DecodeArgs, ModelArgs, SamplingArgs, VadArgs};
use super::print_warning;

pub const AFTER_HELP: &str = "\
Endpoints (OpenAI's transcription API; any `model` value is accepted, the loaded model answers):
  POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format
                                  (json, text, srt, verbose_json, vtt), temperature,
                                  timestamp_granularities[] (word, segment)
  POST /v1/audio/translations     the same, translated to English
  GET  /v1/models                 the loaded model
  GET  /health                    status and running/queued jobs (no API key needed)

Examples:
  verbatim serve --model small.en
  verbatim serve --host 0.0.0.0 --port 9000 --api-key \"$(cat key.txt)\"
  curl http://127.0.0.1:8080/v1/audio/transcriptions -F file=@talk.mp3 -F response_format=srt

Requests beyond --concurrency wait in a queue of --queue; beyond that they get 503 with
Retry-After. A request joins the queue once its upload has arrived (within --body-timeout);
headers must arrive within --header-timeout; connections and uploads are capped per client
address. A client that disconnects cancels its transcription. The address the server
listens on is printed on stderr as `verbatim: listening on http://HOST:PORT`.";

/// Options of `verbatim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but a loopback address exposes the server to the
    /// network: use --api-key then.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    host: String,

    /// Port to listen on (0 picks a free port; the address is printed).
    #[arg(short, long, default_value_t = 8080, value_name = "PORT")]
    port: u16,

    #[command(flatten)]
    models: ModelArgs,

    #[command(flatten)]
    vad: VadArgs,

    /// Transcriptions that run at the same time [default: a quarter of the cores, 2 to 8].
    #[arg(long, value_name = "N", value_parser = super::options::parse_workers, help_heading = "Scheduling")]
    concurrency: Option<usize>,

    /// Requests that may wait for a free slot; more get 503 with Retry-After
    /// [default: 4 x concurrency].
    #[arg(long, value_name = "N", help_heading = "Scheduling")]
    queue: Option<usize>,

    #[command(flatten)]
    sampling: SamplingArgs,

    #[command(flatten)]
    decode: DecodeArgs,

    /// Largest accepted upload in megabytes (10^6 bytes); larger ones get 413.
    #[arg(
        long,
        default_value_t = 100,
        value_name = "MB",
        help_heading = "Limits"
    )]
    max_upload_mb: u64,

    /// Longest accepted audio in seconds (0: no limit); longer audio gets 413.
    #[arg(
        long,
        default_value_t = 10_800,
        value_name = "SECONDS",
        help_heading = "Limits"
    )]
    max_audio_seconds: u64,

    /// Seconds a client has to send a request's line and headers; then the connection is
    /// closed.
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "SECONDS",
        value_parser = parse_timeout,
        help_heading = "Limits"
    )]
    header_timeout: f64,

    /// Seconds a client has to send its whole upload; then it gets 408. The upload is read
    /// before the request joins the queue, so a slow client holds no slot meanwhile.
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECONDS",
        value_parser = parse_timeout,
        help_heading = "Limits"
    )]
    body_timeout: f64,

    /// Connections open at once; more get 503 and are closed [default: 1024, or the open-file
    /// limit (`ulimit -n`) less 64 when that is lower].
    #[arg(long, value_name = "N", value_parser = super::options::parse_count, help_heading = "Limits")]
    max_connections: Option<usize>,

    /// Connections open at once from one client address; more get 429 and are closed.
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = super::options::parse_count, help_heading = "Limits")]
    max_connections_per_ip: usize,

    /// Uploads read at once from one client address; more get 429.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = super::options::parse_count, help_heading = "Limits")]
    max_uploads_per_ip: usize,

    /// Require `Authorization: Bearer KEY` on every /v1 request.
    #[arg(
        long,
        env = "VERBATIM_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Limits"
    )]
    api_key: Option<String>,

    /// No line per request on stderr.
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    device: DeviceArgs,

    #[command(flatten)]
    subtitle_rules: super::rules::SubtitleRuleArgs,
}

/// A timeout in seconds: positive, finite, at most a day.
fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most 86400, got '{s}'"
        )),
    }
}

/// The soft limit on open files (`ulimit -n`), where the system says.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The id `/v1/models` shows: a registry name as given, else the file's stem without `ggml-`.
fn model_id(arg: &str, path: &Path) -> String {
    if !arg.contains('/') && !arg.contains('\\') && !arg.ends_with(".bin") {
        return arg.to_string();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string());
    stem.strip_prefix("ggml-").unwrap_or(&stem).to_string()
}

pub fn run(args: ServeArgs) -> Result<i32, CliError> {
    let subtitle_rules = args.subtitle_rules.rules()?;
    let host = args
        .host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h.parse().map_err(|_| {
            CliError::usage(format!(
                "--host {}: not an IP address (use 127.0.0.1, ::1 or 0.0.0.0)",
                args.host
            ))
        })?,
    };
    let api_key = args.api_key.clone().filter(|k| !k.trim().is_empty());
    if !ip.is_loopback() && api_key.is_none() {
        print_warning(format!(
            "listening on {ip} without --api-key: anyone who can reach this port can use the server"
        ));
    }

    let cores = engine::default_threads();
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| server::default_concurrency(cores));
    let queue = args.queue.unwrap_or(4 * concurrency);
    // Past the open-file limit the process could not accept anything (nor open a model), so
    // the connection cap stays below it with room for the model, the VAD and uploads.
    let mut max_connections = args.max_connections.unwrap_or(1024);
    if let Some(files) = open_file_limit() {
        let room = files.saturating_sub(64).max(16);
        if max_connections > room {
            if args.max_connections.is_some() {
                print_warning(format!(
                    "--max-connections {max_connections} is above the open-file limit ({files}, `ulimit -n`) less 64; using {room}"
                ));
            }
            max_connections = room;
        }
    }

    let cancel = super::install_ctrlc();
    let engine = Arc::new(super::fetch::load_engine(
        &args.models,
        args.vad.engine_vad(),
        &args.device,
        args.quiet,
    )?);
    let model_path = engine.model_info().path.clone();
    let transcribe =
        super::options::server_options(&args.sampling, &args.decode, &args.vad, concurrency);
    let threads = transcribe.threads;
    let options = ServerOptions {
        concurrency,
        queue,
        max_upload_bytes: args.max_upload_mb.saturating_mul(1_000_000),
        max_audio_seconds: (args.max_audio_seconds > 0).then_some(args.max_audio_seconds as f64),
        api_key,
        model_id: model_id(&args.models.model, &model_path),
        transcribe,
        subtitle_rules,
        log: !args.quiet,
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        body_timeout: Duration::from_secs_f64(args.body_timeout),
        max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        max_uploads_per_ip: args.max_uploads_per_ip,
        offline: args.models.offline(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .max_blocking_threads(concurrency + 2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the server runtime: {e}")))?;
    let state = AppState::new(engine, options);
    runtime.block_on(async {
        let addr = SocketAddr::new(ip, args.port);
        let cannot_listen = |e| CliError::failure(format!("cannot listen on {addr}: {e}"));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(cannot_listen)?;
        let bound = listener.local_addr().map_err(cannot_listen)?;
        let shown = match bound {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => a.to_string(),
        };
        eprintln!(
            "verbatim: serving {} ({} at a time, {} thread(s) each, queue {queue})",
            model_path.display(),
            concurrency,
            threads
        );
        eprintln!("verbatim: listening on http://{shown}");
        let flag = cancel.clone();
        let shutdown_state = state.clone();
        let shutdown = async move {
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let busy = shutdown_state.active() + shutdown_state.queued();
            if busy > 0 {
                eprintln!(
                    "verbatim: shutting down; finishing {busy} request(s) (Ctrl-C again to stop at once)"
                );
            } else {
                eprintln!("verbatim: shutting down");
            }
        };
        server::serve(listener, state, shutdown)
            .await
            .map_err(|e| CliError::failure(format!("server error: {e}")))?;
        Ok(exit_code::OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids() {
        assert_eq!(
            model_id("tiny.en", Path::new("/x/ggml-tiny.en.bin")),
            "tiny.en"
        );
        assert_eq!(
            model_id("/m/ggml-tiny.en.bin", Path::new("/m/ggml-tiny.en.bin")),
            "tiny.en"
        );
        assert_eq!(model_id("my.bin", Path::new("my.bin")), "my");
    }
}
