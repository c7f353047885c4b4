#!/usr/bin/env python3
"""How fast the dictation daemon delivers after `stop`: the push-to-talk key released right
after the last word.

Starts a private PulseAudio with a null sink whose monitor is the default microphone (as the
tests do), then `verbatim listen --daemon`. For each LibriSpeech utterance of the shared set:
`verbatim listen start`, play the utterance into the sink, `verbatim listen stop` as soon as
playback ends, and time the stop client from its start to its exit (it exits when the daemon
has delivered the text). Prints every trial, p50/p95/max, and the WER of the delivered text
against the reference and of `verbatim transcribe` on the same files (scored by
../shared/tools/wer.py).

    python3 bench/daemon_stop.py                      # the 20 utterances once
    python3 bench/daemon_stop.py --rounds 2 --pause 0.3
    python3 bench/daemon_stop.py --whole              # the daemon reads each dictation whole
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import REPO, SHARED, wer  # noqa: E402

UTTERANCES = sorted(f for f in os.listdir(os.path.join(SHARED, "audio"))
                    if f.startswith(("1688-", "367-")) and f.endswith(".flac"))


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/verbatim"))
    ap.add_argument("--model", default=os.path.join(SHARED, "models/ggml-tiny.en.bin"))
    ap.add_argument("--vad-model", default=os.path.join(SHARED, "models/ggml-silero-vad.bin"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds between the end of playback and stop (default 0: at once)")
    ap.add_argument("--whole", action="store_true", help="run the daemon with --whole")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="daemon-stop-")
    env = dict(os.environ, XDG_RUNTIME_DIR=tmp, HOME=tmp, XDG_DATA_HOME=os.path.join(tmp, "data"),
               VERBATIM_CONFIG="/dev/null", PULSE_SERVER=f"unix:{tmp}/pulse/native")
    for k in ("PULSE_SINK", "PULSE_SOURCE", "ALSA_CONFIG_PATH"):
        env.pop(k, None)
    procs = []
    try:
        subprocess.run(["pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "--use-pid-file=yes",
                        "--load=module-native-protocol-unix auth-anonymous=1",
                        "--load=module-null-sink sink_name=vsink"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=env, check=True)
        # Keeps the null sink rendering in small blocks (see tests/common/pulse.rs).
        procs.append(subprocess.Popen(["parec", "--raw", "--latency-msec=10", "--device=vsink.monitor"],
                                      env=env, stdout=subprocess.DEVNULL))
        daemon = subprocess.Popen([a.binary, "listen", "--daemon", "-q", "--model", a.model,
                                   "--vad-model", a.vad_model] + (["--whole"] if a.whole else []), env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "daemon.log"), "wb"))
        procs.append(daemon)
        client = lambda *args: subprocess.run([a.binary, "listen", *args], env=env, capture_output=True, text=True)
        for _ in range(600):
            if client("status").returncode == 0:
                break
            time.sleep(0.1)
        hyp = os.path.join(tmp, "hyp")
        os.makedirs(hyp)
        wavs = {}
        for u in UTTERANCES:
            wavs[u] = os.path.join(tmp, u.replace(".flac", ".wav"))
            subprocess.run(["sox", os.path.join(SHARED, "audio", u), "-b", "16", wavs[u]], check=True)
        times = []
        print(f"{len(UTTERANCES)} utterances x {a.rounds} rounds, stop {a.pause:.1f} s after playback")
        for r in range(a.rounds):
            for u in UTTERANCES:
                assert client("start").returncode == 0
                time.sleep(0.5)
                subprocess.run(["paplay", "--device=vsink", wavs[u]], env=env, check=True)
                time.sleep(a.pause)
                t0 = time.perf_counter()
                out = client("stop")
                took = time.perf_counter() - t0
                if out.returncode != 0:
                    sys.exit(f"stop failed: {out.stderr}")
                times.append(took)
                with open(os.path.join(hyp, u.replace(".flac", ".txt")), "w") as f:
                    f.write(out.stdout)
                print(f"  round {r + 1} {u:24} stop {took:5.2f} s  {out.stdout.strip()[:70]}", flush=True)
        total, _ = wer(os.path.join(SHARED, "audio"), hyp, os.path.join(SHARED, "tools/wer.py"))
        offline = os.path.join(tmp, "offline")
        subprocess.run([a.binary, "transcribe", "-q", "--model", a.model, "--vad-model", a.vad_model,
                        "-f", "txt", "-o", offline] + [os.path.join(SHARED, "audio", u) for u in UTTERANCES],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        peer, _ = wer(os.path.join(SHARED, "audio"), offline, os.path.join(SHARED, "tools/wer.py"))
        print()
        print(f"stop -> delivered (client start to exit), {len(times)} trials: p50 {statistics.median(times):.2f} s, "
              f"p95 {pct(times, 95):.2f} s, max {max(times):.2f} s; WER of the delivered text "
              f"{total['wer'] * 100:.2f} % (last round), of `verbatim transcribe` on the same files "
              f"{peer['wer'] * 100:.2f} %")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        subprocess.run(["pactl", "exit"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
