#!/usr/bin/env bash
# Run a study sweep as a Slurm job array of shards, then merge them in a dependent job.
# (An example for the lab's clusters; CI does not run Slurm.)
#
#   STUDY=studies/samplers.toml SHARDS=8 bash studies/slurm_array.sh
#
# Shard i of n (0-based) computes the cells whose index is i modulo n; each cell's numbers do
# not depend on which other cells run, so `study merge` reassembles exactly the result of one
# unsharded `study run` (bit for bit; tested in tests/studies.rs and tests/cli_study.rs). The
# shard outputs go to a directory on the shared filesystem; the merge checks that every shard
# ran the same study file (SHA-256) and that no shard is missing.
set -euo pipefail

STUDY=${STUDY:?set STUDY=studies/<name>.toml}
SHARDS=${SHARDS:-4}
SHARD_DIR=${SHARD_DIR:-studies/shards}
CPUS=${CPUS:-8}
BIN=${BIN:-target/release/study}   # build once: cargo build --release --bin study

mkdir -p "$SHARD_DIR" logs

# The array: one task per shard. Results are identical for any --threads.
array_job=$(sbatch --parsable \
  --job-name="study-$(basename "$STUDY" .toml)" \
  --array="0-$((SHARDS - 1))" \
  --cpus-per-task="$CPUS" \
  --time=02:00:00 \
  --output="logs/%x-%a.out" \
  --wrap="$BIN run $STUDY --shard \${SLURM_ARRAY_TASK_ID}/$SHARDS --shard-dir $SHARD_DIR --threads \${SLURM_CPUS_PER_TASK}")

# The merge: runs once every array task has succeeded (afterok), writes the results JSON and
# the figures named in the study file.
sbatch \
  --job-name="merge-$(basename "$STUDY" .toml)" \
  --dependency="afterok:${array_job}" \
  --cpus-per-task=1 \
  --time=00:10:00 \
  --output="logs/%x.out" \
  --wrap="$BIN merge $STUDY --shard-dir $SHARD_DIR"

echo "submitted array ${array_job} (${SHARDS} shards) and its merge"
