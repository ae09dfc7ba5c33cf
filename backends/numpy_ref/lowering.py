"""The NumPy reference backend: runs a Plan node by node, unfused.

Lowerings live in one table keyed by op name; pointwise ops share one lowering
that evaluates their sympy formula. ``dtype="float64"`` runs every float node
in float64, which makes this backend the oracle for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import sympy as sp

from graphc.backend import register_backend
from graphc.errors import NumericError, UnknownOpError
from graphc.ir import FLOAT_DTYPES, Node
from graphc.ops import OPS, POINTWISE, SOURCE, formula
from graphc.plan import Plan
from graphc.symbolic import arg_symbols

from .fast import FastExecutable
from .fast import clear_cache as fast_clear_cache
from .printer import lambdify, to_source

Impl = Callable[..., np.ndarray]  # (node, *input arrays) -> array


def _softmax(node: Node, x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=node.attrs["axis"], keepdims=True))
    return e / np.sum(e, axis=node.attrs["axis"], keepdims=True)


def _log_softmax(node: Node, x: np.ndarray) -> np.ndarray:
    ax = node.attrs["axis"]
    shifted = x - np.max(x, axis=ax, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=ax, keepdims=True))


def _one_hot(node: Node, labels: np.ndarray) -> np.ndarray:
    n = node.attrs["num_classes"]
    bad = (labels < 0) | (labels >= n)
    if np.any(bad):
        raise NumericError(f"label {labels[bad].flat[0]} is out of range for {n} classes", node=node,
                           hint=f"labels must lie in [0, {n - 1}]")
    return labels[..., None] == np.arange(n)


LOWERINGS: dict[str, Impl] = {
    "sum": lambda node, x: np.sum(x, axis=node.attrs["axis"], keepdims=node.attrs["keepdims"]),
    "max": lambda node, x: np.max(x, axis=node.attrs["axis"], keepdims=node.attrs["keepdims"]),
    "matmul": lambda node, a, b: a @ b,
    "transpose": lambda node, x: np.transpose(x, node.attrs["perm"]),
    "reshape": lambda node, x: np.reshape(x, node.attrs["shape"]),
    "broadcast_to": lambda node, x: np.broadcast_to(x, node.attrs["shape"]),
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "one_hot": _one_hot,
}


@lru_cache(maxsize=4096)
def _pointwise(expr: sp.Expr, n: int) -> Callable[..., Any]:
    return lambdify(expr, arg_symbols(n))


def _lower_pointwise(node: Node) -> Impl:
    f = _pointwise(formula(node), len(node.inputs))
    return lambda node, *xs: f(*xs)


def _impl(node: Node) -> Impl:
    if OPS[node.op].kind == POINTWISE:
        return _lower_pointwise(node)
    if node.op not in LOWERINGS:
        raise UnknownOpError(f"the numpy backend cannot lower op {node.op!r}", node=node,
                             hint="add a lowering to backends/numpy_ref/lowering.py LOWERINGS")
    return LOWERINGS[node.op]


@dataclass(frozen=True)
class Step:
    node: Node
    impl: Impl
    args: tuple[int, ...]  # slots of the inputs
    dtype: np.dtype


class NumpyExecutable:
    """The Plan as a flat list of steps over slots; no graph walking per call."""

    def __init__(self, plan: Plan, dtype: str | None = None, check_finite: bool = False):
        self.plan = plan
        self.float_dtype = dtype
        self.check_finite = check_finite
        slot = {nid: i for i, nid in enumerate(plan.order)}
        self.slots = len(plan.order)
        self.consts: list[tuple[int, np.ndarray]] = []
        self.steps: list[tuple[int, Step]] = []
        for nid in plan.order:
            node = plan.graph.node(nid)
            if node.op == "const":
                self.consts.append((slot[nid], node.value.astype(self._dtype(node))))
            elif OPS[node.op].kind != SOURCE:
                step = Step(node, _impl(node), tuple(slot[i] for i in node.inputs), self._dtype(node))
                self.steps.append((slot[nid], step))
        self.slot = slot
        self.num_kernels = len(self.steps)
        self.source = "\n".join(self._describe(step) for _, step in self.steps)

    def _dtype(self, node: Node) -> np.dtype:
        if self.float_dtype is not None and node.dtype in FLOAT_DTYPES:
            return np.dtype(self.float_dtype)
        return np.dtype(node.dtype)

    def _describe(self, step: Step) -> str:
        node = step.node
        names = [self.plan.graph.node(i).label for i in node.inputs]
        if OPS[node.op].kind == POINTWISE:
            body = to_source(formula(node).xreplace(dict(zip(arg_symbols(len(names)), sp.symbols(names)))))
        else:
            body = f"{node.op}({', '.join(names)}, {node.attrs})"
        return f"{node.label} = {body}  # {node.source}"

    def asarray(self, value: Any, node: Node) -> np.ndarray:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        return np.array(value, dtype=self._dtype(node))

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def run(self, feeds: dict[int, Any], params: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
        vals: list[Any] = [None] * self.slots
        for nid, v in {**feeds, **params}.items():
            if nid in self.slot:
                vals[self.slot[nid]] = v
        for i, v in self.consts:
            vals[i] = v
        with np.errstate(all="ignore"):  # IEEE semantics: inf and NaN flow as they do on a GPU
            for out, step in self.steps:
                r = step.impl(step.node, *(vals[a] for a in step.args))
                r = np.asarray(r, dtype=step.dtype)
                if r.shape != step.node.shape:
                    r = np.broadcast_to(r, step.node.shape)
                if self.check_finite and r.dtype.kind == "f" and not np.all(np.isfinite(r)):
                    raise NumericError("a value is NaN or inf", node=step.node,
                                       hint="check this node's inputs; stable forms: softplus, log_softmax, "
                                       "bce_with_logits, cross_entropy")
                vals[out] = r
        outputs = [np.array(vals[self.slot[o]]) for o in self.plan.outputs]
        updated = {p: np.array(vals[self.slot[u]]) for p, u in self.plan.updates.items()}
        return outputs, updated


def lower(plan: Plan, dtype: str | None = None, check_finite: bool = False,
          fast: bool = True) -> "NumpyExecutable | FastExecutable":
    """The numpy backend's entry point: `gc.compile(..., backend="numpy", dtype=..., check_finite=..., fast=...)`.

    The default is the generated fast path (fast.py) in the graph's own dtypes; the
    node-by-node interpreter, the oracle, runs when asked for a dtype (``"float64"``),
    for finiteness checks after every node, or with ``fast=False``.
    """
    if fast and dtype is None and not check_finite:
        return FastExecutable(plan, _impl)
    return NumpyExecutable(plan, dtype=dtype, check_finite=check_finite)


def clear_cache() -> None:
    """Forget generated code and lambdified formulas (compile_time measures cold compiles with it)."""
    _pointwise.cache_clear()
    fast_clear_cache()


lower.clear_cache = clear_cache  # type: ignore[attr-defined]
register_backend("numpy", lower)
