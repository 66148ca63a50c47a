#!/usr/bin/env bash
# Builds the GPU binaries with the `cuda` feature on a machine without a GPU, following
# ../shared/cuda/README.md: installs the pinned CUDA 13.0 build pieces (idempotent), builds
# `validate`, `bench-gpu` and the device-generic candle test binary (tests/tensor) into target-cuda/, and
# packs them stripped and xz-compressed into .gpu/ (a cuda binary is ~140 MB with debug info,
# ~53 MB stripped, ~6 MB compressed; the device tool carries at most 64 MiB). Then run on the GPU machine:
#   device run, carry [".gpu"], command: bash scripts/gpu-check.sh
# Usage: scripts/build-cuda.sh [prefix]     (about 10 minutes cold on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-$HOME/.cache/covlab-cuda13}"
bash ../shared/cuda/setup-cuda-build.sh "$prefix" >/dev/null
# shellcheck disable=SC1091
. "$prefix/env.sh"
target=target-cuda
cargo build --release --features cuda --target-dir "$target" --bin validate --bin bench-gpu
tests=$(cargo test --release --features cuda --target-dir "$target" --no-run \
  --test tensor --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
mkdir -p .gpu
rm -f .gpu/*.xz
# Debug info stripped (139 MB -> 53 MB), then xz (-> ~6 MB each).
pack() {
  cp "$1" "/tmp/covlab-pack-$2" && strip "/tmp/covlab-pack-$2"
  xz -T0 -6 -c "/tmp/covlab-pack-$2" > ".gpu/$2.xz" && rm -f "/tmp/covlab-pack-$2"
}
for b in validate bench-gpu; do
  pack "$target/release/$b" "$b"
done
while read -r name exe; do
  [ -n "$name" ] && pack "$exe" "test-$name"
done <<< "$tests"
ls -l .gpu
# Smoke test here (no GPU): the binary must start with the stub driver and say so clearly.
LD_LIBRARY_PATH="$CUDA_HOME/lib/stubs:$CUDA_HOME/lib" "$target/release/validate" --device cuda \
  --data digits8 --samples 0 --ce-data none --json /tmp/covlab-cuda-smoke.json || true
