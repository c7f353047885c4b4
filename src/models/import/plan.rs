//! The plan of an import: which CTranslate2 variable becomes which whisper.cpp tensor, with
//! what shape, type and place in the file. Every shape and flag is checked against Whisper's
//! architecture here, before a byte is converted, so a model that would not run in whisper.cpp
//! is refused with the variable at fault.

use std::collections::HashSet;
use std::ops::Range;

use super::{ImportOptions, Int8Output};
use crate::models::ct2::{self, DType, Variable};
use crate::models::ggml::{self, GgmlType, Hparams};

/// Token count of the English-only vocabulary; `<|endoftext|>` comes right after the BPE
/// tokens (50256 of them, 50257 for the multilingual tokenizer).
const ENGLISH_N_VOCAB: i32 = 51864;
/// The encoder length whisper.cpp's 30 s windows need (3000 mel frames, conv stride 2).
const N_AUDIO_CTX: usize = 1500;
/// The newest WhisperSpec revision this importer knows (CTranslate2 4.x writes 3).
const MAX_SPEC_REVISION: u32 = 3;

/// Where one output tensor's data comes from: rows `rows` of `var` (first dimension; for a
/// 1-D variable, elements), with `row_len` elements per row and the int8 scale if any.
pub(super) struct Source<'m, 'a> {
    pub(super) var: &'m Variable<'a>,
    pub(super) rows: Range<usize>,
    pub(super) row_len: usize,
    pub(super) scale: Option<&'m Variable<'a>>,
}

/// One tensor of the output file.
pub(super) struct Planned<'m, 'a> {
    pub(super) name: String,
    /// ggml order (ne0 first).
    pub(super) dims: Vec<usize>,
    pub(super) ttype: GgmlType,
    pub(super) src: Source<'m, 'a>,
}

/// Everything needed to write the file, all checked.
pub(super) struct Plan<'m, 'a> {
    pub(super) hparams: Hparams,
    pub(super) wtype: GgmlType,
    pub(super) source_dtype: String,
    pub(super) tensors: Vec<Planned<'m, 'a>>,
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
pub(super) fn plan_whisper<'m, 'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_descriptions() {
        use DType::*;
        assert_eq!(describe_dtypes(&[F16, F16], &[F16]), "float16");
        assert_eq!(describe_dtypes(&[I8], &[F16]), "int8_float16");
        assert_eq!(describe_dtypes(&[I8], &[F32]), "int8_float32");
    }
}
