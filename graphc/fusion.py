"""Fusion: partition a Plan into a Schedule of kernels. Backend-neutral.

The model is the one Inductor uses. A node is either *materialized* (it gets a
buffer, written by exactly one kernel) or *inlined* (recomputed, as a sympy
expression, inside every kernel that reads it). Matmuls, reductions and
row-wise softmaxes are always materialized; pointwise, layout and one-hot
nodes are inlined unless they are results (outputs, param updates), too big
to recompute, or compared bit for bit with a max taken of them (its gradient's
mask: ``SELECTING_REDUCTIONS``). Layout ops never cost a kernel: they only
change the index at which their input is read (``Index`` below), so a
transpose becomes strides and a reshape becomes ``//`` and ``%`` of a flat index.

Kernels then merge:

- a reduction over the K axis of a matmul operand rides along the matmul
  (the bias gradient next to the weight gradient);
- reductions along a softmax row ride along the row-wise kernel (cross-entropy);
- reductions over the same domain share one kernel, and so do independent
  pointwise results of the same size (horizontal fusion);
- a materialized pointwise node that reads a kernel's result at the same
  position becomes that kernel's epilogue (bias+activation, loss scaling, the
  SGD update of the weight a matmul's gradient produces).

A merge is refused when it would make the kernel graph cyclic, and a param's
update is ordered after every kernel that reads the param's old value, so the
schedule is legal even for in-place updates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import reduce
from operator import mul
from typing import Callable, Iterable, Iterator

import networkx as nx
import sympy as sp

from .errors import GraphError
from .ir import Graph, Node, Shape
from .ops import INDEX, LAYOUT, MATMUL, OPS, POINTWISE, REDUCE, ROWWISE, SOURCE, formula
from .plan import Plan
from .symbolic import arg_symbols

#: An inlined node whose expression would exceed this many ops is materialized instead,
#: so recomputation never grows a kernel without bound.
INLINE_COST_LIMIT = 48

#: Reductions whose result is one of their input's elements, which other nodes test for equality
#: with it (the gradient's is-max mask). Recomputed in two kernels, the input may round differently
#: in each (sympy prints a/b in one and a * (1/b) in another), so no element would equal the max and
#: the mask's count would be 0 (a 0/0 gradient): an input computed by arithmetic is stored once.
SELECTING_REDUCTIONS = frozenset({"max"})


def numel(shape: Shape) -> int:
    return reduce(mul, shape, 1)


def strides(shape: Shape) -> tuple[int, ...]:
    """Row-major (C-contiguous) strides in elements."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


# --- index arithmetic ---------------------------------------------------------------------


