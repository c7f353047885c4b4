#!/usr/bin/env python3
"""Speed on a busy machine: each engine idle, then with other processes keeping cores busy.

Issue 24 asks that losing one of two cores to another process cost `verbatim transcribe` at
most 2.2x its idle time, and that it stay no slower than faster-whisper under the same load.
The load is one (or --load N) shell busy loop per core taken (`sh -c 'while :; do :; done'`),
started before the run and killed after it, as a browser or a build would take a core.

Rows (each run --runs times, medians quoted, every run printed):
  verbatim[SPIN]  target/release/verbatim transcribe FILE, VERBATIM_GGML_SPIN_US=SPIN (needs
                  docs/experiments/barrier-spin-then-sleep.patch applied as an engine
                  patch 0008: microseconds a thread spins at a barrier before it sleeps;
                  "default" = unset (upstream's pure spin), "unbounded" = the same set explicitly)
  fw              faster-whisper int8 (bench/.venv, as in bench.py), vad_filter=False

    python3 bench/busy_bench.py                       # the 204 s file, 3 runs, 1 busy core
    python3 bench/busy_bench.py --spins default,unbounded,0,100 --runs 5
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import REPO, SHARED, LONG_FILE, run_measured, wait_quiet, wer, cache_files  # noqa: E402

UNBOUNDED = str(2**31 - 1)


def busy_loops(n):
    return [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default=os.path.join(SHARED, "audio", LONG_FILE))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load", type=int, default=1, help="busy loops while loaded (default 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spins", default="10,default",
                    help="VERBATIM_GGML_SPIN_US values to compare (default,unbounded or numbers)")
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/verbatim"))
    ap.add_argument("--model", default=os.path.join(SHARED, "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=os.path.join(SHARED, "models/ggml-silero-vad.bin"))
    ap.add_argument("--no-fw", action="store_true", help="skip faster-whisper")
    ap.add_argument("--wait-quiet", type=float, default=30, help="seconds to wait for a quiet machine first")
    a = ap.parse_args()

    name = os.path.basename(a.file)
    stem = os.path.splitext(name)[0]
    refdir = os.path.join(SHARED, "audio")
    wer_py = os.path.join(SHARED, "tools/wer.py")
    fw_python = os.path.join(HERE, ".venv/bin/python")
    cache_files([a.file, a.model, a.vad_model])

    engines = []
    for spin in [s.strip() for s in a.spins.split(",") if s.strip()]:
        env = dict(os.environ)
        env.pop("VERBATIM_GGML_SPIN_US", None)
        if spin != "default":
            env["VERBATIM_GGML_SPIN_US"] = UNBOUNDED if spin == "unbounded" else spin
        engines.append((f"verbatim[{spin}]", env, lambda out: [
            a.binary, "transcribe", a.file, "--model", a.model, "--vad-model", a.vad_model,
            "-t", str(a.threads), "-q", "--no-timestamps", "-f", "txt", "-o", out]))
    if not a.no_fw:
        fw_script = os.path.join(HERE, "fw_transcribe.py")
        engines.append(("fw", None, lambda out: [
            fw_python, fw_script, "--threads", str(a.threads), "--beam", "5", "-o", out, a.file]))

    use = wait_quiet(a.wait_quiet)
    print(f"file {name}, {a.runs} runs per row, {a.threads} threads, load = {a.load} busy loop(s); "
          f"machine use before start {use:.2f} cores")
    results = {}  # (engine, state) -> [(wall, wer)]
    tmp = tempfile.mkdtemp(prefix="busy-bench-")
    try:
        for run in range(a.runs):
            for state in ("idle", "loaded"):
                for label, env, cmd in engines:
                    out = os.path.join(tmp, f"{label}-{state}-{run}")
                    os.makedirs(out)
                    loops = busy_loops(a.load) if state == "loaded" else []
                    try:
                        wall, _rss, cpu, foreign, rc = run_measured(cmd(out), os.path.join(out, "log"), env=env)
                    finally:
                        for p in loops:
                            p.kill()
                            p.wait()
                    if rc != 0:
                        sys.exit(f"{label} failed ({rc}); see {out}/log")
                    hyp = os.path.join(out, "hyp")
                    os.makedirs(hyp)
                    shutil.copy(os.path.join(out, stem + ".txt"), os.path.join(hyp, stem + ".txt"))
                    total, _ = wer(refdir, hyp, wer_py)
                    w = total["wer"] * 100
                    results.setdefault((label, state), []).append((wall, w))
                    print(f"  run {run + 1} {state:6} {label:22} {wall:6.2f} s  cpu {cpu:6.2f} s  "
                          f"other {foreign:6.2f} cpu-s  WER {w:.2f} %", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"| engine | idle (median s) | loaded (median s) | loaded / idle | WER idle / loaded |")
    print(f"|---|---|---|---|---|")
    med = {}
    for label, _env, _cmd in engines:
        idle = statistics.median(w for w, _ in results[(label, "idle")])
        loaded = statistics.median(w for w, _ in results[(label, "loaded")])
        med[label] = (idle, loaded)
        wi = statistics.median(e for _, e in results[(label, "idle")])
        wl = statistics.median(e for _, e in results[(label, "loaded")])
        print(f"| {label} | {idle:.2f} | {loaded:.2f} | {loaded / idle:.2f}x | {wi:.2f} / {wl:.2f} % |")
    if "fw" in med:
        for label, (idle, loaded) in med.items():
            if label != "fw":
                print(f"{label} / faster-whisper: idle {idle / med['fw'][0]:.2f}x, loaded {loaded / med['fw'][1]:.2f}x")


if __name__ == "__main__":
    main()
