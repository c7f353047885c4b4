//! pyannote segmentation-3.0 (PyanNet): SincNet, BiLSTM, powerset classifier.
//!
//! The network reads a 10 s window of 16 kHz mono audio and gives, for each of its 589
//! frames (one every 270 samples, 16.875 ms), log-probabilities of 7 "powerset" classes:
//! nobody speaks, one of three local speakers speaks, or two of them overlap
//! ([`POWERSET`]). The architecture, with the published checkpoint's hyper-parameters:
//!
//! ```text
//! InstanceNorm1d(1, affine)                                   waveform normalisation
//! SincConv(80 filters, 251 taps, stride 10) -> |.| -> MaxPool1d(3) -> InstanceNorm1d(80) -> LeakyReLU
//! Conv1d(80 -> 60, 5)                       -> MaxPool1d(3) -> InstanceNorm1d(60) -> LeakyReLU
//! Conv1d(60 -> 60, 5)                       -> MaxPool1d(3) -> InstanceNorm1d(60) -> LeakyReLU
//! LSTM(60 -> 128, 4 layers, bidirectional)
//! Linear(256 -> 128) -> LeakyReLU -> Linear(128 -> 128) -> LeakyReLU -> Linear(128 -> 7) -> LogSoftmax
//! ```
//!
//! The SincConv filters (asteroid-filterbanks' `ParamSincFB`: 40 cosine and 40 sine band-pass
//! filters from learned low/band frequencies, Hamming-windowed) are computed once at load.
//! Convolutions are matrix products over overlapping rows of the input (no copy), the LSTM
//! input projections one matrix product per layer and direction, the recurrence a tight
//! matrix-vector loop (AVX2 when the CPU has it).

use std::path::Path;

use crate::pt::Weights;
use crate::tensor::matmul;
use crate::{Error, Result};

/// The sample rate the model takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one window (10 s).
pub const WINDOW_SAMPLES: usize = 160_000;
/// Frames the network gives for one window.
pub const WINDOW_FRAMES: usize = 589;
/// Powerset classes per frame.
pub const NUM_CLASSES: usize = 7;
/// Local speakers per window.
pub const NUM_SPEAKERS: usize = 3;
/// Samples between the starts of consecutive frames (10 · 3 · 3 · 3).
pub const FRAME_STEP_SAMPLES: usize = 270;
/// Samples one frame sees (its receptive field).
pub const FRAME_SIZE_SAMPLES: usize = 991;
/// [`FRAME_STEP_SAMPLES`] in seconds: 16.875 ms.
pub const FRAME_STEP_SECONDS: f64 = FRAME_STEP_SAMPLES as f64 / SAMPLE_RATE as f64;
/// [`FRAME_SIZE_SAMPLES`] in seconds: 61.9375 ms.
pub const FRAME_DURATION_SECONDS: f64 = FRAME_SIZE_SAMPLES as f64 / SAMPLE_RATE as f64;

/// The speakers active in each powerset class: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}.
pub const POWERSET: [[bool; NUM_SPEAKERS]; NUM_CLASSES] = [
    [false, false, false],
    [true, false, false],
    [false, true, false],
    [false, false, true],
    [true, true, false],
    [true, false, true],
    [false, true, true],
];

/// Frames the network gives for `num_samples` input samples (pyannote's
/// `SincNet.num_frames`): 589 for a 10 s window, 0 below 991 samples.
pub fn num_frames(num_samples: usize) -> usize {
    let mut n = num_samples;
    for (kernel, stride) in [(251, 10), (3, 3), (5, 1), (3, 3), (5, 1), (3, 3)] {
        if n < kernel {
            return 0;
        }
        n = (n - kernel) / stride + 1;
    }
    n
}

/// Start of frame `i`'s receptive field, in seconds from the window start.
pub fn frame_start_seconds(frame: usize) -> f64 {
    frame as f64 * FRAME_STEP_SECONDS
}

/// Middle of frame `i`'s receptive field, in seconds from the window start (pyannote's
/// frame timestamps: `start + i · step + duration / 2`).
pub fn frame_center_seconds(frame: usize) -> f64 {
    frame_start_seconds(frame) + FRAME_DURATION_SECONDS / 2.0
}