class FloorDiv(sp.Function):
    """``a // b`` of a non-negative integer index (kept unevaluated, unlike sympy.floor)."""

    nargs = 2
    is_integer = True

    @classmethod
    def eval(cls, a: sp.Expr, b: sp.Expr) -> sp.Expr | None:
        if b == 1:
            return a
        if a == 0:
            return sp.Integer(0)
        if a.is_Integer and b.is_Integer:
            return sp.Integer(int(a) // int(b))
        return None


class Rem(sp.Function):
    """``a % b`` of a non-negative integer index."""

    nargs = 2
    is_integer = True

    @classmethod
    def eval(cls, a: sp.Expr, b: sp.Expr) -> sp.Expr | None:
        if b == 1 or a == 0:
            return sp.Integer(0)
        if a.is_Integer and b.is_Integer:
            return sp.Integer(int(a) % int(b))
        return None


class AsFloat(sp.Function):
    """An integer value converted to a float of `bits` bits (an int64 input of exp, a one-hot ...)."""

    nargs = 2

    @classmethod
    def eval(cls, x: sp.Expr, bits: sp.Expr) -> sp.Expr | None:
        return sp.Float(float(x)) if x.is_Number else None


def index_symbol(name: str) -> sp.Symbol:
    """A kernel's iteration variable (xindex, rindex, tile rows ...): a non-negative integer."""
    return sp.Symbol(name, integer=True, nonnegative=True)


@dataclass(frozen=True)
class Index:
    """Where, in a tensor of `shape`, one element of a kernel's iteration sits.

    `dims` holds one integer expression per axis; `flat` is the row-major
    position when it is known directly (it survives reshapes, so a reshaped
    contiguous read stays ``in_ptr0 + xindex``).
    """

    shape: Shape
    dims: tuple[sp.Expr, ...]
    flat: sp.Expr | None = None

    @staticmethod
    def of(shape: Shape, flat: sp.Expr) -> "Index":
        """Unravel a flat position over `shape`; size-1 axes sit at 0."""
        dims: list[sp.Expr] = []
        outer = True
        for d, s in zip(shape, strides(shape)):
            if d == 1:
                dims.append(sp.Integer(0))
                continue
            q = FloorDiv(flat, s)
            dims.append(q if outer else Rem(q, d))
            outer = False
        return Index(tuple(shape), tuple(dims), flat)

    def offset(self) -> sp.Expr:
        """The row-major element offset of this position."""
        if self.flat is not None:
            return self.flat
        return sp.Add(*(d * s for d, s, n in zip(self.dims, strides(self.shape), self.shape) if n != 1))

    def key(self) -> tuple:
        return (self.shape, self.dims, self.flat)


def broadcast_index(index: Index, shape: Shape) -> Index:
    """The index into an operand of `shape` that NumPy-broadcasts to `index.shape`."""
    lead = len(index.shape) - len(shape)
    dims = tuple(sp.Integer(0) if d == 1 else index.dims[lead + k] for k, d in enumerate(shape))
    flat = index.flat if numel(shape) == numel(index.shape) else None
    return Index(tuple(shape), dims, flat)


def _transpose_index(node: Node, src: Node, index: Index) -> Index:
    dims: list[sp.Expr] = [sp.Integer(0)] * len(src.shape)
    for d, p in enumerate(node.attrs["perm"]):
        dims[p] = index.dims[d]
    return Index(src.shape, tuple(dims))


def _reshape_index(node: Node, src: Node, index: Index) -> Index:
    return Index.of(src.shape, index.offset())


def _broadcast_to_index(node: Node, src: Node, index: Index) -> Index:
    return broadcast_index(index, src.shape)


#: How each layout op maps an index into its output to an index into its input.
LAYOUT_INDEX: dict[str, Callable[[Node, Node, Index], Index]] = {
    "transpose": _transpose_index,
    "reshape": _reshape_index,
    "broadcast_to": _broadcast_to_index,
}


def reduction_index(shape: Shape, axes: tuple[int, ...], x: sp.Expr, r: sp.Expr) -> Index:
    """The input index of a reduction: kept axes unravel `x`, reduced axes unravel `r`."""
    kept = tuple(d for i, d in enumerate(shape) if i not in axes)
    red = tuple(d for i, d in enumerate(shape) if i in axes)
    # a space of one element is always at 0, so neither form of the position mentions its variable
    x = sp.Integer(0) if numel(kept) == 1 else x
    r = sp.Integer(0) if numel(red) == 1 else r
    kx, rx = Index.of(kept, x).dims, Index.of(red, r).dims
    dims, ki, ri = [], iter(kx), iter(rx)
    for i in range(len(shape)):
        dims.append(next(ri) if i in axes else next(ki))
    n = len(shape)
    flat = None
    if axes == tuple(range(n - len(axes), n)):  # trailing axes: rows of a contiguous matrix
        flat = x * numel(red) + r
    elif axes == tuple(range(len(axes))):  # leading axes: columns
        flat = r * numel(kept) + x
    return Index(tuple(shape), tuple(dims), flat)


# --- inlining ---------------------------------------------------------------------------


Load = Callable[[int, Index], sp.Expr]  # (buffer node id, index) -> the loaded value


class NotFusable(GraphError):
    """An in-kernel value was read at a position other than its own (internal to fusion)."""


def same_position(index: Index, at: "Index | sp.Expr") -> bool:
    """Whether `index` names the element a value was computed at (an Index, or its offset).

    Two forms of one position need not be equal as sympy expressions (``4*x + r`` against
    ``(x // 3)*12 + (x % 3)*4 + r``), so equal coordinates on the non-unit axes also count."""
    if isinstance(at, Index):
        coords = lambda i: [(d, n) for d, n in zip(i.dims, i.shape) if n != 1]  # noqa: E731
        if coords(index) == coords(at):
            return True
        at = at.offset()
    return sp.expand(index.offset() - at) == 0


def literal(node: Node) -> sp.Expr:
    """A scalar constant as a sympy number (integers exact, so 2*x prints as 2*x)."""
    v = node.value.item()
    if node.dtype == "bool":
        return sp.Integer(int(v))
    if float(v).is_integer() and abs(v) < 2**53:
        return sp.Integer(int(v))
    return sp.Float(float(v))


def is_scalar_const(node: Node) -> bool:
    return node.op == "const" and node.value is not None and node.value.size == 1 and node.shape == ()


class Inliner:
    """Builds a node's value at an index as one sympy expression over loads.

    `materialized` nodes are read through `load`; `in_kernel` values (a matmul's
    accumulator, a reduction's result ...) are used directly, but only at the
    position they were computed at (`NotFusable` otherwise).
    """

    def __init__(self, graph: Graph, materialized: set[int], load: Load,
                 in_kernel: "dict[int, tuple[Index | sp.Expr, sp.Expr]] | None" = None):
        self.graph = graph
        self.materialized = materialized
        self.load = load
        self.in_kernel = dict(in_kernel or {})  # node -> (Index or offset it was computed at, value)
        self.inlined: set[int] = set()
        self._memo: dict[tuple, sp.Expr] = {}

    def value(self, nid: int, index: Index) -> sp.Expr:
        node = self.graph.node(nid)
        if nid in self.in_kernel:
            at, val = self.in_kernel[nid]
            if not same_position(index, at) or numel(index.shape) != numel(node.shape):
                raise NotFusable(f"{node.label} is read at another position than it was computed", node=node)
            return val
        if is_scalar_const(node):
            return literal(node)
        if nid in self.materialized:
            return self.load(nid, index)
        return self.define(nid, index)

    def define(self, nid: int, index: Index) -> sp.Expr:
        """The node's own computation at `index` (never a load of its own buffer)."""
        key = (nid, index.key())
        if key not in self._memo:
            node = self.graph.node(nid)
            kind = OPS[node.op].kind
            if kind not in INLINE_RULES:
                raise GraphError(f"{node.op} cannot be inlined", node=node)
            self.inlined.add(nid)
            self._memo[key] = INLINE_RULES[kind](self, node, index)
        return self._memo[key]


def _float_bits(dtype: str) -> int | None:
    return {"float32": 32, "float64": 64}.get(dtype)


def _inline_pointwise(inl: Inliner, node: Node, index: Index) -> sp.Expr:
    args = []
    bits = _float_bits(node.dtype)
    for i in node.inputs:
        src = inl.graph.node(i)
        v = inl.value(i, broadcast_index(index, src.shape))
        if bits is not None and _float_bits(src.dtype) is None:  # integer operand of a float op
            v = AsFloat(v, bits)
        args.append(v)
    return formula(node).xreplace(dict(zip(arg_symbols(len(args)), args)))


def _inline_layout(inl: Inliner, node: Node, index: Index) -> sp.Expr:
    src = inl.graph.node(node.inputs[0])
    return inl.value(src.id, LAYOUT_INDEX[node.op](node, src, index))


def _inline_one_hot(inl: Inliner, node: Node, index: Index) -> sp.Expr:
    labels = inl.graph.node(node.inputs[0])
    label = inl.value(labels.id, Index(labels.shape, index.dims[:-1]))
    one, zero = (sp.Float(1.0), sp.Float(0.0)) if _float_bits(node.dtype) else (sp.Integer(1), sp.Integer(0))
    return sp.Piecewise((one, sp.Eq(label, index.dims[-1])), (zero, True))


INLINE_RULES: dict[str, Callable[[Inliner, Node, Index], sp.Expr]] = {
    POINTWISE: _inline_pointwise,
    LAYOUT: _inline_layout,
    INDEX: _inline_one_hot,
}

#: Kinds that are always computed by a kernel of their own template.
ANCHOR_KINDS = (MATMUL, REDUCE, ROWWISE)


# --- the schedule -------------------------------------------------------------------------


@dataclass
class Group:
    """Values a kernel computes over one iteration domain, and the epilogue on them."""

    roots: list[int]  # computed by the kernel's template (matmul acc, reduction results, ...)
    numel: int
    epilogue: list[int] = field(default_factory=list)  # pointwise nodes computed from them, in order

    @property
    def nodes(self) -> list[int]:
        return [*self.roots, *self.epilogue]


@dataclass
class Kernel:
    """One launch. `kind` picks the backend's template; `main` is its iteration domain."""

    kind: str  # pointwise | reduce | matmul | rowwise
    main: Group
    sides: list[Group] = field(default_factory=list)  # reductions computed alongside the main loop
    stores: list[int] = field(default_factory=list)  # nodes written to buffers
    reads: list[int] = field(default_factory=list)  # buffers read (materialized nodes of other kernels, sources)
    inlined: list[int] = field(default_factory=list)  # nodes recomputed inside
    late: list[int] = field(default_factory=list)  # rowwise: results needing the row reductions (a last pass)
    index: int = 0

    @property
    def computed(self) -> list[int]:
        return [n for g in (self.main, *self.sides) for n in g.nodes] + self.late

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.index}"


