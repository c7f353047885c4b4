//! `verbatim info`: versions, compiled backends, GPU devices, CPU features, model store.

use std::io::Write;

use clap::Args;

use verbatim::engine::{self, device};

use super::error::CliError;
use super::exit_code;

pub const AFTER_HELP: &str = "\
Examples:
  verbatim info
  verbatim info --json | jq .devices

GPU devices are listed and self-tested in a child process, so a broken GPU driver cannot take
verbatim down; `usable` says whether `--device gpu:N` would run on that GPU.";

/// Options of `verbatim info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Device {
    /// `gpu:N` for GPUs.
    id: Option<String>,
    #[serde(flatten)]
    info: device::DeviceInfo,
    /// GPUs only: whether the self-test passed.
    usable: Option<bool>,
    error: Option<String>,
}

#[derive(serde::Serialize)]
struct ModelInfo {
    name: String,
    path: Option<String>,
    installed: bool,
}

#[derive(serde::Serialize)]
struct Info {
    verbatim_version: &'static str,
    whisper_cpp_version: &'static str,
    engine: engine::EngineBuild,
    backends: Vec<&'static str>,
    gpu_backend: bool,
    devices: Vec<Device>,
    probe_error: Option<String>,
    cpu_features: Vec<device::CpuFeature>,
    default_threads: usize,
    default_model: ModelInfo,
    model_store: String,
}

fn gather() -> Info {
    let outcome = super::device::probe(None, true);
    let devices = outcome
        .devices
        .into_iter()
        .map(|info| {
            let test = info
                .gpu_index
                .and_then(|g| outcome.tests.iter().find(|(t, _)| *t == g));
            Device {
                id: info.gpu_index.map(|g| format!("gpu:{g}")),
                usable: test.map(|(_, r)| r.is_ok()),
                error: test.and_then(|(_, r)| r.clone().err()),
                info,
            }
        })
        .collect();
    let store = verbatim::models::models_dir();
    let name = std::env::var("VERBATIM_MODEL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| verbatim::models::DEFAULT_MODEL.to_string());
    let registry = verbatim::models::Registry::load()
        .unwrap_or_else(|_| verbatim::models::Registry::builtin());
    let path = verbatim::models::resolve(&name, &registry, &store)
        .ok()
        .map(|r| r.path().to_path_buf());
    Info {
        verbatim_version: env!("CARGO_PKG_VERSION"),
        whisper_cpp_version: engine::whisper_cpp_version(),
        engine: engine::engine_build(),
        backends: device::compiled_backends(),
        gpu_backend: device::gpu_backend_compiled(),
        devices,
        probe_error: outcome.failure,
        cpu_features: device::cpu_features(),
        default_threads: engine::default_threads(),
        default_model: ModelInfo {
            installed: path.as_ref().is_some_and(|p| p.is_file()),
            path: path.map(|p| p.display().to_string()),
            name,
        },
        model_store: store.display().to_string(),
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

pub fn run(args: InfoArgs) -> Result<i32, CliError> {
    let info = gather();
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&info).unwrap_or_else(|_| "{}".into());
        let _ = writeln!(out, "{text}");
        return Ok(exit_code::OK);
    }
    let mut s = String::new();
    s.push_str(&format!("verbatim      {}\n", info.verbatim_version));
    s.push_str(&format!("whisper.cpp   {}\n", info.whisper_cpp_version));
    s.push_str(&format!(
        "engine        {} ({})\n",
        info.engine.patch_level,
        info.engine.patches.join(", ")
    ));
    let settings: Vec<String> = info
        .engine
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    s.push_str(&format!("engine build  {}\n", settings.join(" ")));
    s.push_str(&format!("backends      {}\n", info.backends.join(", ")));
    s.push_str("devices\n");
    for d in &info.devices {
        let id = d.id.clone().unwrap_or_else(|| d.info.kind.clone());
        let memory = if d.info.memory_total > 0 {
            format!(
                ", {} ({} free)",
                gb(d.info.memory_total),
                gb(d.info.memory_free)
            )
        } else {
            String::new()
        };
        let status = match (d.usable, &d.error) {
            (Some(true), _) => "  [usable]".to_string(),
            (Some(false), Some(e)) => format!("  [unusable: {e}]"),
            (Some(false), None) => "  [unusable]".to_string(),
            (None, _) => String::new(),
        };
        s.push_str(&format!(
            "  {id:<7} {}: {}{memory}{status}\n",
            d.info.name, d.info.description
        ));
    }
    if !info.devices.iter().any(|d| d.id.is_some()) {
        let why = if info.gpu_backend {
            "none found"
        } else {
            "none (built without a GPU backend: --features vulkan, cuda, hipblas or metal)"
        };
        s.push_str(&format!("  GPUs: {why}\n"));
    }
    if let Some(e) = &info.probe_error {
        s.push_str(&format!("  probe: {e}\n"));
    }
    let detected: Vec<&str> = info
        .cpu_features
        .iter()
        .filter(|f| f.detected)
        .map(|f| f.name)
        .collect();
    let used: Vec<&str> = info
        .cpu_features
        .iter()
        .filter(|f| f.used_by_ggml)
        .map(|f| f.name)
        .collect();
    s.push_str(&format!("cpu features  {}\n", detected.join(" ")));
    s.push_str(&format!("ggml uses     {}\n", used.join(" ")));
    s.push_str(&format!("threads       {}\n", info.default_threads));
    let model_state = match (&info.default_model.path, info.default_model.installed) {
        (Some(p), true) => p.clone(),
        (Some(p), false) => format!("{p} (not downloaded yet)"),
        (None, _) => "(not found)".into(),
    };
    s.push_str(&format!(
        "default model {} -> {model_state}\n",
        info.default_model.name
    ));
    s.push_str(&format!("model store   {}\n", info.model_store));
    let _ = out.write_all(s.as_bytes());
    Ok(exit_code::OK)
}
