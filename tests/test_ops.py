"""Op-table-driven tests: one spec per op of the contract, expanded over shapes.

Every spec says how to build the op in graphc, in NumPy and in torch, and where
to draw its inputs. Each case (spec x argument shapes) is checked for
  * forward against NumPy, in float32 and float64;
  * gradient against central finite differences in float64;
  * gradient against ``torch.autograd`` in float64 (and float32 loosely);
over several seeds, the pointwise ops over every pair of the broadcast shapes
(), (3, 4), (3, 1), (1, 4). Each spec's special points (kinks such as relu(0),
ties, extremes such as softplus(1000)) are checked against torch: the
conventions must match and everything must stay finite in float32.

The numpy backend runs every check on both of its paths (interpreter and generated
code). Every other backend of tests/conftest.py (Triton, when it imports) runs the
forward, torch-gradient and special-point checks in float32 at its own tolerance.

The specs live in tests/op_specs.py. A coverage test fails when an op is added to
``gc.OPS`` (or a function to the contract) without a spec there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pytest

import graphc as gc
from graphc.ops import SOURCE
from conftest import BACKENDS, NUMPY, NUMPY_ORACLE, Backend, to_numpy
from op_specs import CASES, CONTRACT, SPECIAL, SPECS, Case, Shape, Spec, draw, scale_of, torch_reference

SEEDS = (0, 1, 2)

# Central differences: truncation error is h**2 * f''' / 6 (about 1e-13 here); round-off
# is about eps * |loss| / h, which ROUNDOFF_ATOL bounds. h = 1e-6 balances the two.
FD_STEP = 1e-6
FD_RTOL = 1e-6
EPS64 = np.finfo(np.float64).eps


# --- running a case -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """How thoroughly one backend is checked: its programs, seeds and dtypes."""

    backends: tuple[Backend, ...]
    seeds: tuple[int, ...]
    float64: bool  # also check float64 graphs, to 1e-12, and the reference backend's dtype option

    @property
    def id(self) -> str:
        return self.backends[0].name


# The numpy backend runs both ways it can: the node-by-node interpreter (the oracle) and the
# generated fast path (the default); both must agree with the references, in both dtypes.
# Other backends run float32 (what a GPU runs); an interpreted one (Triton under TRITON_INTERPRET
# on a CPU, where each kernel launch costs milliseconds) at one seed, which already runs every
# generated kernel: new seeds change the numbers, not the code under test.
NUMPY_RUN = Run((NUMPY_ORACLE, NUMPY), SEEDS, float64=True)
RUNS: tuple[Run, ...] = (NUMPY_RUN,) + tuple(Run((b,), (0,) if b.interpreted else SEEDS, float64=False)
                                            for b in BACKENDS if b.name != "numpy")

# On an interpreted backend, binary pointwise ops run at these argument shapes only (equal
# shapes, both operands broadcast, a scalar operand, one operand broadcast) instead of all 16
# pairs: the broadcast indexing they exercise is the same, at a quarter of the launches.
INTERPRETED_PAIRS = {((3, 4), (3, 4)), ((3, 1), (1, 4)), ((), (3, 4)), ((1, 4), (3, 4))}


def representative(case: Case) -> bool:
    """Specs checked at every pair of broadcast shapes count only their INTERPRETED_PAIRS cases."""
    return len(case.spec.shapes) <= len(INTERPRETED_PAIRS) or case.shapes in INTERPRETED_PAIRS


def runs_for(cases: Sequence[Case]) -> list[Any]:
    """(case, run) parameters: every case on numpy; on an interpreted backend, the representative ones."""
    return [pytest.param(c, run, id=c.id if run is NUMPY_RUN else f"{c.id}-{run.id}")
            for run in RUNS for c in cases if not run.backends[0].interpreted or representative(c)]


@dataclass
class Built:
    """A case compiled: f(xs, w) returns (y, d(w.y)/dx_i for each float x_i)."""

    programs: dict[str, gc.Program]  # by backend id
    y: gc.Tensor
    grads: tuple[gc.Tensor, ...]
    float_args: list[int]  # positions of the differentiable arguments
    has_matmul: bool  # float32 tolerances are looser through matmuls

    def __call__(self, xs: Sequence[np.ndarray], w: np.ndarray | None = None,
                 path: str = NUMPY_ORACLE.id) -> tuple[np.ndarray, ...]:
        feeds = {f"x{i}": x for i, x in enumerate(xs)}
        if self.float_args:
            feeds["w"] = np.ones(self.y.shape) if w is None else w
        return tuple(to_numpy(r) for r in self.programs[path](**feeds))

    def rtol32(self, backend: Backend) -> float:
        return backend.rtol32_matmul if self.has_matmul else backend.rtol32


def build(spec: Spec, shapes: Sequence[Shape], dtype: str, backends: Sequence[Backend] = NUMPY_RUN.backends) -> Built:
    """The spec's graph over inputs x0.. of `dtype`, with gradients seeded by an input w."""
    with gc.Graph(spec.label) as g:
        xs = [gc.input(f"x{i}", s, dtype="int64" if a.integer else dtype)
              for i, (a, s) in enumerate(zip(spec.args, shapes))]
        y = spec.gc_fn(*xs)
        float_args = [i for i, a in enumerate(spec.args) if not a.integer]
        grads: tuple[gc.Tensor, ...] = ()
        if float_args:
            w = gc.input("w", y.shape, dtype=dtype)
            grads = gc.grad(y, [xs[i] for i in float_args], seed=w)
    return Built({b.id: b.compile([y, *grads]) for b in backends}, y, grads, float_args,
                 any(n.op == "matmul" for n in g.nodes()))


