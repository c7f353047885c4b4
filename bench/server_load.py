#!/usr/bin/env python3
"""Load test for `verbatim serve` (a program, not a timed test).

Starts the server (or uses a running one with --url and --pid), then N client threads send
requests from a mix of short and long files to /v1/audio/transcriptions until --requests
have been sent. Reports requests per second, latency p50/p95/max (all, short, long), HTTP
statuses, and the server's memory: peak RSS (VmHWM from /proc/PID/status) and RSS sampled
every 0.2 s before, during and after the load.

Python standard library only.

Examples:
  cargo build --release
  python3 bench/server_load.py                                  # 4 clients, 24 requests
  python3 bench/server_load.py --clients 8 --requests 40 --long-every 4 --concurrency 2
  python3 bench/server_load.py --url http://127.0.0.1:8080 --pid $(pgrep -n verbatim)
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VERBATIM_SHARED", ROOT.parent / "shared"))
SHORT = ["1688-142285-0002.flac", "367-130732-0000.flac", "jfk.flac", "1688-142285-0000.flac",
         "1089-134686-0002.wav", "1221-135766-0002.wav"]
LONG = ["long_ls_2609_3080_concat.flac"]


def multipart(path: Path):
    boundary = uuid.uuid4().hex
    data = path.read_bytes()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\njson\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def proc_status(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def start_server(args):
    binary = Path(args.binary)
    cmd = [str(binary), "serve", "--port", "0", "--model", args.model, "--offline",
           "--quiet", "--queue", str(args.queue)]
    if args.vad_model:
        cmd += ["--vad-model", args.vad_model]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    url = None
    t0 = time.time()
    for line in proc.stderr:
        sys.stderr.write("[server] " + line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            url = m.group(1)
            break
        if time.time() - t0 > 120:
            break
    if not url:
        proc.kill()
        sys.exit("the server did not start")
    threading.Thread(target=lambda: [sys.stderr.write("[server] " + l) for l in proc.stderr],
                     daemon=True).start()
    return proc, url


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (else one is started)")
    ap.add_argument("--pid", type=int, help="the running server's pid, for memory figures")
    ap.add_argument("--binary", default=str(ROOT / "target/release/verbatim"))
    ap.add_argument("--model", default=str(SHARED / "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=str(SHARED / "models/ggml-silero-vad.bin"))
    ap.add_argument("--concurrency", type=int, help="server --concurrency (default: its own)")
    ap.add_argument("--threads", type=int, help="server --threads")
    ap.add_argument("--queue", type=int, default=64, help="server --queue")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=24, help="requests in all")
    ap.add_argument("--long-every", type=int, default=6,
                    help="every Nth request sends the long (204 s) file; 0 = never")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args()

    proc = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        proc, url = start_server(args)
        pid = proc.pid
    bodies = {}
    for name in SHORT + LONG:
        bodies[name] = multipart(SHARED / "audio" / name)

    plan = []
    si = 0
    for i in range(args.requests):
        if args.long_every and i % args.long_every == args.long_every - 1:
            plan.append(("long", LONG[0]))
        else:
            plan.append(("short", SHORT[si % len(SHORT)]))
            si += 1

    lock = threading.Lock()
    results = []
    next_i = [0]
    rss_samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            if pid:
                rss = proc_status(pid, "VmRSS")
                if rss:
                    rss_samples.append((time.time(), rss))
            time.sleep(0.2)

    def client():
        while True:
            with lock:
                if next_i[0] >= len(plan):
                    return
                kind, name = plan[next_i[0]]
                next_i[0] += 1
            body, ctype = bodies[name]
            req = urllib.request.Request(url + "/v1/audio/transcriptions", data=body,
                                         headers={"Content-Type": ctype}, method="POST")
            t0 = time.time()
            try:
                with urllib.request.urlopen(req, timeout=3600) as r:
                    status = r.status
                    text = json.loads(r.read())["text"]
            except urllib.error.HTTPError as e:
                status, text = e.code, e.read().decode(errors="replace")
            except Exception as e:  # noqa: BLE001
                status, text = 0, str(e)
            with lock:
                results.append({"kind": kind, "file": name, "status": status,
                                "latency": time.time() - t0, "text": text[:60]})

    rss_before = proc_status(pid, "VmRSS") if pid else None
    sampler_t = threading.Thread(target=sampler, daemon=True)
    sampler_t.start()
    t_start = time.time()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t_start
    time.sleep(1.0)
    stop.set()
    sampler_t.join()
    health = json.loads(urllib.request.urlopen(url + "/health").read())
    hwm = proc_status(pid, "VmHWM") if pid else None
    rss_after = proc_status(pid, "VmRSS") if pid else None

    ok = [r for r in results if r["status"] == 200]
    report = {
        "url": url,
        "server": {k: health.get(k) for k in ("model", "concurrency", "threads_per_job", "queue_limit")},
        "clients": args.clients,
        "requests": len(results),
        "statuses": {str(s): sum(1 for r in results if r["status"] == s)
                     for s in sorted({r["status"] for r in results})},
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(ok) / wall, 3),
        "latency_seconds": {},
        "memory_mib": {
            "rss_before": rss_before and round(rss_before / 2**20, 1),
            "rss_max_sampled": rss_samples and round(max(r for _, r in rss_samples) / 2**20, 1),
            "peak_rss_vmhwm": hwm and round(hwm / 2**20, 1),
            "rss_after": rss_after and round(rss_after / 2**20, 1),
        },
    }
    for kind in ("all", "short", "long"):
        lat = [r["latency"] for r in ok if kind == "all" or r["kind"] == kind]
        if lat:
            report["latency_seconds"][kind] = {
                "n": len(lat), "p50": round(pct(lat, 50), 2), "p95": round(pct(lat, 95), 2),
                "max": round(max(lat), 2)}
    failures = [r for r in results if r["status"] != 200]
    if failures:
        report["failures"] = failures[:5]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        s = report["server"]
        print(f"server: {s['model']}, {s['concurrency']} at a time x {s['threads_per_job']} thread(s), "
              f"queue {s['queue_limit']}; {args.clients} clients, {len(results)} requests "
              f"(every {args.long_every}th long)")
        print(f"statuses: {report['statuses']}")
        print(f"throughput: {report['requests_per_second']} requests/s over {report['wall_seconds']} s")
        for kind, l in report["latency_seconds"].items():
            print(f"latency {kind:5} (n={l['n']:3}): p50 {l['p50']:7.2f} s  p95 {l['p95']:7.2f} s  max {l['max']:7.2f} s")
        m = report["memory_mib"]
        print(f"server memory: RSS {m['rss_before']} MiB idle, max sampled {m['rss_max_sampled']} MiB, "
              f"peak (VmHWM) {m['peak_rss_vmhwm']} MiB, {m['rss_after']} MiB after")
        for f in failures[:5]:
            print("failure:", f)
    if proc:
        proc.terminate()
        proc.wait(timeout=60)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