@dataclass
class Schedule:
    """The kernels of one step, in launch order, and the buffers between them."""

    plan: Plan
    kernels: list[Kernel]
    materialized: set[int]
    owner: dict[int, int]  # stored node -> index of the kernel that writes it

    @property
    def buffers(self) -> list[int]:
        """Every node a kernel stores, in launch order."""
        return [n for k in self.kernels for n in k.stores]

    def __len__(self) -> int:
        return len(self.kernels)

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self.kernels)

    def __str__(self) -> str:
        g = self.plan.graph
        lab = lambda ns: " ".join(g.node(n).label for n in ns) or "-"  # noqa: E731
        lines = [f"schedule {g.name}: {len(self.kernels)} kernels"]
        for k in self.kernels:
            lines.append(f"  {k.name}: computes {lab(k.main.roots)}"
                         + (f" + epilogue {lab(k.main.epilogue)}" if k.main.epilogue else "")
                         + "".join(f"; alongside {lab(s.roots)}"
                                   + (f" + epilogue {lab(s.epilogue)}" if s.epilogue else "") for s in k.sides)
                         + (f"; then {lab(k.late)}" if k.late else ""))
            lines.append(f"      reads {lab(k.reads)}; stores {lab(k.stores)}; inlines {lab(k.inlined)}")
        return "\n".join(lines)


