#!/usr/bin/env python3
"""Speaker-diarization benchmark on synthetic conversations (not a test: it prints figures).

Builds a seeded set of conversations from the LibriSpeech utterances in the shared audio
folder (6 speakers: 1089, 1221, 1688, 367, 2609, 3080), each with 2 to 5 speakers taking
alternating turns (one utterance or a part of one, 1-12 s), short gaps and some overlap,
and writes each as a 16 kHz mono 16-bit WAV plus its ground-truth RTTM. Then runs the
`diarize` example (no speaker-count hint; with `--hint` also `--speakers N`) and the `der`
example on each and prints a per-file table and the aggregate (total DER = sum of errors /
sum of scored reference speech, the share of files with the right speaker count, median
x real time). `--sweep T1,T2,...` runs the whole set once per clustering threshold and
prints one aggregate line per threshold.

Python 3 standard library only, plus the `ffmpeg` command line (decoding FLAC, resampling,
downmixing). See bench/README.md ("Diarization benchmark").

Exit status: non-zero only when something fails to run (a missing input, a crashing
program, unreadable output), never because of the figures.
"""

import argparse
import array
import json
import math
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
import wave

RATE = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))

# Speaker -> utterance files of the shared audio folder (besides the long 2609/3080 file).
SOURCES = {
    "1089": ["1089-134686-0002.wav"],
    "1221": ["1221-135766-0002.wav", "1221-135766-0001_48k_stereo.wav"],
    "1688": ["1688-142285-%04d.flac" % i for i in range(10)],
    "367": ["367-130732-%04d.flac" % i for i in range(10)],
}
LONG = "long_ls_2609_3080_concat.flac"
LONG_SEGMENTS = "long_ls_2609_3080_concat.segments.tsv"
SPEAKERS = ["1089", "1221", "1688", "367", "2609", "3080"]


class BenchError(Exception):
    """A failure to run (as opposed to a bad figure)."""


# ---------------------------------------------------------------------------------------
# Audio in and out


def decode(path):
    """The file as 16 kHz mono samples (array of int16), through ffmpeg."""
    if not os.path.exists(path):
        raise BenchError("missing audio file %s" % path)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-ac", "1", "-ar", str(RATE),
           "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    except FileNotFoundError:
        raise BenchError("ffmpeg not found on PATH")
    except subprocess.CalledProcessError as e:
        raise BenchError("ffmpeg failed on %s: %s" % (path, e.stderr.decode(errors="replace")))
    a = array.array("h")
    a.frombytes(out.stdout)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def write_wav(path, samples):
    """Writes int16 samples (array 'h') as 16 kHz mono 16-bit PCM WAV."""
    data = array.array("h", samples)
    if sys.byteorder != "little":
        data.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data.tobytes())


FRAME = RATE // 100  # 10 ms energy frames


def frame_db(samples):
    """Per 10 ms frame, the RMS level in dB (re full scale)."""
    out = []
    for i in range(0, len(samples), FRAME):
        chunk = samples[i:i + FRAME]
        if not chunk:
            break
        e = sum(x * x for x in chunk) / len(chunk)
        out.append(10.0 * math.log10(e / (32768.0 * 32768.0) + 1e-12))
    return out


def voiced_mask(db, floor, bridge=3, min_run=10):
    """Per 10 ms frame, whether it is speech: at or over `floor`, dips of up to `bridge`
    frames bridged, and bursts shorter than `min_run` frames (clicks, breaths; LibriSpeech
    test-other has many) not counted."""
    v = [d >= floor for d in db]
    n = len(v)
    i = 0
    while i < n:  # bridge short dips between voiced frames
        if not v[i]:
            j = i
            while j < n and not v[j]:
                j += 1
            if 0 < i and j < n and j - i <= bridge:
                for k in range(i, j):
                    v[k] = True
            i = j
        else:
            i += 1
    i = 0
    while i < n:  # drop short bursts
        if v[i]:
            j = i
            while j < n and v[j]:
                j += 1
            if j - i < min_run:
                for k in range(i, j):
                    v[k] = False
            i = j
        else:
            i += 1
    return v


