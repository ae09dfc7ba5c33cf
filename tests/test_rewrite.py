"""Stability rewrites (graphc/rewrite.py): each identity proven with sympy, each pattern
rewritten where a user writes it naively, and the values at the extremes (logits of
+-100, +-1000, rows like [1000, 1001], +-inf) right on every backend, forward and
gradient. NaN and inf propagate the same way on every backend and as in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as tF

import graphc as gc
from conftest import Backend, to_numpy
from graphc.rewrite import DERIVED, REWRITES, stabilize
from graphc.symbolic import Sigmoid, Softplus, elementary

# --- proofs ------------------------------------------------------------------------------------


def proven_equal(a: sp.Expr, b: sp.Expr) -> bool:
    """sympy shows a - b == 0 once the activations are written in exp and log."""
    return sp.simplify(elementary(a) - elementary(b)) == 0


@pytest.mark.parametrize("rw", REWRITES + DERIVED, ids=lambda r: r.name)
def test_identity_is_proven(rw) -> None:  # type: ignore[no-untyped-def]
    assert proven_equal(rw.before, rw.after)


def test_the_prover_rejects_a_false_identity() -> None:
    z = sp.Symbol("z", real=True)
    assert not proven_equal(sp.log(Sigmoid(z)), -Softplus(z))  # the sign of z is wrong
    assert not proven_equal(sp.log(1 + sp.exp(z)), Softplus(z) + sp.Rational(1, 10**6))


def test_log_softmax_and_log_sum_exp_over_three_classes() -> None:
    z = sp.symbols("z0:3", real=True)
    m = sp.Symbol("m", real=True)
    total = sum(sp.exp(zi) for zi in z)
    for zi in z:
        assert proven_equal(sp.log(sp.exp(zi) / total), zi - sp.log(total))
    assert proven_equal(sp.log(total), m + sp.log(sum(sp.exp(zi - m) for zi in z)))


# --- patterns as users write them ------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A naive expression over logits z (rows of 2), its rewrites, and torch's stable form."""

    build: Callable[[gc.Tensor], gc.Tensor]
    rewrites: tuple[str, ...]
    torch: Callable[[torch.Tensor], torch.Tensor]


def _targets(shape: tuple[int, ...]) -> np.ndarray:
    """BCE targets for logits of `shape`: hard and soft labels."""
    return np.resize(np.array([1.0, 0.0, 0.25, 0.75]), shape)


def _bce(z: gc.Tensor) -> gc.Tensor:
    return gc.bce_loss(gc.sigmoid(z), _targets(z.shape), reduction="sum")


def _torch_bce(z: torch.Tensor) -> torch.Tensor:
    return tF.binary_cross_entropy_with_logits(z, torch.tensor(_targets(tuple(z.shape))), reduction="sum")


PATTERNS: dict[str, Pattern] = {
    "log_sigmoid": Pattern(lambda z: gc.log(gc.sigmoid(z)), ("log_sigmoid",), tF.logsigmoid),
    "log_one_minus_sigmoid": Pattern(lambda z: gc.log(1 - gc.sigmoid(z)), ("log_one_minus_sigmoid",),
                                     lambda z: tF.logsigmoid(-z)),
    "log_one_plus_exp": Pattern(lambda z: gc.log(1 + gc.exp(z)), ("log_one_plus_exp",),
                                tF.softplus),
    "log_softmax": Pattern(lambda z: gc.log(gc.softmax(z, axis=-1)), ("log_softmax",),
                           lambda z: torch.log_softmax(z, -1)),
    "log_sum_exp": Pattern(lambda z: gc.log(gc.sum(gc.exp(z), axis=-1)), ("log_sum_exp",),
                           lambda z: torch.logsumexp(z, -1)),
    "bce_on_sigmoid": Pattern(_bce, ("log_sigmoid", "log_one_minus_sigmoid"), _torch_bce),
}


def test_every_rewrite_has_a_pattern() -> None:
    assert {r.name for r in REWRITES + DERIVED} == set(PATTERNS)
    assert {"log_sigmoid", "log_one_minus_sigmoid"} == set(DERIVED[0].via)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_stabilize_rewrites_the_naive_form_once(name: str) -> None:
    with gc.Graph(name) as g:
        z = gc.input("z", (2, 2))
        out = PATTERNS[name].build(z)
    assert sorted(r for r, _ in stabilize(g)) == sorted(PATTERNS[name].rewrites)
    size = len(g)
    assert stabilize(g) == [] and len(g) == size  # idempotent: a second pass finds nothing
    gc.verify(g)
    assert out.node.role == "forward" and all(n.role == "forward" for n in g.nodes())


FINITE = np.array([[100.0, -100.0], [1000.0, -1000.0], [1000.0, 1001.0], [-1000.0, -1001.0], [0.0, 0.5],
                   [-30.0, 60.0]])
INFINITE = np.array([[np.inf, 0.0], [-np.inf, 0.0], [np.inf, -np.inf], [-np.inf, -np.inf], [np.inf, np.inf],
                     [np.nan, 1.0]])


