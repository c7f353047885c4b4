//! Hostile model files (issue 23, rows M1-M4): truncated, swapped and forged Whisper and
//! Silero VAD models are refused before whisper.cpp sees them, with exactly one
//! `verbatim: error: <reason>: <path>` line, exit code 1, no signal, no output file, quickly.
//! A seeded mutation run drives the ggml reader ([`ggml::check_whisper`]) through bit flips,
//! header rewrites and truncations of the real tiny.en model, a few of them through the
//! binary too; cases that once failed are kept in `tests/data/hostile_models/`.
//!
//! Runs the binary Cargo built for this profile: `cargo test --release --test hostile_models`
//! checks the release build, `cargo test` the debug one.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use verbatim::models::ggml;

/// A short speech clip (about 3.6 s): a model that loads transcribes it quickly.
const SPEECH: &str = "1688-142285-0002.flac";

/// Wall-clock bound for one batch of cases, generous for two busy cores.
const BATCH_LIMIT: Duration = Duration::from_secs(60);

/// Offsets in ggml-tiny.en.bin (see src/models/ggml.rs for the layout).
mod tiny {
    pub const N_VOCAB: usize = 4;
    pub const N_MEL: usize = 48;
    pub const N_FFT: usize = 52;
    /// The vocabulary's token count (after 80x201 f32 mel filters).
    pub const N_TOKENS: usize = 64376;
    /// The first token's length.
    pub const TOKEN0: usize = 64380;
    /// The first tensor header (encoder.positional_embedding, 2 dims).
    pub const TENSOR0: usize = 586218;
    /// Bytes of tiny.en that header forgeries keep: the header, vocabulary and first tensors.
    pub const PREFIX: usize = 4 << 20;
}

/// Offsets in ggml-silero-vad.bin.
mod vad {
    pub const TYPE_LEN: usize = 4;
    pub const N_WINDOW: usize = 30;
    pub const N_CONTEXT: usize = 34;
    pub const N_LAYERS: usize = 38;
    pub const LAYER0_IN: usize = 42;
    pub const LAYER0_KERNEL: usize = 50;
    pub const LSTM_HIDDEN: usize = 94;
    /// The first tensor header (encoder.0 weight, 3 dims).
    pub const TENSOR0: usize = 106;
}

fn tiny_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(tiny_en()).expect("read tiny.en"))
}

fn vad_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(vad_model()).expect("read the VAD model"))
}

/// Which of the two models a case damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Whisper,
    Vad,
}

/// A damaged copy of a model: the first `len` bytes with `patches` written over them.
#[derive(Debug, Clone)]
struct Mutant {
    which: Which,
    len: usize,
    patches: BTreeMap<usize, u8>,
    what: String,
}

impl Mutant {
    fn new(which: Which, what: impl Into<String>) -> Self {
        Mutant {
            which,
            len: Self::base_of(which).len(),
            patches: BTreeMap::new(),
            what: what.into(),
        }
    }

