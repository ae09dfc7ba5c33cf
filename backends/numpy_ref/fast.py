"""The fast CPU path of the NumPy backend: one generated Python function per Program.

The reference interpreter (lowering.py) walks a list of steps and calls one
lambda per node; this module compiles the same Plan into straight-line NumPy
code instead, so a call costs about what hand-written NumPy costs:

- constant folding: nodes computed from constants only (the loss seed, its
  broadcasts) are evaluated once at lowering time, and a uniform float constant
  becomes a number inside the formulas that read it;
- fused pointwise regions: a pointwise node read by exactly one pointwise node
  is inlined into it, so a chain such as ``a0 - lr * (g * Step(h))`` becomes one
  sympy expression; ``sympy.cse`` shares its repeated subterms and the NumPy
  printer turns it into one line of vectorised code;
- broadcasts read by pointwise code become NumPy broadcasting (no copy), and
  transposes, reshapes and broadcasts read by other ops become views;
- every matmul, and every region whose outermost operation is a ufunc, writes
  into a buffer allocated once, at lowering time, with ``out=`` (outputs and
  new param values excepted: they leave the program, so they are new arrays);
  a buffer is reused once its value, and every view of it, is dead.

The generated text is ``Program.source``. The oracle stays the interpreter:
``dtype="float64"``, ``check_finite=True`` or ``fast=False`` select it.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import sympy as sp

from graphc.ir import FLOAT_DTYPES, Node
from graphc.ops import LAYOUT, MATMUL, OPS, POINTWISE, SOURCE, formula
from graphc.plan import Plan
from graphc.symbolic import Relu, arg_symbols

from .printer import HELPERS, GraphcNumPyPrinter

# Names the generated module defines itself; node variables must not shadow them.
RESERVED = frozenset({"numpy", "program"})  # helpers start with "_", which node names never do


class FastPrinter(GraphcNumPyPrinter):
    """The reference printer, with two-way Piecewise as ``numpy.where`` (one pass, no list of choices)."""

    def _print_Float(self, e: sp.Float) -> str:
        return repr(float(e))  # the shortest literal that reads back as the same double

    def _print_Piecewise(self, e: sp.Piecewise) -> str:
        *pieces, (last, cond) = e.args
        if cond != sp.true:
            return super()._print_Piecewise(e)
        if len(pieces) == 1 and {pieces[0][0], last} == {sp.S.Zero, sp.S.One}:
            # A 0/1 mask (a clamp's or maximum's derivative) as int8: int8 * float32 stays float32,
            # and unlike a bool array it can be negated (-mask appears in gradients of -x).
            mask = self._print(pieces[0][1])
            mask = mask if pieces[0][0] == 1 else f"numpy.logical_not({mask})"
            return f"numpy.asarray({mask}).view(numpy.int8)"
        out = self._print(last)
        for value, c in reversed(pieces):
            out = f"numpy.where({self._print(c)}, {self._print(value)}, {out})"
        return out


def _repeats(expr: sp.Expr) -> bool:
    """Whether a compound subterm occurs twice (what cse could share)."""
    seen: set[sp.Basic] = set()
    for sub in sp.preorder_traversal(expr):
        if not sub.args:
            continue
        if sub in seen:
            return True
        seen.add(sub)
    return False


def _split(e: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """An n-ary Add or Mul as (first term, the rest): the two operands of one binary ufunc."""
    return e.args[0], e.func(*e.args[1:])


# sympy head -> (ufunc name, its operands): how a region's outermost operation takes out=.
ROOT_UFUNCS: dict[Any, Callable[[sp.Expr], tuple[str, tuple[sp.Expr, ...]]]] = {
    sp.Add: lambda e: ("add", _split(e)),
    sp.Mul: lambda e: ("multiply", _split(e)),
    sp.exp: lambda e: ("exp", e.args),
    sp.log: lambda e: ("log", e.args),
    Relu: lambda e: ("maximum", (e.args[0], sp.Integer(0))),
}


BUF = "@BUF@"  # where a statement's buffer name goes, once assign_buffers has picked it


@dataclass
class Stmt:
    """One generated line: the node it defines, the nodes it reads, and the buffer it writes (shape, dtype)."""

    text: str
    defines: int | None = None
    reads: set[int] = field(default_factory=set)
    buffer: tuple[tuple[int, ...], str] | None = None
    alias_of: int | None = None  # the value is a view of (or is) this node's value


@dataclass
class Emitted:
    """The generated program: its source, the names it reads, and what it returns."""

    source: str
    namespace: dict[str, Any]
    args: list[int]  # node ids of the function's parameters (inputs, then params), in order
    updates: list[tuple[int, int]]  # (param id, new value id)
    num_kernels: int
    buffers: dict[str, np.ndarray] = field(default_factory=dict)


def _uniform(value: np.ndarray) -> bool:
    return value.size > 0 and bool(np.all(value == value.flat[0]))


def _number(v: np.generic) -> sp.Expr:
    """A folded constant as a sympy number; float32 values print by their shortest repr (1e-4, not 9.99e-5)."""
    if float(v).is_integer():
        return sp.Integer(int(v))
    return sp.Float(float(repr(float(v)) if v.dtype == np.float64 else str(v)))


Namespace = dict[str, Any]
Emit = Callable[[Node, list[str], Namespace, Callable[[Node], Callable[..., np.ndarray]]], str]


def _emit_reduce(ufunc: str) -> Emit:
    # The ufunc's own reduce: numpy.sum/numpy.max add a Python wrapper that costs more than a small sum.
    def emit(node: Node, a: list[str], ns: Namespace, interp: Any) -> str:
        return f"numpy.{ufunc}.reduce({a[0]}, axis={node.attrs['axis']}, keepdims={node.attrs['keepdims']})"
    return emit


def _emit_transpose(node: Node, a: list[str], ns: Namespace, interp: Any) -> str:
    perm = tuple(node.attrs["perm"])
    return f"{a[0]}.T" if perm == tuple(reversed(range(len(perm)))) else f"{a[0]}.transpose({perm})"


def _emit_one_hot(node: Node, a: list[str], ns: Namespace, interp: Callable[[Node], Callable[..., Any]]) -> str:
    """Rows of an identity matrix made once; a bad label falls back to the interpreter, which names the node."""
    eye, fn = f"_eye_{node.id}", f"_one_hot_{node.id}"
    ns[eye] = np.eye(node.attrs["num_classes"], dtype=node.dtype)
    impl = interp(node)

    def one_hot(labels: np.ndarray, rows: np.ndarray = ns[eye]) -> np.ndarray:
        if labels.size and labels.min() >= 0:
            try:
                return rows.take(labels, axis=0, mode="raise")
            except IndexError:
                pass
        return impl(node, labels)  # raises NumericError for an out-of-range label

    ns[fn] = one_hot
    return f"{fn}({a[0]})"


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    return shifted - np.log(np.add.reduce(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.maximum.reduce(x, axis=axis, keepdims=True))
    return e / np.add.reduce(e, axis=axis, keepdims=True)


def _emit_helper(name: str, fn: Callable[[np.ndarray, int], np.ndarray]) -> Emit:
    def emit(node: Node, a: list[str], ns: Namespace, interp: Any) -> str:
        ns[name] = fn
        return f"{name}({a[0]}, {node.attrs['axis']})"
    return emit


# Structural ops printed as one NumPy expression over their arguments' names (layout ops as
# views); an emitter may add what it needs to the namespace. Ops missing here call the
# interpreter's lowering.
EXPRESSIONS: dict[str, Emit] = {
    "sum": _emit_reduce("add"),
    "max": _emit_reduce("maximum"),
    "transpose": _emit_transpose,
    "reshape": lambda node, a, ns, interp: f"{a[0]}.reshape({node.attrs['shape']})",
    "broadcast_to": lambda node, a, ns, interp: f"numpy.broadcast_to({a[0]}, {node.attrs['shape']})",
    "one_hot": _emit_one_hot,
    # The interpreter's formulas, with the ufuncs' own reduce (see _emit_reduce).
    "softmax": _emit_helper("_softmax", _softmax),
    "log_softmax": _emit_helper("_log_softmax", _log_softmax),
}


class Codegen:
    """Plan -> one Python function of NumPy calls (see the module docstring)."""

    def __init__(self, plan: Plan, interp: Callable[[Node], Callable[..., np.ndarray]]):
        self.plan = plan
        self.g = plan.graph
        self.interp = interp  # the interpreter's lowering of one node: folds constants, runs rare ops
        self.order = plan.order
        in_plan = set(self.order)
        self.consumers = {n: [c for c in self.g.consumers(n) if c in in_plan] for n in self.order}
        self.kept = set(plan.outputs) | set(plan.updates.values())
        self.names: dict[int, str] = {}
        self.taken: set[str] = set()
        self.ns: dict[str, Any] = {"numpy": np, **HELPERS}
        self.consts: dict[int, np.ndarray] = {}  # folded values
        self.stmts: list[Stmt] = []
        self.kernels = 0
        self.fresh: set[int] = set()  # nodes whose value is a new array no one else holds
        self.buffers: dict[str, np.ndarray] = {}  # filled by assign_buffers

    # -- naming ------------------------------------------------------------------------
    def name(self, nid: int) -> str:
        """The node's label when it is a usable, unused identifier; else t<id>_ (underscored until unique)."""
        if nid not in self.names:
            label = self.g.node(nid).label
            ok = label.isidentifier() and not keyword.iskeyword(label) and not label.startswith("_") \
                and label not in RESERVED and label not in self.taken
            name = label if ok else f"t{nid}_"
            while name in self.taken:
                name += "_"
            self.names[nid] = name
            self.taken.add(name)
        return self.names[nid]

    # -- classification ----------------------------------------------------------------
    def kind(self, nid: int) -> str:
        return OPS[self.g.node(nid).op].kind

    def inlined(self, nid: int) -> bool:
        """A pointwise node read by one pointwise node only (and not returned) lives inside its reader."""
        cons = self.consumers[nid]
        return (self.kind(nid) == POINTWISE and nid not in self.kept and nid not in self.consts
                and len(cons) == 1 and self.kind(cons[0]) == POINTWISE)

    def scalar_const(self, nid: int) -> bool:
        node = self.g.node(nid)
        return nid in self.consts and node.dtype in FLOAT_DTYPES and _uniform(self.consts[nid])

    # -- pointwise regions -------------------------------------------------------------
    def leaf(self, nid: int, leaves: dict[int, sp.Symbol]) -> sp.Expr:
        """The symbol (or number, or inlined expression) standing for node nid inside a region."""
        node = self.g.node(nid)
        if self.scalar_const(nid):
            return _number(self.consts[nid].flat[0])
        if self.inlined(nid):
            return self.region_expr(nid, leaves)
        if node.op == "broadcast_to" and nid not in self.kept:
            # Pointwise code broadcasts by itself: read the smaller input directly.
            return self.leaf(node.inputs[0], leaves)
        if nid not in leaves:
            leaves[nid] = sp.Symbol(self.name(nid), real=True)
        return leaves[nid]

    def region_expr(self, nid: int, leaves: dict[int, sp.Symbol]) -> sp.Expr:
        node = self.g.node(nid)
        args = [self.leaf(i, leaves) for i in node.inputs]
        return formula(node).xreplace(dict(zip(arg_symbols(len(args)), args)))

    def leaf_shape(self, leaves: dict[int, sp.Symbol], expr: sp.Expr) -> tuple[int, ...]:
        used = [self.g.node(n).shape for n, s in leaves.items() if s in expr.free_symbols]
        return tuple(np.broadcast_shapes(*used)) if used else ()

    def emit_region(self, nid: int) -> None:
        node = self.g.node(nid)
        leaves: dict[int, sp.Symbol] = {}
        expr = self.region_expr(nid, leaves)
        # cse costs more than the printing; run it only when some subterm occurs twice.
        temps, root = (sp.cse(expr, symbols=sp.numbered_symbols(f"_{self.name(nid)}_"), optimizations=None,
                              list=False) if _repeats(expr) else ([], expr))
        printer = FastPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False})
        for sym, sub in temps:
            self.stmts.append(Stmt(f"{sym} = {printer.doprint(sub)}", reads=set(leaves)))
        shape = self.leaf_shape(leaves, expr)
        self.kernels += 1
        leaf_dtypes = {self.g.node(n).dtype for n, sym in leaves.items() if sym in expr.free_symbols}
        if (root.func in ROOT_UFUNCS and shape == node.shape and nid not in self.kept
                and node.dtype in FLOAT_DTYPES and leaf_dtypes <= {*FLOAT_DTYPES, "bool"}):
            # The outermost operation writes into a buffer allocated once (a float result, so out= casts nothing).
            ufunc, args = ROOT_UFUNCS[root.func](root)
            printed = ", ".join(printer.doprint(a) for a in args)
            self.stmts.append(Stmt(f"{self.name(nid)} = numpy.{ufunc}({printed}, out={BUF})", nid, set(leaves),
                                   (node.shape, node.dtype)))
            return
        code = printer.doprint(root)
        if shape != node.shape:
            code = f"numpy.broadcast_to({code}, {node.shape})"
        alias = next((n for n, sym in leaves.items() if sym == expr), None)  # the region is one of its inputs
        if shape == node.shape and alias is None:
            self.fresh.add(nid)
        # asarray fixes the dtype (bool masks, int Piecewise branches) and is free when it already agrees.
        self.stmts.append(Stmt(f"{self.name(nid)} = numpy.asarray({code}, numpy.{node.dtype})", nid, set(leaves),
                               alias_of=alias))

    # -- structural ops ----------------------------------------------------------------
    def emit_matmul(self, nid: int) -> None:
        node = self.g.node(nid)
        a, b = (self.g.node(i) for i in node.inputs)
        names = [self.name(i) for i in node.inputs]
        if nid in self.kept or a.dtype != node.dtype or b.dtype != node.dtype:
            self.stmts.append(Stmt(f"{self.name(nid)} = numpy.asarray(numpy.matmul({names[0]}, {names[1]}), "
                                   f"numpy.{node.dtype})", nid, set(node.inputs)))
            self.fresh.add(nid)
        else:
            self.stmts.append(Stmt(f"{self.name(nid)} = numpy.matmul({names[0]}, {names[1]}, out={BUF})", nid,
                                   set(node.inputs), (node.shape, node.dtype)))
        self.kernels += 1

    def emit_structural(self, nid: int) -> None:
        node = self.g.node(nid)
        names = [self.name(i) for i in node.inputs]
        if node.op in EXPRESSIONS:
            code = EXPRESSIONS[node.op](node, names, self.ns, self.interp)
            if self.kind(nid) != LAYOUT:
                code = f"numpy.asarray({code}, numpy.{node.dtype})"
                self.fresh.add(nid)
        else:
            fn = f"_{node.op}_{nid}"
            impl = self.interp(node)
            self.ns[fn] = lambda *xs, _impl=impl, _node=node: _impl(_node, *xs)
            code = f"numpy.asarray({fn}({', '.join(names)}), numpy.{node.dtype})"
            self.fresh.add(nid)
        view = self.kind(nid) == LAYOUT
        self.stmts.append(Stmt(f"{self.name(nid)} = {code}", nid, set(node.inputs),
                               alias_of=node.inputs[0] if view else None))
        if not view:
            self.kernels += 1

    # -- buffers -----------------------------------------------------------------------
    def assign_buffers(self, returned: list[int]) -> list[str]:
        """Give each buffered statement a buffer, reusing one whose value (and every view of it) is dead.

        A buffer freed by statement i is reused from statement i + 1 on, so no statement
        writes the buffer it reads. Returns the statements' text with buffer names filled in.
        """
        def base(nid: int) -> int:
            while nid in alias:
                nid = alias[nid]
            return nid

        alias = {st.defines: st.alias_of for st in self.stmts if st.defines is not None and st.alias_of is not None}
        last: dict[int, int] = {}
        for i, st in enumerate(self.stmts):
            for r in st.reads:
                last[base(r)] = i
        for r in returned:
            last[base(r)] = len(self.stmts)
        free: dict[tuple[tuple[int, ...], str], list[str]] = {}
        release: dict[int, list[tuple[tuple[tuple[int, ...], str], str]]] = {}
        lines = []
        for i, st in enumerate(self.stmts):
            text = st.text
            if st.buffer is not None:
                pool = free.setdefault(st.buffer, [])
                name = pool.pop() if pool else f"_buf{len(self.buffers)}"
                if name not in self.buffers:
                    self.buffers[name] = np.empty(st.buffer[0], dtype=st.buffer[1])
                text = text.replace(BUF, name)
                release.setdefault(max(i, last.get(st.defines, i)), []).append((st.buffer, name))  # type: ignore[arg-type]
            for key, name in release.pop(i, []):
                free[key].append(name)
            lines.append(text)
        return lines

    # -- the whole program -------------------------------------------------------------
    def fold_constants(self) -> None:
        for nid in self.order:
            node = self.g.node(nid)
            if node.op == "const":
                self.consts[nid] = np.asarray(node.value, dtype=node.dtype)
            elif node.inputs and all(i in self.consts for i in node.inputs) and OPS[node.op].kind != SOURCE:
                with np.errstate(all="ignore"):
                    value = self.interp(node)(node, *(self.consts[i] for i in node.inputs))
                self.consts[nid] = np.array(np.broadcast_to(np.asarray(value, node.dtype), node.shape))

    def emit(self) -> Emitted:
        self.fold_constants()
        args = [n.id for n in self.plan.inputs.values()] + [n.id for n in self.plan.params.values()]
        for nid in args:
            self.name(nid)
        for nid in self.order:
            node = self.g.node(nid)
            if nid in self.consts:
                if not self.scalar_const(nid) or nid in self.kept or any(
                        self.kind(c) != POINTWISE for c in self.consumers[nid]):
                    self.ns[self.name(nid)] = self.consts[nid]
                continue
            kind = OPS[node.op].kind
            if kind == SOURCE or self.inlined(nid):
                continue
            if kind == POINTWISE:
                self.emit_region(nid)
            elif kind == MATMUL:
                self.emit_matmul(nid)
            elif node.op == "broadcast_to" and self.consumers[nid] and nid not in self.kept and all(
                    self.kind(c) == POINTWISE for c in self.consumers[nid]):
                continue  # read through by every consumer
            else:
                self.emit_structural(nid)
        outs = [self.name(o) for o in self.plan.outputs]
        news = [self.name(u) for u in self.plan.updates.values()]
        # Outputs and new params leave the program: copy those that alias a buffer, a feed or a const.
        ret = [n if i in self.fresh else f"numpy.array({n})" for i, n in
               zip([*self.plan.outputs, *self.plan.updates.values()], [*outs, *news])]
        k = len(outs)
        params = ", ".join(self.name(a) for a in args)
        lines = self.assign_buffers([*self.plan.outputs, *self.plan.updates.values()])
        body = "\n".join(f"    {line}" for line in lines) or "    pass"
        source = (f"def program({params}):\n{body}\n"
                  f"    return ({', '.join(ret[:k])},), ({''.join(r + ', ' for r in ret[k:])})\n")
        self.ns.update(self.buffers)
        return Emitted(source, self.ns, args, list(self.plan.updates.items()), self.kernels, self.buffers)


