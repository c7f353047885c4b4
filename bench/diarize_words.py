#!/usr/bin/env python3
"""Word-level speaker accuracy: the share of transcript words labelled with the true speaker.

DER scores time; a reader of a diarized transcript sees words. For each conversation of a
set written by `bench/diarize_bench.py --only-build` (NAME.wav + NAME.ref.rttm), this runs
`verbatim transcribe NAME.wav --diarize -w -f json` and gives each word the reference speaker
whose turn covers the word's middle (the nearest turn when it falls in a gap). verbatim's
labels (S1, S2, ...) are mapped to the reference speakers one to one so that the most words
match (every mapping is tried; sets hold at most six speakers). Prints per file and in all:
words, words right, accuracy, and words in a gap of the reference. The JSON stays in DIR/words
(`--reuse` scores it again without transcribing).

    python3 bench/diarize_words.py --bin target/release/verbatim --model tiny.en.bin \\
        --vad-model silero.bin DIR

Python 3 standard library only. Exit status non-zero only when something fails to run.
"""
import argparse
import glob
import itertools
import json
import os
import subprocess
import sys
import time

from word_edges import turns


def true_speaker(ref, t):
    """The reference speaker at time t, and whether t lies inside a turn (else nearest)."""
    inside = [sp for s, e, sp in ref if s <= t < e]
    if inside:
        return inside[0], True
    return min(ref, key=lambda r: min(abs(t - r[0]), abs(t - r[1])))[2], False


def best_mapping(pairs):
    """hyp label -> ref label, one to one, maximising the matched words."""
    hyps = sorted({h for h, _ in pairs})
    refs = sorted({r for _, r in pairs})
    counts = {}
    for h, r in pairs:
        counts[(h, r)] = counts.get((h, r), 0) + 1
    best, best_map = -1, {}
    # Pad the shorter side so every hyp label can also stay unmatched.
    slots = refs + [None] * max(0, len(hyps) - len(refs))
    for perm in itertools.permutations(slots, len(hyps)):
        score = sum(counts.get((h, r), 0) for h, r in zip(hyps, perm))
        if score > best:
            best, best_map = score, dict(zip(hyps, perm))
    return best_map


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="a set written by diarize_bench.py --only-build")
    ap.add_argument("--bin", required=True, help="the verbatim binary")
    ap.add_argument("--model", required=True)
    ap.add_argument("--vad-model", required=True)
    ap.add_argument("--extra", default="", help="more arguments for transcribe")
    ap.add_argument("--reuse", action="store_true",
                    help="score the JSON already in DIR/words instead of transcribing again")
    args = ap.parse_args()
    wavs = sorted(glob.glob(os.path.join(args.dir, "*.wav")))
    if not wavs:
        print("error: no .wav files in %s" % args.dir, file=sys.stderr)
        return 1
    print("| file | speakers | found | words | right | accuracy % | words in a gap |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = right_all = gaps_all = 0
    per_file = []
    out = os.path.join(args.dir, "words")
    os.makedirs(out, exist_ok=True)
    for wav in wavs:
        name = os.path.splitext(os.path.basename(wav))[0]
        ref = turns(os.path.join(args.dir, name + ".ref.rttm"))
        cmd = [args.bin, "transcribe", wav, "--model", args.model, "--vad-model",
               args.vad_model, "--diarize", "-w", "-f", "json", "-o", out, "-q"]
        cmd += args.extra.split()
        t0 = time.monotonic()
        if not (args.reuse and os.path.exists(os.path.join(out, name + ".json"))):
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if p.returncode != 0:
                print("error: %s failed: %s" % (" ".join(cmd), p.stderr.decode()[-1000:]),
                      file=sys.stderr)
                return 1
        took = time.monotonic() - t0
        doc = json.load(open(os.path.join(out, name + ".json")))
        pairs, gaps = [], 0
        for seg in doc["segments"]:
            for w in seg.get("words", []):
                if not w.get("text", "").strip():
                    continue
                sp, inside = true_speaker(ref, (w["start"] + w["end"]) / 2)
                gaps += not inside
                pairs.append((w.get("speaker"), sp))
        mapping = best_mapping(pairs)
        right = sum(1 for h, r in pairs if mapping.get(h) == r)
        n = len(pairs)
        total, right_all, gaps_all = total + n, right_all + right, gaps_all + gaps
        per_file.append(100.0 * right / n if n else 0.0)
        print("| %s | %d | %d | %d | %d | %.1f | %d |" % (
            name, len({r[2] for r in ref}), len(doc.get("speakers", [])), n, right,
            100.0 * right / n if n else 0.0, gaps), flush=True)
        print("  %s: transcribed and diarized in %.1f s" % (name, took), file=sys.stderr)
    print("| **all** | | | %d | %d | **%.1f** | %d |" % (
        total, right_all, 100.0 * right_all / total if total else 0.0, gaps_all))
    print("\nlowest file: %.1f %%" % min(per_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