# --- the tests ------------------------------------------------------------------------------


def test_every_op_and_contract_function_has_a_spec() -> None:
    """Adding an op to gc.OPS or a function to the contract without a spec fails here."""
    untested = {name for name, op in gc.OPS.items() if op.kind != SOURCE} - {s.op for s in SPECS}
    assert not untested, f"ops without a spec in tests/op_specs.py: {sorted(untested)}"
    missing = set(CONTRACT) - {s.op for s in SPECS}
    assert not missing, f"contract functions without a spec: {sorted(missing)}"
    assert all(callable(getattr(gc, name)) for name in CONTRACT)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.op in gc.OPS], ids=lambda s: s.label)
def test_spec_builds_the_op_it_names(spec: Spec) -> None:
    """A spec that claims to test an op-table entry puts that op in its forward graph."""
    with gc.Graph("probe") as g:
        xs = [gc.input(f"x{i}", s, dtype="int64" if a.integer else "float64")
              for i, (a, s) in enumerate(zip(spec.args, spec.shapes[0]))]
        spec.gc_fn(*xs)
    assert spec.op in {n.op for n in g.nodes()}, str(g)


@pytest.mark.parametrize("case,run", runs_for(CASES))
def test_forward_matches_numpy(case: Case, run: Run) -> None:
    f32 = build(case.spec, case.shapes, "float32", run.backends)
    if run.float64:
        f64 = build(case.spec, case.shapes, "float64", run.backends)
        # The same float32 graph run in float64 by the reference backend's dtype option.
        f32_as_64 = gc.compile(f32.y, dtype="float64")
    for seed, backend in itertools.product(run.seeds, run.backends):
        xs, _ = draw(case, seed)
        if run.float64:
            want = case.spec.np_fn(*xs)
            y64 = f64(xs, path=backend.id)[0]
            assert y64.shape == np.shape(want) == f64.y.shape and y64.dtype == np.dtype(f64.y.dtype)
            assert f64.y.dtype == "float64" or not case.differentiable  # one_hot's dtype is its own attr
            np.testing.assert_allclose(y64, want, rtol=1e-12, atol=1e-12 * scale_of(want))
            np.testing.assert_allclose(f32_as_64(**{f"x{i}": x for i, x in enumerate(xs)}), want, rtol=1e-12,
                                       atol=1e-12 * scale_of(want))
        xs32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
        y32 = f32(xs32, path=backend.id)[0]
        assert y32.dtype == np.dtype(f32.y.dtype) and (f32.y.dtype == "float32" or not case.differentiable)
        want32 = case.spec.np_fn(*(x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs32))
        assert y32.shape == np.shape(want32)
        rtol = f32.rtol32(backend)
        np.testing.assert_allclose(y32, want32, rtol=rtol, atol=rtol / 10 * scale_of(want32), err_msg=backend.id)


GRAD_CASES = [c for c in CASES if c.differentiable]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_grad_matches_finite_differences(case: Case) -> None:
    f = build(case.spec, case.shapes, "float64")
    for seed in SEEDS:
        xs, w = draw(case, seed)
        y, *grads = f(xs, w)
        assert all(g.dtype == np.float64 for g in grads)

        def loss(args: list[np.ndarray]) -> float:
            return float(np.sum(w * f(args, w)[0]))

        # Round-off in each loss evaluation, magnified by 1/(2h) in the difference quotient; the largest
        # seen over all cases is 1.3 of these units.
        atol = 8 * EPS64 * float(np.sum(np.abs(w))) * scale_of(y, *xs) / FD_STEP
        for i, g in zip(f.float_args, grads):
            numeric = np.zeros_like(xs[i])
            for idx in np.ndindex(xs[i].shape):
                hi, lo = list(xs), list(xs)
                hi[i], lo[i] = xs[i].copy(), xs[i].copy()
                hi[i][idx] += FD_STEP
                lo[i][idx] -= FD_STEP
                numeric[idx] = (loss(hi) - loss(lo)) / (2 * FD_STEP)
            np.testing.assert_allclose(g, numeric, rtol=FD_RTOL, atol=atol, err_msg=f"d/dx{i}, seed {seed}")


