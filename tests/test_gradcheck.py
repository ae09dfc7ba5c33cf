"""Gradient checks for every op of the fuzz table (every op of graphc.ops.OPS and the DSL's
composites), in the manner of torch.autograd.gradcheck and JAX's check_grads:

- first order: graphc's vector-Jacobian product J^T v against central differences of
  <v, f(x)>, element by element, in float64;
- the dot-product test: <J^T v, u> against the directional derivative <v, J u> along a
  random direction u, in float64 and through the Triton backend's fused kernels;
- second order: gradients are graph nodes, so grad of <J^T v, u> gives a
  Hessian-vector product, checked against central differences of J^T v along u, on
  the reference and on Triton.

Graphs are one random step of the op (tests/fuzzgraphs.py), with inputs from the op's
safe domain, away from kinks.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from fuzz_report import count
from fuzzgraphs import (FUZZ_OPS, MAX_DRAWS, Built, build, call, draw_feeds, graph_specs, redraw_reason,
                        to_numpy, triton_available)

TRITON = triton_available()
H = 1e-6  # central-difference step (float64)
EXAMPLES = 3  # random single-step graphs per op


def _fair_feeds(built: Built, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    ref = gc.compile(built.outputs, backend="numpy", dtype="float64")
    for _ in range(MAX_DRAWS):
        feeds = draw_feeds(built, rng)
        if redraw_reason(built, feeds, [np.asarray(v) for v in call(ref, feeds)]) is None:
            return feeds
    return None


def _f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).astype(np.float64)


class Checked:
    """One built graph: <v, y>, its gradients, and a Hessian-vector product, compiled in float64."""

    def __init__(self, built: Built, rng: np.random.Generator):
        self.built = built
        self.sources = [built.spec.nodes[i] for i in built.wrt]
        # u: a random direction per differentiated source (float32-exact: it is baked in as a const).
        self.u = [_f32(rng.standard_normal(s.shape)) for s in self.sources]  # type: ignore[union-attr]
        self.grads = list(built.grads)
        dot = gc.sum(self.grads[0] * self.u[0])
        for g_i, u_i in zip(self.grads[1:], self.u[1:]):
            dot = dot + gc.sum(g_i * u_i)
        # The second-order graph: d<J^T v, u>/dx = H u (0 where J^T v does not depend on a source).
        above = built.graph.ancestors([dot.id])
        xs = [built.tensors[i] for i in built.wrt]
        curved = [x for x in xs if x.id in above]
        hvp = dict(zip((x.id for x in curved), gc.grad(dot, curved))) if curved else {}
        self.hvp = [hvp.get(x.id, gc.fn(sp.Integer(0), x)) for x in xs]
        self.value = gc.compile([built.tensors[-1]], backend="numpy", dtype="float64")
        self.vjp = gc.compile(self.grads, backend="numpy", dtype="float64")
        self.hessian = gc.compile(self.hvp, backend="numpy", dtype="float64")

    def objective(self, feeds: dict[str, np.ndarray]) -> float:
        """<v, y(x)>, with v the cotangent feed (1 for a scalar y)."""
        (y,) = call(self.value, feeds)
        return float(np.sum(np.asarray(y) * feeds.get("cotangent", 1.0)))

    def shifted(self, feeds: dict[str, np.ndarray], step: float, along: list[np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(feeds)
        for s, d in zip(self.sources, along):
            out[s.name] = feeds[s.name] + step * d  # type: ignore[union-attr]
        return out


def _single(program: gc.Program, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [to_numpy(v) for v in call(program, feeds)]


@pytest.mark.parametrize("op", sorted(FUZZ_OPS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(data=st.data())
def test_gradients_of_every_op(op: str, data: st.DataObject) -> None:
    spec = data.draw(graph_specs(max_steps=1, ops=[op]))
    built = build(spec)
    if not built.wrt:
        count("gradcheck", no_float_input=1)
        return
    rng = np.random.default_rng(len(repr(spec)))
    feeds = _fair_feeds(built, rng)
    if feeds is None:
        count("gradcheck", rejected=1)
        return
    c = Checked(built, rng)
    grads = _single(c.vjp, feeds)

    # 1. every partial derivative against central differences of <v, y>
    for s, g in zip(c.sources, grads):
        numeric = np.zeros(s.shape)  # type: ignore[union-attr]
        for k in np.ndindex(*s.shape):  # type: ignore[union-attr]
            e = np.zeros(s.shape)  # type: ignore[union-attr]
            e[k] = 1.0
            plus = c.objective(c.shifted(feeds, H, [e if t is s else np.zeros(t.shape) for t in c.sources]))
            minus = c.objective(c.shifted(feeds, -H, [e if t is s else np.zeros(t.shape) for t in c.sources]))
            numeric[k] = (plus - minus) / (2 * H)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-6 * max(1.0, np.max(np.abs(numeric))),
                                   err_msg=f"d{op}/d{s.name}")  # type: ignore[union-attr]

    # 2. the dot-product test along u: <J^T v, u> = d/dt <v, y(x + t u)>
    directional = (c.objective(c.shifted(feeds, H, c.u)) - c.objective(c.shifted(feeds, -H, c.u))) / (2 * H)
    scale = max(1.0, abs(directional))
    assert abs(sum(float(np.sum(g * u)) for g, u in zip(grads, c.u)) - directional) <= 1e-6 * scale

    # 3. second order: H u against central differences of J^T v along u
    hvp = _single(c.hessian, feeds)
    plus, minus = _single(c.vjp, c.shifted(feeds, H, c.u)), _single(c.vjp, c.shifted(feeds, -H, c.u))
    for hv, p, m in zip(hvp, plus, minus):
        numeric = (p - m) / (2 * H)
        np.testing.assert_allclose(hv, numeric, rtol=1e-4, atol=1e-5 * max(1.0, np.max(np.abs(numeric))))

    # 4. the same gradients and Hessian-vector products through Triton's fused kernels (float32)
    if TRITON:
        tri = _single(gc.compile(c.grads + c.hvp, backend="triton"), feeds)
        for got, want in zip(tri, grads + hvp):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.max(np.abs(want))))
        assert abs(sum(float(np.sum(g * u)) for g, u in zip(tri, c.u)) - directional) <= 1e-4 * scale
    count("gradcheck", graphs=1, **{f"op_{op}": 1}, triton=int(TRITON))
