//! `verbatim models import`: a CTranslate2 (faster-whisper) Whisper directory to a
//! whisper.cpp ggml file, in pure Rust.
//!
//! CTranslate2 keeps the weights of openai-whisper under its own names with the attention
//! projections fused (self-attention QKV in `linear_0`, cross-attention KV in `linear_1`);
//! whisper.cpp wants openai-whisper's names and layout, plus the mel filterbank and the BPE
//! vocabulary in the same file. This module checks every shape against a Whisper model
//! before writing anything, then writes the tensors in the order and with the types that
//! whisper.cpp's own converter (`convert-pt-to-ggml.py`) uses: big matrices f16 (or q8_0 from
//! an int8 source), convolution kernels f16, everything else f32.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::ct2::{self, DType, Variable};
use super::ggml::{self, f16_to_f32, f32_to_f16, GgmlType, Hparams, MelFilters};
use super::mel;
use crate::error::Error;

/// What an import produced (for the CLI to print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows of the token embedding (51864 English-only, 51865/51866 multilingual).
    pub n_vocab: usize,
    /// Encoder blocks.
    pub n_audio_layer: usize,
    /// Decoder blocks.
    pub n_text_layer: usize,
    /// Mel bands (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Whether whisper.cpp will treat it as multilingual (n_vocab ≥ 51865).
    pub multilingual: bool,
    /// The CTranslate2 weight type, e.g. "float16", "float32", "int8_float16".
    pub source_dtype: String,
    /// Type of the big matrices in the output: "f16" or "q8_0".
    pub ftype: String,
    /// Tensors written.
    pub tensors: usize,
    /// Size of the output file.
    pub bytes: u64,
}

/// What to make of int8 weights (CTranslate2 `int8`, `int8_float16`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Int8Output {
    /// Keep them 8-bit as ggml q8_0 (the int8 values are copied, one f16 scale per row):
    /// a smaller file and faster CPU inference.
    #[default]
    Q8_0,
    /// Dequantize to f16.
    F16,
}

/// Options of [`import_ct2_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// What int8 weights become.
    pub int8: Int8Output,
}

/// Converts the CTranslate2 Whisper model in `dir` to a whisper.cpp ggml file at `out`,
/// written atomically (a temporary file next to it, then a rename). Nothing is written
/// unless the whole model checks out.
pub fn import_ct2(dir: &Path, out: &Path) -> Result<ImportSummary, Error> {
    import_ct2_with(dir, out, &ImportOptions::default())
}

/// [`import_ct2`] with options.
pub fn import_ct2_with(
    dir: &Path,
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::input(dir, "not a directory")),
        Err(e) => return Err(Error::input(dir, format!("cannot open: {e}"))),
    }
    let bin = dir.join("model.bin");
    if !bin.is_file() {
        return Err(Error::input(
            dir,
            "model.bin missing: not a CTranslate2 model directory",
        ));
    }
    let vocab_path = find_vocabulary(dir)?;

    let bytes = std::fs::read(&bin).map_err(|e| Error::input(&bin, format!("cannot read: {e}")))?;
    let model = ct2::Model::parse(&bytes).map_err(|r| Error::input(&bin, r))?;
    let plan = plan_whisper(&model, opts).map_err(|r| Error::input(&bin, r))?;

    let tokens = read_vocabulary(&vocab_path)?;
    let vocab = whisper_vocabulary(&tokens, &plan.hparams, &vocab_path)
        .map_err(|r| Error::input(&vocab_path, r))?;

    let n_mels = plan.hparams.n_mels as usize;
    let filters = MelFilters {
        n_mel: n_mels,
        n_fft: mel::N_BINS,
        data: mel::mel_filters(n_mels),
    };

    let bytes_written = write_ggml(out, &plan, &filters, &vocab)?;
    let hp = &plan.hparams;
    Ok(ImportSummary {
        n_vocab: hp.n_vocab as usize,
        n_audio_layer: hp.n_audio_layer as usize,
        n_text_layer: hp.n_text_layer as usize,
        n_mels,
        multilingual: hp.n_vocab >= MULTILINGUAL_N_VOCAB,
        source_dtype: plan.source_dtype.clone(),
        ftype: plan.wtype.name(),
        tensors: plan.tensors.len(),
        bytes: bytes_written,
    })
}

/// whisper.cpp's test for a multilingual model (`n_vocab >= 51865`).
const MULTILINGUAL_N_VOCAB: i32 = 51865;
/// Token count of the English-only vocabulary; `<|endoftext|>` comes right after the BPE
/// tokens (50256 of them, 50257 for the multilingual tokenizer).
const ENGLISH_N_VOCAB: i32 = 51864;
/// The encoder length whisper.cpp's 30 s windows need (3000 mel frames, conv stride 2).
const N_AUDIO_CTX: usize = 1500;
/// The newest WhisperSpec revision this importer knows (CTranslate2 4.x writes 3).
const MAX_SPEC_REVISION: u32 = 3;

/// Vocabulary files in order of preference: CTranslate2 ≥ 4 writes vocabulary.json, older
/// versions vocabulary.txt; faster-whisper ships tokenizer.json too.
const VOCABULARY_FILES: &[&str] = &["vocabulary.json", "vocabulary.txt", "tokenizer.json"];

