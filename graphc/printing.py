"""Readable views of a graph: a jaxpr-style listing and per-node formulas."""

from __future__ import annotations

from typing import Iterable

import sympy as sp

from .ir import Graph, Node
from .ops import OPS, POINTWISE, formula
from .symbolic import arg_symbols


def _operand(graph: Graph, nid: int) -> str:
    node = graph.node(nid)
    if node.op == "const" and node.value is not None and node.value.ndim == 0:
        # Scalar constants print inline, as jaxpr does, in their own dtype's shortest form
        # (a float32 1/12 is 0.083333336, not the float64 widening 0.0833333358168602).
        return str(node.value[()])
    return node.label


def _attrs(node: Node) -> str:
    if not node.attrs or node.op in ("input", "param", "const"):
        return ""
    return "[" + ", ".join(f"{k}={v}" for k, v in node.attrs.items()) + "]"


def format_node(graph: Graph, node: Node) -> str:
    args = " ".join(_operand(graph, i) for i in node.inputs)
    tag = "" if node.role == "forward" else f"   # {node.role}"
    return f"{node.label}:{node.type_str()} = {node.op}{_attrs(node)} {args}".rstrip() + tag


def format_graph(graph: Graph, among: Iterable[int] | None = None, outputs: Iterable[int] = ()) -> str:
    """One line per node: ``t4:f32[64,100] = matmul x w1``; inputs, params, consts up top."""
    order = graph.toposort(among)
    nodes = [graph.node(n) for n in order]
    head = []
    for op in ("input", "param"):
        decl = [f"{n.label}:{n.type_str()}" for n in nodes if n.op == op]
        if decl:
            head.append(f"  {op}s: " + " ".join(decl))
    consts = [f"{n.label}:{n.type_str()}" for n in nodes if n.op == "const" and n.value is not None
              and n.value.ndim > 0]
    if consts:
        head.append("  consts: " + " ".join(consts))
    body = [f"  {format_node(graph, n)}" for n in nodes if OPS[n.op].kind != "source"]
    tail = [f"  outputs: {' '.join(graph.node(o).label for o in outputs)}"] if outputs else []
    return "\n".join([f"graph {graph.name} {{", *head, *body, *tail, "}"])


def node_formula(graph: Graph, node: Node) -> sp.Expr | None:
    """A pointwise node's formula with operands named as in the listing (None if not pointwise)."""
    if OPS[node.op].kind != POINTWISE:
        return None
    syms = arg_symbols(len(node.inputs))
    names = {s: sp.Symbol(_operand(graph, i)) for s, i in zip(syms, node.inputs)}
    return formula(node).xreplace(names)


def format_formulas(graph: Graph, among: Iterable[int] | None = None, latex: bool = False) -> str:
    """``t7 = g*Step(t4)``-style lines for every pointwise node (LaTeX with latex=True)."""
    lines = []
    for nid in graph.toposort(among):
        node = graph.node(nid)
        f = node_formula(graph, node)
        if f is not None:
            lines.append(f"{node.label} = {sp.latex(f) if latex else sp.sstr(f)}")
    return "\n".join(lines)


__all__ = ["format_graph", "format_node", "format_formulas", "node_formula"]