def _materialize(plan: Plan) -> set[int]:
    """Nodes that get a buffer: sources, anchors, results, labels of one-hots, costly expressions, and
    computed inputs of a selecting reduction that other nodes read."""
    g = plan.graph
    results = set(plan.outputs) | set(plan.updates.values())
    readers = Counter(i for nid in plan.order for i in set(g.node(nid).inputs))
    # inputs of a selecting reduction that something else reads too (and may compare with its result)
    compared = {i for nid in plan.order if g.node(nid).op in SELECTING_REDUCTIONS
                for i in g.node(nid).inputs if readers[i] > 1}
    mat: set[int] = set()
    cost: dict[int, int] = {}
    copies: set[int] = set()  # inlined nodes whose value is stored or literal bits, moved (layout of a buffer)
    for nid in plan.order:
        node = g.node(nid)
        kind = OPS[node.op].kind
        if kind == SOURCE:
            if not is_scalar_const(node):
                mat.add(nid)
            copies.add(nid)
            cost[nid] = 0
            continue
        if kind == LAYOUT and all(i in mat or i in copies for i in node.inputs):
            copies.add(nid)
        if kind == INDEX:
            for i in node.inputs:  # labels are range-checked in their buffer before use
                if OPS[g.node(i).op].kind != SOURCE:
                    mat.add(i)
        c = 1 + sum(cost[i] for i in node.inputs if i not in mat)
        if kind in ANCHOR_KINDS or nid in results or c > INLINE_COST_LIMIT or (nid in compared and nid not in copies):
            mat.add(nid)
            c = 0
        cost[nid] = c
    return mat