fn find_vocabulary(dir: &Path) -> Result<PathBuf, Error> {
    VOCABULARY_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::input(
                dir,
                "vocabulary.txt, vocabulary.json or tokenizer.json missing",
            )
        })
}

/// Where one output tensor's data comes from: rows `rows` of `var` (first dimension; for a
/// 1-D variable, elements), with `row_len` elements per row and the int8 scale if any.
struct Source<'m, 'a> {
    var: &'m Variable<'a>,
    rows: Range<usize>,
    row_len: usize,
    scale: Option<&'m Variable<'a>>,
}

/// One tensor of the output file.
struct Planned<'m, 'a> {
    name: String,
    /// ggml order (ne0 first).
    dims: Vec<usize>,
    ttype: GgmlType,
    src: Source<'m, 'a>,
}

/// Everything needed to write the file, all checked.
struct Plan<'m, 'a> {
    hparams: Hparams,
    wtype: GgmlType,
    source_dtype: String,
    tensors: Vec<Planned<'m, 'a>>,
}

/// What a tensor is to whisper.cpp, which decides its type in the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Biases, layer norms, positional embeddings: f32.
    Small,
    /// Convolution kernels: f16 (whisper.cpp's `vtype`).
    Conv,
    /// Attention/MLP matrices and the token embedding: the file's `wtype`.
    Big,
}

/// Looks variables up, checks their shapes and types and remembers which were used, so
/// anything left over (a layer whisper.cpp has no place for) can be refused.
struct Checker<'m, 'a> {
    model: &'m ct2::Model<'a>,
    used: HashSet<String>,
}

impl<'m, 'a> Checker<'m, 'a> {
    fn get(&mut self, name: &str) -> Result<&'m Variable<'a>, String> {
        let var = self
            .model
            .get(name)
            .ok_or_else(|| format!("not a Whisper model: variable '{name}' is missing"))?;
        self.used.insert(name.to_string());
        self.used.insert(var.name.clone());
        Ok(var)
    }

    /// A variable with exactly `shape`, of a type this importer can convert for `kind`.
    fn var(
        &mut self,
        name: &str,
        shape: &[usize],
        kind: Kind,
    ) -> Result<(&'m Variable<'a>, Option<&'m Variable<'a>>), String> {
        let var = self.get(name)?;
        if var.shape != shape {
            return Err(format!(
                "shape of '{name}' is {:?}, expected {shape:?}",
                var.shape
            ));
        }
        match var.dtype {
            d if d.is_float() => Ok((var, None)),
            DType::I8 if kind != Kind::Small => {
                let scale_name = format!("{name}_scale");
                let scale = self.model.get(&scale_name).ok_or_else(|| {
                    format!("'{name}' is int8 but its scale '{scale_name}' is missing")
                })?;
                self.used.insert(scale_name.clone());
                self.used.insert(scale.name.clone());
                if scale.shape != [shape[0]] || !scale.dtype.is_float() {
                    return Err(format!(
                        "'{scale_name}' is {} {:?}, expected a float vector [{}] (one scale per row)",
                        scale.dtype, scale.shape, shape[0]
                    ));
                }
                Ok((var, Some(scale)))
            }
            d => Err(format!(
                "'{name}' is {d}; only float32, float16, bfloat16 and int8 (weights) models can be imported"
            )),
        }
    }

    fn scalar(&mut self, name: &str) -> Option<&'m Variable<'a>> {
        let v = self.model.get(name).filter(|v| v.shape.is_empty())?;
        self.used.insert(name.to_string());
        Some(v)
    }
}

/// Counts `prefix{N}/...` layers and checks they are numbered 0..n without gaps.
fn count_layers(model: &ct2::Model<'_>, prefix: &str) -> Result<usize, String> {
    let mut seen = HashSet::new();
    for v in &model.variables {
        // `encoder/layer_norm/...` shares the prefix but is not a layer.
        let rest = v.name.strip_prefix(prefix);
        if let Some(rest) = rest.filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
            let num = rest.split('/').next().unwrap_or_default();
            let n: usize = num
                .parse()
                .map_err(|_| format!("unexpected variable '{}'", v.name))?;
            if n > 1000 {
                return Err(format!("unexpected variable '{}'", v.name));
            }
            seen.insert(n);
        }
    }
    let Some(&last) = seen.iter().max() else {
        return Err(format!("not a Whisper model: no {prefix}N variables"));
    };
    if let Some(missing) = (0..last).find(|i| !seen.contains(i)) {
        return Err(format!(
            "not a Whisper model: {prefix}{missing} is missing (but {prefix}{last} exists)"
        ));
    }
    Ok(last + 1)
}

fn heads(c: &mut Checker<'_, '_>, name: &str, n_state: usize) -> Result<usize, String> {
    // CTranslate2 stores the head count as an int16 scalar; every Whisper model has
    // 64-wide heads, which serves when the scalar is absent.
    let heads = match c.scalar(name) {
        Some(v) => v
            .scalar_int()
            .ok_or_else(|| format!("'{name}' is not an integer"))?,
        None => (n_state / 64) as i64,
    };
    if heads <= 0 || !n_state.is_multiple_of(heads as usize) {
        return Err(format!(
            "'{name}' is {heads}, which does not divide the model width {n_state}"
        ));
    }
    Ok(heads as usize)
}

