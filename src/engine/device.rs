//! Compute devices: which whisper.cpp backends this binary has, which GPUs ggml sees, a small
//! self-test of one GPU, and the CPU's features.
//!
//! Everything here that touches a GPU goes through ggml's backend registry, and a broken GPU
//! driver can abort the whole process inside it (whisper.cpp's Vulkan backend does on some
//! start-up failures). Callers that must survive run [`probe`] in a child process (the CLI
//! re-executes itself) and only create a GPU context in their own process when the probe
//! passed; see `verbatim::cli`'s device module.

use std::ffi::CStr;
use std::fmt;
use std::str::FromStr;

use whisper_rs::whisper_rs_sys as sys;

/// The device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The GPU when the binary has a GPU backend and a device passes the probe, else the CPU.
    #[default]
    Auto,
    /// The CPU only.
    Cpu,
    /// A GPU: the N-th GPU ggml lists (0 for plain `gpu`).
    Gpu(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "gpu" | "cuda" | "vulkan" | "metal" => Ok(DeviceRequest::Gpu(0)),
            _ => match s.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceRequest::Gpu(n)),
                _ => Err(format!(
                    "unknown device `{s}` (expected auto, cpu, gpu or gpu:N)"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Gpu(0) => f.write_str("gpu"),
            DeviceRequest::Gpu(n) => write!(f, "gpu:{n}"),
        }
    }
}

/// whisper.cpp backends compiled into this binary (`cpu` always; then the cargo features).
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "hipblas") {
        v.push("hipblas");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    if cfg!(feature = "coreml") {
        v.push("coreml");
    }
    if cfg!(feature = "openblas") {
        v.push("openblas");
    }
    v
}

/// True when the binary has a backend that runs whisper on a GPU.
pub fn gpu_backend_compiled() -> bool {
    cfg!(any(
        feature = "vulkan",
        feature = "cuda",
        feature = "hipblas",
        feature = "metal"
    ))
}

/// Makes the GPU backends see no device in this process, so that a CPU run never touches a
/// GPU driver (whisper.cpp enumerates every backend's devices even with `use_gpu` off, and a
/// broken Vulkan driver can abort the process right there). Call it before any model loads.
pub fn hide_gpus_from_backends() {
    if cfg!(feature = "vulkan") {
        // The Vulkan loader then finds no driver; ggml's Vulkan backend registers nothing.
        std::env::set_var("VK_DRIVER_FILES", "/nonexistent/verbatim-cpu-only.json");
        std::env::set_var("VK_ICD_FILENAMES", "/nonexistent/verbatim-cpu-only.json");
    }
    if cfg!(any(feature = "cuda", feature = "hipblas")) {
        std::env::set_var("CUDA_VISIBLE_DEVICES", "");
        std::env::set_var("HIP_VISIBLE_DEVICES", "");
    }
}

/// One device in ggml's backend registry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DeviceInfo {
    /// Position among the GPUs (what `gpu:N` names); `None` for CPU and accelerator devices.
    pub gpu_index: Option<usize>,
    /// ggml's name, e.g. `Vulkan0`, `CUDA0`, `CPU`.
    pub name: String,
    /// The driver's description, e.g. `NVIDIA H200`.
    pub description: String,
    /// `cpu`, `gpu`, `igpu` (integrated) or `accel`.
    pub kind: String,
    /// Device memory in bytes (0 when unknown).
    pub memory_total: u64,
    /// Free device memory in bytes at the time of listing (0 when unknown).
    pub memory_free: u64,
}

impl DeviceInfo {
    /// `Vulkan0 (NVIDIA H200, 140.4 GB)`.
    pub fn label(&self) -> String {
        if self.memory_total > 0 {
            format!(
                "{} ({}, {:.1} GB)",
                self.name,
                self.description,
                self.memory_total as f64 / 1e9
            )
        } else {
            format!("{} ({})", self.name, self.description)
        }
    }
}

fn c_string(ptr: *const std::os::raw::c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        // SAFETY: ggml returns NUL-terminated strings that live as long as the registry.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Lists every device of every compiled backend, GPUs numbered in the order whisper.cpp
/// counts them for `gpu_device`. May load GPU drivers: see the module notes.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut out = Vec::new();
    let mut gpus = 0;
    // SAFETY: plain queries of ggml's static backend registry.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = sys::ggml_backend_dev_get(i);
            if dev.is_null() {
                continue;
            }
            let kind = match sys::ggml_backend_dev_type(dev) {
                sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_CPU => "cpu",
                sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU => "gpu",
                sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_IGPU => "igpu",
                _ => "accel",
            };
            let gpu_index = if kind == "gpu" || kind == "igpu" {
                gpus += 1;
                Some(gpus - 1)
            } else {
                None
            };
            let (mut free, mut total) = (0usize, 0usize);
            sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
            out.push(DeviceInfo {
                gpu_index,
                name: c_string(sys::ggml_backend_dev_name(dev)),
                description: c_string(sys::ggml_backend_dev_description(dev)),
                kind: kind.to_string(),
                memory_total: total as u64,
                memory_free: free as u64,
            });
        }
    }
    out
}

