"""Stability rewrites: patterns whose naive evaluation overflows, replaced in
place by equal expressions that stay finite. Each entry carries the identity it
relies on as two sympy expressions; tests prove them equal.

A rewrite replaces the matched node's op in place (same id), so every Tensor
handle the user holds still refers to the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import sympy as sp

from .ir import Graph, Node
from .symbolic import Sigmoid, Softplus

Z = sp.Symbol("z", real=True)


@dataclass(frozen=True)
class Rewrite:
    name: str
    before: sp.Expr  # the pattern, as a function of z
    after: sp.Expr  # the stable replacement
    apply: Callable[[Graph, Node], bool]  # rewrites the node in place; False when it does not match


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


REWRITES: tuple[Rewrite, ...] = (
    Rewrite("log_sigmoid", sp.log(Sigmoid(Z)), -Softplus(-Z), _log_sigmoid),
    Rewrite("log_one_minus_sigmoid", sp.log(1 - Sigmoid(Z)), -Softplus(Z), _log_one_minus_sigmoid),
    Rewrite("log_one_plus_exp", sp.log(1 + sp.exp(Z)), Softplus(Z), _log_one_plus_exp),
    # log(softmax) is proven per component in the tests (it needs a vector, not one z).
    Rewrite("log_softmax", sp.log(sp.exp(Z) / (sp.exp(Z) + 1)), Z - sp.log(sp.exp(Z) + 1), _log_softmax),
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


__all__ = ["REWRITES", "Rewrite", "stabilize"]
