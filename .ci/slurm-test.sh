#!/usr/bin/env bash
# studies/slurm_array.sh on a real single-node Slurm (scripts/slurm-local.sh: Debian's
# slurmctld, slurmd and munge, loopback only), as root. Run after `cargo test --features candle`,
# which builds the study binary this uses (BIN, default target/debug/study; no --release build).
#
#   bash .ci/slurm-test.sh          # ends with `slurm: N passed, M failed`, exit 1 if M > 0
#
# The cases (each bounded in time; on 2 cores the whole test took 11-21 s after a
# package install of 20-35 s):
#   1. the array + merge of studies/guidance.toml (88 cells, 3 shards), submitted from the
#      studies/ directory of a copy whose path has spaces, with the defaults for BIN and
#      SHARD_DIR and a leftover shard of a 5-shard run in the shard directory, equals an
#      unsharded `study run` bit for bit (results JSON without `provenance`);
#   2. a failing shard (a BIN that exits 1 in array task 1) gets the merge cancelled within
#      30 s instead of leaving it pending, and no results JSON is written;
#   3. CPUS larger than the node is refused before anything is submitted (exit 2, names CPUS);
#   4. a missing BIN or STUDY is refused before anything is submitted (exit 2, names it).
# COVLAB_SKIP_SLURM=1 skips it all (prints `slurm: skipped`), for machines where it cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [[ ${COVLAB_SKIP_SLURM:-} == 1 ]]; then
  echo "slurm: skipped (COVLAB_SKIP_SLURM=1)"
  exit 0
fi
[[ $EUID -eq 0 ]] || {
  echo "slurm-test: needs root (installs and starts munged, slurmctld, slurmd); COVLAB_SKIP_SLURM=1 skips it" >&2
  exit 2
}
STUDY_BIN=$(realpath -m "${BIN:-target/debug/study}")
[[ -x $STUDY_BIN ]] || {
  echo "slurm-test: BIN: no executable $STUDY_BIN (cargo test --features candle builds it)" >&2
  exit 2
}
# slurm_array.sh's settings come only from the cases below, never from this environment.
unset BIN STUDY SHARDS CPUS TIME SHARD_DIR

start=$SECONDS
# A space in every path the jobs see, on purpose (the --wrap command lines must quote them).
work=$(mktemp -d "/tmp/covlab slurm test.XXXXXX")
# The cluster's own files (slurm.conf cannot hold a path with spaces).
SLURM_LOCAL_DIR=$(mktemp -d /tmp/covlab-slurm.XXXXXX)
export SLURM_LOCAL_DIR
cleanup() {
  bash "$REPO/scripts/slurm-local.sh" down || true
  rm -rf "$work" "$SLURM_LOCAL_DIR"
}
trap cleanup EXIT

# jq compares the results JSONs (numbers as f64 with 17 significant digits: exact).
if ! command -v jq >/dev/null; then
  DEBIAN_FRONTEND=noninteractive timeout 120 apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 120 apt-get install -y -q jq >/dev/null
fi
timeout 300 bash scripts/slurm-local.sh up || {
  echo "slurm: 0 passed, 1 failed (the local cluster did not come up)"
  exit 1
}
export SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf
echo "slurm-test: cluster up after $((SECONDS - start)) s"

passed=0
failed=0
fail() {
  echo "  FAIL: $*" >&2
  return 1
}

# A copy of the repository's layout under $1: studies/guidance.toml, studies/slurm_array.sh
# and target/release/study (a link to BIN), so the script's defaults point into the copy.
layout() {
  mkdir -p "$1/studies" "$1/target/release"
  cp studies/guidance.toml "$1/studies/"
  cp studies/slurm_array.sh "$1/studies/"
  ln -s "$STUDY_BIN" "$1/target/release/study"
}

# The state of job $1 (for an array, of every task) until none is PENDING or RUNNING, at most
# $2 seconds; prints the last states seen.
wait_job() {
  local job=$1 limit=$2 states t0=$SECONDS
  while :; do
    states=$(squeue -h -t all -j "$job" -o %T 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n $states && ! $states =~ PENDING|RUNNING|CONFIGURING|COMPLETING ]]; then break; fi
    ((SECONDS - t0 < limit)) || break
    sleep 0.2
  done
  printf '%s' "${states% }"
}

# The two job ids from slurm_array.sh's last line `array A (n shards), merge M`.
job_ids() {
  sed -n 's/^array \([0-9]*\) (.*), merge \([0-9]*\)$/\1 \2/p' <<<"$1"
}

jobs_now() { squeue -h -t all -o %i | wc -l; }