/// Collects the output tensors in whisper.cpp's order, each from a checked variable.
struct Planner<'m, 'a> {
    c: Checker<'m, 'a>,
    t: Vec<(String, Vec<usize>, Kind, Source<'m, 'a>)>,
    /// Model width.
    s: usize,
}

impl<'m, 'a> Planner<'m, 'a> {
    /// Rows `rows` of variable `ct` (which must have `shape`) as tensor `gg` with ggml
    /// dims `dims`.
    fn add_rows(
        &mut self,
        gg: &str,
        ct: &str,
        shape: &[usize],
        kind: Kind,
        rows: Range<usize>,
        dims: Vec<usize>,
    ) -> Result<(), String> {
        let (var, scale) = self.c.var(ct, shape, kind)?;
        let row_len = shape.iter().skip(1).product();
        let src = Source {
            var,
            rows,
            row_len,
            scale,
        };
        self.t.push((gg.to_string(), dims, kind, src));
        Ok(())
    }

    /// All of variable `ct` as tensor `gg` (ggml lists dimensions innermost first).
    fn add(&mut self, gg: &str, ct: &str, shape: &[usize], kind: Kind) -> Result<(), String> {
        let dims = shape.iter().rev().copied().collect();
        self.add_rows(gg, ct, shape, kind, 0..shape[0], dims)
    }

    /// A linear layer `ct` of `parts.len()` fused s×s projections, as `{name}.weight` (and
    /// `{name}.bias` where the flag says so) per part.
    fn split(&mut self, ct: &str, parts: &[(String, bool)]) -> Result<(), String> {
        let s = self.s;
        let n = parts.len() * s;
        for (k, (name, bias)) in parts.iter().enumerate() {
            let rows = k * s..(k + 1) * s;
            let w = format!("{ct}/weight");
            self.add_rows(
                &format!("{name}.weight"),
                &w,
                &[n, s],
                Kind::Big,
                rows.clone(),
                vec![s, s],
            )?;
            if *bias {
                let b = format!("{ct}/bias");
                self.add_rows(
                    &format!("{name}.bias"),
                    &b,
                    &[n],
                    Kind::Small,
                    rows,
                    vec![s],
                )?;
            }
        }
        // The part without a tensor (the key bias) is used all the same.
        self.c.get(&format!("{ct}/bias"))?;
        Ok(())
    }

    /// Self-attention with fused QKV in linear_0: rows [0, s) the query, [s, 2s) the key
    /// (its bias stored as zeros: Whisper's key projection has none, whisper.cpp has no
    /// tensor for it, and a key bias would not change the softmax anyway), [2s, 3s) the
    /// value; the output projection in linear_1.
    fn self_attention(&mut self, ct: &str, gg: &str) -> Result<(), String> {
        self.split(
            &format!("{ct}/linear_0"),
            &[
                (format!("{gg}.query"), true),
                (format!("{gg}.key"), false),
                (format!("{gg}.value"), true),
            ],
        )?;
        self.split(&format!("{ct}/linear_1"), &[(format!("{gg}.out"), true)])
    }

    fn layer_norm(&mut self, ct: &str, gg: &str) -> Result<(), String> {
        let s = self.s;
        self.add(
            &format!("{gg}.weight"),
            &format!("{ct}/gamma"),
            &[s],
            Kind::Small,
        )?;
        self.add(
            &format!("{gg}.bias"),
            &format!("{ct}/beta"),
            &[s],
            Kind::Small,
        )
    }

    /// The feed-forward block (4s wide) and its layer norm.
    fn mlp(&mut self, ct: &str, gg: &str) -> Result<(), String> {
        let (s, f) = (self.s, 4 * self.s);
        for (i, (rows, cols)) in [(0, (f, s)), (2, (s, f))] {
            let l = format!("{ct}/ffn/linear_{}", i / 2);
            let m = format!("{gg}.mlp.{i}");
            self.add(
                &format!("{m}.weight"),
                &format!("{l}/weight"),
                &[rows, cols],
                Kind::Big,
            )?;
            self.add(
                &format!("{m}.bias"),
                &format!("{l}/bias"),
                &[rows],
                Kind::Small,
            )?;
        }
        self.layer_norm(&format!("{ct}/ffn/layer_norm"), &format!("{gg}.mlp_ln"))
    }
}

