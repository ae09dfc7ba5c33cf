"""Kernel templates: a fusion Schedule -> one Triton module (source text).

Each template follows the layout of the Triton tutorials (program id,
offsets, mask, load, compute, store) and uses the names Inductor made familiar
(in_ptr0, out_ptr0, xnumel, xoffset, xindex, xmask, tmp0 ...). Values come
from graphc.fusion's Inliner as sympy expressions over loads; each phase of a
kernel (a loop body, an epilogue) goes through ``sympy.cse`` once, so work
shared by forward and backward formulas is computed once.

The module also carries, as plain literals, everything the launcher needs
(``LAUNCHES``, ``BUFFERS``, ``REPORT``), so a cached module is loaded without
running fusion or code generation again, and it runs on its own
(``python kernels.py`` launches every kernel on random data).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator

import sympy as sp

from graphc.errors import UnknownOpError
from graphc.fusion import (
    LAYOUT_INDEX, Index, Inliner, Kernel, Schedule, index_symbol, kernel_nodes, numel, reduction_index,
)
from graphc.ir import Node
from graphc.memory import MemoryPlan
from graphc.ops import INDEX, LAYOUT, MATMUL, OPS, REDUCE
from graphc.ops import ROWWISE as ROWWISE_KIND
from graphc.plan import Plan
from graphc.printing import format_node

from .printer import HELPERS, texpr
from .writer import CodeWriter

INT32_LIMIT = 2**31

TL_FLOAT = ("float32", "float64")
TL_DTYPE = {"float32": "tl.float32", "float64": "tl.float64", "int64": "tl.int64", "bool": "tl.int1"}

#: Reduction ops: accumulator start value (by dtype kind) and how one step and the final fold print.
REDUCTIONS: dict[str, dict[str, Any]] = {
    "sum": {"init": {"f": "0.0", "i": "0"}, "step": "{acc} + tl.where({mask}, {v}, {init})",
            "fold": "tl.sum({acc}, 1)"},
    "max": {"init": {"f": 'float("-inf")', "i": "-9223372036854775807"},
            "step": "_maximum_nan({acc}, tl.where({mask}, {v}, {init}))", "fold": "tl.reduce({acc}, 1, _maximum_nan)"},
}

#: Row-wise ops: the output at one element from the input v, the row max and the row sum of exp(v - max).
ROWWISE: dict[str, Callable[[sp.Expr, sp.Expr, sp.Expr], sp.Expr]] = {
    "softmax": lambda v, mx, se: sp.exp(v - mx) / se,
    "log_softmax": lambda v, mx, se: v - mx - sp.log(se),
}


def check_lowerable(plan: Plan) -> None:
    """Refuse, before any code is generated, an op this backend has no template for.

    Pointwise ops need no entry: the printer raises on a formula it cannot print.
    """
    known: dict[str, Collection[str]] = {REDUCE: REDUCTIONS, ROWWISE_KIND: ROWWISE, LAYOUT: LAYOUT_INDEX,
                                         MATMUL: ("matmul",), INDEX: ("one_hot",)}
    for node in plan.nodes:
        kind = OPS[node.op].kind
        if kind in known and node.op not in known[kind]:
            raise UnknownOpError(f"the Triton backend cannot lower op {node.op!r}", node=node,
                                 hint="add a template to backends/triton/codegen.py, or compile with "
                                 'backend="numpy"')


def value_symbol(name: str) -> sp.Symbol:
    """A kernel variable holding tensor values: real, like the formulas' symbols, so sympy never
    brings in re()/im() when cse rebuilds an expression around it."""
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class Tuning:
    """Block sizes. The interpreter pays per program instance, so it gets few, large programs."""

    interpret: bool
    precision: str = "ieee"  # tl.dot input_precision for fp32: "ieee" (matches the oracle) or "tf32"
    autotune: bool = False  # GPU: matmul tiles chosen by @triton.autotune keyed on (M, N, K)

    @staticmethod
    def pow2(n: int, lo: int, hi: int) -> int:
        p = 1
        while p < n:
            p *= 2
        return max(lo, min(p, hi))

    def pointwise(self, n: int) -> int:
        return self.pow2(n, 16, 65536 if self.interpret else 1024)

    def reduce(self, xnumel: int, rnumel: int) -> tuple[int, int]:
        budget = 65536 if self.interpret else 4096
        r = self.pow2(rnumel, 16, 4096 if self.interpret else 1024)
        return self.pow2(xnumel, 1, max(1, budget // r)), r

    def matmul(self, m: int, n: int, k: int) -> tuple[int, int, int]:
        hi = 1024 if self.interpret else 64
        return self.pow2(m, 16, hi), self.pow2(n, 16, hi), self.pow2(k, 16, 1024 if self.interpret else 32)


AUTOTUNE_CONFIGS = [  # (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); tl.dot needs >= 16 per dim
    (16, 16, 16, 1, 2), (32, 32, 32, 4, 3), (64, 64, 32, 4, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3),
    (128, 128, 32, 8, 3),
]


@dataclass
class Launch:
    """One kernel launch, as plain data (it is written into the module as a literal)."""

    kernel: str
    ptrs: list[int]  # buffer node ids, in pointer-argument order
    writes: list[int]  # the ones it stores (the last pointers)
    sizes: list[int]  # the integer arguments (xnumel, M, N, K ...)
    grid: list[Any]  # ints, or [size, "BLOCK_X"] pairs resolved against the autotuned meta
    meta: dict[str, int] = field(default_factory=dict)

    def literal(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "ptrs": self.ptrs, "writes": self.writes, "sizes": self.sizes,
                "grid": self.grid, "meta": self.meta}


class Phase:
    """One straight-line stretch of a kernel: its loads, its cse'd temporaries, its results."""

    def __init__(self, kc: "KernelCode", masks: dict[sp.Symbol, str]):
        self.kc = kc
        self.masks = masks
        self.loads: dict[tuple[int, sp.Expr], sp.Symbol] = {}
        self.load_lines: list[str] = []

    def load(self, nid: int, index: Index) -> sp.Expr:
        off = index.offset()
        key = (nid, off)
        if key not in self.loads:
            sym = self.kc.fresh()
            parts = sorted({self.masks[s] for s in off.free_symbols if s in self.masks})
            mask = f", {' & '.join(parts)}" if parts else ""
            self.loads[key] = sym
            self.load_lines.append(f"{sym} = tl.load({self.kc.in_ptr(nid)} + ({texpr(off)}){mask})")
        return self.loads[key]

    def emit(self, w: CodeWriter, exprs: list[sp.Expr]) -> list[str]:
        """Write the loads and the common subexpressions; return the printed results."""
        for line in self.load_lines:
            w.line(line)
        # Small integer powers print as products (x*x); listing their compound bases as extra
        # expressions makes cse compute each base once instead of once per factor.
        bases = sorted({p.base for e in exprs if isinstance(e, sp.Basic) for p in e.atoms(sp.Pow)
                        if p.exp.is_Integer and 2 <= abs(int(p.exp)) <= 8 and not p.base.is_Atom}, key=sp.srepr)
        repl, reduced = sp.cse(list(exprs) + bases, symbols=self.kc.symbols(), order="none")
        reduced = reduced[:len(exprs)]
        for sym, e in repl:
            w.line(f"{sym} = {texpr(e)}")
        return [texpr(e) for e in reduced]


