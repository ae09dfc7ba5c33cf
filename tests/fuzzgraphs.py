"""Random valid graphc graphs, and the differential check that runs them everywhere.

Shared by tests/test_fuzz.py (a few hundred graphs per CI run), tests/test_gradcheck.py
(the op table below, one op at a time) and scripts/fuzz.sh (the long run).

A graph is drawn as a ``GraphSpec``: plain data (sources, then steps over earlier
values) whose ``repr`` is valid Python, so a failing graph pastes straight into
tests/test_regressions.py. ``FUZZ_OPS`` is one table keyed by op: how to draw its
operands, how to build it with graphc, the same computation in torch (the
independent oracle), and where it is not smooth (its kinks). It covers every
non-source op of ``graphc.ops.OPS`` and the DSL's composites; a test fails when
an op is added to OPS without an entry here.

``check_spec`` runs one spec on the NumPy backend in float64 (the reference),
the NumPy backend in float32, torch autograd in float64 and, when
``backends.triton`` imports, the Triton backend, forward and every gradient.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp
import torch
import torch.nn.functional as tF
from hypothesis import strategies as st

import graphc as gc
import graphc.backend
from graphc.symbolic import Relu, Sigmoid, Softplus, arg_symbols

Shape = tuple[int, ...]

# Where a value lies. Inputs are drawn uniformly from these intervals. "positive"
# is bounded away from 0 (log, sqrt, denominators, pow bases); "unit" lies inside
# (0, 1) (probabilities, BCE targets). unit is a subset of positive, positive of real.
DOMAINS: dict[str, tuple[float, float]] = {"real": (-2.0, 2.0), "positive": (0.25, 2.0), "unit": (0.05, 0.95)}
_WITHIN = {"real": {"real", "positive", "unit"}, "positive": {"positive", "unit"}, "unit": {"unit"}}

# Python scalars and const arrays are dyadic, so float32 holds them exactly and the
# float64 reference, the float32 run and torch all see the same numbers.
SCALARS: dict[str, tuple[float, ...]] = {
    "real": (-1.5, -0.5, 0.25, 0.5, 2.0, 3.0),
    "positive": (0.25, 0.5, 1.5, 2.0, 3.0),
    "unit": (0.25, 0.5, 0.75),
}

# Tolerances: |got - ref| <= TOL * max(1, max|ref|), per output.
TOL_F32 = 1e-4  # float32 backends against the float64 reference (the bound)
TOL_F64 = 1e-6  # torch float64 against the reference (graphc bakes float32 constants)
# A draw is redrawn when the reference is not finite, leaves float32's comfortable
# range, or puts an operand of a non-smooth op within KINK_MARGIN of its kink (where
# float32 rounding may pick the other branch; exact ties are kept on purpose).
TAME_LIMIT = 1e5
KINK_MARGIN = 1e-3
MAX_DRAWS = 10


# --- specs: plain data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """An input or param. int64 sources are class labels in [0, classes)."""

    name: str
    shape: Shape
    dtype: str = "float32"
    domain: str = "real"
    param: bool = False
    classes: int = 0
    wrt: bool = True  # differentiate with respect to it (when it is float and reachable)


@dataclass(frozen=True)
class Const:
    """A NumPy array operand, baked into the graph as a const node."""

    shape: Shape
    data: tuple[float, ...]

    def array(self) -> np.ndarray:
        return np.array(self.data, dtype=np.float64).reshape(self.shape)


Arg = int | float | Const  # int: index of an earlier node of the spec; float: a Python scalar


@dataclass(frozen=True)
class Step:
    """One DSL call (a FUZZ_OPS entry) over earlier nodes."""

    op: str
    args: tuple[Arg, ...]
    attrs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class GraphSpec:
    """Sources and steps in creation order; a step's int args index this tuple."""

    nodes: tuple[Source | Step, ...]

    @property
    def sources(self) -> list[Source]:
        return [n for n in self.nodes if isinstance(n, Source)]


# --- the op table -----------------------------------------------------------------------------

Builder = Callable[..., Any]  # (*operands, **attrs) -> graphc Tensor or torch tensor
Kink = Callable[..., np.ndarray]  # (*float64 operands, **attrs) -> distance of each element to its kink