/// The network's output for one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    /// Per frame, the natural-log probabilities of the [`POWERSET`] classes.
    pub log_probs: Vec<[f32; NUM_CLASSES]>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.log_probs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log_probs.is_empty()
    }

    /// The most probable powerset class of each frame.
    pub fn argmax(&self) -> Vec<usize> {
        self.log_probs
            .iter()
            .map(|row| {
                let mut best = 0;
                for (k, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = k;
                    }
                }
                best
            })
            .collect()
    }
}

/// Hard speaker activity (pyannote's `Powerset.to_multilabel(soft=False)`): per frame, 1.0
/// for each local speaker of the most probable class, else 0.0.
pub fn powerset_to_speakers(frames: &Frames) -> Vec<[f32; NUM_SPEAKERS]> {
    frames
        .argmax()
        .into_iter()
        .map(|class| POWERSET[class].map(|on| if on { 1.0 } else { 0.0 }))
        .collect()
}

/// Soft speaker activity (`to_multilabel(soft=True)`): per frame, each local speaker's
/// probability of speaking, the sum of the probabilities of the classes that contain them.
pub fn powerset_to_speaker_probs(frames: &Frames) -> Vec<[f32; NUM_SPEAKERS]> {
    frames
        .log_probs
        .iter()
        .map(|row| {
            let mut p = [0.0f32; NUM_SPEAKERS];
            for (class, &lp) in row.iter().enumerate() {
                let prob = lp.exp();
                for (s, &on) in POWERSET[class].iter().enumerate() {
                    if on {
                        p[s] += prob;
                    }
                }
            }
            p
        })
        .collect()
}

const SINC_FILTERS: usize = 80;
const SINC_TAPS: usize = 251;
const SINC_STRIDE: usize = 10;
const CONV_KERNEL: usize = 5;
const CONV_CHANNELS: usize = 60;
const HIDDEN: usize = 128;
const GATES: usize = 4 * HIDDEN;
const LSTM_LAYERS: usize = 4;
const LINEAR: usize = 128;
const NORM_EPS: f64 = 1e-5;
const LEAKY_SLOPE: f32 = 0.01;

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Conv {
    /// `[kernel · in × out]`: row `dt · in + c` holds the weights of input channel `c` at
    /// tap `dt`, so that `kernel` consecutive time-major input rows are one row of `A`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

struct LstmDirection {
    /// `[512 × in]` (PyTorch layout, used transposed).
    w_ih: Vec<f32>,
    /// `[128 × 512]`: the transpose of PyTorch's `weight_hh`.
    w_hh_t: Vec<f32>,
    /// `b_ih + b_hh`.
    bias: Vec<f32>,
    inputs: usize,
}

struct Linear {
    /// `[out × in]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// The segmentation-3.0 network, ready to run.
pub struct Segmentation {
    wav_norm: Norm,
    /// `[80 × 251]`: 40 cosine then 40 sine band-pass filters.
    sinc: Vec<f32>,
    norms: [Norm; 3],
    convs: [Conv; 2],
    lstm: Vec<[LstmDirection; 2]>,
    linear: [Linear; 2],
    classifier: Linear,
}

fn tensor<'a>(w: &'a Weights, name: &str, shape: &[usize]) -> Result<&'a [f32]> {
    Ok(&w.get(name)?.expect_shape(name, shape)?.data)
}

impl Segmentation {
    /// Loads the Lightning checkpoint (`pytorch_model.bin` of pyannote/segmentation-3.0) or a
    /// plain state dict of the same model.
    pub fn load(path: &Path) -> Result<Segmentation> {
        let weights = Weights::load(path)?;
        Segmentation::from_weights(&weights)
    }

