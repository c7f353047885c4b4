#!/usr/bin/env python3
"""Long-recording benchmark: wall time and memory of `verbatim transcribe` on 10 min .. 10 h files.

Test recordings are built on the fly (compressed FLAC, 16 kHz mono) by tiling the shared
LibriSpeech utterances (/work/shared/audio/1688-*.flac, 367-*.flac) with silence between them
at a given speech density (--density, default 0.1 = 10 % speech). One block of --block seconds
(600) is built per variant with sox (utterance order rotated per variant) and the blocks are
concatenated with sox; no PCM is held in Python.

Rows:
  stream   verbatim transcribe FILE ...        (streaming, windows of --window s)
  stdin    verbatim transcribe - ... < FILE    (standard input: decoded from the pipe as it
           arrives, through the same streaming path; its memory must match the stream row's).
           10 min and 1 h only, 10 h only with --include-stdin-10h.

Measured: wall time (monotonic clock around the process, includes model load), peak RSS
(ru_maxrss from os.wait4), and VmRSS sampled every --sample-interval seconds from
/proc/PID/status; the samples are split into first and second half of the run to show whether
memory grows with the file. Light correctness check: the SRT exists, no .partial/.checkpoint
files are left, and the last cue ends near the last utterance's end.
"""
import argparse
import glob
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import busy_cpu_s  # bench/bench.py: the script's folder is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = "/work/shared"
SR = 16000
UTT_PATTERNS = ["1688-*.flac", "367-*.flac"]


# ------------------------------------------------------------------ helpers
def vmrss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def run_measured(cmd, log_path, interval, stdin_path=None):
    """Run cmd, sampling its VmRSS every `interval` s.

    Returns dict(wall, maxrss, cpu, foreign, rc, samples=[(t, rss_bytes)])."""
    samples = []
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    with open(log_path, "wb") as log:
        b0 = busy_cpu_s()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=stdin)
        next_sample = t0 + interval
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid != 0:
                break
            now = time.perf_counter()
            if now >= next_sample:
                rss = vmrss_bytes(p.pid)
                if rss is not None:
                    samples.append((now - t0, rss))
                next_sample += interval
            time.sleep(min(0.2, max(0.01, next_sample - time.perf_counter())))
        wall = time.perf_counter() - t0
        b1 = busy_cpu_s()
    if stdin_path:
        stdin.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    foreign = max(0.0, b1 - b0 - cpu) if b0 is not None and b1 is not None else float("nan")
    return dict(wall=wall, maxrss=ru.ru_maxrss * 1024, cpu=cpu, foreign=foreign,
                rc=p.returncode, samples=samples)


def halves(samples, wall):
    """(first-half RSS list, second-half RSS list), split at wall/2."""
    first = [r for t, r in samples if t < wall / 2]
    second = [r for t, r in samples if t >= wall / 2]
    return first, second


def mb(b):
    return b / 1e6


def fmt_stats(xs):
    if not xs:
        return "n/a (no samples)"
    return (f"min {mb(min(xs)):.0f} / median {mb(statistics.median(xs)):.0f} / "
            f"max {mb(max(xs)):.0f} MB (n={len(xs)})")


def fmt_len(sec):
    if sec >= 3600 and sec % 3600 == 0:
        return f"{sec // 3600} h"
    if sec >= 60 and sec % 60 == 0:
        return f"{sec // 60} min"
    return f"{sec} s"


