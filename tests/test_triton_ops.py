"""Every op spec of tests/op_specs.py on the Triton backend, forward and seeded gradients,
against the NumPy backend in float64 (the oracle).

The shared op suite runs all shapes of every spec; here each spec runs at its
first and last argument shapes (a plain and a broadcast case) and the special
points (kinks, extremes) that must stay finite in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from op_specs import SPECIAL, SPECS, Case, draw, scale_of

pytest.importorskip("backends.triton")

RTOL = 1e-4  # float32 pointwise against float64
RTOL_MATMUL = 1e-3  # float32 matmul chains

CASES = [Case(s, shapes) for s in SPECS for shapes in dict.fromkeys([s.shapes[0], s.shapes[-1]])]


def _build(case: Case, shapes: tuple) -> tuple[gc.Tensor, tuple[gc.Tensor, ...]]:
    spec = case.spec
    with gc.Graph(spec.label):
        xs = [gc.input(f"x{i}", s, dtype="int64" if a.integer else "float32")
              for i, (a, s) in enumerate(zip(spec.args, shapes))]
        y = spec.gc_fn(*xs)
        floats = [xs[i] for i, a in enumerate(spec.args) if not a.integer]
        grads: tuple[gc.Tensor, ...] = ()
        if floats:
            w = gc.input("w", y.shape)
            grads = gc.grad(y, floats, seed=w)
    return y, grads


def _compare(case: Case, xs: list[np.ndarray], w: np.ndarray) -> None:
    y, grads = _build(case, tuple(np.shape(x) for x in xs))
    feeds = {f"x{i}": (x.astype(np.float32) if x.dtype.kind == "f" else x) for i, x in enumerate(xs)}
    if grads:
        feeds["w"] = np.asarray(w, dtype=np.float32)
    ref = gc.compile([y, *grads], backend="numpy", dtype="float64")(**feeds)
    got = gc.compile([y, *grads], backend="triton")(**feeds)
    rtol = RTOL_MATMUL if case.spec.op in ("matmul", "mm") else RTOL
    for r, t in zip(ref, got):
        t = t.cpu().numpy()
        assert t.shape == np.shape(r)
        np.testing.assert_allclose(t, r, rtol=rtol, atol=rtol * scale_of(np.asarray(r)), err_msg=case.id)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_numpy_oracle(case: Case) -> None:
    xs, w = draw(case, 0)
    _compare(case, xs, w)


@pytest.mark.parametrize("spec,point", [(s, p) for s, p in SPECIAL if s.op in ("relu", "abs", "sigmoid", "softplus",
                                                                               "log_softmax", "maximum", "tanh")],
                         ids=lambda v: getattr(v, "label", None) or str(v)[:30])
def test_special_points_match_numpy_oracle(spec, point) -> None:  # type: ignore[no-untyped-def]
    xs = [np.asarray(p, dtype=np.int64 if a.integer else np.float64) for p, a in zip(point, spec.args)]
    case = Case(spec, tuple(np.shape(x) for x in xs))
    w = np.ones(np.shape(spec.np_fn(*xs)))
    _compare(case, xs, w)
