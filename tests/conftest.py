"""What every backend-generic test shares: the backends to run on, and one way to read results.

``BACKENDS`` always holds the NumPy backend twice: its default generated fast path
("numpy") and its node-by-node interpreter, the oracle ("numpy-oracle"). It holds
"triton" when ``import backends.triton`` succeeds (torch and triton installed);
without CUDA that backend runs its kernels under Triton's interpreter on the CPU.
Tests take the ``backend`` fixture, or parametrize over ``BACKENDS`` themselves
when they need a subset (``available``).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pytest

import graphc as gc

# The reliability counts (graphs fuzzed, mismatches, redraws, misuses) print in the summary; listed
# here so the pytest-xdist controller, not only its workers, loads the plugin.
pytest_plugins = ["fuzz_report"]


def _triton_importable() -> bool:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no CUDA device; running under the interpreter"
        try:
            import backends.triton  # noqa: F401
        except ImportError:
            return False
    return True


TRITON = _triton_importable()


@dataclass(frozen=True)
class Backend:
    """One way to run a compiled graph, and how closely its float32 results must match float64."""

    id: str  # the test id
    name: str  # gc.compile's backend=
    options: Mapping[str, Any] = field(default_factory=dict)
    rtol32: float = 1e-5  # float32 results against a float64 reference
    rtol32_matmul: float = 1e-5  # the same through chains of matmuls (long float32 dot products)
    interpreted: bool = False  # slow per launch: tests run it on fewer seeds and shapes

    def compile(self, outputs: gc.Tensor | Sequence[gc.Tensor], **options: Any) -> gc.Program:
        return gc.compile(outputs, backend=self.name, **{**self.options, **options})

    def __str__(self) -> str:
        return self.id


def _triton_interpreted() -> bool:
    if not TRITON:
        return True
    import backends.triton

    return backends.triton.INTERPRET


NUMPY = Backend("numpy", "numpy")
NUMPY_ORACLE = Backend("numpy-oracle", "numpy", {"fast": False})
# tl.dot and tl.sum add in another order than NumPy's BLAS: 1e-4 per op, 1e-3 through matmul chains.
TRITON_BACKEND = Backend("triton", "triton", rtol32=1e-4, rtol32_matmul=1e-3, interpreted=_triton_interpreted())

BACKENDS: tuple[Backend, ...] = (NUMPY, NUMPY_ORACLE) + ((TRITON_BACKEND,) if TRITON else ())


def available(*ids: str) -> list[Backend]:
    """The backends among `ids` that this machine can run (for parametrize)."""
    return [b for b in BACKENDS if b.id in ids]


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


def to_numpy(value: Any) -> np.ndarray:
    """A backend's result as a NumPy array: torch tensors (Triton) and NumPy arrays alike."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