/// Checks the model against Whisper's architecture and lists the output tensors.
fn plan_whisper<'m, 'a>(
    model: &'m ct2::Model<'a>,
    opts: &ImportOptions,
) -> Result<Plan<'m, 'a>, String> {
    if model.spec != "WhisperSpec" {
        return Err(format!(
            "not a Whisper model: spec '{}' (expected 'WhisperSpec')",
            model.spec
        ));
    }
    if model.revision > MAX_SPEC_REVISION || model.revision == 0 {
        return Err(format!(
            "WhisperSpec revision {} is not supported (expected 1 to {MAX_SPEC_REVISION})",
            model.revision
        ));
    }
    let mut c = Checker {
        model,
        used: HashSet::new(),
    };

    // Hyper-parameters come from the shapes, checked against each other.
    let conv1 = c.get("encoder/conv1/weight")?;
    let [s, n_mels, k] = conv1.shape[..] else {
        return Err(format!(
            "shape of 'encoder/conv1/weight' is {:?}, expected [n_state, n_mels, 3]",
            conv1.shape
        ));
    };
    if k != 3 || !(n_mels == 80 || n_mels == 128) {
        return Err(format!(
            "shape of 'encoder/conv1/weight' is {:?}, expected [n_state, 80 or 128, 3]",
            conv1.shape
        ));
    }
    if s == 0 || !s.is_multiple_of(64) || s > 8192 {
        return Err(format!(
            "model width {s} (from 'encoder/conv1/weight') is not a Whisper width (a multiple of 64)"
        ));
    }
    let enc_pos = c.get("encoder/position_encodings/encodings")?;
    if enc_pos.shape != [N_AUDIO_CTX, s] {
        return Err(format!(
            "shape of 'encoder/position_encodings/encodings' is {:?}, expected [{N_AUDIO_CTX}, {s}]",
            enc_pos.shape
        ));
    }
    let emb = c.get("decoder/embeddings/weight")?;
    let n_vocab = match emb.shape[..] {
        [v, w] if w == s => v,
        _ => {
            return Err(format!(
                "shape of 'decoder/embeddings/weight' is {:?}, expected [n_vocab, {s}]",
                emb.shape
            ))
        }
    };
    if !(ENGLISH_N_VOCAB as usize..=ENGLISH_N_VOCAB as usize + 2).contains(&n_vocab) {
        return Err(format!(
            "n_vocab {n_vocab} (rows of 'decoder/embeddings/weight') is not a Whisper vocabulary \
             size (51864 English-only, 51865 or 51866 multilingual)"
        ));
    }
    let dec_pos = c.get("decoder/position_encodings/encodings")?;
    let n_text_ctx = match dec_pos.shape[..] {
        [t, w] if w == s && (1..=4096).contains(&t) => t,
        _ => {
            return Err(format!(
                "shape of 'decoder/position_encodings/encodings' is {:?}, expected [n_text_ctx (448), {s}]",
                dec_pos.shape
            ))
        }
    };
    let n_audio_layer = count_layers(model, "encoder/layer_")?;
    let n_text_layer = count_layers(model, "decoder/layer_")?;
    let n_audio_head = heads(&mut c, "encoder/num_heads", s)?;
    let n_text_head = heads(&mut c, "decoder/num_heads", s)?;
    check_flags(&mut c)?;

    let mut p = Planner {
        c,
        t: Vec::new(),
        s,
    };
    p.add(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[N_AUDIO_CTX, s],
        Kind::Small,
    )?;
    for (i, m) in [(1, n_mels), (2, s)] {
        let (ct, gg) = (format!("encoder/conv{i}"), format!("encoder.conv{i}"));
        p.add(
            &format!("{gg}.weight"),
            &format!("{ct}/weight"),
            &[s, m, 3],
            Kind::Conv,
        )?;
        // openai-whisper's conv bias is saved as an [s, 1] column.
        p.add_rows(
            &format!("{gg}.bias"),
            &format!("{ct}/bias"),
            &[s],
            Kind::Small,
            0..s,
            vec![1, s],
        )?;
    }
    for l in 0..n_audio_layer {
        let (ct, gg) = (format!("encoder/layer_{l}"), format!("encoder.blocks.{l}"));
        p.self_attention(&format!("{ct}/self_attention"), &format!("{gg}.attn"))?;
        p.layer_norm(
            &format!("{ct}/self_attention/layer_norm"),
            &format!("{gg}.attn_ln"),
        )?;
        p.mlp(&ct, &gg)?;
    }
    p.layer_norm("encoder/layer_norm", "encoder.ln_post")?;

    p.add(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[n_text_ctx, s],
        Kind::Small,
    )?;
    p.add(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        &[n_vocab, s],
        Kind::Big,
    )?;
    check_tied_projection(&mut p.c, emb)?;
    for l in 0..n_text_layer {
        let (ct, gg) = (format!("decoder/layer_{l}"), format!("decoder.blocks.{l}"));
        p.self_attention(&format!("{ct}/self_attention"), &format!("{gg}.attn"))?;
        p.layer_norm(
            &format!("{ct}/self_attention/layer_norm"),
            &format!("{gg}.attn_ln"),
        )?;
        // Cross-attention: the query in linear_0, the key and value fused in linear_1
        // (the key's bias again zeros), the output in linear_2.
        let (ca, xa) = (format!("{ct}/attention"), format!("{gg}.cross_attn"));
        p.split(&format!("{ca}/linear_0"), &[(format!("{xa}.query"), true)])?;
        p.split(
            &format!("{ca}/linear_1"),
            &[(format!("{xa}.key"), false), (format!("{xa}.value"), true)],
        )?;
        p.split(&format!("{ca}/linear_2"), &[(format!("{xa}.out"), true)])?;
        p.layer_norm(&format!("{ca}/layer_norm"), &format!("{gg}.cross_attn_ln"))?;
        p.mlp(&ct, &gg)?;
    }
    p.layer_norm("decoder/layer_norm", "decoder.ln")?;
    let Planner { c, t, .. } = p;

    // Anything else with data is a part of the network whisper.cpp would silently lack.
    if let Some(v) = model
        .variables
        .iter()
        .find(|v| !v.shape.is_empty() && !c.used.contains(&v.name))
    {
        return Err(format!(
            "unexpected variable '{}' {:?}: not part of a Whisper model whisper.cpp can run",
            v.name, v.shape
        ));
    }

    let big: Vec<DType> = t
        .iter()
        .filter(|e| e.2 == Kind::Big)
        .map(|e| e.3.var.dtype)
        .collect();
    let small: Vec<DType> = t
        .iter()
        .filter(|e| e.2 == Kind::Small)
        .map(|e| e.3.var.dtype)
        .collect();
    let any_int8 = big.contains(&DType::I8);
    let wtype = if any_int8 && opts.int8 == Int8Output::Q8_0 {
        GgmlType::Q8_0
    } else {
        GgmlType::F16
    };
    let source_dtype = describe_dtypes(&big, &small);

    let tensors = t
        .into_iter()
        .map(|(name, dims, kind, src)| Planned {
            name,
            dims,
            ttype: match kind {
                Kind::Small => GgmlType::F32,
                Kind::Conv => GgmlType::F16,
                Kind::Big => wtype,
            },
            src,
        })
        .collect();

    let as_i32 = |v: usize| v as i32; // every value was bounded above
    Ok(Plan {
        hparams: Hparams {
            n_vocab: as_i32(n_vocab),
            n_audio_ctx: as_i32(N_AUDIO_CTX),
            n_audio_state: as_i32(s),
            n_audio_head: as_i32(n_audio_head),
            n_audio_layer: as_i32(n_audio_layer),
            n_text_ctx: as_i32(n_text_ctx),
            n_text_state: as_i32(s),
            n_text_head: as_i32(n_text_head),
            n_text_layer: as_i32(n_text_layer),
            n_mels: as_i32(n_mels),
            ftype: if wtype == GgmlType::Q8_0 {
                ggml::ftype::MOSTLY_Q8_0
            } else {
                ggml::ftype::MOSTLY_F16
            },
        },
        wtype,
        source_dtype,
        tensors,
    })
}