    fn base_of(which: Which) -> &'static [u8] {
        match which {
            Which::Whisper => tiny_bytes(),
            Which::Vad => vad_bytes(),
        }
    }

    fn base(&self) -> &'static [u8] {
        Self::base_of(self.which)
    }

    fn truncate(mut self, len: usize) -> Self {
        self.len = self.len.min(len);
        self
    }

    fn patch(mut self, offset: usize, bytes: &[u8]) -> Self {
        for (i, &b) in bytes.iter().enumerate() {
            self.patches.insert(offset + i, b);
        }
        self
    }

    fn i32_at(self, offset: usize, v: i32) -> Self {
        self.patch(offset, &v.to_le_bytes())
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = self.base()[..self.len].to_vec();
        for (&at, &v) in &self.patches {
            if at < b.len() {
                b[at] = v;
            }
        }
        b
    }

    /// The library's verdict, without copying the model.
    fn check(&self) -> Result<(), String> {
        let mut r = std::io::BufReader::with_capacity(1 << 16, MutReader { m: self, pos: 0 });
        match self.which {
            Which::Whisper => ggml::check_whisper(&mut r, self.len as u64).map(|_| ()),
            Which::Vad => ggml::check_vad(&mut r, self.len as u64),
        }
    }

    /// `# what`, `model:`, `truncate:` and `patch:` lines (the regression file format).
    fn describe(&self) -> String {
        let mut s = format!(
            "# {}\nmodel: {}\n",
            self.what,
            match self.which {
                Which::Whisper => "whisper",
                Which::Vad => "vad",
            }
        );
        if self.len < self.base().len() {
            s += &format!("truncate: {}\n", self.len);
        }
        // Runs of consecutive patched bytes, one line each.
        let mut runs: Vec<(usize, Vec<u8>)> = Vec::new();
        for (&at, &v) in &self.patches {
            match runs.last_mut() {
                Some((start, bytes)) if *start + bytes.len() == at => bytes.push(v),
                _ => runs.push((at, vec![v])),
            }
        }
        for (at, bytes) in runs {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            s += &format!("patch: {at} {hex}\n");
        }
        s
    }

    fn parse(text: &str, file: &Path) -> (Mutant, Option<String>) {
        let mut which = None;
        let mut what = file.display().to_string();
        let mut truncate = None;
        let mut patches = Vec::new();
        let mut expect = None;
        for line in text.lines().map(str::trim) {
            if let Some(c) = line.strip_prefix('#') {
                what = c.trim().to_string();
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "model" => {
                    which = Some(match value {
                        "whisper" => Which::Whisper,
                        "vad" => Which::Vad,
                        other => panic!("{}: unknown model {other}", file.display()),
                    })
                }
                "truncate" => truncate = Some(value.parse::<usize>().unwrap()),
                "patch" => {
                    let (at, hex) = value.split_once(' ').unwrap();
                    let bytes: Vec<u8> = (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    patches.push((at.parse::<usize>().unwrap(), bytes));
                }
                "expect" => expect = Some(value.to_string()),
                other => panic!("{}: unknown key {other}", file.display()),
            }
        }
        let which = which.unwrap_or_else(|| panic!("{}: no model line", file.display()));
        let mut m = Mutant::new(which, what);
        if let Some(t) = truncate {
            m = m.truncate(t);
        }
        for (at, bytes) in patches {
            m = m.patch(at, &bytes);
        }
        (m, expect)
    }
}

/// Reads a [`Mutant`] without materialising it.
struct MutReader<'m> {
    m: &'m Mutant,
    pos: u64,
}

