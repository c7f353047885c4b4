#!/usr/bin/env bash
# Subtitle a whole tree of recordings on a Slurm cluster: a job array of 16 tasks, each of which
# transcribes its own share of the files (`--shard auto`: task ID of COUNT, from Slurm's
# SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT; a file belongs to the task where a stable hash
# of its path below INPUT_DIR, modulo COUNT, equals the task's index).
#
#   sbatch examples/slurm-array.sh
#   INPUT_DIR=/scratch/lectures OUTPUT_DIR=/scratch/subtitles MODEL=small.en \
#     sbatch examples/slurm-array.sh
#   sbatch --array=0-63%16 examples/slurm-array.sh    # 64 shards, at most 16 running at once
#
# Settings (environment variables; sbatch passes the submitting shell's environment to every
# task, so set them on the sbatch command line as above):
#   INPUT_DIR   the recordings, searched recursively            (default: $PWD/recordings)
#   OUTPUT_DIR  where NAME.srt goes, mirroring the tree below INPUT_DIR, and the per-task
#               reports report-TASK.jsonl                        (default: $PWD/subtitles)
#   VERBATIM    the verbatim binary                              (default: verbatim on PATH)
#   MODEL       a model name or a path to a ggml model file      (default: base.en)
#   SHARD_COUNT the number of shards, only for resubmitting some tasks (see below)
#
# Models: compute nodes are often offline, and 16 tasks should not download the same model at
# once, so the tasks run with --offline. Fetch the model once beforehand, on a node with network
# access, into a store every node can read:
#   export VERBATIM_MODELS_DIR=/shared/verbatim-models   # also exported to the tasks by sbatch
#   verbatim models pull base.en
# (or set MODEL to the path of a .bin file).
#
# Retrying: outputs are written atomically and existing outputs are skipped, so rerunning is
# always safe and only does the work that is missing. After some tasks failed (exit 3: some files
# failed; see the report-TASK.jsonl files and the .out logs), or were killed by a time limit,
# resubmit the SAME array:
#   sbatch examples/slurm-array.sh
# Finished shards then only skip their files. To rerun just some task indices instead, pin the
# shard count, because with --array=3,7 Slurm would tell each task that the array has 2 tasks:
#   SHARD_COUNT=16 sbatch --array=3,7 examples/slurm-array.sh
# Do not change the number of shards between runs unless every earlier task finished: files move
# between shards, which is harmless (they are skipped) but makes the reports harder to follow.
#
# Options given to sbatch override the #SBATCH lines below.
#SBATCH --job-name=verbatim-subtitle
#SBATCH --array=0-15
#SBATCH --cpus-per-task=2
#SBATCH --output=verbatim-subtitle-%A_%a.out

set -euo pipefail

: "${SLURM_ARRAY_TASK_ID:?run this script with sbatch: it is a Slurm job array}"
INPUT_DIR="${INPUT_DIR:-$PWD/recordings}"
OUTPUT_DIR="${OUTPUT_DIR:-$PWD/subtitles}"
VERBATIM="${VERBATIM:-verbatim}"
MODEL="${MODEL:-base.en}"

if [ -n "${SHARD_COUNT:-}" ]; then
  shard="$SLURM_ARRAY_TASK_ID/$SHARD_COUNT"
else
  shard=auto
fi

mkdir -p "$OUTPUT_DIR"
echo "task $SLURM_ARRAY_TASK_ID (shard $shard) on $(hostname): $INPUT_DIR -> $OUTPUT_DIR"

# -j: transcribe as many files at once as the task has CPUs.
# Exit status: 0 all done or skipped, 3 some files failed (the task shows as FAILED), 1 fatal.
"$VERBATIM" subtitle "$INPUT_DIR" -r -o "$OUTPUT_DIR" \
  --shard "$shard" \
  --model "$MODEL" --offline \
  -j "${SLURM_CPUS_PER_TASK:-1}" \
  --report "$OUTPUT_DIR/report-$SLURM_ARRAY_TASK_ID.jsonl"