class Utterance:
    """One LibriSpeech utterance, trimmed of its silent margins."""

    def __init__(self, speaker, name, samples, floor_db, noise_margin_db):
        self.speaker = speaker
        self.name = name
        db = frame_db(samples)
        self.peak_db = max(db) if db else -120.0
        # Speech floor: floor_db under the peak, but at least noise_margin_db over the
        # recording's own noise (5th percentile of the non-silent frames): LibriSpeech's
        # background noise is often only 25-30 dB under the peak, so a pure -40 dB floor
        # would leave ~0.5 s of noise at each end marked as speech.
        live = sorted(d for d in db if d > -100.0)
        self.noise_db = live[len(live) // 20] if live else -120.0
        self.floor = self.peak_db + floor_db
        if noise_margin_db > 0:
            self.floor = max(self.floor, min(self.noise_db + noise_margin_db, self.peak_db - 6.0))
        mask = voiced_mask(db, self.floor)
        voiced = [i for i, v in enumerate(mask) if v]
        if not voiced:
            raise BenchError("utterance %s has no frame above %.0f dB of its peak" %
                             (name, floor_db))
        first, last = voiced[0], voiced[-1]
        self.samples = samples[first * FRAME:(last + 1) * FRAME]
        self.db = db[first:last + 1]  # per 10 ms frame of self.samples
        self.voiced = mask[first:last + 1]
        self.trimmed_s = (len(samples) - len(self.samples)) / RATE

    @property
    def seconds(self):
        return len(self.samples) / RATE


def load_utterances(shared, floor_db, noise_margin_db):
    """Speaker -> list of trimmed utterances."""
    audio = os.path.join(shared, "audio")
    if not os.path.isdir(audio):
        audio = shared  # VERBATIM_SHARED may point at the audio folder itself
    utts = {s: [] for s in SPEAKERS}
    for spk, files in SOURCES.items():
        for f in files:
            utts[spk].append(Utterance(spk, f, decode(os.path.join(audio, f)), floor_db,
                                       noise_margin_db))
    long_samples = decode(os.path.join(audio, LONG))
    seg_path = os.path.join(audio, LONG_SEGMENTS)
    if not os.path.exists(seg_path):
        raise BenchError("missing %s" % seg_path)
    with open(seg_path) as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0] == "start_s":
                continue
            start, end, utt = float(fields[0]), float(fields[1]), fields[2]
            spk = utt.split("-")[0]
            if spk not in utts:
                raise BenchError("unexpected speaker %s in %s" % (spk, seg_path))
            piece = long_samples[int(round(start * RATE)):int(round(end * RATE))]
            utts[spk].append(Utterance(spk, utt, piece, floor_db, noise_margin_db))
    return utts


# ---------------------------------------------------------------------------------------
# Conversations


class Cursor:
    """Where a speaker's next turn comes from: an utterance and an offset in it (10 ms
    frames). Utterances are used in a seeded order; when they run out they are reused."""

    def __init__(self, utts, rng):
        self.utts = list(utts)
        rng.shuffle(self.utts)
        self.i = 0
        self.frame = 0
        self.reused = False

    def fresh_seconds(self):
        if self.reused:
            return 0.0
        rest = sum(u.seconds for u in self.utts[self.i:])
        return rest - self.frame * FRAME / RATE

    def take(self, target_s, rng, min_s, max_s, split_frames=0):
        """The next piece (samples, utterance name): the rest of the current utterance if
        it is not much longer than target_s, else a part ending at the quietest 10 ms frame
        near target_s. The piece's ends are trimmed to the utterance's speech floor."""
        u = self.utts[self.i]
        rest_frames = len(u.db) - self.frame
        target = int(target_s * 100)
        lo_limit, hi_limit = int(min_s * 100), int(max_s * 100)
        if rest_frames <= min(hi_limit, target + 100):
            n = rest_frames  # the whole rest of the utterance
        else:
            # Cut at the quietest frame within +-1.5 s of the target, keeping both parts
            # at least min_s long and the piece at most max_s.
            lo = max(lo_limit, target - 150)
            hi = min(hi_limit, target + 150, rest_frames - lo_limit)
            if hi < lo:
                n = min(rest_frames, hi_limit)
            else:
                n = min(range(lo, hi + 1),
                        key=lambda k: (u.db[self.frame + k - 1], abs(k - target)))
        a, b = self.frame, self.frame + n
        # Trim the piece's ends (a cut inside a word leaves nothing to trim).
        while a < b and not u.voiced[a]:
            a += 1
        while b > a and not u.voiced[b - 1]:
            b -= 1
        piece = u.samples[a * FRAME:b * FRAME]
        # The piece's speech, as (start, end) seconds from its start: one stretch, or with
        # --split-pauses split at pauses at least that long.
        speech = [(0.0, (b - a) / 100.0)]
        if split_frames and b > a:
            speech, i, run0 = [], a, a
            while i < b:
                if not u.voiced[i]:
                    j = i
                    while j < b and not u.voiced[j]:
                        j += 1
                    if j - i >= split_frames:
                        speech.append(((run0 - a) / 100.0, (i - a) / 100.0))
                        run0 = j
                    i = j
                else:
                    i += 1
            speech.append(((run0 - a) / 100.0, (b - a) / 100.0))
        self.frame += n
        if self.frame >= len(u.db):
            self.frame = 0
            self.i += 1
            if self.i >= len(self.utts):
                self.i = 0
                self.reused = True
        return piece, u.name, speech


