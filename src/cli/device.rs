//! `--device auto|cpu|gpu|gpu:N` and `--strict` for every command that loads a model, and the
//! GPU probe behind them.
//!
//! whisper.cpp (ggml) can abort the whole process when a GPU backend fails to start (Vulkan
//! does on some driver failures), so verbatim never tries a GPU in its own process first: it
//! re-executes itself as `verbatim __gpu-probe`, which lists the devices, initialises the
//! chosen GPU and runs a small matrix product on it. Only when that child reports success does
//! the real run create its GPU context; otherwise it prints one warning and runs on the CPU
//! (or, with `--strict`, fails). Nothing is cached: every run probes afresh.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use verbatim::engine::device::{self, DeviceInfo, DeviceRequest};
use verbatim::engine::{Engine, EngineOptions};

use super::error::CliError;
use super::exit_code;
use super::print_warning;

/// `--device` and `--strict`, flattened into every command that loads a model.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Where whisper runs: auto (a GPU when this build has a GPU backend and one passes a
    /// quick self-test, else the CPU), cpu, gpu, or gpu:N for the N-th GPU (`verbatim info`
    /// lists them).
    #[arg(
        long,
        // `listen` called it --compute-device when its --device was the microphone (now --mic).
        alias = "compute-device",
        env = "VERBATIM_DEVICE",
        default_value = "auto",
        value_name = "auto|cpu|gpu|gpu:N",
        value_parser = parse_device,
        help_heading = "Device"
    )]
    pub device: DeviceRequest,

    /// With --device gpu: fail (exit 1) when the GPU cannot be used instead of falling back to
    /// the CPU.
    #[arg(long, help_heading = "Device")]
    pub strict: bool,
}

/// `--device`: a bare number is most likely a microphone index from `verbatim listen`'s old
/// `--device`, or a GPU meant as gpu:N; the error says where each goes.
fn parse_device(s: &str) -> Result<DeviceRequest, String> {
    s.parse::<DeviceRequest>().map_err(|e| {
        if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) {
            format!(
                "{e}: gpu:{n} for a GPU; a microphone is `verbatim listen --mic {n}`",
                n = s.trim()
            )
        } else {
            e.to_string()
        }
    })
}

/// Where whisper will run, decided before the model loads.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The GPU that passed the probe; `None` runs on the CPU.
    pub gpu: Option<DeviceInfo>,
    strict: bool,
}

impl DeviceArgs {
    /// Decides the device: probes the GPU when one is wanted and this build has a GPU
    /// backend. Prints the fallback warning (unless `quiet`); with `--strict` an unusable GPU
    /// is the error.
    pub fn resolve(&self, quiet: bool) -> Result<Placement, CliError> {
        let cpu = |strict| Placement { gpu: None, strict };
        if self.strict && !matches!(self.device, DeviceRequest::Gpu(_)) {
            return Err(CliError::usage("--strict needs --device gpu or gpu:N"));
        }
        let gpu = match self.device {
            DeviceRequest::Cpu => {
                device::hide_gpus_from_backends();
                return Ok(cpu(false));
            }
            DeviceRequest::Auto if !device::gpu_backend_compiled() => return Ok(cpu(false)),
            DeviceRequest::Auto => 0,
            DeviceRequest::Gpu(n) => n,
        };
        let reason = if !device::gpu_backend_compiled() {
            "this verbatim was built without a GPU backend; rebuild with --features vulkan, \
             cuda, hipblas or metal"
                .to_string()
        } else {
            let outcome = probe(Some(gpu), false);
            match outcome.tests.first() {
                Some((_, Ok(()))) => {
                    let info = outcome
                        .devices
                        .iter()
                        .find(|d| d.gpu_index == Some(gpu))
                        .cloned();
                    if let Some(info) = info {
                        return Ok(Placement {
                            gpu: Some(info),
                            strict: self.strict,
                        });
                    }
                    "the probe lost track of the device".to_string()
                }
                Some((_, Err(e))) => e.clone(),
                None => outcome
                    .failure
                    .unwrap_or_else(|| "the GPU probe gave no answer".into()),
            }
        };
        // In auto mode a machine without any GPU is the normal case, not worth a warning.
        let no_gpu_at_all = reason == NO_GPU;
        if self.strict {
            return Err(CliError::failure(format!(
                "GPU unavailable ({reason}); --strict forbids falling back to the CPU"
            )));
        }
        let silent = quiet || (self.device == DeviceRequest::Auto && no_gpu_at_all);
        if !silent {
            print_warning(format!("GPU unavailable ({reason}); using the CPU"));
        }
        device::hide_gpus_from_backends();
        Ok(cpu(false))
    }
}

impl Placement {
    /// Sets the engine options for this placement.
    pub fn apply(&self, options: &mut EngineOptions) {
        options.use_gpu = self.gpu.is_some();
        options.gpu_device = self.gpu.as_ref().and_then(|d| d.gpu_index).unwrap_or(0);
        // Flash attention stays on (whisper.cpp's default) on both: it is the fast path on
        // GPUs, and on the CPU it saves memory.
    }

    /// Loads the model here. A model that does not load on the GPU (too little memory, say)
    /// is loaded on the CPU with the usual warning, unless `--strict`.
    pub fn load(
        &self,
        model: &Path,
        base: &EngineOptions,
        quiet: bool,
    ) -> Result<Engine, verbatim::Error> {
        let mut options = base.clone();
        self.apply(&mut options);
        match Engine::load(model, &options) {
            Ok(engine) => Ok(engine),
            Err(e) if self.gpu.is_none() || self.strict => Err(e),
            Err(gpu_error) => {
                options.use_gpu = false;
                let engine = Engine::load(model, &options)?;
                if !quiet {
                    let name = self.gpu.as_ref().map(|d| d.name.as_str()).unwrap_or("GPU");
                    print_warning(format!(
                        "GPU unavailable (cannot load the model on {name}: {gpu_error}); using the CPU"
                    ));
                }
                Ok(engine)
            }
        }
    }
}