class _Analysis:
    """What each materialized node reads, found by inlining it with a recording `load`."""

    def __init__(self, plan: Plan, mat: set[int]):
        self.plan, self.graph, self.mat = plan, plan.graph, mat
        self.reads: dict[int, list[tuple[int, sp.Expr, int]]] = {}  # node -> (buffer, offset, index numel)
        self.inlined: dict[int, set[int]] = {}
        self.x = index_symbol("x")
        for nid in plan.order:
            if nid in mat and OPS[self.graph.node(nid).op].kind != SOURCE:
                self._analyse(nid)

    def _analyse(self, nid: int) -> None:
        reads: list[tuple[int, sp.Expr, int]] = []

        def load(b: int, index: Index) -> sp.Expr:
            reads.append((b, index.offset(), numel(index.shape)))
            # real, like the formulas' own symbols: sympy's assumption queries on non-real
            # symbols grow exponentially with the nesting of tanh/exp/...
            return sp.Symbol(f"load{len(reads)}", real=True)

        inl = Inliner(self.graph, self.mat, load)
        node = self.graph.node(nid)
        kind = OPS[node.op].kind
        r = index_symbol("r")
        if kind == MATMUL:
            (m, k), n = self.graph.node(node.inputs[0]).shape, node.shape[1]
            i, j, kk = index_symbol("i"), index_symbol("j"), index_symbol("k")
            inl.value(node.inputs[0], Index((m, k), (i, kk)))
            inl.value(node.inputs[1], Index((k, n), (kk, j)))
        elif kind in (REDUCE, ROWWISE):
            src = self.graph.node(node.inputs[0])
            axes = node.attrs["axis"] if kind == REDUCE else (node.attrs["axis"],)
            inl.value(src.id, reduction_index(src.shape, axes, self.x, r))
        else:
            inl.define(nid, Index.of(node.shape, self.x))
        self.reads[nid] = reads
        self.inlined[nid] = inl.inlined - {nid}

    def identity_reads(self, nid: int) -> tuple[set[int], set[int]]:
        """(buffers read exactly at the node's own flat position with equal numel, all other buffers)."""
        size = numel(self.graph.node(nid).shape)
        same, other = set(), set()
        for b, off, n in self.reads[nid]:
            ok = n == size and numel(self.graph.node(b).shape) == size and sp.expand(off - self.x) == 0
            (same if ok else other).add(b)
        return same, other - same