    /// Builds the network from its tensors, with or without Lightning's `state_dict.` prefix.
    pub fn from_weights(weights: &Weights) -> Result<Segmentation> {
        let lightning;
        let w = if weights.names().any(|n| n.starts_with("state_dict.")) {
            lightning = weights.with_prefix("state_dict");
            &lightning
        } else {
            weights
        };
        let norm = |name: &str, n: usize| -> Result<Norm> {
            Ok(Norm {
                weight: tensor(w, &format!("{name}.weight"), &[n])?.to_vec(),
                bias: tensor(w, &format!("{name}.bias"), &[n])?.to_vec(),
            })
        };
        let conv = |name: &str, inputs: usize| -> Result<Conv> {
            let raw = tensor(
                w,
                &format!("{name}.weight"),
                &[CONV_CHANNELS, inputs, CONV_KERNEL],
            )?;
            let mut weight = vec![0.0; CONV_KERNEL * inputs * CONV_CHANNELS];
            for o in 0..CONV_CHANNELS {
                for c in 0..inputs {
                    for dt in 0..CONV_KERNEL {
                        weight[(dt * inputs + c) * CONV_CHANNELS + o] =
                            raw[(o * inputs + c) * CONV_KERNEL + dt];
                    }
                }
            }
            Ok(Conv {
                weight,
                bias: tensor(w, &format!("{name}.bias"), &[CONV_CHANNELS])?.to_vec(),
                inputs,
            })
        };
        let linear = |name: &str, inputs: usize, outputs: usize| -> Result<Linear> {
            Ok(Linear {
                weight: tensor(w, &format!("{name}.weight"), &[outputs, inputs])?.to_vec(),
                bias: tensor(w, &format!("{name}.bias"), &[outputs])?.to_vec(),
                inputs,
                outputs,
            })
        };
        let mut lstm = Vec::with_capacity(LSTM_LAYERS);
        for layer in 0..LSTM_LAYERS {
            let inputs = if layer == 0 {
                CONV_CHANNELS
            } else {
                2 * HIDDEN
            };
            let direction = |suffix: &str| -> Result<LstmDirection> {
                let b_ih = tensor(w, &format!("lstm.bias_ih_l{layer}{suffix}"), &[GATES])?;
                let b_hh = tensor(w, &format!("lstm.bias_hh_l{layer}{suffix}"), &[GATES])?;
                Ok(LstmDirection {
                    w_ih: tensor(
                        w,
                        &format!("lstm.weight_ih_l{layer}{suffix}"),
                        &[GATES, inputs],
                    )?
                    .to_vec(),
                    w_hh_t: transpose(
                        tensor(
                            w,
                            &format!("lstm.weight_hh_l{layer}{suffix}"),
                            &[GATES, HIDDEN],
                        )?,
                        GATES,
                        HIDDEN,
                    ),
                    bias: b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect(),
                    inputs,
                })
            };
            lstm.push([direction("")?, direction("_reverse")?]);
        }
        if w.get(&format!("lstm.weight_ih_l{LSTM_LAYERS}")).is_ok() {
            return Err(Error::Weights(format!(
                "the checkpoint's LSTM has more than {LSTM_LAYERS} layers: not segmentation-3.0"
            )));
        }
        Ok(Segmentation {
            wav_norm: norm("sincnet.wav_norm1d", 1)?,
            sinc: sinc_filters(w)?,
            norms: [
                norm("sincnet.norm1d.0", SINC_FILTERS)?,
                norm("sincnet.norm1d.1", CONV_CHANNELS)?,
                norm("sincnet.norm1d.2", CONV_CHANNELS)?,
            ],
            convs: [
                conv("sincnet.conv1d.1", SINC_FILTERS)?,
                conv("sincnet.conv1d.2", CONV_CHANNELS)?,
            ],
            lstm,
            linear: [
                linear("linear.0", 2 * HIDDEN, LINEAR)?,
                linear("linear.1", LINEAR, LINEAR)?,
            ],
            classifier: linear("classifier", LINEAR, NUM_CLASSES)?,
        })
    }