/// The decoder flags CTranslate2 stores as scalars must describe Whisper's decoder.
fn check_flags(c: &mut Checker<'_, '_>) -> Result<(), String> {
    let int = |c: &mut Checker<'_, '_>, name: &str| c.scalar(name).and_then(|v| v.scalar_int());
    // Activation 3 is GELU (common_spec.Activation).
    for (name, want, what) in [
        ("decoder/activation", 3, "GELU (3)"),
        ("decoder/pre_norm", 1, "1 (pre-norm)"),
        ("decoder/alibi", 0, "0"),
        ("decoder/start_from_zero_embedding", 0, "0"),
    ] {
        if let Some(v) = int(c, name) {
            if v != want {
                return Err(format!("'{name}' is {v}, expected {what} as in Whisper"));
            }
        }
    }
    if let Some(v) = c.scalar("decoder/scale_embeddings") {
        let ok = v.scalar_int() == Some(0) || v.scalar_f32() == Some(1.0);
        if !ok {
            return Err(
                "'decoder/scale_embeddings' is set; Whisper does not scale its embeddings".into(),
            );
        }
    }
    Ok(())
}

/// whisper.cpp computes the logits with the token embedding; a separate output projection
/// (rather than CTranslate2's usual alias of it) must be the same matrix.
fn check_tied_projection(c: &mut Checker<'_, '_>, emb: &Variable<'_>) -> Result<(), String> {
    let name = "decoder/projection/weight";
    if let Some(p) = c.model.get(name) {
        c.used.insert(name.to_string());
        if p.name != emb.name
            && (p.dtype != emb.dtype || p.shape != emb.shape || p.data != emb.data)
        {
            return Err(format!(
                "'{name}' differs from 'decoder/embeddings/weight'; whisper.cpp needs them tied"
            ));
        }
        if p.name != emb.name && p.dtype == DType::I8 {
            let (a, b) = (
                c.model.get(&format!("{name}_scale")),
                c.model.get(&format!("{}_scale", emb.name)),
            );
            if a.map(|v| v.data) != b.map(|v| v.data) {
                return Err(format!("'{name}_scale' differs from the embeddings' scale"));
            }
            c.used.insert(format!("{name}_scale"));
        }
    }
    Ok(())
}

/// "float16", "int8_float16", ... in CTranslate2's terms.
fn describe_dtypes(big: &[DType], small: &[DType]) -> String {
    let one = |ts: &[DType]| -> String {
        let mut names: Vec<&str> = ts.iter().map(|d| d.name()).collect();
        names.sort_unstable();
        names.dedup();
        names.join("+")
    };
    let (b, s) = (one(big), one(small));
    if b == s {
        b
    } else if b == "int8" {
        format!("int8_{s}")
    } else {
        format!("{b} (weights), {s} (other)")
    }
}