def read_manifest(audio_dir):
    out = {}
    with open(os.path.join(audio_dir, "manifest.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        i_file, i_dur = header.index("file"), header.index("duration_s")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > i_dur:
                out[cols[i_file]] = float(cols[i_dur])
    return out


def soxi_seconds(path):
    return float(subprocess.check_output(["soxi", "-D", path], text=True).strip())


# ------------------------------------------------------------------ audio generation
def build_block(utts, variant, block_s, density, sil_cache, tmp, out_path):
    """One block of block_s seconds: utterances (rotated by `variant`) each followed by equal silence.

    Returns list of (start_s, end_s) of the utterances inside the block."""
    n_all = len(utts)
    rot = (variant * 7) % n_all
    order = utts[rot:] + utts[:rot]
    target = density * block_s
    chosen, speech = [], 0.0
    i = 0
    while speech < target or not chosen:
        name, path, dur = order[i % n_all]
        if speech + dur > block_s * 0.95:
            break
        chosen.append((name, path, dur))
        speech += dur
        i += 1
    gap = (block_s - speech) / len(chosen)
    # silence of `gap` seconds, in whole samples; the block is padded/trimmed to exactly block_s.
    gap_samples = int(gap * SR)
    sil = sil_cache.get(gap_samples)
    if sil is None:
        sil = os.path.join(tmp, f"sil_{gap_samples}.flac")
        subprocess.check_call(["sox", "-r", str(SR), "-c", "1", "-n", "-r", str(SR), "-c", "1", "-b", "16", sil,
                               "trim", "0", f"{gap_samples}s"])
        sil_cache[gap_samples] = sil
    inputs, spans, pos = [], [], 0
    for _name, path, _dur in chosen:
        n = int(round(soxi_samples(path)))
        inputs += [path, sil]
        spans.append((pos / SR, (pos + n) / SR))
        pos += n + gap_samples
    subprocess.check_call(["sox", "-V1", *inputs, "-r", str(SR), "-c", "1", "-b", "16",
                           "-C", "8", out_path, "pad", "0", "1", "trim", "0", f"{block_s * SR}s"])
    return spans, speech


_samples_cache = {}


def soxi_samples(path):
    if path not in _samples_cache:
        _samples_cache[path] = int(subprocess.check_output(["soxi", "-s", path], text=True).strip())
    return _samples_cache[path]


def build_recording(length_s, utts, block_s, density, variants, tmp):
    """Builds long_<length>s.flac in tmp. Returns (path, last_utterance_end_s, speech_s)."""
    out = os.path.join(tmp, f"long_{length_s}s.flac")
    nblocks = math.ceil(length_s / block_s)
    sil_cache = {}
    blocks = []
    for v in range(min(variants, nblocks)):
        bp = os.path.join(tmp, f"block_{block_s}s_d{density}_v{v}.flac")
        key = (bp,)
        if key not in _block_cache:
            _block_cache[key] = build_block(utts, v, block_s, density, sil_cache, tmp, bp)
        blocks.append((bp, *_block_cache[key]))
    seq = [blocks[i % len(blocks)] for i in range(nblocks)]
    last_end, speech = 0.0, 0.0
    for i, (_bp, spans, sp) in enumerate(seq):
        for s, e in spans:
            if i * block_s + e <= length_s:
                last_end = i * block_s + e
                speech += e - s
    t0 = time.perf_counter()
    if nblocks == 1 and length_s == block_s:
        shutil.copyfile(seq[0][0], out)
    else:
        subprocess.check_call(["sox", "-V1", *[b[0] for b in seq], "-C", "8", out,
                               "trim", "0", f"{length_s * SR}s"])
    return out, last_end, speech, time.perf_counter() - t0


_block_cache = {}


# ------------------------------------------------------------------ output check
def srt_last_end(path):
    last = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "-->" in line:
                end = line.split("-->")[1].strip().split()[0]
                h, m, rest = end.split(":")
                s, ms = rest.split(",")
                last = int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
    return last


def srt_cues(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if "-->" in line)


def check_outputs(outdir, expected_last_end, tol):
    srts = glob.glob(os.path.join(outdir, "*.srt"))
    jsons = glob.glob(os.path.join(outdir, "*.json"))
    leftovers = [os.path.basename(p) for p in glob.glob(os.path.join(outdir, "*"))
                 if p.endswith(".partial") or ".checkpoint" in p]
    problems = []
    last = cues = None
    if len(srts) != 1:
        problems.append(f"expected 1 .srt, found {len(srts)}")
    else:
        last = srt_last_end(srts[0])
        cues = srt_cues(srts[0])
        if last is None:
            problems.append("SRT has no cues")
        elif abs(last - expected_last_end) > tol:
            problems.append(f"last cue ends at {last:.2f} s, last utterance at {expected_last_end:.2f} s")
    if len(jsons) != 1:
        problems.append(f"expected 1 .json, found {len(jsons)}")
    else:
        try:
            with open(jsons[0], encoding="utf-8") as f:
                json.load(f)
        except ValueError as e:
            problems.append(f"JSON does not parse: {e}")
    if leftovers:
        problems.append("left over: " + ", ".join(leftovers))
    return dict(ok=not problems, problems=problems, srt_last_end=last, cues=cues)


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbatim", default=os.path.join(REPO, "target/release/verbatim"))
    ap.add_argument("--lengths", default="600,3600,36000", help="recording lengths in seconds (default 600,3600,36000)")
    ap.add_argument("--density", type=float, default=0.1, help="fraction of speech in the recordings (default 0.1)")
    ap.add_argument("--block", type=int, default=600, help="seconds per generated block (default 600)")
    ap.add_argument("--variants", type=int, default=3, help="distinct blocks (utterance order rotated) cycled (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=float, default=None, help="pass --window S to verbatim (default: its own, 300)")
    ap.add_argument("--sample-interval", type=float, default=5.0, help="VmRSS sampling interval, s (default 5)")
    ap.add_argument("--no-stdin", action="store_true", help="skip the standard-input rows")
    ap.add_argument("--include-stdin-10h", action="store_true",
                    help="also run the 10 h recording through standard input")
    ap.add_argument("--tolerance", type=float, default=5.0, help="allowed |last cue end - last utterance end|, s (default 5)")
    ap.add_argument("--model", default=os.path.join(SHARED, "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=os.path.join(SHARED, "models/ggml-silero-vad.bin"))
    ap.add_argument("--audio-dir", default=os.path.join(SHARED, "audio"))
    ap.add_argument("--tmpdir", default=None, help="where to build the recordings (default: a new temp dir, removed)")
    ap.add_argument("--keep-audio", action="store_true", help="keep the generated recordings")
    ap.add_argument("--outdir", default=os.path.join(HERE, "out", "long"), help="transcripts, logs, results.json")
    a = ap.parse_args()

    command = "python3 " + shlex.join([os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:])
    if not os.path.exists(a.verbatim):
        sys.exit(f"no verbatim binary at {a.verbatim}; run `cargo build --release` first")
    for tool in ("sox", "soxi"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    if not 0 < a.density < 0.95:
        sys.exit("--density must be in (0, 0.95)")
    lengths = [int(x) for x in a.lengths.split(",") if x.strip()]

    manifest = read_manifest(a.audio_dir)
    utts = []
    for pat in UTT_PATTERNS:
        for p in sorted(glob.glob(os.path.join(a.audio_dir, pat))):
            utts.append((os.path.basename(p), p, manifest.get(os.path.basename(p)) or soxi_seconds(p)))
    if not utts:
        sys.exit(f"no utterances matching {UTT_PATTERNS} in {a.audio_dir}")

    tmp_own = a.tmpdir is None
    tmp = a.tmpdir or tempfile.mkdtemp(prefix="verbatim_long_")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(a.outdir, exist_ok=True)

    print(f"command: {command}")
    print(f"verbatim: {a.verbatim}")
    print(f"speech density: {a.density:.3f} ({a.density * 100:.1f} % speech), "
          f"{len(utts)} utterances ({sum(u[2] for u in utts):.1f} s) tiled in {a.block} s blocks, "
          f"{a.variants} block variants")
    print(f"recordings in: {tmp}")
    print(f"cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.2f}")
    print()

    rows = []
    try:
        for length in lengths:
            t0 = time.perf_counter()
            path, last_end, speech, concat_s = build_recording(length, utts, a.block, a.density, a.variants, tmp)
            size = os.path.getsize(path)
            real = soxi_seconds(path)
            if abs(real - length) > 0.01:
                sys.exit(f"generated {path} is {real:.3f} s long, expected {length} s")
            print(f"[{fmt_len(length)}] built {os.path.basename(path)}: {real:.1f} s audio, "
                  f"{speech:.0f} s speech ({speech / real * 100:.1f} %), {size / 1e6:.1f} MB FLAC, "
                  f"last utterance ends {last_end:.2f} s, built in {time.perf_counter() - t0:.1f} s")
            modes = ["stream"]
            if not a.no_stdin and (length < 36000 or a.include_stdin_10h):
                modes.append("stdin")
            for mode in modes:
                out = os.path.join(a.outdir, f"{mode}_{length}s")
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                cmd = [a.verbatim, "transcribe", "-" if mode == "stdin" else path,
                       "-f", "srt,json", "-o", out, "-q",
                       "--model", a.model, "--vad-model", a.vad_model, "--offline", "-t", str(a.threads)]
                if a.window is not None:
                    cmd += ["--window", str(a.window)]
                shown = shlex.join(cmd) + (f" < {shlex.quote(path)}" if mode == "stdin" else "")
                print(f"  {mode}: {shown}", flush=True)
                r = run_measured(cmd, os.path.join(out, "log.txt"), a.sample_interval,
                                 stdin_path=path if mode == "stdin" else None)
                first, second = halves(r["samples"], r["wall"])
                chk = check_outputs(out, last_end, a.tolerance) if r["rc"] == 0 else \
                    dict(ok=False, problems=[f"exit code {r['rc']}"], srt_last_end=None, cues=None)
                row = dict(mode=mode, length_s=length, audio_s=real, speech_s=speech, density=a.density,
                           wall_s=r["wall"], rtf=r["wall"] / real, cpu_s=r["cpu"], foreign_cpu_s=r["foreign"],
                           peak_rss=r["maxrss"], rc=r["rc"],
                           rss_first=first, rss_second=second,
                           rss_first_median=statistics.median(first) if first else None,
                           rss_second_median=statistics.median(second) if second else None,
                           samples=r["samples"], check=chk, last_utterance_end=last_end,
                           pcm_f32_bytes=int(real * SR) * 4, cmd=cmd)
                rows.append(row)
                noisy = r["foreign"] > 0.1 * r["wall"]
                print(f"    wall {r['wall']:.1f} s, RTF {row['rtf']:.4f}, cpu {r['cpu']:.0f} s, "
                      f"peak RSS {mb(r['maxrss']):.0f} MB, exit {r['rc']}"
                      f"{', NOISY (other processes used %.0f CPU s)' % r['foreign'] if noisy else ''}")
                print(f"    RSS 1st half: {fmt_stats(first)}")
                print(f"    RSS 2nd half: {fmt_stats(second)}")
                if chk["ok"]:
                    print(f"    check OK: {chk['cues']} cues, last cue ends {chk['srt_last_end']:.2f} s "
                          f"(last utterance {last_end:.2f} s)")
                else:
                    print("    CHECK FAILED: " + "; ".join(chk["problems"]))
                    tail = open(os.path.join(out, "log.txt"), errors="replace").read()[-2000:]
                    if tail.strip():
                        print("    log tail:\n" + "\n".join("      " + l for l in tail.splitlines()))
                sys.stdout.flush()
            if tmp_own and not a.keep_audio:
                os.remove(path)
    finally:
        if tmp_own and not a.keep_audio:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------ report
    label = {"stream": "file (streaming)", "stdin": "standard input (-)"}

    def med(x):
        return f"{mb(x):.0f}" if x is not None else "n/a"

    print()
    print("Samples held by a whole-file decode (f32, 16 kHz mono): samples * 4 bytes")
    for length in lengths:
        n = length * SR
        print(f"  {fmt_len(length):>7}: {length} s * {SR} = {n:,} samples * 4 B = {n * 4 / 1e6:,.0f} MB")
    print()
    hdr = ["mode", "length", "audio h", "wall s", "RTF", "peak RSS MB", "RSS 1st-half med MB",
           "RSS 2nd-half med MB", "other CPU s", "check"]
    table = []
    for r in rows:
        table.append([label[r["mode"]], fmt_len(r["length_s"]), f"{r['audio_s'] / 3600:.2f}",
                      f"{r['wall_s']:.1f}", f"{r['rtf']:.4f}", f"{mb(r['peak_rss']):.0f}",
                      med(r["rss_first_median"]), med(r["rss_second_median"]),
                      f"{r['foreign_cpu_s']:.0f}" + (" NOISY" if r["foreign_cpu_s"] > 0.1 * r["wall_s"] else ""),
                      "ok" if r["check"]["ok"] else "FAIL"])
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(hdr)]
    print("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    print()
    print(f"Markdown (density {a.density:g}, tiny.en, {a.threads} threads, `{command}`):")
    print()
    print("| " + " | ".join(hdr[:-2]) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 4)) + "|")
    for t in table:
        print("| " + " | ".join(t[:-2]) + " |")
    print()
    print(f"command: {command}")

    res_path = os.path.join(a.outdir, "results.json")
    with open(res_path, "w") as f:
        json.dump(dict(command=command, density=a.density, threads=a.threads, rows=rows), f, indent=1)
    print(f"results: {res_path}")
    if any(not r["check"]["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