class KernelCode:
    """Generates one kernel of the schedule."""

    def __init__(self, sched: Schedule, kernel: Kernel, tuning: Tuning):
        self.sched, self.k, self.t = sched, kernel, tuning
        self.g = sched.plan.graph
        self.ins: dict[int, str] = {}
        self.outs: dict[int, str] = {}
        self._tmp = itertools.count()
        self.name = kernel.name
        self.big = any(numel(self.g.node(n).shape) >= INT32_LIMIT
                       for n in [*kernel.reads, *kernel.stores, *kernel.computed])

    # -- names ---------------------------------------------------------------------------
    def fresh(self) -> sp.Symbol:
        return value_symbol(f"tmp{next(self._tmp)}")

    def symbols(self) -> Iterator[sp.Symbol]:
        while True:
            yield self.fresh()

    def in_ptr(self, nid: int) -> str:
        if nid not in self.ins:
            self.ins[nid] = f"in_ptr{len(self.ins)}"
        return self.ins[nid]

    def out_ptr(self, nid: int) -> str:
        if nid not in self.outs:
            self.outs[nid] = f"out_ptr{len(self.outs)}"
        return self.outs[nid]

    def inliner(self, phase: Phase, in_kernel: dict[int, tuple[Index | sp.Expr, sp.Expr]]) -> Inliner:
        return Inliner(self.g, self.sched.materialized, phase.load, in_kernel)

    def node(self, nid: int) -> Node:
        return self.g.node(nid)

    def pid(self, axis: int = 0) -> str:
        # int64 offsets when a tensor may exceed 2**31 elements
        return f"tl.program_id({axis})" + (".to(tl.int64)" if self.big else "")

    def acc_dtype(self, node: Node) -> str:
        return TL_DTYPE[node.dtype] if node.dtype != "bool" else "tl.int64"

    # -- shared pieces -------------------------------------------------------------------
    def header(self, w: CodeWriter) -> None:
        """The comment naming every graph node the kernel implements, with the user's lines."""
        k = self.k
        stores = ", ".join(self.node(n).label for n in k.stores) or "nothing"
        w.comment(f"{self.name}: {k.kind} kernel; stores {stores}")
        for node in kernel_nodes(self.sched, k):
            how = "computed" if node.id in k.computed else "inlined"
            w.comment(f"  {format_node(self.g, node).strip()}   [{how}; {node.source}]")

    def epilogue(self, w: CodeWriter, phase: Phase, group_nodes: list[int], domain: Callable[[Node], Index],
                 in_kernel: dict[int, tuple[Index | sp.Expr, sp.Expr]], mask: str, extra: list[sp.Expr] = (),
                 store: list[int] | None = None) -> list[str]:
        """Compute the epilogue nodes at the domain, then store every stored node of the group (of `store`)."""
        inl = self.inliner(phase, in_kernel)
        for nid in group_nodes:
            if nid in in_kernel:
                continue
            idx = domain(self.node(nid))
            in_kernel[nid] = (idx, inl.define(nid, idx))
            inl.in_kernel[nid] = in_kernel[nid]
        stored = [n for n in (group_nodes if store is None else store) if n in self.k.stores]
        printed = phase.emit(w, [in_kernel[n][1] for n in stored] + list(extra))
        for nid, val in zip(stored, printed):
            at = in_kernel[nid][0]
            off = at.offset() if isinstance(at, Index) else at
            # An offset that ignores a block axis (a size-1 axis) is broadcast to the whole block:
            # the pointer must have the shape of the mask and the value.
            pad = "".join(f" + 0 * {s}" for s in phase.masks if s not in off.free_symbols)
            w.line(f"tl.store({self.out_ptr(nid)} + ({texpr(off)}){pad}, {val}, {mask})")
        return printed[len(stored):]

    def signature(self, sizes: list[str], consts: list[str]) -> str:
        args = [*self.ins.values(), *self.outs.values(), *sizes, *(f"{c}: tl.constexpr" for c in consts)]
        return f"def {self.name}({', '.join(args)}):"

    def finish(self, body: CodeWriter, sizes: list[str], consts: list[str], decorators: list[str]) -> str:
        w = CodeWriter()
        self.header(w)
        ptrs = [f"{name} = {self.node(n).label}" for d in (self.ins, self.outs) for n, name in d.items()]
        w.comment("  pointers: " + ", ".join(ptrs))
        for d in decorators:
            w.line(d)
        w.line("@triton.jit")
        with w.block(self.signature(sizes, consts)):
            w.lines(body.text())
        return w.text()

    def launch(self, sizes: list[int], grid: list[Any], meta: dict[str, int]) -> Launch:
        return Launch(self.name, [*self.ins, *self.outs], list(self.outs), sizes, grid, meta)

    # -- templates -------------------------------------------------------------------------
    def generate(self) -> tuple[str, Launch]:
        return TEMPLATES[self.k.kind](self)


