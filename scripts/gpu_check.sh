#!/usr/bin/env bash
# On a CUDA machine: run the GPU tests, then print kernel counts, bytes moved and step times
# of the lecture models (graphc Triton vs PyTorch eager). Usage: scripts/gpu_check.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-.venv/bin/python}}"
export GRAPHC_CACHE_DIR="${GRAPHC_CACHE_DIR:-$(mktemp -d)}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
"$PY" -m pytest -q -p no:randomly tests/test_gpu.py tests/test_triton_models.py tests/test_triton_ops.py
"$PY" - <<'PY'
import sys, time
sys.path.insert(0, "tests")
import numpy as np, torch
import graphc as gc
from lecture_models import MODELS, feeds

def timed(fn, n=50):
    fn(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6

print(f"{'model':10s} {'kernels':>7s} {'bytes/step':>12s} {'graphc us':>10s} {'cuda graph us':>14s}")
for name, (build, lr, target) in MODELS.items():
    loss = build()
    batch = {k: torch.as_tensor(v, device="cuda") for k, v in feeds(name, np.random.default_rng(0)).items()}
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton")
    graphed = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton", cuda_graph=True)
    rep = step.executable.module.REPORT
    moved = sum(r + w for _, r, w in rep["kernels"])
    print(f"{name:10s} {step.num_kernels:7d} {moved:12,d} {timed(lambda: step(**batch)):10.1f} "
          f"{timed(lambda: graphed(**batch)):14.1f}   (target <= {target})")
PY
