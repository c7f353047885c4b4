#!/usr/bin/env python3
"""How well can live text read at all? A bound for issue 24 §2 on the long file.

A word a live dictation commits within a second or two of its end has been read with at most
that much speech after it. This program reads the long file about as well as a live policy
waiting that look-ahead after every word could, compute ignored: each reading is `verbatim
transcribe` (the offline reader: beam 5, the VAD) on the WINDOW s of audio that end at the
commit time, prompted with the text committed before that window; the words it adds are found by
text (whisper's word times collapse at the end of a prompted clip), so the window must hold the
committed words it follows: with 10 s windows the alignment itself loses and repeats words. Two
granularities:

- `utterance`: each utterance (speech between the offline transcript's pauses of 0.4 s or
  more; one longer than WINDOW - 10 s split at its longest pause) is committed once, from the
  window ending LOOKAHEAD s after its last word. The words before its end also had the rest of
  the utterance after them, so this is generous to all but the last words.
- `word`: every STEP s at t, the words the window ending at t - LOOKAHEAD holds (less its last,
  maybe cut, word) are committed from the window ending at t: each word had at least LOOKAHEAD
  s of speech after it, as a live commit LOOKAHEAD to LOOKAHEAD + STEP s after the word's end.

The peer, measured in the same run: `verbatim transcribe` of each phase, the offline transcript
the issue compares with. The file is read at step phases (k * 0.07 s of silence before it), as
docs/benchmarks.md measures live text. Per phase and over all, WER by `../shared/tools/wer.py`.

Run from the repository root after `cargo build --release`:

    python3 bench/live_bound.py --mode word --lookahead 1 --step 1 --phases 0,1,2,3
    python3 bench/live_bound.py --mode utterance --lookahead 0
"""
import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared")
LONG = "long_ls_2609_3080_concat"
PAUSE = 0.4


def norm(word):
    return re.sub(r"[^a-z0-9']", "", word.lower())


class Reader:
    def __init__(self, verbatim, model, beam):
        self.verbatim, self.model, self.beam, self.calls = verbatim, model, beam, 0

    def words(self, path, start=None, end=None, prompt=""):
        """(start, end, text) of each word `verbatim transcribe` reads in [start, end]."""
        cmd = [self.verbatim, "transcribe", path, "--model", self.model, "-w", "--json",
               "--color", "never"]
        if start is not None:
            cmd += ["--offset", f"{start:.2f}", "--duration", f"{end - start:.2f}",
                    "--beam-size", str(self.beam)]
        if prompt:
            cmd += ["--prompt", prompt]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"live_bound: {' '.join(cmd)} failed: {out.stderr.strip()}")
        self.calls += 1
        words = []
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                for w in json.loads(line).get("words", []):
                    if w["text"].strip():
                        words.append((w["start"], w["end"], w["text"].strip()))
        return words


def past_match(a, b, keep=lambda x: x.size):
    """Where `b` goes on after the words of `a`: after the last matching run of the two (of those
    `keep` accepts), with the words of `a` after that run taken as read one for one in `b`."""
    blocks = [x for x in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
              if keep(x)]
    if not blocks:
        return None
    x = blocks[-1]
    return min(len(b), x.b + x.size + (len(a) - x.a - x.size))


def after_committed(hyp, committed):
    """The words of `hyp` after the committed words it reads again, found by text in the last 60
    committed words: a run of two matching words, or one at the very end."""
    tail = [norm(c[2]) for c in committed[-60:]]
    if not tail:
        return hyp
    at = past_match(tail, [norm(w[2]) for w in hyp],
                    lambda x: x.size >= 2 or (x.size and x.a + x.size >= len(tail) - 1))
    return hyp if at is None else hyp[at:]


def covered(shorter, longer):
    """How many words of `longer` the reading `shorter` (the same speech, cut earlier) holds."""
    at = past_match([norm(w[2]) for w in shorter], [norm(w[2]) for w in longer])
    return min(len(shorter), len(longer)) if at is None else at


def prompt_before(committed, start):
    return " ".join(w[2] for w in committed if w[1] <= start)[-200:]


def duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", path], capture_output=True, text=True, check=True)
    return float(out.stdout)


def utterances(offline, longest):
    """(first, last) word of each utterance: words followed by a pause of PAUSE s end one, and
    one too long for a window is split at its longest pause, as a live dictation cuts."""
    bounds = [i for i in range(len(offline) - 1) if offline[i + 1][0] - offline[i][1] >= PAUSE]
    firsts = [0] + [i + 1 for i in bounds]
    pending = list(zip(firsts, bounds + [len(offline) - 1]))
    done = []
    while pending:
        first, last = pending.pop()
        if offline[last][1] - offline[first][0] > longest and last > first:
            i = max(range(first, last), key=lambda i: offline[i + 1][0] - offline[i][1])
            pending += [(first, i), (i + 1, last)]
            continue
        done.append((first, last))
    return sorted(done)


def by_utterance(reader, path, offline, lookahead, window):
    dur = duration(path)
    done = utterances(offline, window - 10)
    ends = [offline[last][1] for _, last in done]
    cuts = [0.0] + [(offline[last][1] + offline[last + 1][0]) / 2 for _, last in done[:-1]]
    cuts.append(dur + 1)
    committed = []
    for k, end in enumerate(ends):
        t = min(dur, end + lookahead)
        a = max(0.0, t - window)
        fresh = after_committed(reader.words(path, a, t, prompt_before(committed, a)), committed)
        if lookahead > 0:
            t0 = min(dur, cuts[k + 1])
            a0 = max(0.0, t0 - window)
            upto = after_committed(reader.words(path, a0, t0, prompt_before(committed, a0)),
                                   committed)
            fresh = fresh[:covered(upto, fresh)]
        committed += [w + (t,) for w in fresh]
    return committed