/// Initialises GPU `gpu` (as counted by [`list_devices`]) and runs a small matrix product on
/// it, checking the result. Returns the device on success. May abort the process when the
/// driver is broken: run it in a child process.
pub fn self_test(gpu: usize) -> Result<DeviceInfo, crate::Error> {
    test_gpu(gpu).map_err(crate::Error::Device)
}

fn test_gpu(gpu: usize) -> Result<DeviceInfo, String> {
    let devices = list_devices();
    let gpus: Vec<&DeviceInfo> = devices.iter().filter(|d| d.gpu_index.is_some()).collect();
    if gpus.is_empty() {
        return Err("no GPU device found".into());
    }
    let Some(info) = gpus.get(gpu) else {
        return Err(format!(
            "no GPU {gpu}: {} GPU device{} found",
            gpus.len(),
            if gpus.len() == 1 { "" } else { "s" }
        ));
    };
    // SAFETY: ggml C API used as documented; every object is freed before returning.
    unsafe {
        let mut dev = std::ptr::null_mut();
        let mut n = 0;
        for i in 0..sys::ggml_backend_dev_count() {
            let d = sys::ggml_backend_dev_get(i);
            let t = sys::ggml_backend_dev_type(d);
            if t == sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU
                || t == sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_IGPU
            {
                if n == gpu {
                    dev = d;
                    break;
                }
                n += 1;
            }
        }
        if dev.is_null() {
            return Err(format!("{}: device vanished", info.name));
        }
        let backend = sys::ggml_backend_dev_init(dev, std::ptr::null());
        if backend.is_null() {
            return Err(format!("{}: backend initialisation failed", info.name));
        }
        let result = matmul_check(backend);
        sys::ggml_backend_free(backend);
        result.map(|()| (*info).clone())
    }
}

/// Computes a 4x4 by 4x4 product on `backend` and compares it with the CPU's answer.
unsafe fn matmul_check(backend: sys::ggml_backend_t) -> Result<(), String> {
    const N: usize = 4;
    let params = sys::ggml_init_params {
        mem_size: 8 * sys::ggml_tensor_overhead() + sys::ggml_graph_overhead(),
        mem_buffer: std::ptr::null_mut(),
        no_alloc: true,
    };
    let ctx = sys::ggml_init(params);
    if ctx.is_null() {
        return Err("ggml_init failed".into());
    }
    let a = sys::ggml_new_tensor_2d(ctx, sys::ggml_type_GGML_TYPE_F32, N as i64, N as i64);
    let b = sys::ggml_new_tensor_2d(ctx, sys::ggml_type_GGML_TYPE_F32, N as i64, N as i64);
    let c = sys::ggml_mul_mat(ctx, a, b);
    let graph = sys::ggml_new_graph(ctx);
    sys::ggml_build_forward_expand(graph, c);
    let buffer = sys::ggml_backend_alloc_ctx_tensors(ctx, backend);
    if buffer.is_null() {
        sys::ggml_free(ctx);
        return Err("cannot allocate device memory".into());
    }
    let av: Vec<f32> = (0..N * N).map(|i| (i % 7) as f32 - 3.0).collect();
    let bv: Vec<f32> = (0..N * N).map(|i| (i % 5) as f32 * 0.5).collect();
    let bytes = N * N * std::mem::size_of::<f32>();
    sys::ggml_backend_tensor_set(a, av.as_ptr().cast(), 0, bytes);
    sys::ggml_backend_tensor_set(b, bv.as_ptr().cast(), 0, bytes);
    let status = sys::ggml_backend_graph_compute(backend, graph);
    let mut cv = vec![0f32; N * N];
    if status == sys::ggml_status_GGML_STATUS_SUCCESS {
        sys::ggml_backend_tensor_get(c, cv.as_mut_ptr().cast(), 0, bytes);
    }
    sys::ggml_backend_buffer_free(buffer);
    sys::ggml_free(ctx);
    if status != sys::ggml_status_GGML_STATUS_SUCCESS {
        return Err(format!("test computation failed (ggml status {status})"));
    }
    // ggml_mul_mat(a, b): c[j][i] = sum_k a[i][k] * b[j][k] (rows of a against rows of b).
    for j in 0..N {
        for i in 0..N {
            let want: f32 = (0..N).map(|k| av[i * N + k] * bv[j * N + k]).sum();
            let got = cv[j * N + i];
            if (got - want).abs() > 1e-2 {
                return Err(format!(
                    "test computation gave a wrong result ({got} instead of {want})"
                ));
            }
        }
    }
    Ok(())
}

