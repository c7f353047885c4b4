#!/usr/bin/env python3
"""Cross-check the Rust DER scorer (crates/diarize, `der` example) against pyannote.metrics.

Generates seeded random reference/hypothesis RTTM pairs (2-5 reference speakers, overlapping
speech, jittered boundaries, missed and false-alarm turns, relabelled, split and merged
speakers), scores every pair with both tools under three settings

    collar 0.25 s (each side; pyannote collar=0.5), collar 0, skip_overlap with collar 0.25

and prints the DERs side by side with the largest absolute difference. Exits 1 if any pair
differs by more than --tolerance (default 1e-3, DER as a fraction).

pyannote.metrics runs in its own interpreter: --python / $DER_PYTHON if given, else a venv
at --venv / $DER_VENV (default ~/.cache/verbatim/der-crosscheck-venv), created and filled
with `pip install pyannote.metrics` on first use. This script itself needs only the
standard library.

    python3 bench/der_crosscheck.py                 # builds the example with cargo first
    python3 bench/der_crosscheck.py --cases 50 --seed 7 --der-bin path/to/der --keep DIR
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside the pyannote interpreter: reads jobs (JSON) on stdin, prints results (JSON).
PYANNOTE_HELPER = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

def load(path):
    ann = Annotation(uri="x")
    for i, line in enumerate(open(path)):
        f = line.split()
        if not f or f[0] != "SPEAKER":
            continue
        start, dur = float(f[3]), float(f[4])
        ann[Segment(start, start + dur), i] = f[7]
    return ann

out = []
for job in json.load(sys.stdin):
    metric = DiarizationErrorRate(collar=2.0 * job["collar"], skip_overlap=job["skip_overlap"])
    d = metric(load(job["ref"]), load(job["hyp"]), detailed=True)
    out.append({
        "der": d["diarization error rate"],
        "missed": d["missed detection"],
        "false_alarm": d["false alarm"],
        "confusion": d["confusion"],
        "total": d["total"],
    })
print(json.dumps({"version": version("pyannote.metrics"), "results": out}))
"""

SETTINGS = [
    ("collar=0.25", 0.25, False),
    ("collar=0", 0.0, False),
    ("collar=0.25+skip_ovl", 0.25, True),
]


# ---------------------------------------------------------------- random RTTM pairs