    /// Runs the network on one window of 16 kHz mono samples (at most [`WINDOW_SAMPLES`]).
    ///
    /// A shorter window is zero-padded at the end to 10 s, as pyannote pads the last chunk of
    /// a file, so the result always has [`WINDOW_FRAMES`] frames; the frames past the audio
    /// see the padding. Empty, over-long or non-finite input is [`Error::Input`].
    pub fn forward(&self, samples: &[f32]) -> Result<Frames> {
        if samples.is_empty() || samples.len() > WINDOW_SAMPLES {
            return Err(Error::Input(format!(
                "segmentation takes 1 to {WINDOW_SAMPLES} samples (10 s at 16 kHz), got {}",
                samples.len()
            )));
        }
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            return Err(Error::Input(format!(
                "sample {i} is not a finite number ({})",
                samples[i]
            )));
        }
        let mut wave = vec![0.0f32; WINDOW_SAMPLES];
        wave[..samples.len()].copy_from_slice(samples);
        Ok(self.run(&mut wave))
    }

    fn run(&self, wave: &mut [f32]) -> Frames {
        // Waveform normalisation.
        instance_norm(wave, 1, &self.wav_norm);

        // SincConv: row t of the (overlapping, uncopied) im2col matrix is wave[10t .. 10t+251].
        let t1 = (wave.len() - SINC_TAPS) / SINC_STRIDE + 1;
        let mut x = vec![0.0f32; t1 * SINC_FILTERS];
        strided_matmul(
            t1,
            SINC_TAPS,
            SINC_FILTERS,
            wave,
            SINC_STRIDE,
            &self.sinc,
            (1, SINC_TAPS),
            &mut x,
            false,
        );
        for v in &mut x {
            *v = v.abs();
        }
        let mut x = max_pool3(&x, SINC_FILTERS);
        instance_norm(&mut x, SINC_FILTERS, &self.norms[0]);
        leaky_relu(&mut x);

        for (conv, norm) in self.convs.iter().zip(&self.norms[1..]) {
            let t_in = x.len() / conv.inputs;
            let t_out = t_in - CONV_KERNEL + 1;
            let mut y = Vec::with_capacity(t_out * CONV_CHANNELS);
            for _ in 0..t_out {
                y.extend_from_slice(&conv.bias);
            }
            // Row t of A is the 5 consecutive time-major input rows starting at t.
            strided_matmul(
                t_out,
                CONV_KERNEL * conv.inputs,
                CONV_CHANNELS,
                &x,
                conv.inputs,
                &conv.weight,
                (CONV_CHANNELS, 1),
                &mut y,
                true,
            );
            x = max_pool3(&y, CONV_CHANNELS);
            instance_norm(&mut x, CONV_CHANNELS, norm);
            leaky_relu(&mut x);
        }
        // BiLSTM, time-major [T × features].
        let frames = x.len() / CONV_CHANNELS;
        let mut gates = vec![0.0f32; frames * GATES];
        for layer in &self.lstm {
            let mut out = vec![0.0f32; frames * 2 * HIDDEN];
            for (d, dir) in layer.iter().enumerate() {
                matmul(
                    frames, dir.inputs, GATES, &x, &dir.w_ih, true, &mut gates, false,
                );
                for row in gates.chunks_exact_mut(GATES) {
                    for (g, b) in row.iter_mut().zip(&dir.bias) {
                        *g += b;
                    }
                }
                lstm_recurrence(&gates, &dir.w_hh_t, d == 1, &mut out[d * HIDDEN..]);
            }
            x = out;
        }

        for lin in &self.linear {
            x = linear(&x, lin);
            leaky_relu(&mut x);
        }
        let logits = linear(&x, &self.classifier);
        let log_probs = logits
            .chunks_exact(NUM_CLASSES)
            .map(|row| {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
                let mut out = [0.0f32; NUM_CLASSES];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v - lse;
                }
                out
            })
            .collect();
        Frames { log_probs }
    }
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// asteroid-filterbanks' `ParamSincFB.filters()`, from the checkpoint's parameters and
/// buffers (`low_hz_`, `band_hz_`, half Hamming window `window_`, half time axis `n_`).
fn sinc_filters(w: &Weights) -> Result<Vec<f32>> {
    const MIN_LOW_HZ: f64 = 50.0;
    const MIN_BAND_HZ: f64 = 50.0;
    const HALF: usize = SINC_TAPS / 2;
    let prefix = "sincnet.conv1d.0.filterbank";
    let half = SINC_FILTERS / 2;
    let low_hz = tensor(w, &format!("{prefix}.low_hz_"), &[half, 1])?;
    let band_hz = tensor(w, &format!("{prefix}.band_hz_"), &[half, 1])?;
    let window = tensor(w, &format!("{prefix}.window_"), &[HALF])?;
    let n = tensor(w, &format!("{prefix}.n_"), &[1, HALF])?;
    let nyquist = f64::from(SAMPLE_RATE) / 2.0;
    let mut filters = vec![0.0f32; SINC_FILTERS * SINC_TAPS];
    for f in 0..half {
        let low = MIN_LOW_HZ + f64::from(low_hz[f]).abs();
        let high = (low + MIN_BAND_HZ + f64::from(band_hz[f]).abs()).clamp(MIN_LOW_HZ, nyquist);
        let band = high - low;
        let (cos_f, sin_f) = filters.split_at_mut(half * SINC_TAPS);
        let cos_f = &mut cos_f[f * SINC_TAPS..(f + 1) * SINC_TAPS];
        let sin_f = &mut sin_f[f * SINC_TAPS..(f + 1) * SINC_TAPS];
        let scale = 1.0 / (2.0 * band);
        for k in 0..HALF {
            let nk = f64::from(n[k]);
            let win = f64::from(window[k]);
            let (fl, fh) = (low * nk, high * nk);
            let even = (fh.sin() - fl.sin()) / (nk / 2.0) * win * scale;
            let odd = (fl.cos() - fh.cos()) / (nk / 2.0) * win * scale;
            cos_f[k] = even as f32;
            cos_f[SINC_TAPS - 1 - k] = even as f32;
            sin_f[k] = odd as f32;
            sin_f[SINC_TAPS - 1 - k] = -odd as f32;
        }
        cos_f[HALF] = (2.0 * band * scale) as f32;
        sin_f[HALF] = 0.0;
    }
    Ok(filters)
}