def make_conversation(index, utts, rng, args):
    """A conversation: (name, samples (int16 array), turns [(start, end, speaker, utt)],
    number of speakers, number of reused-audio turns)."""
    k = [2, 3, 4, 5][index % 4]
    target_s = rng.uniform(args.min_seconds, args.max_seconds)
    stock = {s: sum(u.seconds for u in utts[s]) for s in SPEAKERS}
    # Choose speakers whose audio covers the conversation without reuse, if possible.
    for _ in range(100):
        chosen = rng.sample(SPEAKERS, k)
        # Enough audio in all, and no one too scarce for their share of the turns.
        if sum(stock[s] for s in chosen) >= 1.15 * target_s and \
                all(stock[s] >= (0.4 if k == 2 else 1.0 / (3 * k)) * target_s for s in chosen):
            break
    cursors = {s: Cursor(utts[s], rng) for s in chosen}
    order = list(chosen)
    rng.shuffle(order)  # everyone speaks once first, so the true count is k
    turns = []  # (start, end, speaker, utt, [(start, end) of its speech])
    pieces = []  # (start sample, samples)
    t = args.lead
    prev = None
    reused = 0
    n_turn = 0
    while True:
        if n_turn < len(order):
            spk = order[n_turn]
        else:
            cands = [s for s in chosen if s != prev]
            # Weighted by fresh audio left (scarce speakers speak rarely); a floor keeps
            # everyone in the conversation.
            weights = [max(cursors[s].fresh_seconds(), 0.0) + 3.0 for s in cands]
            spk = rng.choices(cands, weights)[0]
        if cursors[spk].reused:
            reused += 1
        # Scarce speakers (little fresh audio left) get short turns.
        longest = min(args.max_turn, max(args.min_turn + 1.0, cursors[spk].fresh_seconds() / 2))
        length = rng.uniform(args.min_turn, longest)
        piece, uname, speech = cursors[spk].take(length, rng, args.min_turn, args.max_turn,
                                                 int(round(args.split_pauses * 100)))
        if len(piece) < FRAME:
            continue
        dur = len(piece) / RATE
        if turns:
            p_start, p_end = turns[-1][0], turns[-1][1]
            # The turn before the previous one must be over (at most two talk at once).
            before = turns[-2][1] if len(turns) >= 2 else 0.0
            start = None
            if rng.random() < args.overlap:
                ov = rng.uniform(0.3, 1.5)
                ov = min(ov, p_end - p_start - 0.3, dur - 0.3)
                if ov >= 0.3 and p_end - ov >= before:
                    start = p_end - ov
            if start is None:
                start = p_end + rng.uniform(args.min_gap, args.max_gap)
        else:
            start = t
        s0 = int(round(start * RATE))
        start = s0 / RATE
        end = start + dur
        turns.append((start, end, spk, uname, [(start + x, start + y) for x, y in speech]))
        pieces.append((s0, piece))
        prev = spk
        n_turn += 1
        if end >= target_s and n_turn >= len(order):
            break
        if n_turn > 1000:
            raise BenchError("conversation %d does not end" % index)
    total = int(round((turns[-1][1] + args.lead) * RATE)) if turns else 0
    total = max(total, max(s0 + len(p) for s0, p in pieces))
    mix = [0] * total
    for s0, p in pieces:
        for i, v in enumerate(p):
            mix[s0 + i] += v
    peak = max(abs(v) for v in mix) if mix else 0
    scale = min(1.0, 32000.0 / peak) if peak else 1.0
    if scale < 1.0:
        mix = [int(round(v * scale)) for v in mix]
    samples = array.array("h", mix)
    name = "conv%02d_%dspk" % (index, k)
    return name, samples, turns, k, reused