def union_ms(turns):
    """turns: [(start_ms, end_ms, spk)] -> per speaker, overlapping/touching turns merged
    (so neither tool sees self-overlap, which pyannote double-counts), sorted by start."""
    by = {}
    for s, e, spk in turns:
        if e > s:
            by.setdefault(spk, []).append((s, e))
    out = []
    for spk, iv in by.items():
        iv.sort()
        merged = [list(iv[0])]
        for s, e in iv[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out.extend((s, e, spk) for s, e in merged)
    out.sort()
    return out


def make_reference(rng):
    """A conversation: alternating turns, some overlapping the previous one, plus short
    backchannels inside other speakers' turns. Times in integer milliseconds."""
    n_spk = rng.randint(2, 5)
    speakers = [f"ref{i}" for i in range(n_spk)]
    length_ms = rng.randint(30_000, 240_000)
    turns = []
    t = rng.randint(0, 3000)
    prev = None
    while t < length_ms:
        spk = rng.choice([s for s in speakers if s != prev])
        dur = int(rng.uniform(0.3, 9.0) * 1000)
        turns.append((t, t + dur, spk))
        if rng.random() < 0.3:  # backchannel by someone else
            other = rng.choice([s for s in speakers if s != spk])
            b = t + rng.randint(0, dur)
            turns.append((b, b + rng.randint(150, 1500), other))
        prev = spk
        r = rng.random()
        if r < 0.25:  # next turn overlaps this one's end
            t += dur - rng.randint(50, min(2000, dur))
        elif r < 0.35:  # starts exactly where this one ends
            t += dur
        else:
            t += dur + rng.randint(10, 3000)
    return union_ms(turns)


def make_hypothesis(rng, ref):
    """A flawed system output derived from the reference."""
    ref_spk = sorted({s for _, _, s in ref})
    perm = ref_spk[:]
    rng.shuffle(perm)
    label = {s: f"spk_{i:02d}" for i, s in enumerate(perm)}
    # sometimes two reference speakers become one, sometimes one is split in two
    if len(ref_spk) > 2 and rng.random() < 0.3:
        a, b = rng.sample(ref_spk, 2)
        label[b] = label[a]
    split = rng.choice(ref_spk) if rng.random() < 0.4 else None
    end_ms = max(e for _, e, _ in ref)
    split_at = rng.randint(0, end_ms)
    jitter = rng.choice([0.05, 0.2, 0.5])
    hyp = []
    for s, e, spk in ref:
        if rng.random() < 0.08:  # missed turn
            continue
        s2 = max(0, s + int(rng.gauss(0, jitter) * 1000))
        e2 = max(s2, e + int(rng.gauss(0, jitter) * 1000))
        lab = label[spk]
        if spk == split and s > split_at:
            lab = "spk_split"
        if rng.random() < 0.1:  # confused turn
            lab = rng.choice(sorted(set(label.values())))
        if rng.random() < 0.1 and e2 - s2 > 2000:  # speaker change inside the turn
            c = rng.randint(s2 + 500, e2 - 500)
            hyp.append((s2, c, lab))
            hyp.append((c, e2, rng.choice(sorted(set(label.values())))))
        else:
            hyp.append((s2, e2, lab))
    for _ in range(rng.randint(0, 6)):  # false alarms, possibly by an extra speaker
        s = rng.randint(0, end_ms + 5000)
        hyp.append((s, s + rng.randint(200, 4000), rng.choice(["spk_fa", *label.values()])))
    return union_ms(hyp)


def write_rttm(path, file_id, turns):
    with open(path, "w") as f:
        for s, e, spk in turns:
            f.write(
                f"SPEAKER {file_id} 1 {s / 1000:.3f} {(e - s) / 1000:.3f} "
                f"<NA> <NA> {spk} <NA> <NA>\n"
            )


# ---------------------------------------------------------------- tools


def pyannote_python(args):
    if args.python:
        return args.python
    venv = Path(args.venv).expanduser()
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run(
        [str(py), "-c", "import pyannote.metrics"], capture_output=True
    ).returncode == 0
    if not ok:
        print(f"creating {venv} with pyannote.metrics ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "pyannote.metrics"], check=True
        )
    return str(py)


def der_binary(args):
    if args.der_bin:
        return args.der_bin
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    subprocess.run(
        ["cargo", "build", "-q", "-p", "verbatim-diarize", "--release", "--example", "der"],
        cwd=REPO,
        check=True,
    )
    return str(target / "release" / "examples" / "der")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--python", default=os.environ.get("DER_PYTHON"),
                    help="interpreter with pyannote.metrics ($DER_PYTHON)")
    ap.add_argument("--venv", default=os.environ.get(
        "DER_VENV", "~/.cache/verbatim/der-crosscheck-venv"))
    ap.add_argument("--der-bin", help="prebuilt `der` example (default: cargo build it)")
    ap.add_argument("--keep", help="write the RTTM pairs here instead of a temp dir")
    args = ap.parse_args()

    py = pyannote_python(args)
    der_bin = der_binary(args)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="der_xcheck_"))
    workdir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(args.seed)
    cases = []
    for i in range(args.cases):
        ref = make_reference(rng)
        hyp = make_hypothesis(rng, ref)
        rp, hp = workdir / f"case{i:02d}.ref.rttm", workdir / f"case{i:02d}.hyp.rttm"
        write_rttm(rp, f"case{i:02d}", ref)
        write_rttm(hp, f"case{i:02d}", hyp)
        cases.append((i, rp, hp, len({s for *_, s in ref}), len({s for *_, s in hyp})))

    jobs, rust = [], []
    for i, rp, hp, _, _ in cases:
        for name, collar, skip in SETTINGS:
            jobs.append({"ref": str(rp), "hyp": str(hp), "collar": collar, "skip_overlap": skip})
            cmd = [der_bin, str(rp), str(hp), "--collar", str(collar)]
            if skip:
                cmd.append("--skip-overlap")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rust.append(json.loads(out))
    res = subprocess.run([py, "-c", PYANNOTE_HELPER], input=json.dumps(jobs),
                         capture_output=True, text=True, check=True)
    pa = json.loads(res.stdout)

    print(f"pyannote.metrics {pa['version']}; {len(cases)} cases x {len(SETTINGS)} settings"
          + (f"; files in {workdir}" if args.keep else ""))
    print(f"{'case':>4} {'ref':>3} {'hyp':>3} {'setting':<21} {'rust DER':>9} "
          f"{'pyannote':>9} {'|diff|':>9} {'max comp diff (s)':>17}")
    max_diff, max_comp, worst = 0.0, 0.0, None
    k = 0
    for i, _, _, nr, nh in cases:
        for name, _, _ in SETTINGS:
            r, p = rust[k], pa["results"][k]
            k += 1
            diff = abs(r["der"] - p["der"])
            comp = max(abs(r[c] - p[c]) for c in ("missed", "false_alarm", "confusion", "total"))
            if diff > max_diff:
                max_diff, worst = diff, (i, name)
            max_comp = max(max_comp, comp)
            flag = "  <-- MISMATCH" if diff > args.tolerance else ""
            print(f"{i:>4} {nr:>3} {nh:>3} {name:<21} {r['der']:>9.5f} {p['der']:>9.5f} "
                  f"{diff:>9.2e} {comp:>17.2e}{flag}")
    print(f"max |DER diff| = {max_diff:.3e} over {k} scorings"
          + (f" (case {worst[0]}, {worst[1]})" if worst else "")
          + f"; max component diff = {max_comp:.3e} s; tolerance {args.tolerance}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if max_diff > args.tolerance else 0


if __name__ == "__main__":
    sys.exit(main())