@dataclass(frozen=True)
class FuzzOp:
    name: str
    draw: Callable[["Drawer"], tuple[tuple[Arg, ...], dict[str, Any]]]
    graphc: Builder
    torch: Builder
    kink: Kink | None = None
    domain: Callable[[list[str]], str] = lambda doms: "real"  # where the result lies, given the operands'


def _all(d: str) -> Callable[[list[str]], str]:
    """Result domain d when every operand lies in d, else real."""
    return lambda doms: d if all(x in _WITHIN[d] for x in doms) else "real"


def _const(d: str) -> Callable[[list[str]], str]:
    return lambda doms: d


def _same(doms: list[str]) -> str:
    return doms[0]


def _dims(axis: Any, ndim: int) -> tuple[int, ...]:
    """NumPy's axis semantics as an explicit tuple (torch reads dim=() as 'all')."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _torch_reduce(f: Callable[..., torch.Tensor]) -> Builder:
    def run(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        dims = _dims(axis, x.ndim)
        return f(x, dim=dims, keepdim=keepdims) if dims else x

    return run


def _max_gap(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """Gap between the largest and second largest entry of each reduced group."""
    dims = _dims(axis, x.ndim)
    if not dims:
        return np.array([np.inf])
    kept = [d for d in range(x.ndim) if d not in dims]
    groups = np.transpose(x, kept + list(dims)).reshape(int(np.prod([x.shape[d] for d in kept])), -1)
    if groups.shape[1] < 2:
        return np.array([np.inf])
    top = np.sort(groups, axis=1)
    return top[:, -1] - top[:, -2]


def _kink_at(points: Callable[..., Sequence[np.ndarray]]) -> Kink:
    """Distance to the nearest of several kink locations (each an array broadcast against the operand)."""

    def dist(*args: Any, **attrs: Any) -> np.ndarray:
        return np.min(np.stack(np.broadcast_arrays(*[np.abs(p) for p in points(*args, **attrs)])), axis=0)

    return dist


def _fn_expr(name: str) -> sp.Expr:
    return FN_EXPRS[name][0]


a0, a1 = arg_symbols(2)

# Expressions for the generic `fn` op: (sympy expr over a0, a1; operand domains; torch; kink or None).
FN_EXPRS: dict[str, tuple[sp.Expr, tuple[str, ...], Builder, Kink | None]] = {
    "affine": (a0 * a1 + 2 * a0, ("real", "real"), lambda x, y: x * y + 2 * x, None),
    "sigmoid_gate": (Sigmoid(a0) * a1, ("real", "real"), lambda x, y: torch.sigmoid(x) * y, None),
    "softplus_diff": (Softplus(a0) - Softplus(-a1), ("real", "real"),
                      lambda x, y: tF.softplus(x) - tF.softplus(-y), None),
    "relu_square": (Relu(a0) ** 2 + a0, ("real",), lambda x: torch.relu(x) ** 2 + x,
                    _kink_at(lambda x: [x])),
    "exp_tanh": (sp.exp(sp.tanh(a0)) * a1, ("real", "real"), lambda x, y: torch.exp(torch.tanh(x)) * y, None),
    "log_ratio": (sp.log(a0 / a1), ("positive", "positive"), lambda x, y: torch.log(x / y), None),
    "select": (sp.Piecewise((a0, a0 > a1), (a1 * a1, True)), ("real", "real"),
               lambda x, y: torch.where(x > y, x, y * y), _kink_at(lambda x, y: [x - y])),
}


class Drawer:
    """Draws operands for one step, adding fresh sources when no earlier value fits."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]):
        self.draw = draw
        self.nodes: list[Source | Step] = []
        self.values: list[tuple[Shape, str, str]] = []  # (shape, dtype, domain) of every node so far

    # -- shapes ------------------------------------------------------------------------
    def shape(self, min_rank: int = 0, max_rank: int = 3) -> Shape:
        rank = self.draw(st.integers(min_rank, max_rank))
        return tuple(self.draw(st.integers(1, 3)) for _ in range(rank))

    def partner(self, shape: Shape) -> Shape:
        """A shape that broadcasts with `shape`: some axes set to 1, leading axes dropped or added."""
        out = [1 if self.draw(st.booleans()) else n for n in shape]
        drop = self.draw(st.integers(0, len(out)))
        out = out[drop:]
        if drop == 0 and len(out) < 3 and self.draw(st.integers(0, 3)) == 0:  # a new axis in front of all
            out = [self.draw(st.integers(1, 3)), *out]
        return tuple(out)

    # -- operands ----------------------------------------------------------------------
    def fresh(self, shape: Shape, domain: str = "real", dtype: str = "float32", classes: int = 0,
              wrt: bool = True) -> int:
        """A new source; a quarter of float sources are params, a tenth are declared float64."""
        # The common case is the one hypothesis shrinks towards (0), so shrunk graphs stay plain.
        kind = "y" if dtype == "int64" else "p" if self.draw(st.integers(0, 3)) == 3 else "x"
        if dtype == "float32" and self.draw(st.integers(0, 9)) == 9:
            dtype = "float64"
        return self._add(Source(f"{kind}{len(self.nodes)}", shape, dtype, domain, kind == "p", classes, wrt),
                         (shape, dtype, domain))

    def _add(self, node: Source | Step, value: tuple[Shape, str, str]) -> int:
        self.nodes.append(node)
        self.values.append(value)
        return len(self.nodes) - 1

    def operand(self, domain: str = "real", ranks: Sequence[int] = (0, 1, 2, 3), shape: Shape | None = None,
                broadcasts_with: Shape | None = None) -> int:
        """An earlier float value in `domain` (recent ones preferred), or a fresh source."""
        fits = [i for i, (s, dt, dom) in enumerate(self.values)
                if dt != "int64" and dom in _WITHIN[domain] and len(s) in ranks and (shape is None or s == shape)
                and (broadcasts_with is None or _broadcasts(s, broadcasts_with))]
        if fits and self.draw(st.integers(0, 4)) > 0:
            return fits[-1 - self.draw(st.integers(0, len(fits) - 1))]
        if shape is None:
            shape = self.partner(broadcasts_with) if broadcasts_with is not None else self.shape(min(ranks), max(ranks))
        return self.fresh(shape, domain)

    def other(self, shape: Shape, domain: str = "real") -> Arg:
        """A second operand for a broadcasting op: a value, a Python scalar or a const array."""
        kind = self.draw(st.integers(0, 5))
        if kind == 0:
            return self.draw(st.sampled_from(SCALARS[domain]))
        if kind == 1:
            s = self.partner(shape)
            return Const(s, tuple(self.draw(st.sampled_from(SCALARS[domain])) for _ in range(math.prod(s))))
        return self.operand(domain, broadcasts_with=shape)

    def step(self, op: "FuzzOp") -> None:
        """Draw one step of `op`; its result's shape comes from running the torch side on stand-ins."""
        args, attrs = op.draw(self)
        out = op.torch(*(_stand_in(self.values, a) for a in args), **attrs)
        domain = op.domain([_domain_of(self.values, a) for a in args])
        self._add(Step(op.name, args, tuple(sorted(attrs.items()))), (tuple(out.shape), "float32", domain))