class _Fuser:
    def __init__(self, plan: Plan):
        self.plan, self.g = plan, plan.graph
        self.mat = _materialize(plan)
        self.an = _Analysis(plan, self.mat)
        self.pos = {n: i for i, n in enumerate(plan.order)}
        self.kernels: dict[int, Kernel] = {}
        self.owner: dict[int, int] = {}
        self.update_of = {u: p for p, u in plan.updates.items()}
        for nid in plan.order:
            node = self.g.node(nid)
            kind = OPS[node.op].kind
            if nid not in self.mat or kind == SOURCE:
                continue
            kkind = {MATMUL: "matmul", REDUCE: "reduce", ROWWISE: "rowwise"}.get(kind, "pointwise")
            self._new(Kernel(kkind, Group([nid], numel(node.shape))))

    def _new(self, k: Kernel) -> None:
        k.index = min(self.pos[n] for n in k.computed)
        self.kernels[k.index] = k
        for n in k.computed:
            self.owner[n] = k.index

    # -- the kernel graph ------------------------------------------------------------
    def _reads(self, k: Kernel) -> set[int]:
        inside = set(k.computed)
        return {b for n in k.computed for b, _, _ in self.an.reads[n] if b not in inside}

    def dag(self) -> nx.DiGraph:
        d = nx.DiGraph()
        d.add_nodes_from(self.kernels)
        readers: dict[int, set[int]] = {}
        for kid, k in self.kernels.items():
            for b in self._reads(k):
                readers.setdefault(b, set()).add(kid)
                if b in self.owner and self.owner[b] != kid:
                    d.add_edge(self.owner[b], kid)
        for kid, k in self.kernels.items():  # an update runs after every reader of the old value
            for n in k.computed:
                if n in self.update_of:
                    for r in readers.get(self.update_of[n], ()):
                        if r != kid:
                            d.add_edge(r, kid)
        return d

    def _mergeable(self, a: int, b: int) -> bool:
        """Merging kernels a and b keeps the kernel graph acyclic (a direct edge between them is the
        caller's to judge: it is legal only when the reader uses the value in place)."""
        d = nx.contracted_nodes(self.dag(), a, b, self_loops=False)
        return nx.is_directed_acyclic_graph(d)

    def _absorb(self, host: Kernel, guest: Kernel, into: Group | None, epilogue: bool = False) -> None:
        """Move guest's computation into host: its main group becomes a side, or joins `into`
        (as more roots, or as `epilogue` computed from into's values)."""
        del self.kernels[guest.index]
        if into is None:
            host.sides.append(guest.main)
        elif epilogue:
            into.epilogue.extend(guest.main.nodes)
        else:
            into.roots.extend(guest.main.roots)
            into.epilogue.extend(guest.main.epilogue)
        host.sides.extend(guest.sides)
        for n in guest.computed:
            self.owner[n] = host.index

    # -- merges ------------------------------------------------------------------------
    def operand_sums(self) -> None:
        """sum(B, axis=0) beside A @ B, sum(A, axis=1) beside A @ B: the bias gradient next to dW."""
        for k in list(self.kernels.values()):
            if k.kind != "reduce" or len(k.main.roots) != 1 or k.index not in self.kernels:
                continue
            r = self.g.node(k.main.roots[0])
            if r.op != "sum" or len(self.g.node(r.inputs[0]).shape) != 2:
                continue
            for host in list(self.kernels.values()):
                if host.kind != "matmul":
                    continue
                mm = self.g.node(host.main.roots[0])
                if (r.inputs[0], r.attrs["axis"]) in ((mm.inputs[1], (0,)), (mm.inputs[0], (1,))) \
                        and not self._depends(host, k) and self._mergeable(host.index, k.index):
                    self._absorb(host, k, None)
                    break

    def row_sums(self) -> None:
        """Reductions along a softmax row ride along the row-wise kernel (cross-entropy, its gradient)."""
        for host in [k for k in self.kernels.values() if k.kind == "rowwise"]:
            root = self.g.node(host.main.roots[0])
            for k in list(self.kernels.values()):
                if k.kind != "reduce" or len(k.main.roots) != 1:
                    continue
                r = self.g.node(k.main.roots[0])
                src = self.g.node(r.inputs[0])
                if src.shape != root.shape or r.attrs["axis"] != (root.attrs["axis"],):
                    continue
                if not self._reads_only_at(r.id, set(host.computed), set(host.main.roots)):
                    continue
                # the row kernel may feed the sum, never the other way (softmax of a sum)
                if not nx.has_path(self.dag(), k.index, host.index) and self._mergeable(host.index, k.index):
                    self._absorb(host, k, host.sides[0] if host.sides else None)

    def _reads_only_at(self, nid: int, inside: set[int], allowed: set[int]) -> bool:
        """Reduction nid reads no node of `inside` except the row-wise `allowed` roots, and those only at
        the (row, column) position the row-wise kernel computes them at."""
        src_numel = numel(self.g.node(self.g.node(nid).inputs[0]).shape)
        r = index_symbol("r")
        for b, off, n in self.an.reads[nid]:
            if b not in inside:
                continue
            root = self.g.node(b)
            at = reduction_index(root.shape, (root.attrs["axis"],), self.an.x, r).offset() if b in allowed else None
            if at is None or n != src_numel or sp.expand(off - at) != 0:
                return False
        return True

    def horizontal_pointwise(self) -> None:
        """Independent pointwise kernels over the same number of elements become one (a forward
        value and its gradient: their formulas then share work through cse)."""
        changed = True
        while changed:
            changed = False
            pw = sorted((k for k in self.kernels.values() if k.kind == "pointwise"), key=lambda k: k.index)
            for i, a in enumerate(pw):
                for b in pw[i + 1:]:
                    if a.main.numel == b.main.numel and not self._depends(a, b) and self._mergeable(a.index, b.index):
                        self._absorb(a, b, a.main)
                        changed = True
                        break
                if changed:
                    break

    def horizontal(self) -> None:
        """Reductions over the same domain (input shape and reduced axes) share one loop."""
        def signature(k: Kernel) -> tuple:
            r = self.g.node(k.main.roots[0])
            shape = self.g.node(r.inputs[0]).shape
            return (shape, tuple(a for a in r.attrs["axis"] if shape[a] != 1), k.main.numel)

        changed = True
        while changed:
            changed = False
            red = sorted((k for k in self.kernels.values() if k.kind == "reduce" and not k.sides),
                         key=lambda k: k.index)
            for i, a in enumerate(red):
                for b in red[i + 1:]:
                    if signature(a) == signature(b) and not self._depends(a, b) and self._mergeable(a.index, b.index):
                        self._absorb(a, b, a.main)
                        changed = True
                        break
                if changed:
                    break

    def _depends(self, a: Kernel, b: Kernel) -> bool:
        d = self.dag()
        return nx.has_path(d, a.index, b.index) or nx.has_path(d, b.index, a.index)

    def epilogues(self) -> None:
        """A pointwise result read from one kernel's group at its own position joins that group."""
        for nid in self.plan.order:
            k = self.kernels.get(self.owner.get(nid, -1))
            if k is None or k.kind != "pointwise" or k.main.roots != [nid] or k.sides or k.main.epilogue:
                continue
            same, other = self.an.identity_reads(nid)
            hosts = {self.owner[b] for b in same if b in self.owner}
            if len(hosts) != 1:
                continue
            host = self.kernels[hosts.pop()]
            groups = [gr for gr in (host.main, *host.sides) if set(b for b in same) & set(gr.nodes)]
            if len(groups) != 1 or groups[0].numel != k.main.numel:
                continue
            group = groups[0]
            inside = set(host.computed)
            if host.kind == "rowwise" and group is host.main and self._row_late(nid, host):
                if self._mergeable(host.index, k.index):  # e.g. the logits' gradient of a cross-entropy
                    del self.kernels[k.index]
                    host.late.append(nid)
                    self.owner[nid] = host.index
                continue
            if any(b in inside for b in other) or not (same & inside) <= set(group.nodes):
                continue
            if self._mergeable(host.index, k.index):
                self._absorb(host, k, group, epilogue=True)

    def _row_late(self, nid: int, host: Kernel) -> bool:
        """nid, shaped like the row-wise result, reads the kernel's row-wise values at its own position
        and its row reductions at its row: it can be computed in a last pass over the rows."""
        root = self.g.node(host.main.roots[0])
        node = self.g.node(nid)
        if node.shape != root.shape or not host.sides:
            return False
        idx = Index.of(root.shape, self.an.x)
        axis = root.attrs["axis"]
        kept = [(d, n) for i, (d, n) in enumerate(zip(idx.dims, root.shape)) if i != axis]
        row = Index(tuple(n for _, n in kept), tuple(d for d, _ in kept)).offset()
        rowwise, sums = set(host.main.nodes) | set(host.late), set(host.sides[0].roots)
        reads_sums = False
        for b, off, n in self.an.reads[nid]:
            if b in rowwise:
                ok = n == numel(root.shape) and sp.expand(off - self.an.x) == 0
            elif b in sums:
                ok = reads_sums = sp.expand(off - row) == 0
            else:
                ok = b not in host.computed
            if not ok:
                return False
        return reads_sums

    # -- result ------------------------------------------------------------------------
    def schedule(self) -> Schedule:
        d = self.dag()
        order = list(nx.lexicographical_topological_sort(d, key=lambda kid: kid))
        results = set(self.plan.outputs) | set(self.plan.updates.values())
        readers: dict[int, set[int]] = {}
        for kid, k in self.kernels.items():
            for b in self._reads(k):
                readers.setdefault(b, set()).add(kid)
        kernels = []
        for i, kid in enumerate(order):
            k = self.kernels[kid]
            k.stores = [n for n in k.computed if n in results or readers.get(n, set()) - {kid}]
            k.reads = sorted(self._reads(k), key=self.pos.__getitem__)
            k.inlined = sorted(set().union(*(self.an.inlined[n] for n in k.computed)) - set(k.computed),
                               key=self.pos.__getitem__)
            k.index = i
            kernels.append(k)
        owner = {n: k.index for k in kernels for n in k.stores}
        return Schedule(self.plan, kernels, self.mat, owner)