/// Reads all tokens of a CTranslate2 vocabulary file (GPT-2 byte-level symbols), by id.
fn read_vocabulary(path: &Path) -> Result<Vec<String>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let tokens = match name {
        "vocabulary.txt" => {
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::input(
                    path,
                    format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .collect()
        }
        "vocabulary.json" => serde_json::from_slice::<Vec<String>>(&bytes)
            .map_err(|e| Error::input(path, format!("not a JSON list of tokens: {e}")))?,
        _ => tokenizer_json_tokens(&bytes).map_err(|r| Error::input(path, r))?,
    };
    Ok(tokens)
}

/// Tokens of a Hugging Face `tokenizer.json` (`model.vocab` plus `added_tokens`), by id.
fn tokenizer_json_tokens(bytes: &[u8]) -> Result<Vec<String>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let vocab = doc
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or("no model.vocab object")?;
    let mut pairs: Vec<(u64, &str)> = Vec::with_capacity(vocab.len());
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format!("token {token:?} has id {id}, not a number"))?;
        pairs.push((id, token));
    }
    for added in doc
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(id), Some(content)) = (
            added.get("id").and_then(|v| v.as_u64()),
            added.get("content").and_then(|v| v.as_str()),
        ) {
            pairs.push((id, content));
        }
    }
    let n = pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0);
    if n > 1_000_000 {
        return Err(format!("token id {} is implausibly large", n - 1));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n as usize];
    for (id, token) in pairs {
        tokens[id as usize] = Some(token.to_string());
    }
    // The multilingual tokenizer has a nameless token (50256, just before <|endoftext|>)
    // that some exports leave out; whisper.cpp stores it as an empty string. More than a
    // few gaps mean this is not a Whisper tokenizer.
    let gaps: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i].is_none()).collect();
    if gaps.len() > 4 {
        return Err(format!(
            "{} token ids have no token (the first is {})",
            gaps.len(),
            gaps[0]
        ));
    }
    Ok(tokens.into_iter().map(Option::unwrap_or_default).collect())
}

/// The BPE part of the vocabulary as bytes, the way whisper.cpp wants it: every token
/// before `<|endoftext|>` (whisper.cpp names the special tokens itself).
fn whisper_vocabulary(
    tokens: &[String],
    hp: &Hparams,
    path: &Path,
) -> Result<Vec<Vec<u8>>, String> {
    let eot = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or("no <|endoftext|> token: not a Whisper vocabulary")?;
    let multilingual = hp.n_vocab >= MULTILINGUAL_N_VOCAB;
    // whisper.cpp hard-codes the special token ids from here.
    let expected = if multilingual { 50257 } else { 50256 };
    if eot != expected {
        return Err(format!(
            "<|endoftext|> is token {eot}, but whisper.cpp expects it at {expected} for a{} model \
             with {} tokens",
            if multilingual {
                " multilingual"
            } else {
                "n English-only"
            },
            hp.n_vocab
        ));
    }
    let is_tokenizer_json = path.file_name().is_some_and(|n| n == "tokenizer.json");
    let total_ok = if is_tokenizer_json {
        tokens.len() <= hp.n_vocab as usize
    } else {
        tokens.len() == hp.n_vocab as usize
    };
    if !total_ok {
        return Err(format!(
            "{} tokens, but the model's embedding has {} rows",
            tokens.len(),
            hp.n_vocab
        ));
    }
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            gpt2_token_bytes(t).ok_or_else(|| {
                format!("token {i} {t:?} has a character outside GPT-2's byte alphabet")
            })
        })
        .collect()
}

/// GPT-2's byte-level BPE alphabet: byte `b` is shown as `GPT2_CHARS[b]` (printable Latin-1
/// bytes as themselves, the rest shifted to U+0100 and up), as `bytes_to_unicode` in
/// GPT-2's `encoder.py` defines it.
fn gpt2_byte_to_char() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// The bytes a GPT-2 byte-level token stands for (`"Ġthe"` → `b" the"`), or `None` if it
/// has a character outside the alphabet.
pub fn gpt2_token_bytes(token: &str) -> Option<Vec<u8>> {
    // Inverse of the table: code points 0x21..=0x143 only.
    let mut inverse = [None; 0x144];
    for (b, ch) in gpt2_byte_to_char().iter().enumerate() {
        if let Some(slot) = inverse.get_mut(*ch as usize) {
            *slot = Some(b as u8);
        }
    }
    token
        .chars()
        .map(|ch| inverse.get(ch as usize).copied().flatten())
        .collect()
}