def _pointwise(kc: KernelCode) -> tuple[str, Launch]:
    k = kc.k
    n = k.main.numel
    x = index_symbol("xindex")
    w = CodeWriter()
    w.line(f"xoffset = {kc.pid()} * XBLOCK")
    w.line("xindex = xoffset + tl.arange(0, XBLOCK)")
    w.line("xmask = xindex < xnumel")
    phase = Phase(kc, {x: "xmask"})
    kc.epilogue(w, phase, k.main.nodes, lambda node: Index.of(node.shape, x), {}, "xmask")
    block = kc.t.pointwise(n)
    src = kc.finish(w, ["xnumel"], ["XBLOCK"], [])
    return src, kc.launch([n], [-(-n // block)], {"XBLOCK": block})


def _reduce(kc: KernelCode) -> tuple[str, Launch]:
    k = kc.k
    roots = [kc.node(r) for r in k.main.roots]
    src0 = kc.node(roots[0].inputs[0])
    xnumel = k.main.numel
    rnumel = numel(src0.shape) // max(xnumel, 1)
    x, r = index_symbol("xindex"), index_symbol("rindex")
    xb, rb = kc.t.reduce(xnumel, rnumel)
    w = CodeWriter()
    w.line(f"xoffset = {kc.pid()} * XBLOCK")
    w.line("xindex = xoffset + tl.arange(0, XBLOCK)[:, None]")
    w.line("xmask = xindex < xnumel")
    w.line("rbase = tl.arange(0, RBLOCK)[None, :]")
    accs = _accumulators(kc, w, roots, "[XBLOCK, RBLOCK]")
    with w.block("for roffset in range(0, rnumel, RBLOCK):"):
        w.line("rindex = roffset + rbase")
        w.line("rmask = rindex < rnumel")
        phase = Phase(kc, {x: "xmask", r: "rmask"})
        inl = kc.inliner(phase, {})
        vals = [inl.value(n.inputs[0], reduction_index(kc.node(n.inputs[0]).shape, n.attrs["axis"], x, r))
                for n in roots]
        _accumulate(kc, w, phase, roots, accs, vals, "xmask & rmask")
    in_kernel = _fold(kc, w, roots, accs, x)
    kc.epilogue(w, Phase(kc, {x: "xmask"}), k.main.nodes, lambda node: Index.of(node.shape, x), in_kernel, "xmask")
    src = kc.finish(w, ["xnumel", "rnumel"], ["XBLOCK", "RBLOCK"], [])
    return src, kc.launch([xnumel, rnumel], [-(-xnumel // xb)], {"XBLOCK": xb, "RBLOCK": rb})


def _accumulators(kc: KernelCode, w: CodeWriter, roots: list[Node], shape: str) -> list[str]:
    accs = []
    for i, node in enumerate(roots):
        kind = "f" if node.dtype.startswith("float") else "i"
        if node.op not in REDUCTIONS:
            raise UnknownOpError(f"the Triton backend has no reduction {node.op!r}", node=node,
                                 hint="add it to backends/triton/codegen.py REDUCTIONS")
        acc = f"acc{i}"
        w.line(f"{acc} = tl.full({shape}, {REDUCTIONS[node.op]['init'][kind]}, {kc.acc_dtype(node)})")
        accs.append(acc)
    return accs


def _accumulate(kc: KernelCode, w: CodeWriter, phase: Phase, roots: list[Node], accs: list[str],
                vals: list[sp.Expr], mask: str) -> None:
    printed = phase.emit(w, vals)
    for node, acc, v in zip(roots, accs, printed):
        rule = REDUCTIONS[node.op]
        init = rule["init"]["f" if node.dtype.startswith("float") else "i"]
        w.line(f"{acc} = " + rule["step"].format(acc=acc, mask=mask, v=v, init=init))


def _fold(kc: KernelCode, w: CodeWriter, roots: list[Node], accs: list[str], x: sp.Symbol,
          ) -> dict[int, tuple[sp.Expr, sp.Expr]]:
    in_kernel = {}
    for i, (node, acc) in enumerate(zip(roots, accs)):
        w.line(f"red{i} = " + REDUCTIONS[node.op]["fold"].format(acc=acc) + "[:, None]")
        in_kernel[node.id] = (x, value_symbol(f"red{i}"))
    return in_kernel


def _rowwise(kc: KernelCode) -> tuple[str, Launch]:
    k = kc.k
    y = kc.node(k.main.roots[0])
    src = kc.node(y.inputs[0])
    axis = y.attrs["axis"]
    rnumel = src.shape[axis]
    xnumel = numel(src.shape) // rnumel
    x, r = index_symbol("xindex"), index_symbol("rindex")
    at = reduction_index(src.shape, (axis,), x, r)
    xb, rb = kc.t.reduce(xnumel, rnumel)
    dt = kc.acc_dtype(y)
    w = CodeWriter()
    w.line(f"xoffset = {kc.pid()} * XBLOCK")
    w.line("xindex = xoffset + tl.arange(0, XBLOCK)[:, None]")
    w.line("xmask = xindex < xnumel")
    w.line("rbase = tl.arange(0, RBLOCK)[None, :]")
    masks = {x: "xmask", r: "rmask"}

    def row_loop(body: Callable[[Phase], None]) -> None:
        with w.block("for roffset in range(0, rnumel, RBLOCK):"):
            w.line("rindex = roffset + rbase")
            w.line("rmask = rindex < rnumel")
            body(Phase(kc, masks))

    w.comment("pass 1: the row max (NaN propagates)")
    w.line(f'rowmax = tl.full([XBLOCK, RBLOCK], float("-inf"), {dt})')

    def maxpass(phase: Phase) -> None:
        (v,) = phase.emit(w, [kc.inliner(phase, {}).value(src.id, at)])
        w.line(f'rowmax = _maximum_nan(rowmax, tl.where(xmask & rmask, {v}, float("-inf")))')

    row_loop(maxpass)
    w.line("rowmax = tl.reduce(rowmax, 1, _maximum_nan)[:, None]")
    w.comment("pass 2: the row sum of exp(v - max)")
    w.line(f"rowsum = tl.zeros([XBLOCK, RBLOCK], {dt})")

    def sumpass(phase: Phase) -> None:
        (v,) = phase.emit(w, [kc.inliner(phase, {}).value(src.id, at)])
        w.line(f"rowsum = rowsum + tl.where(xmask & rmask, tl.exp({v} - rowmax), 0.0)")

    row_loop(sumpass)
    w.line("rowsum = tl.sum(rowsum, 1)[:, None]")
    sides = [kc.node(n) for s in k.sides for n in s.roots]
    accs = _accumulators(kc, w, sides, "[XBLOCK, RBLOCK]") if sides else []
    w.comment(f"pass 3: {y.op}" + (f", and the row reductions {', '.join(s.label for s in sides)}" if sides else ""))

    def position(node: Node) -> Index:
        """Where an element-wise result of the row kernel sits, at the loop's (row, column)."""
        return at if node.shape == src.shape else Index.of(node.shape, at.offset())

    def outpass(phase: Phase) -> None:
        inl = kc.inliner(phase, {})
        yval = ROWWISE[y.op](inl.value(src.id, at), value_symbol("rowmax"), value_symbol("rowsum"))
        in_kernel = {y.id: (at, yval)}
        inl.in_kernel.update(in_kernel)
        svals = [inl.value(s.inputs[0], reduction_index(kc.node(s.inputs[0]).shape, s.attrs["axis"], x, r))
                 for s in sides]
        printed = kc.epilogue(w, phase, k.main.nodes, position, in_kernel, "xmask & rmask", svals)
        for node, acc, v in zip(sides, accs, printed):
            w.line(f"{acc} = " + REDUCTIONS[node.op]["step"].format(acc=acc, mask="xmask & rmask", v=v,
                                                                     init=REDUCTIONS[node.op]["init"]["f"]))

    row_loop(outpass)
    if sides:
        sums = _fold(kc, w, sides, accs, x)
        kc.epilogue(w, Phase(kc, {x: "xmask"}), k.sides[0].nodes, lambda node: Index.of(node.shape, x),
                    dict(sums), "xmask")
    if k.late:
        w.comment(f"pass 4: what needs the row reductions: {', '.join(kc.node(n).label for n in k.late)}")

        # the row reductions are read at the row of each element: its position over the kept axes
        kept = [(d, n) for i, (d, n) in enumerate(zip(at.dims, src.shape)) if i != axis]
        row = Index(tuple(n for _, n in kept), tuple(d for d, _ in kept)).offset()

        def latepass(phase: Phase) -> None:
            inl = kc.inliner(phase, {})
            in_kernel = {y.id: (at, ROWWISE[y.op](inl.value(src.id, at), value_symbol("rowmax"),
                                                           value_symbol("rowsum"))),
                         **{n: (row, v) for n, (_, v) in sums.items()}}
            kc.epilogue(w, phase, [*k.main.epilogue, *k.late], position, in_kernel, "xmask & rmask", store=k.late)

        row_loop(latepass)
    srcode = kc.finish(w, ["xnumel", "rnumel"], ["XBLOCK", "RBLOCK"], [])
    return srcode, kc.launch([xnumel, rnumel], [-(-xnumel // xb)], {"XBLOCK": xb, "RBLOCK": rb})


def _matmul(kc: KernelCode) -> tuple[str, Launch]:
    k = kc.k
    c = kc.node(k.main.roots[0])
    a_node, b_node = kc.node(c.inputs[0]), kc.node(c.inputs[1])
    if c.dtype not in ("float32", "float64"):
        raise UnknownOpError(f"the Triton backend multiplies float matrices only, not {c.dtype}", node=c,
                             hint="cast the operands to float32")
    (m, kk), n = a_node.shape, b_node.shape[1]
    am, ak, bk, bn = (index_symbol(s) for s in ("am", "ak", "bk", "bn"))
    masks = {am: "(am < M)", ak: "(ak < K)", bk: "(bk < K)", bn: "(bn < N)"}
    dt = kc.acc_dtype(c)
    precision = kc.t.precision if c.dtype == "float32" else "ieee"
    sides = [kc.node(s.roots[0]) for s in k.sides]
    w = CodeWriter()
    w.line(f"pid_m = {kc.pid(0)}")
    w.line(f"pid_n = {kc.pid(1)}")
    w.line("rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
    w.line("rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)")
    w.line("am = rm[:, None]")
    w.line("bn = rn[None, :]")
    w.line(f"acc = tl.zeros((BLOCK_M, BLOCK_N), dtype={dt})")
    side_of = {}
    for i, s in enumerate(sides):
        which = "b" if s.inputs[0] == b_node.id and s.attrs["axis"] == (0,) else "a"
        side_of[s.id] = which
        # in the product's dtype, like the tiles it sums (a loop-carried value keeps one type on a GPU)
        w.line(f"side{i} = tl.zeros((BLOCK_{'N' if which == 'b' else 'M'},), dtype={dt})")
    with w.block("for k0 in range(0, K, BLOCK_K):"):
        w.line("rk = k0 + tl.arange(0, BLOCK_K)")
        w.line("ak = rk[None, :]")
        w.line("bk = rk[:, None]")
        phase = Phase(kc, masks)
        inl = kc.inliner(phase, {})
        bits = 64 if c.dtype == "float64" else 32
        # tl.dot takes operands of one dtype, the product's; when any value in the kernel has another
        # dtype (float32 @ float64, a float64 scalar inside a float32 prologue) the tiles are converted
        mixed = any(kc.node(n).dtype in TL_FLOAT and kc.node(n).dtype != c.dtype
                    for n in (a_node.id, b_node.id, *k.reads))
        # (a constant tile is float32 too: float64 products always convert)
        cast = f".to(tl.float{bits})" if mixed or bits == 64 else ""
        pa, pb = phase.emit(w, [inl.value(a_node.id, Index(a_node.shape, (am, ak))),
                                inl.value(b_node.id, Index(b_node.shape, (bk, bn)))])
        # masked lanes must be 0, whatever the prologue makes of the 0 a masked load returns
        w.line(f"a = tl.where((am < M) & (ak < K), {pa}, 0.0){cast}")
        w.line(f"b = tl.where((bk < K) & (bn < N), {pb}, 0.0){cast}")
        w.line(f'acc = tl.dot(a, b, acc, input_precision="{precision}")')
        for i, s in enumerate(sides):
            w.line(f"side{i} = side{i} + tl.sum({side_of[s.id]}, {0 if side_of[s.id] == 'b' else 1})")
    flat = am * n + bn
    in_kernel = {c.id: (flat, value_symbol("acc"))}
    kc.epilogue(w, Phase(kc, {am: "(am < M)", bn: "(bn < N)"}), k.main.nodes,
                lambda node: Index(node.shape, (am, bn), flat) if node.shape == c.shape else Index.of(node.shape, flat),
                in_kernel, "(am < M) & (bn < N)")
    for i, (s, group) in enumerate(zip(sides, k.sides)):
        # each column (row) block is reduced once, by the programs of the first row (column) of blocks;
        # `pid + 0 * vec` broadcasts the program id: the interpreter rejects a scalar inside a block mask
        vec, first, size = ("rn", "pid_m", "N") if side_of[s.id] == "b" else ("rm", "pid_n", "M")
        v = index_symbol(vec)
        w.comment(f"{s.label}: {s.op} of the {'B' if vec == 'rn' else 'A'} operand over K, beside the product")
        kc.epilogue(w, Phase(kc, {v: f"({vec} < {size})"}), group.nodes, lambda node: Index.of(node.shape, v),

                    {s.id: (v, value_symbol(f"side{i}"))}, f"({vec} < {size}) & ({first} + 0 * {vec} == 0)")
    sizes = [m, n, kk]
    if kc.t.autotune:
        configs = ", ".join(f"triton.Config({{'BLOCK_M': {bm}, 'BLOCK_N': {bn_}, 'BLOCK_K': {bk_}}}, "
                            f"num_warps={nw}, num_stages={ns})" for bm, bn_, bk_, nw, ns in AUTOTUNE_CONFIGS)
        deco = [f"@triton.autotune(configs=[{configs}], key=['M', 'N', 'K'])"]
        grid: list[Any] = [[m, "BLOCK_M"], [n, "BLOCK_N"]]
        meta: dict[str, int] = {}
    else:
        bm, bn_, bk_ = kc.t.matmul(m, n, kk)
        deco, grid, meta = [], [-(-m // bm), -(-n // bn_)], {"BLOCK_M": bm, "BLOCK_N": bn_, "BLOCK_K": bk_}
    src = kc.finish(w, ["M", "N", "K"], ["BLOCK_M", "BLOCK_N", "BLOCK_K"], deco)
    return src, kc.launch(sizes, grid, meta)


TEMPLATES: dict[str, Callable[[KernelCode], tuple[str, Launch]]] = {
    "pointwise": _pointwise,
    "reduce": _reduce,
    "rowwise": _rowwise,
    "matmul": _matmul,
}

MAIN = '''\
def main() -> None:
    """Launch every kernel once on random data (no graphc needed): `python <this file>`."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bufs = {}
    for nid, (shape, dtype) in BUFFERS.items():
        if dtype == "int64":
            bufs[nid] = torch.zeros(shape, dtype=torch.int64, device=device)
        else:
            bufs[nid] = torch.rand(shape, dtype=getattr(torch, dtype), device=device)
    for launch in LAUNCHES:
        fn = globals()[launch["kernel"]]
        meta = launch["meta"]
        grid = tuple(g if isinstance(g, int) else (lambda s, b: lambda m: triton.cdiv(s, m[b]))(*g)
                     for g in launch["grid"])
        grid_fn = (lambda m, grid=grid: tuple(g(m) if callable(g) else g for g in grid))
        fn[grid_fn](*(bufs[p] for p in launch["ptrs"]), *launch["sizes"], **meta)
        print(f"ran {launch['kernel']}")


if __name__ == "__main__":
    main()
'''


def generate_module(sched: Schedule, memory: MemoryPlan, tuning: Tuning, title: str) -> str:
    """The complete kernel module for a schedule."""
    g = sched.plan.graph
    w = CodeWriter()
    w.line(f'"""graphc kernels for graph {g.name!r}: {len(sched.kernels)} launches per call.')
    w.line("")
    w.line(f"{title}")
    w.line('Generated by backends/triton/codegen.py; edit the model, not this file."""')
    w.line("import triton")
    w.line("import triton.language as tl")
    w.line("")
    w.line("")
    w.lines(HELPERS)
    launches = []
    for kernel in sched.kernels:
        src, launch = KernelCode(sched, kernel, tuning).generate()
        w.line("")
        w.line("")
        w.lines(src)
        launches.append(launch)
    buffers = {}
    for launch in launches:
        for nid in launch.ptrs:
            node = g.node(nid)
            buffers[nid] = (tuple(node.shape), node.dtype)
    w.line("")
    w.line("")
    w.comment("What the launcher needs, as plain literals (read back without running fusion again).")
    w.line("LAUNCHES = [")
    with w.indented():
        for launch in launches:
            w.line(repr(launch.literal()) + ",")
    w.line("]")
    w.line(f"BUFFERS = {buffers!r}")
    w.line(f"ARENA = {{'bytes': {memory.peak_bytes}, 'offsets': {memory.offsets!r}}}")
    traffic = [[t.name, t.read_bytes, t.write_bytes] for t in memory.kernels]
    w.line(f"REPORT = {{'kernels': {traffic!r}, 'peak_bytes': {memory.peak_bytes}}}")
    w.line("")
    w.line("")
    w.lines(MAIN)
    return w.text()


__all__ = ["AUTOTUNE_CONFIGS", "Launch", "ROWWISE", "REDUCTIONS", "TEMPLATES", "Tuning", "generate_module"]
