"""The Triton backend: a fused Schedule as readable Triton kernels, on a GPU or under the interpreter.

    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1), backend="triton",
                      precision="ieee",   # or "tf32": tensor-core fp32 products, ~1e-3 relative error
                      cuda_graph=False,   # True: capture the whole step once, replay it (CUDA only)
                      fuse=True,          # False: one kernel per materialized node (for debugging)
                      autotune=None)      # matmul tiles autotuned on (M, N, K) on a GPU by default
    print(step.source)                    # the complete generated module
    print(step.report())                  # kernels, bytes read/written per call, arena size

Kernel modules are cached as .py files under $GRAPHC_CACHE_DIR (default
~/.cache/graphc). Without a CUDA device this sets ``TRITON_INTERPRET=1`` before
importing triton (Triton reads it when a kernel is decorated), says so once,
and runs the same kernels on the CPU.
"""

from __future__ import annotations

import os
import warnings

import torch

from graphc.backend import register_backend

_ON = ("1", "true", "yes", "on")

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "").lower() not in _ON:
    os.environ["TRITON_INTERPRET"] = "1"
    warnings.warn("graphc: no CUDA device; Triton kernels run under the interpreter (TRITON_INTERPRET=1) on the "
                  "CPU", RuntimeWarning)

#: Whether kernels run under Triton's interpreter, and where tensors live.
INTERPRET = os.environ.get("TRITON_INTERPRET", "").lower() in _ON
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

from .runtime import TritonExecutable, lower  # noqa: E402  (after TRITON_INTERPRET is settled)

register_backend("triton", lower)

__all__ = ["DEVICE", "INTERPRET", "TritonExecutable", "lower"]
