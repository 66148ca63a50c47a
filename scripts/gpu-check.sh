#!/usr/bin/env bash
# Runs on the GPU machine (device tool), after scripts/build-cuda.sh packed .gpu/:
# the device-generic candle tests on CUDA, `validate --device cuda` on digits32 and synth3x32,
# and `bench-gpu` on cuda and (shorter) on the machine's CPU for the ratio. Everything lands
# in $OUT (default ./gpu-out): JSON, tables, figures, logs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out" /tmp/covlab-gpu
for f in .gpu/*.xz; do
  b=$(basename "$f" .xz)
  xz -dc "$f" > "/tmp/covlab-gpu/$b" && chmod +x "/tmp/covlab-gpu/$b"
done
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
for t in /tmp/covlab-gpu/test-*; do
  ( time "$t" cuda:: --test-threads 1 ) > "$out/$(basename "$t").log" 2>&1
  echo "$(basename "$t"): rc $?" >> "$out/summary.txt"
done
( time /tmp/covlab-gpu/validate --device cuda --data digits32,synth3x32 --families beta,beta-tilde,analytic,diag,hutchinson-4,lgs-3 \
    --json "$out/validate_cuda.json" ) > "$out/validate_cuda_table.txt" 2> "$out/validate_cuda.err"
echo "validate: rc $?" >> "$out/summary.txt"
( time /tmp/covlab-gpu/bench-gpu --device cuda --batches 64,256,1024,4096 \
    --json "$out/bench_gpu_cuda.json" --figure "$out/bench_gpu_cuda" ) > "$out/bench_gpu_cuda.log" 2>&1
echo "bench-gpu cuda: rc $?" >> "$out/summary.txt"
( time /tmp/covlab-gpu/bench-gpu --device cpu --presets synth3x32 --batches 1024 --trajectory-samples 0 \
    --f64-core true --json "$out/bench_gpu_cpu_gpuhost.json" --figure "$out/bench_gpu_cpu_gpuhost" ) > "$out/bench_gpu_cpu.log" 2>&1
echo "bench-gpu cpu: rc $?" >> "$out/summary.txt"
cat "$out/summary.txt"