/// A CPU feature: whether this CPU has it, and whether ggml was compiled to use it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuFeature {
    pub name: &'static str,
    /// The running CPU supports it.
    pub detected: bool,
    /// whisper.cpp's ggml was compiled to use it.
    pub used_by_ggml: bool,
}

/// The CPU features that matter for whisper.cpp's speed.
pub fn cpu_features() -> Vec<CpuFeature> {
    // SAFETY: ggml's feature queries only read compile-time constants or CPUID.
    let ggml = |f: unsafe extern "C" fn() -> std::os::raw::c_int| unsafe { f() != 0 };
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let mut add = |name, detected, used_by_ggml| {
            v.push(CpuFeature {
                name,
                detected,
                used_by_ggml,
            })
        };
        add(
            "SSE3",
            is_x86_feature_detected!("sse3"),
            ggml(sys::ggml_cpu_has_sse3),
        );
        add(
            "SSSE3",
            is_x86_feature_detected!("ssse3"),
            ggml(sys::ggml_cpu_has_ssse3),
        );
        add(
            "AVX",
            is_x86_feature_detected!("avx"),
            ggml(sys::ggml_cpu_has_avx),
        );
        add(
            "AVX2",
            is_x86_feature_detected!("avx2"),
            ggml(sys::ggml_cpu_has_avx2),
        );
        add(
            "F16C",
            is_x86_feature_detected!("f16c"),
            ggml(sys::ggml_cpu_has_f16c),
        );
        add(
            "FMA",
            is_x86_feature_detected!("fma"),
            ggml(sys::ggml_cpu_has_fma),
        );
        add(
            "BMI2",
            is_x86_feature_detected!("bmi2"),
            ggml(sys::ggml_cpu_has_bmi2),
        );
        add(
            "AVX-VNNI",
            is_x86_feature_detected!("avxvnni"),
            ggml(sys::ggml_cpu_has_avx_vnni),
        );
        add(
            "AVX-512",
            is_x86_feature_detected!("avx512f"),
            ggml(sys::ggml_cpu_has_avx512),
        );
        add(
            "AVX-512 VBMI",
            is_x86_feature_detected!("avx512vbmi"),
            ggml(sys::ggml_cpu_has_avx512_vbmi),
        );
        add(
            "AVX-512 VNNI",
            is_x86_feature_detected!("avx512vnni"),
            ggml(sys::ggml_cpu_has_avx512_vnni),
        );
        add(
            "AVX-512 BF16",
            is_x86_feature_detected!("avx512bf16"),
            ggml(sys::ggml_cpu_has_avx512_bf16),
        );
        add(
            "AMX-INT8",
            // Not detectable through std on stable Rust yet: the kernel's flags.
            cpuinfo_has_flag("amx_int8"),
            ggml(sys::ggml_cpu_has_amx_int8),
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mut add = |name, detected, used_by_ggml| {
            v.push(CpuFeature {
                name,
                detected,
                used_by_ggml,
            })
        };
        add(
            "NEON",
            std::arch::is_aarch64_feature_detected!("neon"),
            ggml(sys::ggml_cpu_has_neon),
        );
        add(
            "DOTPROD",
            std::arch::is_aarch64_feature_detected!("dotprod"),
            ggml(sys::ggml_cpu_has_dotprod),
        );
        add(
            "FP16",
            std::arch::is_aarch64_feature_detected!("fp16"),
            ggml(sys::ggml_cpu_has_fp16_va),
        );
        add(
            "I8MM",
            std::arch::is_aarch64_feature_detected!("i8mm"),
            ggml(sys::ggml_cpu_has_matmul_int8),
        );
        add(
            "SVE",
            std::arch::is_aarch64_feature_detected!("sve"),
            ggml(sys::ggml_cpu_has_sve),
        );
    }
    let _ = ggml;
    v
}

/// Whether /proc/cpuinfo lists `flag` (false where there is no /proc/cpuinfo).
#[cfg(target_arch = "x86_64")]
fn cpuinfo_has_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("flags"))
                .take(1)
                .any(|l| l.split_whitespace().any(|f| f == flag))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_requests() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("gpu".parse(), Ok(DeviceRequest::Gpu(0)));
        assert_eq!("gpu:2".parse(), Ok(DeviceRequest::Gpu(2)));
        assert!("gpu:x".parse::<DeviceRequest>().is_err());
        assert!("tpu".parse::<DeviceRequest>().is_err());
        assert_eq!(DeviceRequest::Gpu(1).to_string(), "gpu:1");
    }
}
