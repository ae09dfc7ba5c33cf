#!/usr/bin/env bash
# The benchmark on a CUDA machine: graphc-Triton with and without CUDA-graph capture against
# PyTorch eager and torch.compile(mode="reduce-overhead"), then the achieved bandwidth of the
# fused pointwise kernels as a fraction of the device's peak. Without CUDA it says so and exits 0.
# Usage: scripts/gpu_bench.sh [extra graphc bench flags, e.g. --workloads W2,W4]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_bench: no CUDA device (or no torch) here; skipping the GPU benchmark"
    exit 0
fi
OUT=${OUT:-bench-gpu}
mkdir -p "$OUT"
"$PY" -m graphc.cli bench --gpu --json "$OUT/gpu.json" --png "$OUT/gpu.png" -v "$@" | tee "$OUT/gpu.md"
