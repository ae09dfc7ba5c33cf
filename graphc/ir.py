"""The IR: a Graph of Nodes stored in a networkx.MultiDiGraph, and Tensor handles.

Edges run from producer to consumer and carry the argument position as their
key, so ``x * x`` is two parallel edges (keys 0 and 1) and argument order is
never lost.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import networkx as nx
import numpy as np

from .errors import CycleError, GraphStateError

Shape = tuple[int, ...]

DTYPES = ("float32", "float64", "int64", "bool")
DTYPE_ABBREV = {"float32": "f32", "float64": "f64", "int64": "i64", "bool": "bool"}
FLOAT_DTYPES = ("float32", "float64")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames in graphc, the backends, the libraries they call (sympy, numpy, triton ...) and the
# standard library are never the user's; nor is code the backends generate ("<graphc ...>").
_LIBRARY_DIRS = tuple(sorted({
    _PACKAGE_DIR + os.sep, os.path.join(os.path.dirname(_PACKAGE_DIR), "backends") + os.sep,
    *(os.path.abspath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib")),
}))


def user_source_line() -> str:
    """The innermost stack frame that is not library code, as 'file:line' (where the user wrote the call)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_LIBRARY_DIRS) and not frame.f_code.co_filename.startswith("<graphc"):
            return f"{os.path.relpath(filename) if not filename.startswith('<') else filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


@dataclass
class Node:
    """One operation. ``inputs`` is derived from the edges and kept here for speed."""

    id: int
    op: str
    inputs: tuple[int, ...]
    shape: Shape
    dtype: str
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    source: str = "<unknown>"
    role: str = "forward"  # forward | grad | update
    value: np.ndarray | None = None  # const data, or a param's initial value

    @property
    def label(self) -> str:
        """The name used when printing: the user's name, else t<id>."""
        return self.name if self.name is not None else f"t{self.id}"

    def type_str(self) -> str:
        return f"{DTYPE_ABBREV[self.dtype]}[{','.join(map(str, self.shape))}]"

    def describe(self) -> str:
        return f"{self.label} ({self.op}, {self.type_str()}) created at {self.source}"


_current: contextvars.ContextVar["Graph | None"] = contextvars.ContextVar("graphc_graph", default=None)