def schedule(plan: Plan, fuse: bool = True) -> Schedule:
    """Partition the plan's nodes into kernels. ``fuse=False`` keeps one kernel per materialized node."""
    f = _Fuser(plan)
    if fuse:
        f.operand_sums()
        f.row_sums()
        f.horizontal()
        f.epilogues()
        f.horizontal_pointwise()
    return f.schedule()


def unfused_schedule(plan: Plan) -> Schedule:
    """Every non-source node its own kernel: what a node-by-node interpreter does."""
    g = plan.graph
    kernels = []
    for nid in plan.order:
        node = g.node(nid)
        if OPS[node.op].kind == SOURCE:
            continue
        k = Kernel("node", Group([nid], numel(node.shape)), stores=[nid],
                   reads=[i for i in dict.fromkeys(node.inputs)], index=len(kernels))
        kernels.append(k)
    mat = set(plan.order)
    return Schedule(plan, kernels, mat, {k.stores[0]: k.index for k in kernels})


def kernel_nodes(schedule: Schedule, k: Kernel) -> list[Node]:
    """Every graph node a kernel implements (computed and inlined), in plan order."""
    pos = {n: i for i, n in enumerate(schedule.plan.order)}
    ids: Iterable[int] = sorted(set(k.computed) | set(k.inlined), key=pos.__getitem__)
    return [schedule.plan.graph.node(n) for n in ids]


__all__ = [
    "AsFloat", "FloorDiv", "Group", "INLINE_COST_LIMIT", "Index", "Inliner", "Kernel", "LAYOUT_INDEX", "NotFusable", "Rem",
    "Schedule", "broadcast_index", "index_symbol", "kernel_nodes", "numel", "reduction_index", "same_position",
    "schedule",
    "strides", "unfused_schedule",
]