/// `c = A · B` (`c += A · B` with `accumulate`) with `A` an `m × k` view of `a` whose row `i` starts at `a[i · row_step]`
/// (rows may overlap: a convolution's im2col without the copy) and `B` an `k × n` view of `b`
/// with element `(p, j)` at `b[p · b_strides.0 + j · b_strides.1]`.
#[allow(clippy::too_many_arguments)]
fn strided_matmul(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    row_step: usize,
    b: &[f32],
    b_strides: (usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(m > 0 && k > 0 && n > 0);
    assert!((m - 1) * row_step + k <= a.len());
    assert!((k - 1) * b_strides.0 + (n - 1) * b_strides.1 < b.len());
    assert!(c.len() >= m * n);
    // SAFETY: the asserts keep every element of the three views inside its slice; `a` and
    // `b` are only read, `c` is written through a unique borrow.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            row_step as isize,
            1,
            b.as_ptr(),
            b_strides.0 as isize,
            b_strides.1 as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// MaxPool1d(3, stride 3) over time of a time-major `[T × channels]` signal.
fn max_pool3(x: &[f32], channels: usize) -> Vec<f32> {
    let t_out = x.len() / channels / 3;
    let mut y = Vec::with_capacity(t_out * channels);
    for block in x.chunks_exact(3 * channels).take(t_out) {
        let (a, rest) = block.split_at(channels);
        let (b, c) = rest.split_at(channels);
        y.extend(a.iter().zip(b).zip(c).map(|((&a, &b), &c)| a.max(b).max(c)));
    }
    y
}

/// InstanceNorm1d (affine, biased variance, eps 1e-5) over time, per channel, of a
/// time-major `[T × channels]` signal.
fn instance_norm(x: &mut [f32], channels: usize, norm: &Norm) {
    let t = x.len() / channels;
    let mut sum = vec![0.0f64; channels];
    let mut sq = vec![0.0f64; channels];
    for row in x.chunks_exact(channels) {
        for ((s, q), &v) in sum.iter_mut().zip(&mut sq).zip(row) {
            let v = f64::from(v);
            *s += v;
            *q += v * v;
        }
    }
    let mut scale = vec![0.0f32; channels];
    let mut shift = vec![0.0f32; channels];
    for c in 0..channels {
        let mean = sum[c] / t as f64;
        let var = (sq[c] / t as f64 - mean * mean).max(0.0);
        let s = f64::from(norm.weight[c]) / (var + NORM_EPS).sqrt();
        scale[c] = s as f32;
        shift[c] = (f64::from(norm.bias[c]) - mean * s) as f32;
    }
    for row in x.chunks_exact_mut(channels) {
        for ((v, &s), &b) in row.iter_mut().zip(&scale).zip(&shift) {
            *v = *v * s + b;
        }
    }
}

fn leaky_relu(x: &mut [f32]) {
    for v in x {
        if *v < 0.0 {
            *v *= LEAKY_SLOPE;
        }
    }
}

fn linear(x: &[f32], lin: &Linear) -> Vec<f32> {
    let rows = x.len() / lin.inputs;
    let mut y = Vec::with_capacity(rows * lin.outputs);
    for _ in 0..rows {
        y.extend_from_slice(&lin.bias);
    }
    matmul(
        rows,
        lin.inputs,
        lin.outputs,
        x,
        &lin.weight,
        true,
        &mut y,
        true,
    );
    y
}

/// One LSTM direction over precomputed input gates `[T × 512]` (i, f, g, o; biases added),
/// with the recurrent weights transposed (`[128 × 512]`), writing `h_t` to
/// `out[t · 256 ..][..128]`.
fn lstm_recurrence(gates_x: &[f32], w_hh_t: &[f32], reverse: bool, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { lstm_recurrence_avx2(gates_x, w_hh_t, reverse, out) };
            return;
        }
    }
    lstm_recurrence_body::<false>(gates_x, w_hh_t, reverse, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn lstm_recurrence_avx2(gates_x: &[f32], w_hh_t: &[f32], reverse: bool, out: &mut [f32]) {
    lstm_recurrence_body::<true>(gates_x, w_hh_t, reverse, out);
}

/// Gate rows computed together: 64 accumulators stay in registers while the 128 columns of
/// the recurrent matrix stream past.
const GATE_BLOCK: usize = 64;

#[inline(always)]
fn lstm_recurrence_body<const FMA: bool>(
    gates_x: &[f32],
    w_hh_t: &[f32],
    reverse: bool,
    out: &mut [f32],
) {
    let frames = gates_x.len() / GATES;
    let w = &w_hh_t[..HIDDEN * GATES];
    let mut h = [0.0f32; HIDDEN];
    let mut c = [0.0f32; HIDDEN];
    let mut g = [0.0f32; GATES];
    for step in 0..frames {
        let t = if reverse { frames - 1 - step } else { step };
        let gx = &gates_x[t * GATES..(t + 1) * GATES];
        for (block, (gb, gxb)) in g
            .chunks_exact_mut(GATE_BLOCK)
            .zip(gx.chunks_exact(GATE_BLOCK))
            .enumerate()
        {
            let mut acc = [0.0f32; GATE_BLOCK];
            acc.copy_from_slice(gxb);
            for (j, &hj) in h.iter().enumerate() {
                let row = &w[j * GATES + block * GATE_BLOCK..][..GATE_BLOCK];
                for (a, &wv) in acc.iter_mut().zip(row) {
                    *a = if FMA {
                        hj.mul_add(wv, *a)
                    } else {
                        *a + hj * wv
                    };
                }
            }
            gb.copy_from_slice(&acc);
        }
        let (gi, rest) = g.split_at(HIDDEN);
        let (gf, rest) = rest.split_at(HIDDEN);
        let (gg, go) = rest.split_at(HIDDEN);
        for j in 0..HIDDEN {
            let i = sigmoid(gi[j]);
            let f = sigmoid(gf[j]);
            let cand = tanh(gg[j]);
            let o = sigmoid(go[j]);
            c[j] = f * c[j] + i * cand;
            h[j] = o * tanh(c[j]);
        }
        out[t * 2 * HIDDEN..t * 2 * HIDDEN + HIDDEN].copy_from_slice(&h);
    }
}

/// `e^x` to ~2e-7 relative, in operations that vectorise (no libm call).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
                                     // ln 2 in two parts (Cody-Waite): n · LN2_HI is exact for the n that occur here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 87.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC; // round(x / ln 2)
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ln 2 / 2
                                           // e^r, Taylor to degree 7 (truncation error < 1e-8 on |r| <= 0.347).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n from the integer in the low mantissa bits of `shifted`.
    let ni = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_timing_matches_pyannote() {
        assert_eq!(num_frames(WINDOW_SAMPLES), WINDOW_FRAMES);
        assert_eq!(num_frames(80_000), 293);
        assert_eq!(num_frames(991), 1);
        assert_eq!(num_frames(990), 0);
        assert_eq!(num_frames(2000), 4);
        assert!((FRAME_STEP_SECONDS - 0.016875).abs() < 1e-12);
        assert!((frame_center_seconds(0) - 0.030_968_75).abs() < 1e-9);
        assert!((frame_start_seconds(588) - 9.9225).abs() < 1e-9);
    }

    #[test]
    fn fast_exp_sigmoid_tanh_are_accurate() {
        let mut worst = (0.0f32, 0.0f32, 0.0f32);
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = (exp(x) - x.exp()).abs() / x.exp();
            let s = (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs();
            let t = (tanh(x) - x.tanh()).abs();
            worst = (worst.0.max(e), worst.1.max(s), worst.2.max(t));
            x += 0.001_37;
        }
        assert!(
            worst.0 < 5e-7 && worst.1 < 3e-7 && worst.2 < 5e-7,
            "{worst:?}"
        );
        assert!((exp(-200.0) / (-87.0f32).exp() - 1.0).abs() < 1e-6);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(200.0) == 1.0);
        assert!(tanh(200.0) == 1.0 && tanh(-200.0) == -1.0);
    }

    #[test]
    fn powerset_maps_classes_to_speakers() {
        let mut rows = Vec::new();
        for class in 0..NUM_CLASSES {
            let mut r = [-10.0f32; NUM_CLASSES];
            r[class] = 0.9f32.ln();
            rows.push(r);
        }
        let frames = Frames { log_probs: rows };
        assert_eq!(frames.argmax(), (0..7).collect::<Vec<_>>());
        let hard = powerset_to_speakers(&frames);
        assert_eq!(hard[0], [0.0, 0.0, 0.0]);
        assert_eq!(hard[2], [0.0, 1.0, 0.0]);
        assert_eq!(hard[5], [1.0, 0.0, 1.0]);
        assert_eq!(hard[6], [0.0, 1.0, 1.0]);
        let soft = powerset_to_speaker_probs(&frames);
        // Class 4 = {0, 1} at 0.9: speakers 0 and 1 at least 0.9, speaker 2 small.
        assert!(
            soft[4][0] > 0.9 && soft[4][1] > 0.9 && soft[4][2] < 0.1,
            "{:?}",
            soft[4]
        );
    }

    #[test]
    fn max_pool_and_instance_norm() {
        // Two channels, 7 frames: pooling keeps 2 blocks of 3.
        let x: Vec<f32> = (0..14).map(|i| ((i * 7) % 5) as f32).collect();
        let y = max_pool3(&x, 2);
        assert_eq!(y.len(), 4);
        assert_eq!(y[0], x[0].max(x[2]).max(x[4]));
        assert_eq!(y[3], x[7].max(x[9]).max(x[11]));
        let mut z = vec![1.0, 10.0, 3.0, 10.0];
        let norm = Norm {
            weight: vec![2.0, 1.0],
            bias: vec![0.5, 0.0],
        };
        instance_norm(&mut z, 2, &norm);
        let expect = 2.0 / (1.0 + 1e-5f32).sqrt();
        assert!((z[0] - (0.5 - expect)).abs() < 1e-6 && (z[2] - (0.5 + expect)).abs() < 1e-6);
        assert_eq!(z[1], 0.0);
    }
}