/// Writes the file: a temporary in the same directory, renamed over `out` at the end, so a
/// failure (or Ctrl-C) never leaves a partial model under the final name.
fn write_ggml(
    out: &Path,
    plan: &Plan<'_, '_>,
    filters: &MelFilters,
    vocab: &[Vec<u8>],
) -> Result<u64, Error> {
    let out_err = |reason: String| Error::Output {
        path: out.to_path_buf(),
        reason,
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".verbatim-import-").suffix(".partial");
    // tempfile creates files private (0600); a model is as readable as any other download.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| out_err(e.to_string()))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    ggml::write_header(&mut w, &plan.hparams, filters, vocab)
        .map_err(|e| out_err(e.to_string()))?;
    let mut buf = Vec::new();
    for t in &plan.tensors {
        convert(&t.src, t.ttype, &mut buf).map_err(|r| {
            out_err(format!(
                "cannot convert '{}' ({}): {r}",
                t.name, t.src.var.name
            ))
        })?;
        let want = t.ttype.nbytes(&t.dims);
        if want != Some(buf.len() as u64) {
            return Err(out_err(format!(
                "internal error: '{}' converted to {} bytes, expected {want:?}",
                t.name,
                buf.len()
            )));
        }
        ggml::write_tensor_header(&mut w, &t.name, t.ttype, &t.dims)
            .and_then(|()| w.write_all(&buf))
            .map_err(|e| out_err(e.to_string()))?;
    }
    w.flush().map_err(|e| out_err(e.to_string()))?;
    drop(w);
    tmp.as_file()
        .sync_all()
        .map_err(|e| out_err(e.to_string()))?;
    let len = tmp
        .as_file()
        .metadata()
        .map_err(|e| out_err(e.to_string()))?
        .len();
    tmp.persist(out).map_err(|e| out_err(e.error.to_string()))?;
    Ok(len)
}

/// Reads element `i` of `data` (of type `dtype`) as f32.
fn element(data: &[u8], dtype: DType, i: usize) -> f32 {
    let b = |k: usize| data.get(i * dtype.size() + k).copied().unwrap_or(0);
    match dtype {
        DType::F32 => f32::from_le_bytes([b(0), b(1), b(2), b(3)]),
        DType::F16 => f16_to_f32(u16::from_le_bytes([b(0), b(1)])),
        DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b(0), b(1)])) << 16),
        DType::I8 => f32::from(b(0) as i8),
        DType::I16 => f32::from(i16::from_le_bytes([b(0), b(1)])),
        DType::I32 => i32::from_le_bytes([b(0), b(1), b(2), b(3)]) as f32,
    }
}

