"""Stability rewrites: patterns whose naive evaluation overflows, replaced in
place by equal expressions that stay finite. Each entry carries the identity it
relies on as two sympy expressions; tests prove them equal.

A rewrite replaces the matched node's op in place (same id), so every Tensor
handle the user holds still refers to the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import sympy as sp

from . import dsl as F
from .ir import FLOAT_DTYPES, Graph, Node, Tensor
from .symbolic import Sigmoid, Softplus

Z, W, M, T = sp.symbols("z w m t", real=True)


@dataclass(frozen=True)
class Rewrite:
    name: str
    before: sp.Expr  # the pattern, over real symbols (z, w: operands; m: any shift)
    after: sp.Expr  # the stable replacement
    apply: Callable[[Graph, Node], bool]  # rewrites the node in place; False when it does not match


@dataclass(frozen=True)
class Derived:
    """An identity no single rewrite states, made true by applying `via` in one stabilize pass."""

    name: str
    before: sp.Expr
    after: sp.Expr
    via: tuple[str, ...]


def _input(graph: Graph, node: Node, i: int = 0) -> Node:
    return graph.node(node.inputs[i])


def _is_scalar_const(node: Node, value: float) -> bool:
    return node.op == "const" and node.value is not None and node.value.size == 1 and float(node.value) == value


def _add(graph: Graph, like: Node, op: str, inputs: list[int], attrs: dict | None = None) -> int:
    """A new node with the shape, dtype, source and role of the node being rewritten."""
    src = graph.node(inputs[0])
    return graph.add(op, inputs, src.shape, like.dtype, attrs=attrs or {}, source=like.source, role=like.role).id


def _log_sigmoid(graph: Graph, node: Node) -> bool:
    # log(sigmoid(z)) = -softplus(-z)
    s = _input(graph, node)
    if node.op != "log" or s.op != "sigmoid":
        return False
    z = s.inputs[0]
    graph.replace(node.id, "neg", [_add(graph, node, "softplus", [_add(graph, node, "neg", [z])])], {})
    return True


def _log_one_minus_sigmoid(graph: Graph, node: Node) -> bool:
    # log(1 - sigmoid(z)) = -softplus(z)
    d = _input(graph, node)
    if node.op != "log" or d.op != "sub" or not _is_scalar_const(_input(graph, d, 0), 1.0):
        return False
    s = _input(graph, d, 1)
    if s.op != "sigmoid" or d.shape != s.shape:
        return False
    graph.replace(node.id, "neg", [_add(graph, node, "softplus", [s.inputs[0]])], {})
    return True


def _log_softmax(graph: Graph, node: Node) -> bool:
    # log(softmax(x)) = log_softmax(x)
    s = _input(graph, node)
    if node.op != "log" or s.op != "softmax":
        return False
    graph.replace(node.id, "log_softmax", [s.inputs[0]], dict(s.attrs))
    return True


def _log_one_plus_exp(graph: Graph, node: Node) -> bool:
    # log(1 + exp(z)) = softplus(z)
    a = _input(graph, node)
    if node.op != "log" or a.op != "add":
        return False
    one, e = _input(graph, a, 0), _input(graph, a, 1)
    if not _is_scalar_const(one, 1.0):
        one, e = e, one
    if not _is_scalar_const(one, 1.0) or e.op != "exp" or e.shape != a.shape:
        return False
    graph.replace(node.id, "softplus", [e.inputs[0]], {})
    return True


def _with_provenance(graph: Graph, like: Node, build: Callable[[], list[Tensor]]) -> list[Tensor]:
    """Build nodes with the DSL; they take the source line and role of the node being rewritten."""
    first_new = graph._next
    out = build()
    for nid in range(first_new, graph._next):
        if nid in graph:
            graph.node(nid).source, graph.node(nid).role = like.source, like.role
    return out


def _is_shifted(graph: Graph, node: Node, axes: tuple[int, ...]) -> bool:
    """node is x - clamp(max(x, axes)): the shift _log_sum_exp inserts (so the pass is idempotent)."""
    if node.op != "sub":
        return False
    m = _input(graph, node, 1)
    if m.op != "clamp":
        return False
    top = _input(graph, m)
    return top.op == "max" and top.inputs[0] == node.inputs[0] and top.attrs["axis"] == axes


def _log_sum_exp(graph: Graph, node: Node) -> bool:
    # log(sum(exp(x))) = m + log(sum(exp(x - m))) for any m; m = max(x) keeps every exp <= 1.
    # m is clamped to the dtype's finite range so rows of +inf give inf and rows of -inf give -inf
    # (as the naive form does) instead of inf - inf = NaN.
    s = _input(graph, node)
    if node.op != "log" or s.op != "sum":
        return False
    e = _input(graph, s)
    axes = s.attrs["axis"]
    if e.op != "exp" or _is_shifted(graph, _input(graph, e), axes) or _input(graph, e).dtype not in FLOAT_DTYPES:
        return False
    x = Tensor(graph, e.inputs[0])
    big = float(np.finfo(x.dtype).max)

    def build() -> list[Tensor]:
        m = F.clamp(F.max(x, axis=axes, keepdims=True), min=-big, max=big)
        return [F.reshape(m, s.shape), F.log(F.sum(F.exp(x - m), axis=axes, keepdims=s.attrs["keepdims"]))]

    m, shifted = _with_provenance(graph, node, build)
    graph.replace(node.id, "add", [m.id, shifted.id], {})
    return True


REWRITES: tuple[Rewrite, ...] = (
    Rewrite("log_sigmoid", sp.log(Sigmoid(Z)), -Softplus(-Z), _log_sigmoid),
    Rewrite("log_one_minus_sigmoid", sp.log(1 - Sigmoid(Z)), -Softplus(Z), _log_one_minus_sigmoid),
    Rewrite("log_one_plus_exp", sp.log(1 + sp.exp(Z)), Softplus(Z), _log_one_plus_exp),
    # log(softmax) is proven per component in the tests (it needs a vector, not one z).
    Rewrite("log_softmax", sp.log(sp.exp(Z) / (sp.exp(Z) + 1)), Z - sp.log(sp.exp(Z) + 1), _log_softmax),
    # Two terms stand for the sum over an axis; the test proves it for three.
    Rewrite("log_sum_exp", sp.log(sp.exp(Z) + sp.exp(W)), M + sp.log(sp.exp(Z - M) + sp.exp(W - M)), _log_sum_exp),
)

DERIVED: tuple[Derived, ...] = (
    # gc.bce_loss(gc.sigmoid(z), t): both logs are rewritten, giving bce_with_logits' form.
    Derived("bce_on_sigmoid", -(T * sp.log(Sigmoid(Z)) + (1 - T) * sp.log(1 - Sigmoid(Z))), Softplus(Z) - T * Z,
            via=("log_sigmoid", "log_one_minus_sigmoid")),
)


def stabilize(graph: Graph, among: Iterable[int] | None = None) -> list[tuple[str, int]]:
    """Apply every rewrite that matches, in topological order; returns (rewrite, node id) pairs."""
    applied = []
    for nid in graph.toposort(among):
        node = graph.node(nid)
        for rw in REWRITES:
            if node.inputs and rw.apply(graph, node):
                applied.append((rw.name, nid))
                break
    return applied


__all__ = ["DERIVED", "REWRITES", "Derived", "Rewrite", "stabilize"]
