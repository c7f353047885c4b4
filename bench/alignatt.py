#!/usr/bin/env python3
"""AlignAtt (ufal/SimulStreaming) against verbatim's live dictation, on the dictation set.

Both read the same files with the same model (a whisper.cpp ggml file, converted to an
OpenAI-whisper checkpoint for SimulStreaming's PyTorch code) in computation-unaware replay:
the audio arrives in steps, and each step's text counts as committed when the step's audio
ended, whatever the step cost. verbatim runs as `listen_bench --fast` (the same replay) in the
same run. Per file and in aggregate it prints WER (`../shared/tools/wer.py`) and "heard at
commit": the audio heard when a text was committed minus the end of its last word in verbatim's
offline transcript (the figure `listen_bench` prints; compute time comes on top in real time).

Set-up (PyTorch from PyPI; SimulStreaming at the commit measured, 077ea37):

    python3 -m venv bench/.venv-alignatt
    bench/.venv-alignatt/bin/pip install -r bench/requirements-alignatt.txt
    git clone https://github.com/ufal/SimulStreaming /tmp/SimulStreaming
    git -C /tmp/SimulStreaming checkout 077ea37

Run (from the repository root; the release build of verbatim and its examples are built first):

    bench/.venv-alignatt/bin/python bench/alignatt.py --simulstreaming /tmp/SimulStreaming
    bench/.venv-alignatt/bin/python bench/alignatt.py --simulstreaming /tmp/SimulStreaming \\
        --files long_ls_2609_3080_concat --chunk 0.5 --tau 25,50

`--tau` is SimulStreaming's `--frame_threshold` (encoder frames of 20 ms: decoding stops at the
first token whose alignment-head attention peaks that close to the end of the audio);
`--chunk` its `--min-chunk-size` (verbatim's step is 0.5 s; SimulStreaming's default 1.2 s).
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared")
RATE = 16000


def norm(word):
    return re.sub(r"[^a-z0-9']", "", word.lower())


def convert_ggml(src, dst):
    """A whisper.cpp ggml model (f32/f16 tensors) as an OpenAI-whisper checkpoint: ggml keeps
    PyTorch's tensor names and reverses their dimensions."""
    import numpy as np
    import torch

    with open(src, "rb") as f:
        if struct.unpack("<I", f.read(4))[0] != 0x67676D6C:
            sys.exit(f"{src}: not a ggml whisper model")
        keys = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype"]
        hp = dict(zip(keys, struct.unpack("<11i", f.read(44))))
        n_mel, n_fft = struct.unpack("<2i", f.read(8))
        f.read(4 * n_mel * n_fft)
        (n_vocab,) = struct.unpack("<i", f.read(4))
        for _ in range(n_vocab):
            (n,) = struct.unpack("<i", f.read(4))
            f.read(n)
        state = {}
        while True:
            head = f.read(12)
            if len(head) < 12:
                break
            n_dims, name_len, ttype = struct.unpack("<3i", head)
            dims = struct.unpack(f"<{n_dims}i", f.read(4 * n_dims))
            name = f.read(name_len).decode()
            if ttype not in (0, 1):
                sys.exit(f"{src}: tensor {name} is quantized (type {ttype}); convert an f16 model")
            dtype = np.float32 if ttype == 0 else np.float16
            count = int(np.prod(dims))
            a = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
            a = a.reshape(tuple(reversed(dims)))
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                a = a.reshape(-1)
            state[name] = torch.from_numpy(a.astype(np.float32))
    dims = {k: v for k, v in hp.items() if k != "ftype"}
    torch.save({"dims": dims, "model_state_dict": state}, dst)


def offline_words(verbatim, model, audio):
    """verbatim's offline transcript (defaults: VAD, beam 5): its words and their end times."""
    out = subprocess.run([verbatim, "transcribe", audio, "--model", model, "-w", "--json"],
                         check=True, capture_output=True, text=True).stdout
    words = []
    for line in out.splitlines():
        for w in json.loads(line).get("words", []):
            if norm(w["text"]):
                words.append((norm(w["text"]), w["end"]))
    return words