def rttm_lines(file_id, turns):
    return "".join("SPEAKER %s 1 %.3f %.3f <NA> <NA> %s <NA> <NA>\n" %
                   (file_id, s, e - s, t[2]) for t in turns for s, e in t[4])


def build_set(args):
    utts = load_utterances(args.shared, args.floor_db, args.noise_margin_db)
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    convs = []
    for i in range(args.count):
        name, samples, turns, k, reused = make_conversation(i, utts, rng, args)
        wav = os.path.join(args.out, name + ".wav")
        ref = os.path.join(args.out, name + ".ref.rttm")
        write_wav(wav, samples)
        with open(ref, "w") as fh:
            fh.write(rttm_lines(name, turns))
        overlaps = sum(1 for a, b in zip(turns, turns[1:]) if b[0] < a[1])
        convs.append({
            "name": name, "wav": wav, "ref": ref, "speakers": k,
            "seconds": len(samples) / RATE, "turns": len(turns), "overlaps": overlaps,
            "reused_turns": reused,
            "speech_s": sum(e - s for t in turns for s, e in t[4]),
            "who": sorted({t[2] for t in turns}, key=SPEAKERS.index),
        })
    with open(os.path.join(args.out, "set.json"), "w") as fh:
        json.dump({"seed": args.seed, "conversations": convs,
                   "trim": {u.name: round(u.trimmed_s, 3) for v in utts.values() for u in v}},
                  fh, indent=1)
    return convs


# ---------------------------------------------------------------------------------------
# Running and scoring

TIMING = re.compile(r"([\d.]+) s of audio: models loaded in ([\d.]+) s, diarized in ([\d.]+) s")


def run_cmd(cmd, what):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        raise BenchError("%s: cannot run %s: %s" % (what, cmd[0], e))
    if p.returncode != 0:
        raise BenchError("%s failed (exit %d): %s\n%s" % (
            what, p.returncode, " ".join(shlex.quote(c) for c in cmd),
            p.stderr.decode(errors="replace")[-2000:]))
    return p.stdout.decode(), p.stderr.decode(errors="replace")


def speakers_in(rttm_text):
    return len({line.split()[7] for line in rttm_text.splitlines()
                if line.startswith("SPEAKER") and len(line.split()) >= 8})


def score(args, ref, hyp):
    out, _ = run_cmd([args.der, ref, hyp, "--collar", str(args.collar)], "der")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError("der printed no JSON: %r" % out[-500:])


def run_verbatim(args, conv, threshold, hint, tag):
    """Runs diarize (args.repeat times) and der on one conversation: a result row."""
    cmd = [args.diarize, conv["wav"]]
    if hint:
        cmd += ["--speakers", str(conv["speakers"])]
    if threshold is not None:
        cmd += ["--threshold", str(threshold)]
    if args.step is not None:
        cmd += ["--step", str(args.step)]
    times, loads, hyp_text = [], [], None
    for _ in range(args.repeat):
        out, err = run_cmd(cmd, "diarize on %s" % conv["name"])
        m = TIMING.search(err)
        if not m:
            raise BenchError("diarize printed no timing line for %s: %r" % (conv["name"], err[-500:]))
        loads.append(float(m.group(2)))
        times.append(float(m.group(3)))
        if hyp_text is None:
            hyp_text = out
        elif out != hyp_text:
            print("note: %s: diarize output differs between repeats" % conv["name"], file=sys.stderr)
    hyp = os.path.join(args.out, "%s.%s.rttm" % (conv["name"], tag))
    with open(hyp, "w") as fh:
        fh.write(hyp_text)
    return row(args, conv, hyp, hyp_text, statistics.median(times), statistics.median(loads))


def run_reference(args, conv, hint):
    """The reference diarizer (--reference-cmd): a shell command template that prints RTTM
    on stdout, with {wav}, {speakers} (the true count when --hint, else empty) and {out}
    substituted. This is the place for pyannote.audio (needs gated models, not run here):
    e.g. --reference-cmd 'python3 bench/pyannote_rttm.py {wav}'. Its time is the wall
    time of the whole command (model load included)."""
    cmd = args.reference_cmd.format(wav=shlex.quote(conv["wav"]),
                                    speakers=conv["speakers"] if hint else "",
                                    out=shlex.quote(args.out))
    t0 = time.monotonic()
    out, _ = run_cmd(["bash", "-c", cmd], "reference diarizer on %s" % conv["name"])
    took = time.monotonic() - t0
    # Score under the conversation's own file id whatever id the command wrote.
    lines = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            f[1] = conv["name"]
            lines.append(" ".join(f) + "\n")
    text = "".join(lines)
    hyp = os.path.join(args.out, "%s.reference.rttm" % conv["name"])
    with open(hyp, "w") as fh:
        fh.write(text)
    return row(args, conv, hyp, text, took, 0.0)