def _broadcasts(a: Shape, b: Shape) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _unary(domain: str = "real") -> Callable[[Drawer], tuple[tuple[Arg, ...], dict[str, Any]]]:
    return lambda d: ((d.operand(domain),), {})


def _binary(left: str = "real", right: str = "real") -> Callable[[Drawer], tuple[tuple[Arg, ...], dict[str, Any]]]:
    """Operands in the given domains; either side may be the scalar or const (radd, rsub, rpow ...)."""

    def draw(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
        if d.draw(st.booleans()):
            a = d.operand(left)
            return (a, d.other(d.values[a][0], right)), {}
        b = d.operand(right)
        return (d.other(d.values[b][0], left), b), {}

    return draw


def _draw_clamp(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    lo, hi = sorted(d.draw(st.lists(st.sampled_from((-1.0, -0.5, 0.0, 0.25, 1.0)), min_size=2, max_size=2,
                                    unique=True)))
    which = d.draw(st.sampled_from(("both", "min", "max")))
    return (d.operand(),), {"min": None if which == "max" else lo, "max": None if which == "min" else hi}


# Exponent -> the base's domain (fractional and negative powers need a positive base).
POW_EXPONENTS: dict[int | float, str] = {2: "real", 3: "real", -1: "positive", 0.5: "positive", 1.5: "positive",
                                         -0.5: "positive", 2.5: "positive"}


def _draw_scalar_pow(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    e = d.draw(st.sampled_from(sorted(POW_EXPONENTS)))
    return (d.operand(POW_EXPONENTS[e]),), {"exponent": e}


def _draw_reduce(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    x = d.operand()
    rank = len(d.values[x][0])
    kind = d.draw(st.integers(0, 3)) if rank else 0
    if kind == 0:
        axis: Any = None
    elif kind == 1:
        axis = d.draw(st.integers(-rank, rank - 1))
    else:
        picked = d.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
        axis = tuple(a - rank if d.draw(st.booleans()) else a for a in picked)
    return (x,), {"axis": axis, "keepdims": d.draw(st.booleans())}


def _draw_matmul(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    a = d.operand(ranks=(2,))
    k = d.values[a][0][1]
    fits = [i for i, (s, dt, _) in enumerate(d.values) if len(s) == 2 and s[0] == k and dt != "int64"]
    b = d.draw(st.sampled_from(fits)) if fits and d.draw(st.booleans()) else d.fresh((k, d.draw(st.integers(1, 3))))
    return (a, b), {}


def _draw_transpose(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    x = d.operand(ranks=(1, 2, 3))
    rank = len(d.values[x][0])
    perm = d.draw(st.permutations(range(rank)))
    return (x,), {"perm": tuple(perm)}


def _factorizations(n: int, max_rank: int = 3) -> list[Shape]:
    shapes = [s for r in range(max_rank + 1) for s in itertools.product(range(1, n + 1), repeat=r)
              if math.prod(s) == n]
    return sorted(shapes)


def _draw_reshape(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    x = d.operand()
    target = list(d.draw(st.sampled_from(_factorizations(math.prod(d.values[x][0])))))
    if target and d.draw(st.booleans()):  # let graphc infer one axis
        target[d.draw(st.integers(0, len(target) - 1))] = -1
    return (x,), {"shape": tuple(target)}


def _draw_broadcast_to(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    x = d.operand(ranks=(0, 1, 2))
    s = d.values[x][0]
    lead = tuple(d.draw(st.integers(1, 3)) for _ in range(d.draw(st.integers(0, 3 - len(s)))))
    return (x,), {"shape": lead + tuple(d.draw(st.integers(1, 3)) if n == 1 else n for n in s)}


def _draw_rowwise(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    x = d.operand(ranks=(1, 2, 3))
    rank = len(d.values[x][0])
    return (x,), {"axis": d.draw(st.integers(-rank, rank - 1))}


def _draw_one_hot(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    classes = d.draw(st.integers(2, 4))
    labels = d.fresh((d.draw(st.integers(1, 3)),), dtype="int64", classes=classes)
    return (labels,), {"num_classes": classes}


def _draw_pair_loss(target_domain: str, pred_domain: str = "real") -> Callable[[Drawer], Any]:
    def draw(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
        pred = d.operand(pred_domain)
        shape = d.values[pred][0]
        if target_domain == "real" and d.draw(st.booleans()):
            target = d.operand(shape=shape)
        else:
            target = d.fresh(shape, target_domain, wrt=target_domain == "real")
        return (pred, target), {"reduction": d.draw(st.sampled_from(("mean", "sum")))}

    return draw


def _draw_cross_entropy(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    logits = d.operand(ranks=(2,))
    n, classes = d.values[logits][0]
    labels = d.fresh((n,), dtype="int64", classes=classes)
    return (logits, labels), {"reduction": d.draw(st.sampled_from(("mean", "sum")))}


def _draw_fn(d: Drawer) -> tuple[tuple[Arg, ...], dict[str, Any]]:
    name = d.draw(st.sampled_from(sorted(FN_EXPRS)))
    doms = FN_EXPRS[name][1]
    first = d.operand(doms[0])
    rest = [d.operand(dom, broadcasts_with=d.values[first][0]) for dom in doms[1:]]
    return (first, *rest), {"expr": name}


def _torch_clamp(x: torch.Tensor, min: float | None, max: float | None) -> torch.Tensor:  # noqa: A002
    return torch.clamp(x, min=min, max=max)


def _t_pick(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Builder:
    return lambda a, b: f(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))


def _torch_pow(a: Any, b: Any) -> torch.Tensor:
    return torch.pow(torch.as_tensor(a, dtype=torch.float64), b)


FUZZ_OPS: dict[str, FuzzOp] = {op.name: op for op in [
    FuzzOp("add", _binary(), lambda a, b: a + b, lambda a, b: a + b, domain=_all("positive")),
    FuzzOp("sub", _binary(), lambda a, b: a - b, lambda a, b: a - b),
    FuzzOp("mul", _binary(), lambda a, b: a * b, lambda a, b: a * b, domain=_all("positive")),
    FuzzOp("div", _binary("real", "positive"), lambda a, b: a / b, lambda a, b: a / b, domain=_all("positive")),
    FuzzOp("pow", _binary("positive", "real"), lambda a, b: a ** b, _torch_pow, domain=_all("positive")),
    FuzzOp("scalar_pow", _draw_scalar_pow, lambda a, exponent: a ** exponent, lambda a, exponent: a ** exponent,
           domain=_all("positive")),
    FuzzOp("neg", _unary(), lambda a: -a, lambda a: -a),
    FuzzOp("exp", _unary(), gc.exp, torch.exp, domain=_const("positive")),
    FuzzOp("log", _unary("positive"), gc.log, torch.log),
    FuzzOp("sqrt", _unary("positive"), gc.sqrt, torch.sqrt, domain=_const("positive")),
    FuzzOp("abs", _unary(), gc.abs, torch.abs, kink=_kink_at(lambda x: [x])),
    FuzzOp("relu", _unary(), gc.relu, torch.relu, kink=_kink_at(lambda x: [x])),
    FuzzOp("sigmoid", _unary(), gc.sigmoid, torch.sigmoid, domain=_const("unit")),
    FuzzOp("tanh", _unary(), gc.tanh, torch.tanh),
    FuzzOp("softplus", _unary(), gc.softplus, tF.softplus, domain=_const("positive")),
    FuzzOp("maximum", _binary(), gc.maximum, _t_pick(torch.maximum), kink=_kink_at(lambda a, b: [a - b]),
           domain=lambda doms: "positive" if any(x in _WITHIN["positive"] for x in doms) else "real"),
    FuzzOp("minimum", _binary(), gc.minimum, _t_pick(torch.minimum), kink=_kink_at(lambda a, b: [a - b]),
           domain=_all("positive")),
    FuzzOp("clamp", _draw_clamp, gc.clamp, _torch_clamp,
           kink=_kink_at(lambda x, min, max: [x - (np.inf if v is None else v) for v in (min, max)])),
    FuzzOp("fn", _draw_fn, lambda *xs, expr: gc.fn(_fn_expr(expr), *xs),
           lambda *xs, expr: FN_EXPRS[expr][2](*xs),
           kink=lambda *xs, expr: (FN_EXPRS[expr][3] or (lambda *a: np.array([np.inf])))(*xs)),
    FuzzOp("sum", _draw_reduce, gc.sum, _torch_reduce(torch.sum), domain=_same),
    FuzzOp("max", _draw_reduce, gc.max, _torch_reduce(torch.amax), kink=_max_gap, domain=_same),
    FuzzOp("mean", _draw_reduce, gc.mean, _torch_reduce(torch.mean), domain=_same),
    FuzzOp("matmul", _draw_matmul, lambda a, b: a @ b, lambda a, b: a @ b),
    FuzzOp("transpose", _draw_transpose, gc.transpose, lambda x, perm: x.permute(perm), domain=_same),
    FuzzOp("reshape", _draw_reshape, gc.reshape, lambda x, shape: x.reshape(shape), domain=_same),
    FuzzOp("broadcast_to", _draw_broadcast_to, gc.broadcast_to, lambda x, shape: torch.broadcast_to(x, shape),
           domain=_same),
    FuzzOp("softmax", _draw_rowwise, gc.softmax, lambda x, axis: torch.softmax(x, dim=axis),
           domain=_const("unit")),
    FuzzOp("log_softmax", _draw_rowwise, gc.log_softmax, lambda x, axis: torch.log_softmax(x, dim=axis)),
    FuzzOp("one_hot", _draw_one_hot, gc.one_hot, lambda y, num_classes: tF.one_hot(y, num_classes).double()),
    FuzzOp("mse_loss", _draw_pair_loss("real"), gc.mse_loss, tF.mse_loss, domain=_const("positive")),
    FuzzOp("l1_loss", _draw_pair_loss("real"), gc.l1_loss, tF.l1_loss, kink=_kink_at(lambda p, t, **_: [p - t])),
    FuzzOp("bce_loss", _draw_pair_loss("unit", "unit"), gc.bce_loss, tF.binary_cross_entropy),
    FuzzOp("bce_with_logits", _draw_pair_loss("unit"), gc.bce_with_logits, tF.binary_cross_entropy_with_logits),
    FuzzOp("cross_entropy", _draw_cross_entropy, gc.cross_entropy, tF.cross_entropy),
]}


@st.composite
def graph_specs(draw: Callable[[st.SearchStrategy[Any]], Any], max_steps: int = 10,
                ops: Sequence[str] | None = None) -> GraphSpec:
    """A random valid graph of 1..max_steps DSL calls over `ops` (default: all of FUZZ_OPS)."""
    names = sorted(ops or FUZZ_OPS)
    d = Drawer(draw)
    for _ in range(draw(st.integers(1, 2))):
        d.fresh(d.shape(), draw(st.sampled_from(("real", "positive"))))
    for _ in range(draw(st.integers(1, max_steps))):
        d.step(FUZZ_OPS[draw(st.sampled_from(names))])
    return GraphSpec(tuple(d.nodes))


def _stand_in(values: list[tuple[Shape, str, str]], a: Arg) -> Any:
    """A torch operand of the right shape and dtype (values do not matter: only the shape is read)."""
    if isinstance(a, Const):
        return torch.zeros(a.shape, dtype=torch.float64)
    if isinstance(a, float):
        return a
    shape, dtype, domain = values[a]
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    return torch.full(shape, sum(DOMAINS[domain]) / 2, dtype=torch.float64)


def _domain_of(values: list[tuple[Shape, str, str]], a: Arg) -> str:
    if isinstance(a, Const):
        return "positive" if min(a.data) > 0 else "real"
    if isinstance(a, float):
        return "unit" if 0 < a < 1 else "positive" if a > 0 else "real"
    return values[a][2]


# --- running a spec everywhere ------------------------------------------------------------------


def triton_available() -> bool:
    """True when the Triton backend imports (under the interpreter when there is no GPU)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
    try:
        gc.backend.get_backend("triton")
    except gc.GraphError:  # not importable (yet), or imported without registering itself
        return False
    return True


@dataclass
class Built:
    """A spec built with graphc: a Tensor per node, the output y, and d(cotangent . y)/d(sources)."""

    spec: GraphSpec
    graph: gc.Graph
    tensors: list[gc.Tensor]
    wrt: list[int]  # spec indices of the sources differentiated
    grads: tuple[gc.Tensor, ...]

    @property
    def steps(self) -> list[int]:
        return [i for i, n in enumerate(self.spec.nodes) if isinstance(n, Step)]

    @property
    def outputs(self) -> list[gc.Tensor]:
        """Every step's value, then every gradient."""
        return [self.tensors[i] for i in self.steps] + list(self.grads)

    @property
    def sinks(self) -> list[gc.Tensor]:
        """Steps nothing else reads, then every gradient: what a fused backend is asked for."""
        read = {a for n in self.spec.nodes if isinstance(n, Step) for a in n.args if isinstance(a, int)}
        return [self.tensors[i] for i in self.steps if i not in read] + list(self.grads)

    def labels(self) -> list[str]:
        y = self.spec.nodes[-1]
        names = [f"node {i} ({self.spec.nodes[i].op})" for i in self.steps]  # type: ignore[union-attr]
        return names + [f"d{y.op}/d{self.spec.nodes[i].name}" for i in self.wrt]  # type: ignore[union-attr]


def _gc_arg(tensors: list[gc.Tensor], a: Arg) -> Any:
    return a.array() if isinstance(a, Const) else a if isinstance(a, float) else tensors[a]


def build(spec: GraphSpec) -> Built:
    """The spec as a graphc graph; a non-scalar output gets an input 'cotangent' as its grad seed."""
    with gc.Graph("fuzz") as g:
        tensors: list[gc.Tensor] = []
        for node in spec.nodes:
            if isinstance(node, Source):
                make = gc.param if node.param else gc.input
                extra = {"value": np.zeros(node.shape)} if node.param else {}
                tensors.append(make(node.name, node.shape, dtype=node.dtype, **extra))
            else:
                op = FUZZ_OPS[node.op]
                tensors.append(op.graphc(*(_gc_arg(tensors, a) for a in node.args), **dict(node.attrs)))
        y = tensors[-1]
        seed = gc.input("cotangent", y.shape, dtype=y.dtype) if y.shape else None
    above = g.ancestors([y.id])
    wrt = [i for i, n in enumerate(spec.nodes) if isinstance(n, Source) and n.wrt and n.dtype != "int64"
           and tensors[i].id in above]
    grads = gc.grad(y, [tensors[i] for i in wrt], seed=seed) if wrt else ()
    return Built(spec, g, tensors, wrt, grads)


def draw_feeds(built: Built, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs from each source's domain, rounded to float32 so every backend sees the same numbers."""
    feeds: dict[str, np.ndarray] = {}
    for node in built.spec.sources:
        if node.dtype == "int64":
            feeds[node.name] = rng.integers(0, node.classes, node.shape).astype(np.int64)
        else:
            lo, hi = DOMAINS[node.domain]
            feeds[node.name] = rng.uniform(lo, hi, node.shape).astype(np.float32).astype(np.float64)
    y = built.tensors[-1]
    if y.shape:
        feeds["cotangent"] = rng.standard_normal(y.shape).astype(np.float32).astype(np.float64)
    return feeds


def torch_run(built: Built, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The same computation in torch float64: every step's value, then autograd's gradients."""
    vals: list[Any] = []
    for i, node in enumerate(built.spec.nodes):
        if isinstance(node, Source):
            vals.append(torch.tensor(feeds[node.name], requires_grad=i in built.wrt))
        else:
            args = [torch.tensor(a.array()) if isinstance(a, Const) else a if isinstance(a, float) else vals[a]
                    for a in node.args]
            vals.append(FUZZ_OPS[node.op].torch(*args, **dict(node.attrs)))
    y = vals[-1]
    grads: list[Any] = []
    if built.wrt:
        cot = torch.tensor(feeds["cotangent"]) if "cotangent" in feeds else None
        got = torch.autograd.grad(y, [vals[i] for i in built.wrt], grad_outputs=cot, allow_unused=True)
        grads = [torch.zeros_like(vals[i]) if d is None else d for i, d in zip(built.wrt, got)]
    return [vals[i].detach().numpy() for i in built.steps] + [d.detach().numpy() for d in grads]


def to_numpy(value: Any) -> np.ndarray:
    """A backend's result as a float64 array (numpy arrays and torch tensors alike)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def call(program: gc.Program, feeds: dict[str, np.ndarray]) -> list[Any]:
    """Run a program on the feeds it takes (a program rejects names it does not read)."""
    wanted = set(program.plan.inputs) | set(program.plan.params)
    return list(program(**{k: v for k, v in feeds.items() if k in wanted}))


def mismatches(labels: Sequence[str], ref: Sequence[Any], got: Sequence[Any], tol: float) -> list[str]:
    """Outputs where |got - ref| > tol * max(1, max|ref|), or whose shape or NaN/inf pattern differs."""
    out = []
    for label, r, g in zip(labels, ref, got, strict=True):
        r, g = to_numpy(r), to_numpy(g)
        if r.shape != g.shape:
            out.append(f"{label}: shape {g.shape}, reference {r.shape}")
            continue
        if not np.array_equal(np.isfinite(r), np.isfinite(g)) or not np.array_equal(np.isnan(r), np.isnan(g)):
            out.append(f"{label}: non-finite pattern differs\n  got {g}\n  ref {r}")
            continue
        finite = np.isfinite(r)
        err = float(np.max(np.abs(g[finite] - r[finite]), initial=0.0))
        scale = max(1.0, float(np.max(np.abs(r)[finite], initial=0.0)))
        if err > tol * scale:
            out.append(f"{label}: max error {err:.3g} > {tol:g} * {scale:.3g}\n  got {g}\n  ref {r}")
    return out


def redraw_reason(built: Built, feeds: dict[str, np.ndarray], ref: Sequence[np.ndarray]) -> str | None:
    """Why this draw cannot be compared fairly (None when it can)."""
    if not all(np.all(np.isfinite(v)) for v in ref):
        return "nonfinite"
    if any(np.max(np.abs(v), initial=0.0) > TAME_LIMIT for v in ref):
        return "large"
    vals: dict[int, np.ndarray] = {i: ref[k] for k, i in enumerate(built.steps)}
    vals.update({i: feeds[n.name] for i, n in enumerate(built.spec.nodes) if isinstance(n, Source)})
    for i in built.steps:
        step = built.spec.nodes[i]
        kink = FUZZ_OPS[step.op].kink  # type: ignore[union-attr]
        if kink is None:
            continue
        args = [a.array() if isinstance(a, Const) else np.float64(a) if isinstance(a, float) else vals[a]
                for a in step.args]  # type: ignore[union-attr]
        dist = np.asarray(kink(*args, **dict(step.attrs)))  # type: ignore[union-attr]
        scale = 1.0 + max(float(np.max(np.abs(a), initial=0.0)) for a in args)
        if np.any((dist > 0) & (dist < KINK_MARGIN * scale)):
            return "kink"
    return None


@dataclass
class Outcome:
    """What one spec did: draws, redraw reasons, mismatches per backend (empty when all agree)."""

    draws: int = 0
    redraws: Counter = field(default_factory=Counter)
    compared: bool = False
    backends: tuple[str, ...] = ()
    mismatches: dict[str, list[str]] = field(default_factory=dict)


def check_spec(spec: GraphSpec, seed: int, triton: bool = False) -> Outcome:
    """Run `spec` on every backend against the float64 reference, redrawing unfair inputs."""
    built = build(spec)
    outs = built.outputs
    ref_prog = gc.compile(outs, backend="numpy", dtype="float64")
    rng = np.random.default_rng(seed)
    result = Outcome()
    for _ in range(MAX_DRAWS):
        feeds = draw_feeds(built, rng)
        result.draws += 1
        ref = [np.asarray(v) for v in call(ref_prog, feeds)]
        reason = redraw_reason(built, feeds, ref)
        if reason is None:
            break
        result.redraws[reason] += 1
    else:
        return result
    result.compared = True
    labels = built.labels()
    # backend -> (how to get its results, which reference outputs they match, tolerance)
    runs: dict[str, tuple[Callable[[], list[Any]], list[int], float]] = {
        # The generated fast path, in the graph's declared dtypes (float32 unless a source says float64).
        "numpy-fast": (lambda: call(gc.compile(outs, backend="numpy"), feeds), list(range(len(outs))), TOL_F32),
        # The node-by-node interpreter with every float in float32.
        "numpy-f32": (lambda: call(gc.compile(outs, backend="numpy", dtype="float32"), feeds),
                      list(range(len(outs))), TOL_F32),
        "torch-f64": (lambda: torch_run(built, feeds), list(range(len(outs))), TOL_F64),
    }
    if triton:
        # Only what nothing else reads, so intermediates stay inside fused kernels.
        first = {t_id: k for k, t_id in reversed(list(enumerate(t.id for t in outs)))}
        runs["triton"] = (lambda: call(gc.compile(built.sinks, backend="triton"), feeds),
                          [first[t.id] for t in built.sinks], TOL_F32)
    for name, (run, picked, tol) in runs.items():
        try:
            got = run()
        except Exception as e:  # a backend failing where the reference ran is a mismatch too
            result.mismatches[name] = [f"raised {type(e).__name__}: {e}"]
            continue
        bad = mismatches([labels[k] for k in picked], [ref[k] for k in picked], got, tol)
        if bad:
            result.mismatches[name] = bad
    result.backends = tuple(runs)
    return result