class Graph:
    """A static computation graph. Use as ``with gc.Graph("name") as g:``."""

    _ids = itertools.count()

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nx = nx.MultiDiGraph()
        self._next = 0
        self._token: contextvars.Token | None = None
        self.closed = False
        self.uid = next(Graph._ids)
        self.scalar_consts: dict[tuple[float, str], int] = {}  # (value, dtype) -> const node id
        self._order: list[int] | None = None  # cached toposort; every mutating method clears it

    # -- context -----------------------------------------------------------------
    def __enter__(self) -> "Graph":
        if self.closed:
            raise GraphStateError(
                f"graph {self.name!r} was closed and cannot be entered again",
                hint="build a new gc.Graph, or add ops with Tensor methods (grad, operators) instead",
            )
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)
        self._token = None
        self.closed = True

    @staticmethod
    def current() -> "Graph":
        g = _current.get()
        if g is None:
            raise GraphStateError(
                "no graph is open",
                hint="declare inputs and params inside `with gc.Graph('name') as g:`",
            )
        return g

    # -- nodes -------------------------------------------------------------------
    def add(self, op: str, inputs: Iterable[int], shape: Shape, dtype: str, **kw: Any) -> Node:
        """Append a node (no checking: dsl.apply checks before calling this)."""
        node = Node(id=self._next, op=op, inputs=tuple(inputs), shape=tuple(shape), dtype=dtype, **kw)
        self._next += 1
        self._order = None
        self.nx.add_node(node.id, node=node)
        for pos, src in enumerate(node.inputs):
            self.nx.add_edge(src, node.id, key=pos)
        return node

    def replace(self, nid: int, op: str, inputs: Iterable[int], attrs: dict[str, Any]) -> None:
        """Rewrite a node in place (same id, shape and dtype) so Tensor handles stay valid."""
        node = self.node(nid)
        self._order = None
        for src, _, key in list(self.nx.in_edges(nid, keys=True)):
            self.nx.remove_edge(src, nid, key=key)
        node.op, node.inputs, node.attrs = op, tuple(inputs), dict(attrs)
        for pos, src in enumerate(node.inputs):
            self.nx.add_edge(src, nid, key=pos)

    def rollback(self, first_new: int) -> None:
        """Drop every node with id >= first_new: undo a failed multi-node edit."""
        self.nx.remove_nodes_from([n for n in range(first_new, self._next) if n in self.nx])
        self.scalar_consts = {k: v for k, v in self.scalar_consts.items() if v < first_new}
        self._next = first_new
        self._order = None

    def node(self, nid: int) -> Node:
        return self.nx.nodes[nid]["node"]

    def __contains__(self, nid: int) -> bool:
        return nid in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> Iterator[Node]:
        for nid in self.toposort():
            yield self.node(nid)

    def consumers(self, nid: int) -> list[int]:
        return sorted(set(self.nx.successors(nid)))

    def toposort(self, among: Iterable[int] | None = None, fresh: bool = False) -> list[int]:
        """Topological order, ties broken by creation order (stable, readable).

        The whole graph's order is computed once per edit and filtered for `among`: passes ask
        for it many times, and sorting is most of a cached compile's time. `fresh=True` (the
        verifier) sorts again, so edges added to `self.nx` by hand are seen.
        """
        if self._order is None or fresh:
            self._order = self._sort()
        if among is None:
            return list(self._order)
        keep = set(among)
        return [n for n in self._order if n in keep]

    def _sort(self) -> list[int]:
        try:
            return list(nx.lexicographical_topological_sort(self.nx))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(self.nx)
            raise CycleError(
                "the graph has a cycle: " + " -> ".join(self.node(u).label for u, *_ in cycle),
                node=self.node(cycle[0][0]),
                hint="a value cannot depend on itself; check edges added by hand",
            ) from None

    def ancestors(self, nids: Iterable[int]) -> set[int]:
        out: set[int] = set()
        for nid in nids:
            out.add(nid)
            out |= nx.ancestors(self.nx, nid)
        return out

    def by_name(self, op: str | None = None) -> dict[str, Node]:
        """Named nodes (inputs, params), optionally of one op."""
        return {
            n.name: n
            for _, n in self.nx.nodes(data="node")
            if n.name is not None and (op is None or n.op == op)
        }

    def copy(self) -> "Graph":
        """A deep-enough copy: new networkx graph and Node objects; arrays are shared (read-only use)."""
        g = Graph(self.name)
        g._next = self._next
        g.closed = self.closed
        g.scalar_consts = dict(self.scalar_consts)
        for nid, node in self.nx.nodes(data="node"):
            g.nx.add_node(nid, node=Node(**{**node.__dict__, "attrs": dict(node.attrs)}))
        g.nx.add_edges_from(self.nx.edges(keys=True))
        return g

    def __str__(self) -> str:
        from .printing import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return f"<gc.Graph {self.name!r}: {len(self)} nodes>"


class Tensor:
    """A handle to one node of one graph. Operators build new nodes."""

    __slots__ = ("graph", "id")
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, graph: Graph, nid: int):
        self.graph = graph
        self.id = nid

    @property
    def node(self) -> Node:
        return self.graph.node(self.id)

    @property
    def shape(self) -> Shape:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def name(self) -> str:
        return self.node.label

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def __repr__(self) -> str:
        n = self.node
        return f"<gc.Tensor {n.label}:{n.type_str()} = {n.op}>"

    def __hash__(self) -> int:
        return hash((self.graph.uid, self.id))

    def __bool__(self) -> bool:
        raise GraphStateError(
            "a symbolic Tensor has no truth value",
            node=self.node,
            hint="use gc.maximum/gc.minimum/gc.clamp instead of Python if/and/or on Tensors",
        )

    # Operators are attached in dsl.py, next to the functions they call.