def signature(plan: Plan) -> tuple[Any, ...]:
    """Everything the generated code depends on: structure, types, attrs, names, const values,
    and the user's source lines (errors raised from the generated code quote them).

    Param values are not part of it (they are arguments), so compiling the same model
    again, from a new graph with new weights, hits the cache.
    """
    g = plan.graph
    rows = []
    for nid in plan.order:
        n = g.node(nid)
        value = n.value.tobytes() if n.op == "const" and n.value is not None else None
        rows.append((nid, n.op, n.inputs, n.shape, n.dtype, repr(sorted(n.attrs.items())), n.name, n.source, value))
    return (tuple(rows), tuple(plan.outputs), tuple(plan.updates.items()), tuple(plan.inputs), tuple(plan.params))


_CACHE: dict[tuple[Any, ...], Emitted] = {}
_CACHE_SIZE = 64


def clear_cache() -> None:
    _CACHE.clear()


def generate(plan: Plan, interp: Callable[[Node], Callable[..., np.ndarray]]) -> Emitted:
    """Codegen, cached by signature(plan); a hit gets its own fresh buffers."""
    key = signature(plan)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]  # oldest first
        _CACHE[key] = Codegen(plan, interp).emit()
    hit = _CACHE[key]
    buffers = {k: np.empty_like(b) for k, b in hit.buffers.items()}
    return Emitted(hit.source, {**hit.namespace, **buffers}, hit.args, hit.updates, hit.num_kernels, buffers)