const NO_GPU: &str = "no GPU device found";

/// What the probe child reported.
#[derive(Debug, Default)]
pub struct ProbeOutcome {
    /// Every device of every compiled backend (empty when the probe died before listing).
    pub devices: Vec<DeviceInfo>,
    /// Self-test results, by GPU index.
    pub tests: Vec<(usize, Result<(), String>)>,
    /// Why the probe stopped early (crash, timeout), if it did.
    pub failure: Option<String>,
}

/// Options of the hidden `verbatim __gpu-probe` (run by verbatim itself).
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Self-test this GPU.
    #[arg(long)]
    gpu: Option<usize>,
    /// Self-test every GPU.
    #[arg(long)]
    all: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TestLine {
    gpu: usize,
    ok: bool,
    error: Option<String>,
}

/// The probe child: one JSON line with the devices, then one per self-tested GPU, so that a
/// crash in a test still leaves the list and the results before it.
pub fn run_probe(args: ProbeArgs) -> Result<i32, CliError> {
    // For the tests of the fallback path: make this probe fail the way a broken driver does.
    match std::env::var("VERBATIM_GPU_PROBE_FAIL").as_deref() {
        Ok("abort") => std::process::abort(),
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
    let devices = device::list_devices();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&devices).unwrap_or_else(|_| "[]".into())
    );
    let _ = out.flush();
    let gpus: Vec<usize> = if args.all {
        devices.iter().filter_map(|d| d.gpu_index).collect()
    } else {
        args.gpu.into_iter().collect()
    };
    for gpu in gpus {
        let result = device::self_test(gpu);
        let line = TestLine {
            gpu,
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        };
        let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
        let _ = out.flush();
    }
    Ok(exit_code::OK)
}

/// Seconds the probe may take (`VERBATIM_GPU_PROBE_TIMEOUT`, default 60: a software Vulkan
/// driver takes a few seconds, a real GPU well under one).
fn probe_timeout() -> Duration {
    let secs = std::env::var("VERBATIM_GPU_PROBE_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs)
}

/// Runs the probe in a child process: lists the devices and self-tests `gpu` (or all GPUs).
pub fn probe(gpu: Option<usize>, all: bool) -> ProbeOutcome {
    let mut outcome = ProbeOutcome::default();
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            outcome.failure = Some(format!("cannot find the verbatim binary to probe: {e}"));
            return outcome;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("__gpu-probe");
    if let Some(n) = gpu {
        cmd.arg("--gpu").arg(n.to_string());
    }
    if all {
        cmd.arg("--all");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.failure = Some(format!("cannot start the GPU probe: {e}"));
            return outcome;
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(s) = stdout {
            for line in std::io::BufReader::new(s).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
        }
        lines
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + probe_timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let lines = out_reader.join().unwrap_or_default();
    let stderr_text = err_reader.join().unwrap_or_default();
    let mut lines = lines.iter();
    if let Some(first) = lines.next() {
        outcome.devices = serde_json::from_str(first).unwrap_or_default();
    }
    for line in lines {
        if let Ok(t) = serde_json::from_str::<TestLine>(line) {
            let result = if t.ok {
                Ok(())
            } else {
                Err(t.error.unwrap_or_else(|| "self-test failed".into()))
            };
            outcome.tests.push((t.gpu, result));
        }
    }
    let last_message = stderr_text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(200).collect::<String>());
    let died = match status {
        None => Some(format!(
            "the GPU probe did not finish within {:.0} s",
            probe_timeout().as_secs_f64()
        )),
        Some(s) if s.success() => None,
        Some(s) => Some(describe_exit(s)),
    };
    if let Some(mut why) = died {
        if let Some(m) = last_message {
            why.push_str(": ");
            why.push_str(&m);
        }
        outcome.failure = Some(why);
    }
    // A crash during a self-test is that GPU's failure.
    let tested: Vec<usize> = outcome.tests.iter().map(|(g, _)| *g).collect();
    let wanted: Vec<usize> = if all {
        outcome.devices.iter().filter_map(|d| d.gpu_index).collect()
    } else {
        gpu.into_iter().collect()
    };
    let has_gpu = outcome.devices.iter().any(|d| d.gpu_index.is_some());
    for g in wanted {
        if !tested.contains(&g) {
            let why = outcome
                .failure
                .clone()
                .unwrap_or_else(|| "the GPU probe gave no answer".into());
            outcome.tests.push((g, Err(why)));
        }
    }
    if !all && !has_gpu && outcome.failure.is_none() {
        if let Some(g) = gpu {
            outcome.tests = vec![(g, Err(NO_GPU.to_string()))];
        }
    }
    outcome
}

#[cfg(unix)]
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(6) => "the GPU probe aborted (SIGABRT)".into(),
        Some(11) => "the GPU probe crashed (SIGSEGV)".into(),
        Some(sig) => format!("the GPU probe died of signal {sig}"),
        None => format!("the GPU probe failed ({status})"),
    }
}

#[cfg(not(unix))]
fn describe_exit(status: std::process::ExitStatus) -> String {
    format!("the GPU probe failed ({status})")
}