@pytest.mark.parametrize("case,run", runs_for(GRAD_CASES))
def test_grad_matches_torch(case: Case, run: Run) -> None:
    f64 = build(case.spec, case.shapes, "float64", run.backends) if run.float64 else None
    f32 = build(case.spec, case.shapes, "float32", run.backends)
    for seed, backend in itertools.product(run.seeds, run.backends):
        xs, w = draw(case, seed)
        path = backend.id
        if f64 is not None:
            want_y, want = torch_reference(case.spec, xs, w)
            y, *grads = f64(xs, w, path)
            np.testing.assert_allclose(y, want_y, rtol=1e-10, atol=1e-12 * scale_of(want_y))
            for i, g, t in zip(f64.float_args, grads, want):
                assert g.shape == xs[i].shape and g.dtype == np.float64
                np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12 * scale_of(t),
                                           err_msg=f"{path} d/dx{i}, seed {seed}")
        xs32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
        want_y32, want32 = torch_reference(case.spec, [x.astype(np.float64) if x.dtype.kind == "f" else x
                                                       for x in xs32], w)
        y32, *grads32 = f32(xs32, w.astype(np.float32), path)
        # float32 gradients pass through one more round of float32 arithmetic than the forward:
        # 1e-4, or the backend's float32 tolerance where that is looser.
        rtol = f32.rtol32(backend)
        np.testing.assert_allclose(y32, want_y32, rtol=rtol, atol=rtol / 10 * scale_of(want_y32),
                                   err_msg=f"{path} float32 forward")
        for i, g, t in zip(f32.float_args, grads32, want32):
            assert g.dtype == np.float32 and g.shape == xs[i].shape
            np.testing.assert_allclose(g, t, rtol=max(1e-4, rtol), atol=max(1e-5, rtol / 10) * scale_of(t),
                                       err_msg=f"{path} float32 d/dx{i}")


SPECIAL_RUNS = [pytest.param(spec, point, run, id=f"{spec.label}-{i}" + ("" if run is NUMPY_RUN else f"-{run.id}"))
                for run in RUNS for i, (spec, point) in enumerate(SPECIAL)]


@pytest.mark.parametrize("spec,point,run", SPECIAL_RUNS)
def test_special_points_match_torch(spec: Spec, point: tuple[Any, ...], run: Run) -> None:
    """Kinks take PyTorch's conventions (relu'(0) = abs'(0) = 0, ties split); extremes stay finite."""
    xs = [np.asarray(v, dtype=np.int64 if a.integer else np.float64) for a, v in zip(spec.args, point)]
    shapes = tuple(x.shape for x in xs)
    for dtype in ("float64", "float32") if run.float64 else ("float32",):
        f = build(spec, shapes, dtype, run.backends)
        # The reference sees the inputs rounded to `dtype`, so only graphc's arithmetic is compared.
        rounded = [x.astype(dtype).astype(np.float64) if x.dtype.kind == "f" else x for x in xs]
        want_y, want = torch_reference(spec, rounded, np.ones(f.y.shape))
        assert np.all(np.isfinite(want_y)) and all(np.all(np.isfinite(t)) for t in want), "a bad special point"
        for backend in run.backends:
            rtol, atol = (1e-7, 1e-300) if dtype == "float64" else (f.rtol32(backend), f.rtol32(backend) / 10)
            y, *grads = f([x.astype(dtype) if x.dtype.kind == "f" else x for x in xs], path=backend.id)
            where = f"{backend.id}, {dtype}"
            assert np.all(np.isfinite(y)) and all(np.all(np.isfinite(g)) for g in grads), f"not finite: {where}"
            np.testing.assert_allclose(y, want_y, rtol=rtol, atol=atol * scale_of(want_y), err_msg=where)
            for i, g, t in zip(f.float_args, grads, want):
                np.testing.assert_allclose(g, t, rtol=rtol, atol=atol * scale_of(t), err_msg=f"{where} d/dx{i}")