def row(args, conv, hyp, hyp_text, took, load):
    rep = score(args, conv["ref"], hyp)
    return {
        "file": conv["name"], "true": conv["speakers"], "found": speakers_in(hyp_text),
        "der": rep["der"], "missed": rep["missed"], "false_alarm": rep["false_alarm"],
        "confusion": rep["confusion"], "total": rep["total"], "mapping": rep.get("mapping"),
        "audio_s": conv["seconds"], "diarize_s": took, "load_s": load,
        "xrt": conv["seconds"] / took if took > 0 else float("inf"),
    }


def pct(x, total):
    return 100.0 * x / total if total > 0 else 0.0


def aggregate(rows):
    total = sum(r["total"] for r in rows)
    err = sum(r["missed"] + r["false_alarm"] + r["confusion"] for r in rows)
    return {
        "files": len(rows),
        "der": pct(err, total),
        "missed": pct(sum(r["missed"] for r in rows), total),
        "false_alarm": pct(sum(r["false_alarm"] for r in rows), total),
        "confusion": pct(sum(r["confusion"] for r in rows), total),
        "right_count": sum(1 for r in rows if r["found"] == r["true"]) / len(rows) if rows else 0,
        "over": sum(1 for r in rows if r["found"] > r["true"]),
        "under": sum(1 for r in rows if r["found"] < r["true"]),
        "median_xrt": statistics.median(r["xrt"] for r in rows) if rows else 0,
        "audio_s": sum(r["audio_s"] for r in rows),
        "diarize_s": sum(r["diarize_s"] for r in rows),
    }


def print_table(title, rows):
    print("\n## %s\n" % title)
    print("| file | true spk | found spk | DER % | missed % | FA % | confusion % | audio s | diarize s | x real time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f |" % (
            r["file"], r["true"], r["found"], 100 * r["der"], pct(r["missed"], r["total"]),
            pct(r["false_alarm"], r["total"]), pct(r["confusion"], r["total"]),
            r["audio_s"], r["diarize_s"], r["xrt"]))
    a = aggregate(rows)
    print("| **total** | | | **%.1f** | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f (median) |" % (
        a["der"], a["missed"], a["false_alarm"], a["confusion"], a["audio_s"],
        a["diarize_s"], a["median_xrt"]))
    print("\nright speaker count: %d/%d files (%.0f %%; %d over, %d under); "
          "median x real time %.0f\n" % (
              round(a["right_count"] * a["files"]), a["files"], 100 * a["right_count"],
              a["over"], a["under"], a["median_xrt"]))


def sweep_line(label, rows):
    a = aggregate(rows)
    return "| %s | %.1f | %.1f | %.1f | %.1f | %d/%d | %d | %d | %.0f |" % (
        label, a["der"], a["missed"], a["false_alarm"], a["confusion"],
        round(a["right_count"] * a["files"]), a["files"], a["over"], a["under"], a["median_xrt"])


