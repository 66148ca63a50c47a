#!/usr/bin/env bash
# Builds a covlab binary with the `cuda` feature on a machine without a GPU, following
# ../shared/cuda/README.md: installs the pinned CUDA 13.0 build pieces (idempotent) and builds.
# Usage: scripts/build-cuda.sh <bin-name> [prefix]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: scripts/build-cuda.sh <bin-name> [prefix]}"
prefix="${2:-$HOME/.cache/covlab-cuda13}"
bash ../shared/cuda/setup-cuda-build.sh "$prefix"
# shellcheck disable=SC1091
. "$prefix/env.sh"
cargo build --release --features cuda --bin "$bin"
