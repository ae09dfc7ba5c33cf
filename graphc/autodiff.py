"""Symbolic reverse mode: ``grad`` adds gradient nodes to the same graph.

Pointwise ops are differentiated by ``sympy.diff`` of their formula; each
partial becomes one ``fn`` node ``g * d f / d a_i`` over the forward inputs it
needs. Structural ops use the vector-Jacobian rule in their op-table entry.
Broadcast inputs get their gradient summed back to their shape (``sum_to``).
"""

from __future__ import annotations

from typing import Sequence, overload

import networkx as nx
import numpy as np
import sympy as sp

from . import dsl as F
from .errors import DTypeError, GradError, GraphStateError
from .ir import FLOAT_DTYPES, Graph, Tensor, user_source_line
from .ops import OPS, VjpContext, formula
from .symbolic import GRAD_SYMBOL, arg_symbols, derivative


def _pointwise_vjp(graph: Graph, nid: int, g: Tensor, wanted: Sequence[bool]) -> list[Tensor | None]:
    node = graph.node(nid)
    f = formula(node)
    syms = arg_symbols(len(node.inputs))
    out: list[Tensor | None] = []
    for i, src in enumerate(node.inputs):
        if not wanted[i]:
            out.append(None)
            continue
        d = derivative(f, syms[i])
        if d == 0:
            out.append(None)
            continue
        expr = GRAD_SYMBOL * d
        if expr == GRAD_SYMBOL:
            out.append(g)
            continue
        # Bind only the forward inputs the partial actually reads, renumbered a0..ak, then g.
        used = [j for j, s in enumerate(syms) if s in expr.free_symbols]
        operands = [Tensor(graph, node.inputs[j]) for j in used] + [g]
        new = arg_symbols(len(operands))
        expr = expr.xreplace({syms[j]: new[k] for k, j in enumerate(used)} | {GRAD_SYMBOL: new[-1]})
        out.append(F.fn(expr, *operands))
    return out


def _check(y: Tensor, wrt: Sequence[Tensor]) -> None:
    for t in wrt:
        if not isinstance(t, Tensor):
            raise GradError(f"grad() takes Tensors to differentiate with respect to, got {type(t).__name__}",
                            where=user_source_line(), hint="pass the Tensors returned by gc.param/gc.input")
        if t.graph is not y.graph:
            raise GraphStateError("grad() mixes tensors from different graphs", node=t.node,
                                  hint="differentiate with respect to tensors of the loss's own graph")
        if t.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"cannot differentiate with respect to {t.name}, of dtype {t.dtype}", node=t.node,
                             hint="gradients exist only for float tensors; integer labels have none")
    if y.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"cannot differentiate {y.name}, of dtype {y.dtype}", node=y.node,
                         hint="differentiate a float output such as a loss")
    above = y.graph.ancestors([y.id])
    for t in wrt:
        if t.id not in above:
            raise GradError(f"{y.name} does not depend on {t.name}", node=t.node,
                            hint="differentiate with respect to a tensor the output is computed from")


def _seed_tensor(y: Tensor, seed: Tensor | np.ndarray | float | None) -> Tensor:
    if seed is None:
        if y.shape != ():
            raise GradError(f"grad of the non-scalar {y.name} ({y.node.type_str()}) needs a seed", node=y.node,
                            hint="reduce it to a scalar (e.g. gc.sum) or pass seed= of the same shape "
                            "(np.ones_like gives the sum's gradient)")
        return F.constant(y.graph, 1.0, y.dtype)
    if isinstance(seed, Tensor):
        if seed.graph is not y.graph:
            raise GraphStateError("the seed belongs to another graph", node=seed.node,
                                  hint="build the seed in the output's graph, or pass a NumPy array")
        s = seed
    else:
        s = F.constant(y.graph, np.asarray(seed, dtype=y.dtype), y.dtype)
    if s.shape != y.shape:
        raise GradError(f"seed shape {s.shape} differs from the output's {y.shape}", node=y.node,
                        hint="the seed is the output's cotangent: give it the output's shape")
    return s


@overload
def grad(y: Tensor, wrt: Tensor, seed: Tensor | np.ndarray | float | None = None) -> Tensor: ...
@overload
def grad(y: Tensor, wrt: Sequence[Tensor], seed: Tensor | np.ndarray | float | None = None) -> tuple[Tensor, ...]: ...


def grad(y, wrt, seed=None):  # type: ignore[no-untyped-def]
    """d(seed . y)/d wrt, as new nodes of y's graph. One Tensor in, one out; a sequence gives a tuple."""
    from .rewrite import stabilize
    from .verify import verify

    single = isinstance(wrt, Tensor)
    targets: list[Tensor] = [wrt] if single else list(wrt)
    if not isinstance(y, Tensor):
        raise GradError(f"grad() differentiates a Tensor, got {type(y).__name__}", where=user_source_line())
    _check(y, targets)
    graph = y.graph
    first_new = graph._next
    above = graph.ancestors([y.id])
    original = {nid: (graph.node(nid).op, graph.node(nid).inputs, dict(graph.node(nid).attrs)) for nid in above}
    rewritten = stabilize(graph, above)
    first_grad = graph._next
    try:
        grads = _backward(graph, y, targets, _seed_tensor(y, seed))
        for nid in range(first_grad, graph._next):
            if nid in graph:
                graph.node(nid).role = "grad"
        verify(graph)
    except BaseException:
        # Leave the graph as it was: undo the stability rewrites, then drop every new node.
        for _, nid in rewritten:
            graph.replace(nid, *original[nid])
        graph.rollback(first_new)
        raise
    return grads[0] if single else tuple(grads)


def _backward(graph: Graph, y: Tensor, targets: list[Tensor], seed: Tensor) -> list[Tensor]:
    target_ids = {t.id for t in targets}
    below = set(target_ids)
    for t in target_ids:
        below |= nx.descendants(graph.nx, t)
    relevant = graph.ancestors([y.id]) & below
    cotangents: dict[int, list[Tensor]] = {y.id: [seed]}
    results: dict[int, Tensor] = {}
    for nid in reversed(graph.toposort(relevant)):
        parts = cotangents.pop(nid, [])
        if not parts:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = g + p
        if nid in target_ids:
            results[nid] = g
        node = graph.node(nid)
        opdef = OPS[node.op]
        wanted = [src in relevant and graph.node(src).dtype in FLOAT_DTYPES for src in node.inputs]
        if not any(wanted) or not opdef.differentiable:
            continue
        if opdef.formula is not None:
            contribs = _pointwise_vjp(graph, nid, g, wanted)
        else:
            assert opdef.vjp is not None
            ctx = VjpContext(node, tuple(Tensor(graph, s) for s in node.inputs), Tensor(graph, nid))
            contribs = list(opdef.vjp(ctx, g))
        for src, want, c in zip(node.inputs, wanted, contribs):
            if want and c is not None:
                cotangents.setdefault(src, []).append(F.sum_to(c, graph.node(src).shape))
    return [results[t.id] if t.id in results else F.constant(graph, np.zeros(t.shape), t.dtype)
            for t in targets]
