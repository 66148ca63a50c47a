#!/usr/bin/env bash
# Run a study sweep as a Slurm job array of shards, then merge them in a dependent job.
# Tested on a real single-node Slurm 22.05 by .ci/slurm-test.sh.
#
#   cargo build --release --features candle --bin study   # once; without --features candle the
#                                                         # learned, validate and bench-gpu kinds are refused
#   STUDY=studies/samplers.toml SHARDS=8 bash studies/slurm_array.sh
#
# Settings (environment):
#   STUDY      the study file (required)
#   SHARDS     number of shards, one array task each (default 4)
#   CPUS       CPUs per shard, --cpus-per-task (default 8)
#   TIME       time limit per shard (default 02:00:00)
#   BIN        the study binary (default ROOT/target/release/study)
#   SHARD_DIR  where the shards, and the logs under SHARD_DIR/logs, go (default ROOT/studies/shards)
# ROOT is the repository this script is in, so the defaults hold from any directory; relative
# paths given in STUDY, BIN and SHARD_DIR are relative to the current directory. Partition,
# account and the like: sbatch's own environment (SBATCH_PARTITION, SBATCH_ACCOUNT, ...).
#
# Shard i of n (0-based) computes the cells whose index is i modulo n; each cell's numbers do
# not depend on which other cells run, so `study merge` reassembles exactly the result of one
# unsharded `study run` (bit for bit; tested in tests/studies.rs, tests/cli_study.rs and, through
# Slurm, .ci/slurm-test.sh). The shard outputs go to a directory on the shared filesystem; the
# merge checks that every shard ran the same study file (SHA-256) and that no shard is missing.
#
# Before submitting anything it checks, and exits 2 naming the setting when one fails: the
# study file is readable, the binary runs, SHARDS and CPUS are positive integers, and Slurm
# can place a shard at all (`sbatch --test-only`; a --cpus-per-task larger than every node
# would otherwise be accepted and stay pending for ever, reason PartitionConfig). It then
# deletes this study's shard outputs left in SHARD_DIR by an earlier run (with the same or
# another SHARDS), so the merge sees only this run's shards; do not run two arrays of one
# study into one SHARD_DIR at the same time. The merge is submitted with
# --kill-on-invalid-dep=yes: when a shard fails, Slurm cancels the merge (reason
# DependencyNeverSatisfied) instead of leaving it pending for ever.
#
# Prints `array <job id> (<n> shards), merge <job id>` as its last line.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "slurm_array.sh: $*" >&2
  exit 2
}

# An absolute path: $1 as is when absolute, else relative to the current directory.
absolute() {
  case $1 in
  /*) printf '%s' "$1" ;;
  *) printf '%s' "$PWD/$1" ;;
  esac
}

# $1 quoted for sh (single quotes; an embedded ' as '\''), for the --wrap command lines.
shq() {
  local s=${1//\'/\'\\\'\'}
  printf "'%s'" "$s"
}

STUDY=${STUDY:-}
[[ -n $STUDY ]] || die "set STUDY=studies/<name>.toml"
SHARDS=${SHARDS:-4}
CPUS=${CPUS:-8}
TIME=${TIME:-02:00:00}
BIN=$(absolute "${BIN:-$ROOT/target/release/study}")
SHARD_DIR=$(absolute "${SHARD_DIR:-$ROOT/studies/shards}")
STUDY=$(absolute "$STUDY")
LOG_DIR=$SHARD_DIR/logs

[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "SHARDS: a positive integer, got '$SHARDS'"
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "CPUS: a positive integer, got '$CPUS'"
[[ -f $STUDY && -r $STUDY ]] || die "STUDY: no readable study file $STUDY"
[[ -x $BIN && -f $BIN ]] ||
  die "BIN: no executable $BIN (build it: cargo build --release --features candle --bin study)"
"$BIN" --version >/dev/null 2>&1 || die "BIN: $BIN does not run ($BIN --version fails)"
command -v sbatch >/dev/null || die "sbatch not found (is this a Slurm login node?)"

name=$(basename "$STUDY")
name=${name%.*} # the study's name: the file stem, as `study` names its shard files

# Can Slurm place one shard? (The same request as the array below, nothing is submitted.)
if ! why=$(sbatch --test-only --cpus-per-task="$CPUS" --time="$TIME" --wrap=true 2>&1); then
  die "Slurm cannot run a shard with CPUS=$CPUS (--cpus-per-task), TIME=$TIME: $why"
fi

mkdir -p "$SHARD_DIR" "$LOG_DIR"
# Shards of an earlier run of this study (any SHARDS) would be merged with this run's.
rm -f -- "$SHARD_DIR/$name".shard-*-of-*.json

# The array: one task per shard. Results are identical for any --threads.
array_job=$(sbatch --parsable \
  --job-name="study-$name" \
  --array="0-$((SHARDS - 1))" \
  --cpus-per-task="$CPUS" \
  --time="$TIME" \
  --chdir="$ROOT" \
  --output="$LOG_DIR/%x-%a.out" \
  --wrap="$(shq "$BIN") run $(shq "$STUDY") --shard \${SLURM_ARRAY_TASK_ID}/$SHARDS --shard-dir $(shq "$SHARD_DIR") --threads \${SLURM_CPUS_PER_TASK}")
array_job=${array_job%%;*} # --parsable prints "id[;cluster]"

# The merge: runs once every array task has succeeded (afterok), writes the results JSON and
# the figures named in the study file; cancelled by Slurm when a task fails.
if ! merge_job=$(sbatch --parsable \
  --job-name="merge-$name" \
  --dependency="afterok:${array_job}" \
  --kill-on-invalid-dep=yes \
  --cpus-per-task=1 \
  --time=00:10:00 \
  --chdir="$ROOT" \
  --output="$LOG_DIR/%x.out" \
  --wrap="$(shq "$BIN") merge $(shq "$STUDY") --shard-dir $(shq "$SHARD_DIR")"); then
  scancel "$array_job" || true # no array without its merge
  echo "slurm_array.sh: submitting the merge failed; cancelled array $array_job" >&2
  exit 1
fi
merge_job=${merge_job%%;*}

echo "logs: $LOG_DIR"
echo "array ${array_job} (${SHARDS} shards), merge ${merge_job}"