def by_word(reader, path, lookahead, step, width):
    dur = duration(path)
    read = {}

    def window(t, committed):
        # The window cut `lookahead` earlier is the one read a step ago when the two are equal.
        a = max(0.0, t - width)
        key = (round(a, 2), round(t, 2))
        if key not in read:
            read[key] = reader.words(path, a, t, prompt_before(committed, a))
        return after_committed(read[key], committed)

    committed = []
    t = step + lookahead
    while True:
        final = t >= dur
        t = min(t, dur)
        fresh = window(t, committed)
        if not final:
            upto = window(t - lookahead, committed)
            fresh = fresh[:max(0, min(len(upto) - 1, covered(upto, fresh)))]
        committed += [w + (t,) for w in fresh]
        if final:
            return committed
        t += step


def heard(committed, offline):
    """Audio heard when each word was committed minus the end of the same word in the offline
    transcript (words matched by text), as `listen_bench` dates live commits."""
    a = [norm(w[2]) for w in committed]
    b = [norm(w[2]) for w in offline]
    late = []
    for x in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        late += [committed[x.a + i][3] - offline[x.b + i][1] for i in range(x.size)]
    return late


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def wer(refdir, hypdir):
    out = subprocess.run([sys.executable, os.path.join(SHARED, "tools", "wer.py"), "--refdir",
                          refdir, "--hypdir", hypdir], capture_output=True, text=True, check=True)
    per = {}
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 6 and (f[0].startswith(LONG[:4]) or f[0] == "TOTAL"):
            per[f[0]] = float(f[5])
    return per


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["utterance", "word"], required=True)
    p.add_argument("--lookahead", type=float, required=True, help="seconds of speech after a word")
    p.add_argument("--step", type=float, default=1.0, help="word mode: seconds between commits")
    p.add_argument("--window", type=float, default=30.0, help="seconds of audio each reading ends")
    p.add_argument("--beam", type=int, default=5, help="beam size of the readings (1: greedy)")
    p.add_argument("--phases", default="0,1,2,3,4,5,6,7", help="k: k*0.07 s of silence first")
    p.add_argument("--model", default=os.path.join(SHARED, "models", "ggml-tiny.en.bin"))
    p.add_argument("--verbatim", default=os.path.join(ROOT, "target", "release", "verbatim"))
    p.add_argument("--out", help="directory for the texts (default: a temporary one)")
    args = p.parse_args()
    reader = Reader(args.verbatim, args.model, args.beam)
    out = args.out or tempfile.mkdtemp(prefix="live_bound.")
    dirs = {d: os.path.join(out, d) for d in ("ref", "offline", "bound")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    ref = open(os.path.join(SHARED, "audio", LONG + ".txt")).read()
    late = {"TOTAL": []}
    for k in [int(k) for k in args.phases.split(",")]:
        name = f"long_s{k}"
        path = os.path.join(out, name + ".flac")
        if not os.path.exists(path):
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-t", f"{0.07 * k:.2f}",
                            "-i", "anullsrc=r=16000:cl=mono", "-i",
                            os.path.join(SHARED, "audio", LONG + ".flac"), "-filter_complex",
                            "[0][1]concat=n=2:v=0:a=1", "-ar", "16000", "-ac", "1", path]
                           if k else ["ffmpeg", "-v", "error", "-y", "-i",
                                      os.path.join(SHARED, "audio", LONG + ".flac"), "-ar",
                                      "16000", "-ac", "1", path], check=True)
        open(os.path.join(dirs["ref"], name + ".txt"), "w").write(ref)
        offline = reader.words(path)
        open(os.path.join(dirs["offline"], name + ".txt"), "w").write(
            " ".join(w[2] for w in offline) + "\n")
        if args.mode == "utterance":
            bound = by_utterance(reader, path, offline, args.lookahead, args.window)
        else:
            bound = by_word(reader, path, args.lookahead, args.step, args.window)
        open(os.path.join(dirs["bound"], name + ".txt"), "w").write(
            " ".join(w[2] for w in bound) + "\n")
        late[name] = heard(bound, offline)
        late["TOTAL"] += late[name]
        print(f"{name}: {reader.calls} readings so far", file=sys.stderr, flush=True)
    off, bnd = wer(dirs["ref"], dirs["offline"]), wer(dirs["ref"], dirs["bound"])
    label = (f"{args.mode}, look-ahead {args.lookahead:g} s"
             + (f", step {args.step:g} s" if args.mode == "word" else "")
             + f", {args.window:g} s window, beam {args.beam}")
    print(f"| phase | offline `transcribe` | bound ({label}) | difference "
          "| heard at commit p50 / p95 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in sorted(off, key=lambda n: (n == "TOTAL", n)):
        print(f"| {name} | {off[name]:.2f} % | {bnd[name]:.2f} % | {bnd[name] - off[name]:+.2f} "
              f"| {percentile(late[name], 0.5):.2f} / {percentile(late[name], 0.95):.2f} s |")
    print(f"texts in {out}")


if __name__ == "__main__":
    main()