case_merge_equals_unsharded() {
  local ref=$work/ref run="$work/array run" out ids array merge st
  layout "$ref"
  timeout 60 "$STUDY_BIN" run "$ref/studies/guidance.toml" >/dev/null 2>&1 || fail "unsharded study run failed" || return 1
  layout "$run"
  # A leftover of another shard count: merged with the new shards it would break the merge.
  timeout 60 "$STUDY_BIN" run "$run/studies/guidance.toml" --shard 0/5 \
    --shard-dir "$run/studies/shards" >/dev/null 2>&1 || fail "leftover shard run failed" || return 1
  out=$(cd "$run/studies" && STUDY=guidance.toml SHARDS=3 CPUS=1 timeout 30 bash slurm_array.sh) ||
    fail "slurm_array.sh exited $?" || return 1
  ids=$(job_ids "$out")
  read -r array merge <<<"$ids"
  [[ -n ${merge:-} ]] || fail "no job ids in: $out" || return 1
  st=$(wait_job "$merge" 60)
  [[ $st == COMPLETED ]] || {
    cat "$run/studies/shards/logs/"*.out >&2 || true
    fail "merge job $merge is '$st' after at most 60 s, expected COMPLETED"
  } || return 1
  st=$(wait_job "$array" 5)
  [[ $st == COMPLETED ]] || fail "array job $array tasks are '$st'" || return 1
  [[ ! -e $run/studies/shards/guidance.shard-0-of-5.json ]] || fail "the leftover 0-of-5 shard is still there" || return 1
  grep -q "merged 3 shards" "$run/studies/shards/logs/merge-guidance.out" ||
    fail "merge log does not say 'merged 3 shards'" || return 1
  [[ ! -d $run/studies/studies ]] || fail "a stray studies/studies directory" || return 1
  jq -S 'del(.provenance)' "$ref/studies/results/guidance.json" >"$work/ref.json"
  jq -S 'del(.provenance)' "$run/studies/results/guidance.json" >"$work/merged.json"
  [[ $(jq 'length' "$work/ref.json") -gt 0 ]] || fail "empty results JSON" || return 1
  cmp "$work/ref.json" "$work/merged.json" || {
    diff "$work/ref.json" "$work/merged.json" | head -20 >&2
    fail "merged results differ from the unsharded run"
  } || return 1
  # The merge writes the same figures as the unsharded run.
  for f in "$ref"/figures/*; do
    [[ -s "$run/figures/$(basename "$f")" ]] || fail "merge wrote no $(basename "$f")" || return 1
  done
}

case_failing_shard_cancels_merge() {
  local run="$work/fail run" out ids array merge st
  layout "$run"
  # A BIN that fails in array task 1 (and works everywhere else, --version included).
  cat >"$run/failing study" <<EOF
#!/bin/sh
[ "\${SLURM_ARRAY_TASK_ID:-}" = 1 ] && { echo "task 1 fails on purpose" >&2; exit 1; }
exec '$STUDY_BIN' "\$@"
EOF
  chmod +x "$run/failing study"
  out=$(cd "$run" && STUDY=studies/guidance.toml SHARDS=3 CPUS=1 BIN="failing study" \
    timeout 30 bash studies/slurm_array.sh) || fail "slurm_array.sh exited $?" || return 1
  ids=$(job_ids "$out")
  read -r array merge <<<"$ids"
  [[ -n ${merge:-} ]] || fail "no job ids in: $out" || return 1
  st=$(wait_job "$merge" 30)
  [[ $st == CANCELLED || $st == FAILED ]] || {
    scontrol show job "$merge" >&2 || true
    fail "merge job $merge is '$st' 30 s after submission, expected CANCELLED (a shard failed)"
  } || return 1
  st=$(squeue -h -t all -j "${array}_1" -o %T)
  [[ $st == FAILED ]] || fail "array task 1 is '$st', expected FAILED" || return 1
  [[ ! -e $run/studies/results/guidance.json ]] || fail "a results JSON was written" || return 1
}

case_too_many_cpus_refused() {
  local run="$work/cpus run" before err rc=0
  layout "$run"
  before=$(jobs_now)
  err=$(cd "$run" && STUDY=studies/guidance.toml SHARDS=2 CPUS=$(($(nproc) + 64)) \
    timeout 30 bash studies/slurm_array.sh 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 2 ]] || fail "exit $rc, expected 2 (stderr: $err)" || return 1
  [[ $err == *CPUS* ]] || fail "stderr does not name CPUS: $err" || return 1
  [[ $(jobs_now) -eq $before ]] || fail "jobs were submitted" || return 1
}

case_missing_inputs_refused() {
  local run="$work/missing run" before err rc
  layout "$run"
  before=$(jobs_now)
  rc=0
  err=$(cd "$run" && STUDY=studies/guidance.toml BIN=no/such/study CPUS=1 \
    timeout 30 bash studies/slurm_array.sh 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 2 && $err == *BIN:* ]] || fail "missing BIN: exit $rc, stderr: $err" || return 1
  rc=0
  err=$(cd "$run" && STUDY=studies/no_such.toml CPUS=1 \
    timeout 30 bash studies/slurm_array.sh 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 2 && $err == *STUDY:* ]] || fail "missing STUDY: exit $rc, stderr: $err" || return 1
  [[ $(jobs_now) -eq $before ]] || fail "jobs were submitted" || return 1
}

for c in case_merge_equals_unsharded case_failing_shard_cancels_merge \
  case_too_many_cpus_refused case_missing_inputs_refused; do
  t0=$SECONDS
  if "$c"; then
    passed=$((passed + 1))
    echo "slurm-test: ${c#case_} ok ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1))
    echo "slurm-test: ${c#case_} FAILED ($((SECONDS - t0)) s)"
  fi
  scancel --user=root --quiet 2>/dev/null || true # nothing of one case outlives it
done
echo "slurm: ${passed} passed, ${failed} failed ($((SECONDS - start)) s)"
[[ $failed -eq 0 ]]