/// Converts the source rows to `ttype` into `out` (cleared first).
fn convert(src: &Source<'_, '_>, ttype: GgmlType, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let var = src.var;
    let size = var.dtype.size();
    let row_bytes = src.row_len * size;
    let data = var
        .data
        .get(src.rows.start * row_bytes..src.rows.end * row_bytes)
        .ok_or("row range outside the variable")?;
    let n = src.rows.len() * src.row_len;

    // Per-row multipliers of int8 rows: CTranslate2 stores q = round(x · scale), so
    // x = q / scale.
    let scales: Option<Vec<f32>> = match (var.dtype, src.scale) {
        (DType::I8, Some(s)) => {
            let v: Vec<f32> = src
                .rows
                .clone()
                .map(|r| element(s.data, s.dtype, r))
                .collect();
            if let Some((r, bad)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x > 0.0))
            {
                return Err(format!("scale of row {} is {bad}", src.rows.start + r));
            }
            Some(v)
        }
        (DType::I8, None) => return Err("int8 without a scale".into()),
        _ => None,
    };
    let value = |i: usize| -> f32 {
        let x = element(data, var.dtype, i);
        match &scales {
            Some(s) => x / s[i / src.row_len],
            None => x,
        }
    };

    match ttype {
        GgmlType::F32 if var.dtype == DType::F32 => out.extend_from_slice(data),
        GgmlType::F32 => {
            out.reserve(n * 4);
            for i in 0..n {
                out.extend_from_slice(&value(i).to_le_bytes());
            }
        }
        GgmlType::F16 if var.dtype == DType::F16 => out.extend_from_slice(data),
        GgmlType::F16 => {
            out.reserve(n * 2);
            for i in 0..n {
                out.extend_from_slice(&f32_to_f16(value(i)).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => {
            if !src.row_len.is_multiple_of(32) {
                return Err(format!("rows of {} are not a multiple of 32", src.row_len));
            }
            out.reserve(n / 32 * 34);
            match &scales {
                // The int8 values stay as they are; the row's scale becomes each block's d.
                Some(s) => {
                    for (r, row) in data.chunks_exact(src.row_len).enumerate() {
                        let d = f32_to_f16(1.0 / s[r]);
                        if f16_to_f32(d) == 0.0 || !f16_to_f32(d).is_finite() {
                            return Err(format!(
                                "scale {} of row {} does not fit an f16",
                                s[r],
                                src.rows.start + r
                            ));
                        }
                        for block in row.chunks_exact(32) {
                            out.extend_from_slice(&d.to_le_bytes());
                            out.extend_from_slice(block);
                        }
                    }
                }
                // Float rows in a q8_0 file: ggml's quantize_row_q8_0_ref.
                None => {
                    let mut block = [0f32; 32];
                    for b in 0..n / 32 {
                        for (k, x) in block.iter_mut().enumerate() {
                            *x = value(b * 32 + k);
                        }
                        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
                        let d = amax / 127.0;
                        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
                        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
                    }
                }
            }
        }
        other => return Err(format!("cannot write {}", other.name())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet_covers_every_byte_once() {
        let table = gpt2_byte_to_char();
        let mut seen = HashSet::new();
        for (b, ch) in table.iter().enumerate() {
            assert!(seen.insert(*ch));
            assert_eq!(gpt2_token_bytes(&ch.to_string()), Some(vec![b as u8]));
        }
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[0xad], 'Ń');
    }

    #[test]
    fn gpt2_tokens_decode_to_bytes() {
        assert_eq!(gpt2_token_bytes("Ġthe").unwrap(), b" the");
        assert_eq!(gpt2_token_bytes("ĠÃ©").unwrap(), " é".as_bytes());
        assert_eq!(gpt2_token_bytes("hello"), Some(b"hello".to_vec()));
        assert_eq!(gpt2_token_bytes("日本"), None);
        assert_eq!(gpt2_token_bytes(" "), None); // a raw space is not in the alphabet
    }

    /// A variable over `data` for conversion tests.
    fn var<'a>(shape: &[usize], dtype: DType, data: &'a [u8]) -> Variable<'a> {
        Variable {
            name: "x".into(),
            shape: shape.to_vec(),
            dtype,
            data,
            offset: 0,
            header_offset: 0,
        }
    }

    fn run(
        v: &Variable<'_>,
        scale: Option<&Variable<'_>>,
        rows: Range<usize>,
        t: GgmlType,
    ) -> Vec<u8> {
        let src = Source {
            var: v,
            rows,
            row_len: v.shape[1..].iter().product(),
            scale,
        };
        let mut out = Vec::new();
        convert(&src, t, &mut out).unwrap();
        out
    }

    fn f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn conversions_between_types() {
        // 2 rows × 32: row 0 = 0..32, row 1 = -(0..32) / 4.
        let vals: Vec<f32> = (0..32)
            .map(|i| i as f32)
            .chain((0..32).map(|i| -(i as f32) / 4.0))
            .collect();
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| f32_to_f16(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        for (dtype, data) in [
            (DType::F32, &f32b),
            (DType::F16, &f16b),
            (DType::BF16, &bf16b),
        ] {
            let v = var(&[2, 32], dtype, data);
            assert_eq!(f32s(&run(&v, None, 0..2, GgmlType::F32)), vals, "{dtype}");
            assert_eq!(run(&v, None, 0..2, GgmlType::F16), f16b, "{dtype}");
            // The second row alone.
            assert_eq!(run(&v, None, 1..2, GgmlType::F16), &f16b[64..], "{dtype}");
            // ggml's q8_0: d = amax / 127, q = round(x / d).
            let q = run(&v, None, 1..2, GgmlType::Q8_0);
            assert_eq!(q.len(), 34);
            assert_eq!(
                f16_to_f32(u16::from_le_bytes([q[0], q[1]])),
                f16_to_f32(f32_to_f16(7.75 / 127.0))
            );
            assert_eq!(q[2 + 31] as i8, -127);
            assert_eq!(q[2 + 4] as i8, (-1.0f32 / (7.75 / 127.0)).round() as i8);
        }

        // CTranslate2 int8: q = round(x · scale) per row; x = q / scale.
        let q: Vec<u8> = (0..64).map(|i| (i as i8 - 32) as u8).collect();
        let scales: Vec<u8> = [2.0f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (v, s) = (var(&[2, 32], DType::I8, &q), var(&[2], DType::F32, &scales));
        let x = f32s(&run(&v, Some(&s), 0..2, GgmlType::F32));
        assert_eq!(x[0], -16.0);
        assert_eq!(x[32], 0.0);
        assert_eq!(x[63], 62.0);
        // q8_0 keeps the int8 values, with d = 1 / scale in every block of the row.
        let out = run(&v, Some(&s), 1..2, GgmlType::Q8_0);
        assert_eq!(out.len(), 34);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), f32_to_f16(2.0));
        assert_eq!(&out[2..], &q[32..]);
        // A zero scale is refused, not turned into infinities.
        let zero = [0u8; 8];
        let s0 = var(&[2], DType::F32, &zero);
        let src = Source {
            var: &v,
            rows: 0..2,
            row_len: 32,
            scale: Some(&s0),
        };
        assert!(convert(&src, GgmlType::F16, &mut Vec::new())
            .unwrap_err()
            .contains("scale of row 0"));
    }

    #[test]
    fn tokenizer_json_tokens_by_id() {
        let json = br#"{"model": {"vocab": {"a": 0, "\u0120b": 2}},
            "added_tokens": [{"id": 3, "content": "<|endoftext|>", "special": true}]}"#;
        let tokens = tokenizer_json_tokens(json).unwrap();
        assert_eq!(tokens, ["a", "", "\u{120}b", "<|endoftext|>"]);
        assert!(tokenizer_json_tokens(br#"{"model": {"vocab": {"a": 9}}}"#)
            .unwrap_err()
            .contains("9 token ids have no token"));
        assert!(tokenizer_json_tokens(b"[1,2]")
            .unwrap_err()
            .contains("model.vocab"));
    }

    #[test]
    fn dtype_descriptions() {
        use DType::*;
        assert_eq!(describe_dtypes(&[F16, F16], &[F16]), "float16");
        assert_eq!(describe_dtypes(&[I8], &[F16]), "int8_float16");
        assert_eq!(describe_dtypes(&[I8], &[F32]), "int8_float32");
    }
}
