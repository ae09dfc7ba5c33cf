"""The one verifier, run after every pass: the graph is a DAG whose nodes agree
with the op table and whose edges agree with the nodes' input lists."""

from __future__ import annotations

from .errors import GraphError, UnknownOpError
from .ir import DTYPES, Graph
from .ops import OPS, SOURCE


def verify(graph: Graph) -> Graph:
    """Raise a GraphError naming the first node that breaks an invariant; else return graph."""
    order = graph.toposort(fresh=True)  # raises CycleError
    for nid in order:
        node = graph.node(nid)
        if node.id != nid:
            raise GraphError(f"node stored under id {nid} says it is {node.id}", node=node)
        if node.op not in OPS:
            raise UnknownOpError(f"unknown op {node.op!r}", node=node, hint="register the op in graphc/ops.py")
        opdef = OPS[node.op]
        edges = sorted((key, src) for src, _, key in graph.nx.in_edges(nid, keys=True))
        if edges != list(enumerate(node.inputs)):
            raise GraphError(f"edges {edges} disagree with inputs {node.inputs}", node=node,
                             hint="change nodes with Graph.add/replace, not by editing edges")
        if opdef.arity is not None and len(node.inputs) != opdef.arity:
            raise GraphError(f"{node.op} has {len(node.inputs)} inputs, wants {opdef.arity}", node=node)
        if node.dtype not in DTYPES:
            raise GraphError(f"dtype {node.dtype!r} is not supported", node=node)
        if opdef.kind == SOURCE:
            if node.op in ("param", "const") and (node.value is None or node.value.shape != node.shape):
                raise GraphError("a param or const needs a value of its shape", node=node)
            continue
        ins = [graph.node(i) for i in node.inputs]
        shape = tuple(opdef.shape([n.shape for n in ins], node.attrs))
        dtype = opdef.dtype([n.dtype for n in ins], node.attrs)
        if (shape, dtype) != (node.shape, node.dtype):
            raise GraphError(f"stored type {node.type_str()} but the op table gives {dtype}{list(shape)}",
                             node=node, hint="a pass changed an input without updating its consumers")
    return graph