SWEEP_HEAD = ("| threshold | DER % | missed % | FA % | confusion % | right count | over | under "
              "| median x RT |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "diarize"))
    ap.add_argument("--shared", default=os.environ.get("VERBATIM_SHARED", "/work/shared"),
                    help="shared folder holding audio/ (default $VERBATIM_SHARED or /work/shared)")
    ap.add_argument("--diarize", default=os.path.join(DEFAULT_TARGET, "release", "examples", "diarize"))
    ap.add_argument("--der", default=os.path.join(DEFAULT_TARGET, "release", "examples", "der"))
    ap.add_argument("--threshold", type=float, default=None,
                    help="clustering threshold passed to diarize (default: its own)")
    ap.add_argument("--step", type=int, default=None, help="window step in frames, passed through")
    ap.add_argument("--sweep", default=None, help="T1,T2,...: one aggregate line per threshold")
    ap.add_argument("--hint", action="store_true",
                    help="also run with --speakers N (the true count)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per file; the median time is kept")
    ap.add_argument("--collar", type=float, default=0.25)
    ap.add_argument("--reference-cmd", default=None,
                    help="a reference diarizer (e.g. pyannote.audio) as a shell command "
                         "template printing RTTM on stdout: {wav}, {speakers}, {out}")
    ap.add_argument("--only-build", action="store_true", help="write the set and stop")
    ap.add_argument("--json", default=None, help="write all rows to this JSON file")
    # Conversation shape.
    ap.add_argument("--min-seconds", type=float, default=60.0)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--min-turn", type=float, default=1.0)
    ap.add_argument("--max-turn", type=float, default=12.0)
    ap.add_argument("--min-gap", type=float, default=0.2)
    ap.add_argument("--max-gap", type=float, default=1.0)
    ap.add_argument("--overlap", type=float, default=0.1,
                    help="share of turn changes that overlap the previous turn by 0.3-1.5 s")
    ap.add_argument("--lead", type=float, default=0.5, help="silence before the first and after the last turn")
    ap.add_argument("--floor-db", type=float, default=-40.0,
                    help="utterance ends below this (dB re the utterance's peak 10 ms frame) are trimmed")
    ap.add_argument("--split-pauses", type=float, default=0.0,
                    help="split a reference turn at pauses inside it at least this long "
                         "(seconds; 0: one reference turn per placed piece)")
    ap.add_argument("--noise-margin-db", type=float, default=10.0,
                    help="...and below the utterance's noise floor plus this (0: off)")
    args = ap.parse_args()
    if args.repeat < 1 or args.count < 1:
        ap.error("--repeat and --count must be at least 1")

    try:
        t0 = time.monotonic()
        convs = build_set(args)
        print("# diarization benchmark: %d conversations (seed %d) in %s, built in %.1f s" % (
            len(convs), args.seed, args.out, time.monotonic() - t0))
        print("# %s" % " ".join(shlex.quote(a) for a in sys.argv))
        for c in convs:
            print("#   %s: %.1f s, %d turns (%d overlapping, %d reused audio), speech %.1f s, speakers %s" % (
                c["name"], c["seconds"], c["turns"], c["overlaps"], c["reused_turns"],
                c["speech_s"], ",".join(c["who"])))
        if args.only_build:
            return 0
        for exe in (args.diarize, args.der):
            if not os.access(exe, os.X_OK):
                raise BenchError("%s not found: build with `cargo build -p verbatim-diarize "
                                 "--release --example diarize --example der`" % exe)
        results = {}
        if args.sweep:
            thresholds = [float(t) for t in args.sweep.split(",") if t.strip()]
            print("\n## threshold sweep (no speaker hint)\n")
            print(SWEEP_HEAD)
            for th in thresholds:
                rows = [run_verbatim(args, c, th, False, "t%g" % th) for c in convs]
                results["sweep %g" % th] = rows
                print(sweep_line("%g" % th, rows), flush=True)
        else:
            label = "threshold %s" % ("default" if args.threshold is None else args.threshold)
            rows = [run_verbatim(args, c, args.threshold, False, "hyp") for c in convs]
            results["verbatim"] = rows
            print_table("verbatim-diarize, no speaker hint, %s" % label, rows)
            if args.hint:
                rows = [run_verbatim(args, c, args.threshold, True, "hint") for c in convs]
                results["verbatim --speakers N"] = rows
                print_table("verbatim-diarize, --speakers N (true count), %s" % label, rows)
            lines = ["| verbatim-diarize | " + sweep_line(label, results["verbatim"])[2:]]
            if args.hint:
                lines.append("| verbatim-diarize --speakers N | " +
                             sweep_line(label, results["verbatim --speakers N"])[2:])
            if args.reference_cmd:
                rows = [run_reference(args, c, False) for c in convs]
                results["reference"] = rows
                print_table("reference diarizer: %s" % args.reference_cmd, rows)
                lines.append("| reference | " + sweep_line("-", rows)[2:])
                if args.hint and "{speakers}" in args.reference_cmd:
                    rows = [run_reference(args, c, True) for c in convs]
                    results["reference hint"] = rows
                    lines.append("| reference, N given | " + sweep_line("-", rows)[2:])
            print("## summary\n")
            print("| system | threshold | DER % | missed % | FA % | confusion % | right count | over | under | median x RT |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            print("\n".join(lines))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
