#!/usr/bin/env python3
"""Word-boundary error: how far verbatim's word times sit from known speech edges.

For each reference turn of an RTTM (a stretch of one speaker's speech with known edges, such as
the synthetic conversations of tests/diarize.rs or bench/diarize_bench.py), the words whose
middle falls inside the turn (widened by --slack seconds) are found in verbatim's JSON
(`transcribe -w -f json`); the first word's start is compared with the turn's start and the
last word's end with the turn's end. Prints per file and overall the median and mean absolute
error and the mean signed error (positive: the word time is later than the edge).

    python3 bench/word_edges.py --bin target/release/verbatim DIR   # DIR holds NAME.wav + NAME.ref.rttm
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def turns(path):
    out = []
    for line in open(path):
        f = line.split()
        if f and f[0] == "SPEAKER":
            out.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return sorted(out)


def words_of(binary, wav, model, vad, outdir):
    subprocess.run(
        [binary, "transcribe", wav, "--model", model, "--vad-model", vad, "-w", "-f", "json",
         "-o", outdir, "-q"],
        check=True, stdout=subprocess.DEVNULL)
    stem = os.path.splitext(os.path.basename(wav))[0]
    doc = json.load(open(os.path.join(outdir, stem + ".json")))
    return [(w["start"], w["end"]) for s in doc["segments"] for w in s.get("words", [])]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--bin", default="target/release/verbatim")
    shared = os.environ.get("VERBATIM_SHARED", os.path.join(os.path.dirname(__file__), "../../shared"))
    ap.add_argument("--model", default=os.path.join(shared, "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=os.path.join(shared, "models/ggml-silero-vad.bin"))
    ap.add_argument("--slack", type=float, default=0.3)
    a = ap.parse_args()
    names = sorted(f[:-4] for f in os.listdir(a.dir) if f.endswith(".wav")
                   and os.path.exists(os.path.join(a.dir, f[:-4] + ".ref.rttm")))
    if not names:
        sys.exit(f"no NAME.wav with NAME.ref.rttm in {a.dir}")
    all_s, all_e = [], []
    print(f"{'file':<24} {'turns':>5} {'start |err| med/mean':>22} {'start bias':>10} {'end |err| med/mean':>20} {'end bias':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ref = turns(os.path.join(a.dir, name + ".ref.rttm"))
            words = words_of(a.bin, os.path.join(a.dir, name + ".wav"), a.model, a.vad_model, tmp)
            es, ee = [], []
            for (s, e, _) in ref:
                inside = [w for w in words if s - a.slack <= (w[0] + w[1]) / 2 <= e + a.slack]
                if not inside:
                    continue
                es.append(inside[0][0] - s)
                ee.append(inside[-1][1] - e)
            all_s += es
            all_e += ee
            print(f"{name:<24} {len(es):>5} {statistics.median(map(abs, es)):>10.3f}/{statistics.mean(map(abs, es)):<11.3f} {statistics.mean(es):>+10.3f} "
                  f"{statistics.median(map(abs, ee)):>9.3f}/{statistics.mean(map(abs, ee)):<10.3f} {statistics.mean(ee):>+9.3f}")
    print(f"{'all':<24} {len(all_s):>5} {statistics.median(map(abs, all_s)):>10.3f}/{statistics.mean(map(abs, all_s)):<11.3f} {statistics.mean(all_s):>+10.3f} "
          f"{statistics.median(map(abs, all_e)):>9.3f}/{statistics.mean(map(abs, all_e)):<10.3f} {statistics.mean(all_e):>+9.3f}")


if __name__ == "__main__":
    main()