class FastExecutable:
    """The generated function plus the calling convention of the Executable protocol."""

    def __init__(self, plan: Plan, interp: Callable[[Node], Callable[..., np.ndarray]]):
        self.plan = plan
        emitted = generate(plan, interp)
        self.source = emitted.source
        self.num_kernels = emitted.num_kernels
        self.buffer_bytes = sum(b.nbytes for b in emitted.buffers.values())
        namespace = dict(emitted.namespace)
        exec(compile(emitted.source, f"<graphc {plan.graph.name}>", "exec"), namespace)  # noqa: S102 - our code
        self._fn: Callable[..., tuple[tuple[Any, ...], tuple[Any, ...]]] = namespace["program"]
        self._args = emitted.args
        self._update_ids = [p for p, _ in emitted.updates]

    def report(self) -> str:
        return (f"  numpy fast path: one generated function, {self.num_kernels} NumPy kernels per call, "
                f"{self.buffer_bytes:,} B of buffers allocated once (matmul and pointwise out=)")

    def asarray(self, value: Any, node: Node) -> np.ndarray:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        # Feeds are only read, so a feed of the right dtype is used as is; params are
        # held between calls, so they get a private copy.
        return np.array(value, dtype=node.dtype) if node.op == "param" else np.asarray(value, dtype=node.dtype)

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def run(self, feeds: dict[int, Any], params: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
        with np.errstate(all="ignore"):  # IEEE semantics, as in the interpreter
            outs, news = self._fn(*[feeds[i] if i in feeds else params[i] for i in self._args])
        return [np.asarray(o) for o in outs], dict(zip(self._update_ids, news))