def heard_at_commit(commits, offline):
    """Per commit (audio heard, text): heard minus the offline end of its last word, the words
    matched by alignment (as listen_bench dates its commits)."""
    import difflib

    hyp, upto = [], []
    for _, text in commits:
        hyp.extend(n for n in map(norm, text.split()) if n)
        upto.append(len(hyp))
    sm = difflib.SequenceMatcher(a=[w for w, _ in offline], b=hyp, autojunk=False)
    matched = [None] * len(hyp)
    for a, b, n in sm.get_matching_blocks():
        for i in range(n):
            matched[b + i] = a + i
    out = []
    for (heard, _), end in zip(commits, upto):
        j = next((matched[i] for i in range(end - 1, -1, -1) if matched[i] is not None), None)
        if j is not None:
            out.append(heard - offline[j][1])
    return out


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def wer_per_file(hypdir, refdir):
    out = subprocess.run([sys.executable, os.path.join(SHARED, "tools/wer.py"), "--refdir", refdir,
                          "--hypdir", hypdir, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def load_checkpoint_with_heads(heads):
    """SimulStreaming loads a model by OpenAI's name (downloading it); load the converted
    checkpoint instead, with OpenAI's alignment heads for that model."""
    import simulstreaming.whisper.simul_whisper.simul_whisper as sw

    load = sw.load_model

    def load_model(name, download_root=None, **kw):
        m = load(os.path.join(download_root, name + ".pt"), **kw)
        if heads is not None:
            m.set_alignment_heads(heads)
        return m

    sw.load_model = load_model


def run_alignatt(ckpt, audio, chunk, tau, beams):
    """SimulStreaming's own computation-unaware loop (whisper_online_main.py), in process:
    returns (audio heard, committed text) per step that committed something."""
    import simulstreaming_whisper as sim
    import librosa

    args = argparse.Namespace(
        model_path=ckpt, cif_ckpt_path=None, frame_threshold=tau, audio_min_len=0.0,
        audio_max_len=30.0, beams=beams, task="transcribe", never_fire=False, init_prompt=None,
        static_init_prompt=None, max_context_tokens=None, logdir=None, lan="en",
        min_chunk_size=chunk, decoder=None, log_level="WARNING")
    _, online = sim.simul_asr_factory(args)
    a, _ = librosa.load(audio, sr=RATE, dtype="float32")
    duration = len(a) / RATE
    commits, beg, end = [], 0.0, chunk
    online.init()
    while True:
        online.insert_audio_chunk(a[int(beg * RATE):int(end * RATE)])
        o = online.process_iter()
        if o and o.get("text"):
            commits.append((end, o["text"]))
        if end >= duration:
            break
        beg, end = end, min(duration, end + chunk)
    o = online.finish()
    if o and o.get("text"):
        commits.append((duration, o["text"]))
    return commits


def find_audio(audio_dir, stem):
    for ext in ("flac", "wav"):
        p = os.path.join(audio_dir, f"{stem}.{ext}")
        if os.path.isfile(p):
            return p
    sys.exit(f"no audio for {stem} in {audio_dir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--simulstreaming", required=True, help="a checkout of ufal/SimulStreaming")
    ap.add_argument("--shared", default=SHARED)
    ap.add_argument("--model", default=None, help="ggml model (default: tiny.en of --shared)")
    ap.add_argument("--files", default=None, help="comma-separated stems (default: the 357 s set)")
    ap.add_argument("--chunk", type=float, default=0.5)
    ap.add_argument("--tau", default="25", help="comma-separated frame thresholds")
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--outdir", default="/tmp/alignatt")
    ap.add_argument("--verbatim", default=os.path.join(ROOT, "target/release/verbatim"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    audio_dir = os.path.join(args.shared, "audio")
    model = args.model or os.path.join(args.shared, "models/ggml-tiny.en.bin")
    os.makedirs(args.outdir, exist_ok=True)

    # SimulStreaming picks the tokenizer by the checkpoint's name: ".en" means English-only.
    name = os.path.basename(model).removeprefix("ggml-").removesuffix(".bin")
    english = name.endswith(".en")
    ckpt = os.path.join(args.outdir, name.removesuffix(".en") + "-from-ggml" + (".en" if english else "") + ".pt")
    if not os.path.exists(ckpt):
        convert_ggml(model, ckpt)
    sys.path.insert(0, args.simulstreaming)
    import simulstreaming.whisper.simul_whisper.whisper as W

    heads = W._ALIGNMENT_HEADS.get(name)
    print(f"model {model}; alignment heads: {'OpenAI ' + name if heads else 'the default (last half of the layers)'}")
    load_checkpoint_with_heads(heads)

    # verbatim, the peer, in the same run; its default files are the set read here too.
    vdir = os.path.join(args.outdir, "verbatim")
    shutil.rmtree(vdir, ignore_errors=True)
    events = os.path.join(args.outdir, "verbatim-events.jsonl")
    subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "listen_bench", "--",
                    "--shared", args.shared, "--model", model, "--fast", "--hyp-dir", vdir,
                    "--events", events] + (["--files", args.files] if args.files else []),
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    stems = sorted(n.removesuffix(".txt") for n in os.listdir(os.path.join(vdir, "listen")))
    stems.sort(key=lambda stem: not stem.startswith("long_"))
    verbatim_heard = {}
    for line in open(events):
        e = json.loads(line)
        if e.get("type") == "dated":
            verbatim_heard.setdefault(e["file"], []).append(e["heard"])

    runs = [("verbatim live", os.path.join(vdir, "listen"), verbatim_heard)]
    offline = {}
    for tau in [int(t) for t in args.tau.split(",")]:
        label = f"AlignAtt τ={tau} chunk {args.chunk} s" + (f" beam {args.beams}" if args.beams > 1 else "")
        hypdir = os.path.join(args.outdir, f"alignatt-c{args.chunk}-t{tau}-b{args.beams}")
        os.makedirs(hypdir, exist_ok=True)
        heard = {}
        for stem in stems:
            audio = find_audio(audio_dir, stem)
            commits = run_alignatt(ckpt, audio, args.chunk, tau, args.beams)
            with open(os.path.join(hypdir, f"{stem}.txt"), "w") as f:
                f.write("".join(t for _, t in commits).strip() + "\n")
            if stem not in offline:
                offline[stem] = offline_words(args.verbatim, model, audio)
            heard[stem] = heard_at_commit(commits, offline[stem])
            print(f"  {label}: {stem} done", file=sys.stderr)
        runs.append((label, hypdir, heard))
    runs.append(("verbatim offline", os.path.join(vdir, "offline"), {}))

    scores = [wer_per_file(h, audio_dir) for _, h, _ in runs]
    print()
    print("| reading | WER, all files | WER, long file | WER, the other files | heard at commit p50 / p95 / max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (label, _, heard), s in zip(runs, scores):
        files = {f["name"]: f for f in s["files"]}
        rest = [f for k, f in files.items() if k != "long_ls_2609_3080_concat"]
        rest_wer = (100 * sum(f["errors"] for f in rest) / max(1, sum(f["ref_words"] for f in rest))
                    if rest else float("nan"))
        long = 100 * files.get("long_ls_2609_3080_concat", {}).get("wer", float("nan"))
        all_heard = [x for v in heard.values() for x in v]
        lat = (f"{percentile(all_heard, 50):.2f} / {percentile(all_heard, 95):.2f} / {max(all_heard):.2f} s"
               if all_heard else "")
        total = 100 * s["total"]["wer"]
        cell = lambda x: "-" if x != x else f"{x:.2f} %"
        print(f"| {label} | {cell(total)} | {cell(long)} | {cell(rest_wer)} | {lat} |")
    print()
    print("| file | words | " + " | ".join(label for label, _, _ in runs) + " |")
    print("| --- | ---: |" + " ---: |" * len(runs))
    for stem in stems:
        row = []
        for s in scores:
            f = next((f for f in s["files"] if f["name"] == stem), None)
            row.append(f"{100 * f['wer']:.2f} %" if f else "-")
        words = next((f["ref_words"] for f in scores[0]["files"] if f["name"] == stem), 0)
        print(f"| {stem} | {words} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