impl Read for MutReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = (self.pos as usize).min(self.m.len);
        let end = (start + buf.len()).min(self.m.len);
        let n = end - start;
        buf[..n].copy_from_slice(&self.m.base()[start..end]);
        for (&at, &v) in self.m.patches.range(start..end) {
            buf[at - start] = v;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MutReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::Current(d) => self.pos as i64 + d,
            SeekFrom::End(d) => self.m.len as i64 + d,
        };
        if new < 0 {
            return Err(std::io::Error::other("seek before start"));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// Runs `transcribe` with these models into `out_dir`.
fn transcribe_with(model: &Path, vad: &Path, out_dir: &Path) -> (Output, Duration) {
    let mut cmd = verbatim();
    cmd.arg("transcribe")
        .arg("--model")
        .arg(model)
        .arg("--vad-model")
        .arg(vad)
        .arg("--quiet")
        .args(["-f", "txt,srt,json", "-o"])
        .arg(out_dir)
        .arg(audio(SPEECH));
    let t = Instant::now();
    let out = cmd.output().expect("failed to run verbatim");
    (out, t.elapsed())
}

/// Writes `m` to a file in `dir` and runs it through the binary in its place; returns the
/// output and where the file was.
fn run_mutant(dir: &Path, m: &Mutant, n: usize) -> (Output, PathBuf, PathBuf, Duration) {
    let path = dir.join(format!(
        "case-{n}-{}.bin",
        match m.which {
            Which::Whisper => "whisper",
            Which::Vad => "vad",
        }
    ));
    std::fs::write(&path, m.bytes()).unwrap();
    let out_dir = dir.join(format!("out-{n}"));
    let (model, vad) = match m.which {
        Which::Whisper => (path.clone(), vad_model()),
        Which::Vad => (tiny_en(), path.clone()),
    };
    let (out, took) = transcribe_with(&model, &vad, &out_dir);
    (out, path, out_dir, took)
}

/// The binary refused `path` cleanly: exit 1 (no signal, no panic), one error line naming
/// the file and containing every word of `words`, no output file.
fn assert_refused(out: &Output, path: &Path, out_dir: &Path, what: &str, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal ({:?}); stderr:\n{err}",
        out.status
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit code; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: want one stderr line, got:\n{err}");
    let line = lines[0];
    assert!(line.starts_with("verbatim: error: "), "{what}: {line}");
    assert!(
        line.contains(&path.display().to_string()),
        "{what}: error does not name {}: {line}",
        path.display()
    );
    let lower = line.to_lowercase();
    for w in words {
        assert!(
            lower.contains(&w.to_lowercase()),
            "{what}: error lacks `{w}`: {line}"
        );
    }
    assert_eq!(
        files_in(out_dir),
        Vec::<String>::new(),
        "{what}: output files were left behind"
    );
}

/// Runs each case through the library (it must refuse it) and the binary (cleanly), the
/// whole batch within [`BATCH_LIMIT`].
fn refuse_all(cases: &[(Mutant, Vec<&str>)]) {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    for (n, (m, words)) in cases.iter().enumerate() {
        let lib = m.check();
        assert!(lib.is_err(), "{}: the reader accepted it", m.what);
        let (out, path, out_dir, took) = run_mutant(dir.path(), m, n);
        eprintln!(
            "{:<60} {:>6.2} s  {}",
            m.what,
            took.as_secs_f64(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        assert_refused(&out, &path, &out_dir, &m.what, words);
        std::fs::remove_file(&path).unwrap();
    }
    let took = start.elapsed();
    eprintln!("{} cases in {:.1} s", cases.len(), took.as_secs_f64());
    assert!(took < BATCH_LIMIT, "{} cases took {took:?}", cases.len());
}

#[test]
fn real_models_pass_the_checks() {
    let m = ggml::validate_whisper(&tiny_en()).unwrap();
    assert_eq!(m.hparams.n_vocab, 51864);
    let m = ggml::validate_whisper(&base_model()).unwrap();
    assert_eq!(m.hparams.n_vocab, 51865);
    ggml::validate_vad(&vad_model()).unwrap();
    assert!(Mutant::new(Which::Whisper, "tiny.en").check().is_ok());
    assert!(Mutant::new(Which::Vad, "vad").check().is_ok());
}

/// M1 and M3: models cut short, at a spread of offsets.
#[test]
fn truncated_models_are_refused() {
    let w = tiny_bytes().len();
    let v = vad_bytes().len();
    let mut cases: Vec<(Mutant, Vec<&str>)> = Vec::new();
    for cut in [
        0,
        2,
        4,
        64,
        tiny::N_TOKENS,
        tiny::TOKEN0,
        100_000,
        300_000,
        tiny::TENSOR0 - 1,
        tiny::TENSOR0,
        tiny::TENSOR0 + 14,
        600_000,
        w / 2,
        w - 1,
    ] {
        cases.push((
            Mutant::new(Which::Whisper, format!("tiny.en cut at {cut}")).truncate(cut),
            vec!["not a Whisper ggml model"],
        ));
    }
    for cut in [0, 4, 8, 64, vad::TENSOR0, vad::TENSOR0 + 20, 500_000, v - 1] {
        cases.push((
            Mutant::new(Which::Vad, format!("VAD cut at {cut}")).truncate(cut),
            vec!["not a Silero VAD ggml model"],
        ));
    }
    refuse_all(&cases[..14]);
    refuse_all(&cases[14..]);
}

/// M2: each model where the other belongs.
#[test]
fn swapped_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out_dir = dir.path().join("out");
    let (out, _) = transcribe_with(&vad_model(), &vad_model(), &out_dir);
    assert_refused(
        &out,
        &vad_model(),
        &out_dir,
        "VAD as --model",
        &["Silero VAD model", "--vad-model"],
    );
    let (out, _) = transcribe_with(&tiny_en(), &tiny_en(), &out_dir);
    assert_refused(
        &out,
        &tiny_en(),
        &out_dir,
        "Whisper as --vad-model",
        &["Whisper model", "pass it as --model"],
    );
    assert!(start.elapsed() < BATCH_LIMIT);
}

const MAX: i32 = i32::MAX;

/// M4: forged Whisper header fields. The copies keep the first [`tiny::PREFIX`] bytes (the
/// forged field is refused before anything after it is needed).
#[test]
fn forged_whisper_headers_are_refused() {
    let names = [
        "n_vocab",
        "n_audio_ctx",
        "n_audio_state",
        "n_audio_head",
        "n_audio_layer",
        "n_text_ctx",
        "n_text_state",
        "n_text_head",
        "n_text_layer",
        "n_mels",
        "ftype",
    ];
    let forged = |what: String| Mutant::new(Which::Whisper, what).truncate(tiny::PREFIX);
    let mut cases: Vec<(Mutant, Vec<&str>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for v in [0, -1, MAX, 1 << 20] {
            if *name == "ftype" && v == 0 {
                continue; // all-f32: a valid ftype, refused by the tensor types below
            }
            cases.push((
                forged(format!("{name} = {v}")).i32_at(tiny::N_VOCAB + 4 * i, v),
                vec![name],
            ));
        }
    }
    cases.push((forged("ftype = 99".into()).i32_at(44, 99), vec!["ftype 99"]));
    // Heads that do not divide the state (384 / 7), a state the heads divide but the other
    // side does not match, a vocabulary of another model than the tensors.
    cases.push((
        forged("n_audio_head = 7".into()).i32_at(16, 7),
        vec!["n_audio_head"],
    ));
    cases.push((
        forged("n_text_state = 512".into()).i32_at(28, 512),
        vec!["n_text_state"],
    ));
    // These need the whole file: the tensor refused comes after the prefix.
    let whole = |what: &str| Mutant::new(Which::Whisper, what);
    cases.push((
        whole("n_vocab = 51865 (tiny.en's tensors)").i32_at(tiny::N_VOCAB, 51865),
        vec!["decoder.token_embedding.weight", "shape"],
    ));
    cases.push((
        whole("ftype = 7 (q8_0) on f16 tensors").i32_at(44, 7),
        vec!["type f16", "expected q8_0"],
    ));
    cases.push((
        whole("ftype = 0 (f32) on f16 tensors").i32_at(44, 0),
        vec!["encoder.conv1.weight", "type f16"],
    ));
    for (what, at, v, word) in [
        ("mel count = 1<<20", tiny::N_MEL, 1 << 20, "mel filterbank"),
        ("mel width = 1<<20", tiny::N_FFT, 1 << 20, "mel filterbank"),
        ("mel width = 0", tiny::N_FFT, 0, "mel filterbank"),
        ("mel width = -1", tiny::N_FFT, -1, "mel filter width"),
        ("token count = 2^31-1", tiny::N_TOKENS, MAX, "vocabulary"),
        ("token count = -1", tiny::N_TOKENS, -1, "vocabulary size"),
        ("token 0 length = 2^31-1", tiny::TOKEN0, MAX, "token 0"),
        ("token 0 length = -1", tiny::TOKEN0, -1, "token 0"),
        ("tensor 0 n_dims = 5", tiny::TENSOR0, 5, "dimensions"),
        ("tensor 0 n_dims = -1", tiny::TENSOR0, -1, "dimensions"),
        (
            "tensor 0 name length = 2^31-1",
            tiny::TENSOR0 + 4,
            MAX,
            "name length",
        ),
        (
            "tensor 0 name length = 0",
            tiny::TENSOR0 + 4,
            0,
            "name length",
        ),
        ("tensor 0 type = 99", tiny::TENSOR0 + 8, 99, "type 99"),
        ("tensor 0 type = -1", tiny::TENSOR0 + 8, -1, "type -1"),
        ("tensor 0 ne0 = 2^31-1", tiny::TENSOR0 + 12, MAX, "shape"),
        ("tensor 0 ne1 = 1<<30", tiny::TENSOR0 + 16, 1 << 30, "shape"),
        ("tensor 0 ne1 = 0", tiny::TENSOR0 + 16, 0, "dimension 0"),
    ] {
        cases.push((forged(what.into()).i32_at(at, v), vec![word]));
    }
    // (A tensor whose data runs past the end: the cuts inside the tensor data above.)
    for chunk in cases.chunks(25) {
        refuse_all(chunk);
    }
}

/// M4: forged Silero VAD header and tensor fields.
#[test]
fn forged_vad_headers_are_refused() {
    let mut cases: Vec<(Mutant, Vec<&str>)> = Vec::new();
    for (what, at, v, word) in [
        ("type length = 0", vad::TYPE_LEN, 0, "type length"),
        ("type length = -1", vad::TYPE_LEN, -1, "type length"),
        ("type length = 2^31-1", vad::TYPE_LEN, MAX, "type length"),
        ("n_window = 0", vad::N_WINDOW, 0, "n_window"),
        ("n_window = -1", vad::N_WINDOW, -1, "n_window"),
        ("n_context = 2^31-1", vad::N_CONTEXT, MAX, "n_context"),
        ("layers = 0", vad::N_LAYERS, 0, "n_encoder_layers"),
        ("layers = -1", vad::N_LAYERS, -1, "n_encoder_layers"),
        ("layers = 2^31-1", vad::N_LAYERS, MAX, "n_encoder_layers"),
        ("layer 0 in = 0", vad::LAYER0_IN, 0, "encoder 0 in"),
        ("layer 0 kernel = 2^31-1", vad::LAYER0_KERNEL, MAX, "kernel"),
        ("lstm hidden = 0", vad::LSTM_HIDDEN, 0, "lstm_hidden_size"),
        ("tensor 0 n_dims = 5", vad::TENSOR0, 5, "dimensions"),
        (
            "tensor 0 name length = 2^31-1",
            vad::TENSOR0 + 4,
            MAX,
            "name length",
        ),
        ("tensor 0 type = 99", vad::TENSOR0 + 8, 99, "type 99"),
        (
            "tensor 0 type = 0 (f32 for f16)",
            vad::TENSOR0 + 8,
            0,
            "type f32",
        ),
        ("tensor 0 ne0 = 1<<30", vad::TENSOR0 + 12, 1 << 30, "shape"),
        ("tensor 0 ne2 = -1", vad::TENSOR0 + 20, -1, "dimension -1"),
    ] {
        cases.push((
            Mutant::new(Which::Vad, format!("VAD {what}")).i32_at(at, v),
            vec![word],
        ));
    }
    // A model type that is not Silero's.
    cases.push((
        Mutant::new(Which::Vad, "VAD model type 'xilero-16k'").patch(8, b"x"),
        vec!["model type"],
    ));
    // A tensor name changed: unknown to whisper.cpp.
    cases.push((
        Mutant::new(Which::Vad, "VAD unknown tensor name").patch(vad::TENSOR0 + 24, b"X"),
        vec!["unknown tensor"],
    ));
    refuse_all(&cases);
}

/// The seeded mutation run: 200 mutants of tiny.en's header region through the reader, the
/// first 20 also through the binary. Never a crash; the counts are printed.
#[test]
fn mutation_run_never_crashes() {
    const CASES: usize = 200;
    const THROUGH_BINARY: usize = 20;
    let mut rng = Rng::new(0x5eed_0023);
    let base_len = tiny_bytes().len();
    // Tensor header positions, from the real file.
    let model = ggml::check_whisper(
        &mut MutReader {
            m: &Mutant::new(Which::Whisper, "tiny.en"),
            pos: 0,
        },
        base_len as u64,
    )
    .unwrap();
    let headers: Vec<usize> = model
        .tensors
        .iter()
        .map(|t| t.offset as usize - t.name.len() - 4 * t.dims.len() - 12)
        .collect();
    let interesting = [
        0,
        1,
        -1,
        2,
        7,
        80,
        384,
        1500,
        51864,
        1 << 16,
        1 << 30,
        MAX,
        i32::MIN,
    ];
    let mut mutants = Vec::with_capacity(CASES);
    for n in 0..CASES {
        let m = Mutant::new(Which::Whisper, format!("mutant {n}"));
        let m = match rng.below(5) {
            0 => {
                // Bit flips in the header and vocabulary.
                let mut m = m;
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(tiny::TENSOR0);
                    let byte = m.patches.get(&at).copied().unwrap_or(tiny_bytes()[at]);
                    m = m.patch(at, &[byte ^ (1 << rng.below(8))]);
                }
                m
            }
            1 => {
                // One header int rewritten: the hparams and the mel filterbank's size.
                let at = 4 + 4 * rng.below(14);
                let v = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next_u64() as i32
                };
                m.i32_at(at, v)
            }
            2 => {
                // A token length rewritten (one of the first 64 tokens).
                let mut at = tiny::TOKEN0;
                for _ in 0..rng.below(64) {
                    let len = u32::from_le_bytes(tiny_bytes()[at..at + 4].try_into().unwrap());
                    at += 4 + len as usize;
                }
                let v = interesting[rng.below(interesting.len())];
                m.i32_at(at, v)
            }
            3 => {
                // A tensor header int rewritten (n_dims, name length, type or a dim).
                let h = headers[rng.below(headers.len())];
                let at = h + 4 * rng.below(5);
                let v = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next_u64() as i32
                };
                m.i32_at(at, v)
            }
            _ => {
                // A cut, mostly in the header region, sometimes in the tensor data.
                let cut = if rng.below(4) == 0 {
                    rng.below(base_len)
                } else {
                    rng.below(tiny::TENSOR0 + 4096)
                };
                m.truncate(cut)
            }
        };
        mutants.push(m);
    }

    let start = Instant::now();
    let mut rejected = 0;
    for m in &mutants {
        if m.check().is_err() {
            rejected += 1;
        }
    }
    eprintln!(
        "mutation run: {CASES} cases through the reader in {:.1} s: {rejected} rejected, {} accepted",
        start.elapsed().as_secs_f64(),
        CASES - rejected
    );

    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (mut refused, mut ran) = (0, 0);
    for (n, m) in mutants.iter().take(THROUGH_BINARY).enumerate() {
        let (out, path, out_dir, took) = run_mutant(dir.path(), m, n);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "{:<12} {:>6.2} s  {}",
            m.what,
            took.as_secs_f64(),
            err.trim()
        );
        let keep = || {
            format!(
                "keep this case in tests/data/hostile_models/:\n{}",
                m.describe()
            )
        };
        assert!(
            out.status.code().is_some(),
            "{}: killed by a signal ({:?})\n{}",
            m.what,
            out.status,
            keep()
        );
        assert!(
            !err.contains("panicked"),
            "{}: panicked\n{}",
            m.what,
            keep()
        );
        match m.check() {
            Err(_) => {
                refused += 1;
                assert_refused(
                    &out,
                    &path,
                    &out_dir,
                    &m.what,
                    &["not a Whisper ggml model"],
                );
            }
            Ok(()) => {
                ran += 1;
                assert!(
                    out.status.code() == Some(0) || out.status.code() == Some(1),
                    "{}: exit {:?}\n{}",
                    m.what,
                    out.status,
                    keep()
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!(
        "mutation run: {THROUGH_BINARY} cases through the binary in {:.1} s: {refused} refused, {ran} loaded",
        start.elapsed().as_secs_f64()
    );
    assert!(
        rejected > 0 && rejected < CASES,
        "{rejected} of {CASES} rejected"
    );
    assert!(start.elapsed() < 3 * BATCH_LIMIT);
}

/// Every case that once got through (or crashed) stays refused: one description per file in
/// `tests/data/hostile_models/` (`model:`, `truncate:`, `patch: <offset> <hex>`, `expect:`).
#[test]
fn kept_regressions_stay_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile_models");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression cases in {}",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    for (n, file) in files.iter().enumerate() {
        let (m, expect) = Mutant::parse(&std::fs::read_to_string(file).unwrap(), file);
        let err = m
            .check()
            .expect_err(&format!("{}: the reader accepted it", file.display()));
        let words: Vec<&str> = expect.iter().map(String::as_str).collect();
        for w in &words {
            assert!(err.contains(w), "{}: {err}", file.display());
        }
        let (out, path, out_dir, _) = run_mutant(tmp.path(), &m, n);
        assert_refused(&out, &path, &out_dir, &m.what, &words);
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!(
        "{} kept regressions in {:.1} s",
        files.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(start.elapsed() < BATCH_LIMIT);
}

/// M1 through the store and `serve`: a model installed under a registry name is checked
/// like a model given as a file, and `serve` refuses a bad model at start-up.
#[test]
fn store_and_serve_check_models_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let installed = store.join("ggml-tiny.en.bin");
    std::fs::write(&installed, &tiny_bytes()[..300_000]).unwrap();
    let out_dir = dir.path().join("out");
    let start = Instant::now();
    let out = verbatim()
        .env("VERBATIM_MODELS_DIR", &store)
        .args(["transcribe", "-m", "tiny.en", "--quiet", "--vad-model"])
        .arg(vad_model())
        .args(["-f", "txt,srt,json", "-o"])
        .arg(&out_dir)
        .arg(audio(SPEECH))
        .output()
        .unwrap();
    assert_refused(
        &out,
        &installed,
        &out_dir,
        "truncated model in the store",
        &["not a Whisper ggml model", "truncated at byte 300000"],
    );

    // serve: refused before it listens (a healthy server would run until killed).
    let mut child = verbatim()
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--model"])
        .arg(&installed)
        .arg("--vad-model")
        .arg(vad_model())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve kept running with a truncated model");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_refused(
        &out,
        &installed,
        &out_dir,
        "serve with a truncated model",
        &["not a Whisper ggml model"],
    );
    assert!(start.elapsed() < BATCH_LIMIT);
}