def _compile(name: str, backend: Backend | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """out and d sum(out)/dz for rows of logits; backend None is the float64 reference."""
    with gc.Graph(name):
        z = gc.input("z", FINITE.shape)
        out = PATTERNS[name].build(z)
    dz = gc.grad(gc.sum(out), z)
    prog = gc.compile([out, dz], backend="numpy", dtype="float64") if backend is None else backend.compile([out, dz])
    return lambda v: [to_numpy(r).astype(np.float64) for r in prog(z=v)]


def _torch(name: str, v: np.ndarray) -> list[np.ndarray]:
    z = torch.tensor(v, requires_grad=True)
    out = PATTERNS[name].torch(z)
    (dz,) = torch.autograd.grad(out.sum(), [z])
    return [out.detach().numpy(), dz.numpy()]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_extreme_logits_match_torch_on_every_backend(name: str, backend: Backend) -> None:
    want = _torch(name, FINITE)
    for got, tol in ((_compile(name, None)(FINITE), 1e-12), (_compile(name, backend)(FINITE), 1e-5)):
        for g, w in zip(got, want):
            assert np.all(np.isfinite(g)), g
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_infinite_logits_propagate_alike(name: str, backend: Backend) -> None:
    """+-inf and NaN: the forward's NaN/inf pattern is torch's; every backend agrees with the reference."""
    ref = _compile(name, None)(INFINITE)
    got = _compile(name, backend)(INFINITE)
    want = _torch(name, INFINITE)[0]
    np.testing.assert_array_equal(ref[0], want)  # inf, -inf and NaN in the same places and finite values equal
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_array_equal(np.isinf(g) * np.sign(g), np.isinf(r) * np.sign(r))
        np.testing.assert_allclose(g[np.isfinite(r)], r[np.isfinite(r)], rtol=1e-5, atol=1e-6)


def test_lecture_naive_logistic_cost_has_the_textbook_gradient() -> None:
    """-mean(y log s(z) + (1 - y) log(1 - s(z))) gives (s(z) - y)/m, finite at |z| = 60 in float32."""
    z_v = np.array([60.0, -60.0, 3.0, -0.5], dtype=np.float32)
    y_v = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    with gc.Graph("logistic"):
        z = gc.input("z", (4,))
        y = gc.input("y", (4,))
        s = gc.sigmoid(z)
        cost = -gc.mean(y * gc.log(s) + (1 - y) * gc.log(1 - s))
    dz = gc.grad(cost, z)
    c, d = gc.compile([cost, dz])(z=z_v, y=y_v)
    sig = 1 / (1 + np.exp(-z_v.astype(np.float64)))
    np.testing.assert_allclose(d, (sig - y_v) / 4, rtol=1e-6)
    z64 = z_v.astype(np.float64)
    np.testing.assert_allclose(c, np.mean(np.logaddexp(0, z64) - y_v * z64), rtol=1e-6)


# --- NaN and inf through every op ----------------------------------------------------------------

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -2.0, 3.0])

# op -> (graphc, torch): pointwise ops over one tensor, binary ops against a tensor of the special values.
UNARY: dict[str, tuple[Callable[[gc.Tensor], gc.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "neg": (lambda x: -x, lambda x: -x), "exp": (gc.exp, torch.exp), "log": (gc.log, torch.log),
    "sqrt": (gc.sqrt, torch.sqrt), "abs": (gc.abs, torch.abs), "relu": (gc.relu, torch.relu),
    "sigmoid": (gc.sigmoid, torch.sigmoid), "tanh": (gc.tanh, torch.tanh),
    "softplus": (gc.softplus, tF.softplus),
    "clamp": (lambda x: gc.clamp(x, min=-1.0, max=1.0), lambda x: torch.clamp(x, -1.0, 1.0)),
    "scalar_pow": (lambda x: x ** 2, lambda x: x ** 2),
    "sum": (lambda x: gc.sum(x, axis=-1), lambda x: x.sum(-1)),
    "max": (lambda x: gc.max(x, axis=-1), lambda x: x.amax(-1)),
    "softmax": (lambda x: gc.softmax(x, axis=-1), lambda x: torch.softmax(x, -1)),
    "log_softmax": (lambda x: gc.log_softmax(x, axis=-1), lambda x: torch.log_softmax(x, -1)),
}
BINARY: dict[str, tuple[Callable[[gc.Tensor, gc.Tensor], gc.Tensor], Callable[..., torch.Tensor]]] = {
    "add": (lambda a, b: a + b, lambda a, b: a + b), "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b), "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a ** b, torch.pow),
    "maximum": (gc.maximum, torch.maximum), "minimum": (gc.minimum, torch.minimum),
}


def _rows() -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of special values: a (36,) column a and b, also read as rows of 6 for reductions."""
    a, b = np.meshgrid(SPECIAL, SPECIAL, indexing="ij")
    return a.reshape(6, 6), b.reshape(6, 6)


@pytest.mark.parametrize("op", sorted(UNARY) + sorted(BINARY))
def test_nan_and_inf_propagate_as_in_torch(op: str, backend: Backend) -> None:
    a_v, b_v = _rows()
    with gc.Graph(op):
        a = gc.input("a", (6, 6))
        b = gc.input("b", (6, 6))
        out = UNARY[op][0](a) if op in UNARY else BINARY[op][0](a, b)
    feeds = {"a": a_v, "b": b_v} if op in BINARY else {"a": a_v}
    want = (UNARY[op][1](torch.tensor(a_v)) if op in UNARY else BINARY[op][1](torch.tensor(a_v), torch.tensor(b_v)))
    want = want.numpy()
    for prog in (gc.compile(out, backend="numpy", dtype="float64"), backend.compile(out)):
        got = to_numpy(prog(**feeds)).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True,
                                   err_msg=f"{op} on {prog.backend}")


def test_maximum_propagates_nan_from_either_side() -> None:
    """Regression: maximum(nan, 1) was 1 (the NaN lost the first test, then won `Ne(a, b)` for b)."""
    with gc.Graph("nan"):
        a = gc.input("a", (2,))
        b = gc.input("b", (2,))
        outs = [gc.maximum(a, b), gc.minimum(a, b)]
    got = gc.compile(outs, dtype="float64")(a=np.array([np.nan, 1.0]), b=np.array([1.0, np.nan]))
    assert all(np.isnan(o).all() for o in got)
