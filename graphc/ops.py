"""THE op table. Every op is defined once, here: its kind, shape rule, dtype
rule, and either a sympy formula (pointwise: the gradient is ``sympy.diff`` of
it) or a vector-Jacobian rule written in graph ops (structural).

Backends lower ops by looking them up in their own tables keyed by these names.
Composite ops (mean, softmax-based losses, ...) are DSL functions built from
these primitives and need no entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import sympy as sp

from . import dsl as F
from .errors import ShapeError
from .ir import FLOAT_DTYPES, Shape
from .symbolic import Relu, Sigmoid, Softplus

if TYPE_CHECKING:
    from .ir import Node, Tensor

# Op kinds. Fusion and backends dispatch on these, never on individual op names
# where the kind is enough.
SOURCE = "source"  # input, param, const: no inputs
POINTWISE = "pointwise"  # broadcasting elementwise map, described by a sympy formula
REDUCE = "reduce"  # sum/max over axes
MATMUL = "matmul"
LAYOUT = "layout"  # transpose, reshape, broadcast_to: move data, compute nothing
ROWWISE = "rowwise"  # softmax / log_softmax along one axis
INDEX = "index"  # one_hot: integer labels in, no gradient

ShapeRule = Callable[[Sequence[Shape], dict[str, Any]], Shape]
DTypeRule = Callable[[Sequence[str], dict[str, Any]], str]
Formula = Callable[[Sequence[sp.Symbol], dict[str, Any]], sp.Expr]


@dataclass(frozen=True)
class VjpContext:
    """What a structural op's vector-Jacobian rule may read."""

    node: "Node"
    inputs: tuple["Tensor", ...]
    out: "Tensor"

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs


Vjp = Callable[[VjpContext, "Tensor"], Sequence["Tensor | None"]]


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    arity: int | None  # None: any number of inputs (the generic `fn` op)
    shape: ShapeRule
    dtype: DTypeRule
    formula: Formula | None = None
    vjp: Vjp | None = None
    doc: str = ""
    attrs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def differentiable(self) -> bool:
        return self.formula is not None or self.vjp is not None


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    OPS[op.name] = op
    return op


# --- shape and dtype rules ---------------------------------------------------


def broadcast_shapes(shapes: Sequence[Shape], _attrs: dict[str, Any] | None = None) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(
            "shapes " + ", ".join(str(tuple(s)) for s in shapes) + " do not broadcast",
            hint="NumPy broadcasting aligns trailing axes; each pair must be equal or 1 "
            "(use reshape or transpose to line them up)",
        ) from None


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """axis=None means all axes; negative axes count from the end; result sorted."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(
                f"axis {a} is out of range for a tensor of rank {ndim}",
                hint=f"use an axis in [{-ndim}, {ndim - 1}]",
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"axis {axis} repeats an axis", hint="name each axis once")
    return tuple(sorted(out))


def reduce_shape(shapes: Sequence[Shape], attrs: dict[str, Any]) -> Shape:
    (s,) = shapes
    axes = attrs["axis"]
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(s))
    return tuple(d for i, d in enumerate(s) if i not in axes)


def matmul_shape(shapes: Sequence[Shape], _attrs: dict[str, Any]) -> Shape:
    a, b = shapes
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(
            f"matmul takes two matrices, got shapes {a} and {b}",
            hint="reshape vectors to (1, n) or (n, 1) first",
        )
    if a[1] != b[0]:
        raise ShapeError(
            f"matmul of {a} and {b}: inner dimensions {a[1]} and {b[0]} differ",
            hint="the left operand's columns must equal the right operand's rows; "
            "transpose one operand if they are swapped",
        )
    return (a[0], b[1])


def transpose_shape(shapes: Sequence[Shape], attrs: dict[str, Any]) -> Shape:
    (s,) = shapes
    perm = attrs["perm"]
    if sorted(perm) != list(range(len(s))):
        raise ShapeError(f"perm {perm} is not a permutation of the {len(s)} axes", hint="list every axis once")
    return tuple(s[p] for p in perm)


def reshape_shape(shapes: Sequence[Shape], attrs: dict[str, Any]) -> Shape:
    (s,) = shapes
    target = attrs["shape"]
    if int(np.prod(s)) != int(np.prod(target)):
        raise ShapeError(
            f"cannot reshape {s} ({int(np.prod(s))} elements) to {target} ({int(np.prod(target))} elements)",
            hint="the element count must stay the same",
        )
    return target


def broadcast_to_shape(shapes: Sequence[Shape], attrs: dict[str, Any]) -> Shape:
    (s,) = shapes
    target = attrs["shape"]
    if len(s) > len(target) or broadcast_shapes([s, target]) != target:
        raise ShapeError(f"cannot broadcast {s} to {target}", hint="each axis must match or be 1")
    return target


def same_shape(shapes: Sequence[Shape], _attrs: dict[str, Any]) -> Shape:
    return tuple(shapes[0])


def one_hot_shape(shapes: Sequence[Shape], attrs: dict[str, Any]) -> Shape:
    return (*shapes[0], attrs["num_classes"])


def promote(dtypes: Sequence[str], _attrs: dict[str, Any] | None = None) -> str:
    """Promotion as torch does it for tensors: a float operand's dtype wins over integer and bool ones
    (float32 * int64 is float32, so an integer mask or target cannot turn a float32 model, its
    gradients and its trained params into float64); within a category, NumPy's rules. Python
    scalars are weak: see dsl."""
    floats = [d for d in dtypes if d in FLOAT_DTYPES]
    return str(np.result_type(*(floats or dtypes)))


def float_result(dtypes: Sequence[str], attrs: dict[str, Any] | None = None) -> str:
    """Like promote, but integer inputs give float32 (as torch does for exp, sigmoid, ...)."""
    d = promote(dtypes)
    return d if d in FLOAT_DTYPES else "float32"


def first_dtype(dtypes: Sequence[str], _attrs: dict[str, Any]) -> str:
    return dtypes[0]


def float32_out(_dtypes: Sequence[str], attrs: dict[str, Any]) -> str:
    return attrs.get("dtype", "float32")


# --- source ops -----------------------------------------------------------------

for _name, _doc in (
    ("input", "a value fed at every call"),
    ("param", "a trainable value held by the Program between calls"),
    ("const", "a value baked into the graph"),
):
    register(OpDef(_name, SOURCE, 0, shape=lambda s, a: a["shape"], dtype=lambda d, a: a["dtype"], doc=_doc))


# --- pointwise ops: one sympy formula each; gradients are sympy.diff of it ---------


def pointwise(name: str, arity: int, formula: Formula, doc: str, *, dtype: DTypeRule = promote,
              attrs: tuple[str, ...] = ()) -> None:
    register(OpDef(name, POINTWISE, arity, shape=broadcast_shapes, dtype=dtype, formula=formula,
                   doc=doc, attrs=attrs))


def _clamp(x: sp.Expr, lo: float | None, hi: float | None) -> sp.Expr:
    # Strict inequalities give gradient 1 on the boundaries, as torch.clamp does.
    pieces = []
    if lo is not None:
        pieces.append((sp.Float(lo), x < lo))
    if hi is not None:
        pieces.append((sp.Float(hi), x > hi))
    return sp.Piecewise(*pieces, (x, True))


def _pick(a: sp.Expr, b: sp.Expr, a_wins: sp.Basic, b_wins: sp.Basic) -> sp.Expr:
    # Ties take the mean, so each side gets half the gradient (torch.maximum does too). A NaN
    # on either side wins no comparison and lands in the mean, so NaN propagates from both
    # sides as in torch.maximum (with `Ne(a, b)` as the second test, maximum(nan, 1) was 1).
    return sp.Piecewise((a, a_wins), (b, b_wins), ((a + b) / 2, True))


pointwise("add", 2, lambda a, _: a[0] + a[1], "a + b")
pointwise("sub", 2, lambda a, _: a[0] - a[1], "a - b")
pointwise("mul", 2, lambda a, _: a[0] * a[1], "a * b")
pointwise("div", 2, lambda a, _: a[0] / a[1], "a / b", dtype=float_result)
pointwise("pow", 2, lambda a, _: a[0] ** a[1], "a ** b (b a tensor; a > 0 for a gradient in b)", dtype=float_result)
pointwise("scalar_pow", 1, lambda a, at: a[0] ** sp.sympify(at["exponent"]), "a ** exponent (a Python number)",
          attrs=("exponent",))
pointwise("neg", 1, lambda a, _: -a[0], "-a")
pointwise("exp", 1, lambda a, _: sp.exp(a[0]), "e ** a", dtype=float_result)
pointwise("log", 1, lambda a, _: sp.log(a[0]), "natural log", dtype=float_result)
pointwise("sqrt", 1, lambda a, _: sp.sqrt(a[0]), "square root", dtype=float_result)
pointwise("abs", 1, lambda a, _: sp.Abs(a[0]), "|a| (gradient sign(a), 0 at 0)")
pointwise("relu", 1, lambda a, _: Relu(a[0]), "max(a, 0) (gradient 0 at 0)")
pointwise("sigmoid", 1, lambda a, _: Sigmoid(a[0]), "1 / (1 + e ** -a)", dtype=float_result)
pointwise("tanh", 1, lambda a, _: sp.tanh(a[0]), "hyperbolic tangent", dtype=float_result)
pointwise("softplus", 1, lambda a, _: Softplus(a[0]), "log(1 + e ** a), stable for large |a|", dtype=float_result)
pointwise("maximum", 2, lambda a, _: _pick(a[0], a[1], a[0] > a[1], a[1] > a[0]),
          "elementwise max (ties split the gradient)")
pointwise("minimum", 2, lambda a, _: _pick(a[0], a[1], a[0] < a[1], a[1] < a[0]),
          "elementwise min (ties split the gradient)")
pointwise("clamp", 1, lambda a, at: _clamp(a[0], at["min"], at["max"]), "clip a to [min, max]",
          attrs=("min", "max"))
register(OpDef("fn", POINTWISE, None, shape=broadcast_shapes, dtype=promote, formula=lambda a, at: at["expr"],
               doc="any sympy expression over a0..an: what autodiff and fusion build", attrs=("expr",)))


# --- structural ops: explicit vector-Jacobian rules in graph ops ---------------------


def _sum_vjp(ctx: VjpContext, g: "Tensor") -> list["Tensor"]:
    (x,) = ctx.inputs
    kept = reduce_shape([x.shape], {**ctx.attrs, "keepdims": True})
    return [F.broadcast_to(F.reshape(g, kept), x.shape)]


def _max_vjp(ctx: VjpContext, g: "Tensor") -> list["Tensor"]:
    # Ties share the gradient equally (torch.amax's convention).
    (x,) = ctx.inputs
    kept = reduce_shape([x.shape], {**ctx.attrs, "keepdims": True})
    a0, a1 = sp.symbols("a0 a1", real=True)
    is_max = F.fn(sp.Piecewise((1, sp.Eq(a0, a1)), (0, True)), x, F.reshape(ctx.out, kept))
    count = F.sum(is_max, axis=ctx.attrs["axis"], keepdims=True)
    return [is_max * F.reshape(g, kept) / count]


def _matmul_vjp(ctx: VjpContext, g: "Tensor") -> list["Tensor"]:
    a, b = ctx.inputs
    return [F.matmul(g, F.transpose(b)), F.matmul(F.transpose(a), g)]


def _softmax_vjp(ctx: VjpContext, g: "Tensor") -> list["Tensor"]:
    y = ctx.out
    return [y * (g - F.sum(g * y, axis=ctx.attrs["axis"], keepdims=True))]


def _log_softmax_vjp(ctx: VjpContext, g: "Tensor") -> list["Tensor"]:
    return [g - F.exp(ctx.out) * F.sum(g, axis=ctx.attrs["axis"], keepdims=True)]


register(OpDef("sum", REDUCE, 1, shape=reduce_shape, dtype=first_dtype, vjp=_sum_vjp,
               doc="sum over axes", attrs=("axis", "keepdims")))
register(OpDef("max", REDUCE, 1, shape=reduce_shape, dtype=first_dtype, vjp=_max_vjp,
               doc="max over axes (ties share the gradient)", attrs=("axis", "keepdims")))
register(OpDef("matmul", MATMUL, 2, shape=matmul_shape, dtype=lambda d, a: promote(d), vjp=_matmul_vjp,
               doc="matrix product (m, k) @ (k, n)"))
register(OpDef("transpose", LAYOUT, 1, shape=transpose_shape, dtype=first_dtype,
               vjp=lambda ctx, g: [F.transpose(g, tuple(np.argsort(ctx.attrs["perm"]).tolist()))],
               doc="permute axes", attrs=("perm",)))
register(OpDef("reshape", LAYOUT, 1, shape=reshape_shape, dtype=first_dtype,
               vjp=lambda ctx, g: [F.reshape(g, ctx.inputs[0].shape)], doc="same data, new shape",
               attrs=("shape",)))
register(OpDef("broadcast_to", LAYOUT, 1, shape=broadcast_to_shape, dtype=first_dtype,
               vjp=lambda ctx, g: [F.sum_to(g, ctx.inputs[0].shape)], doc="repeat along size-1 or new axes",
               attrs=("shape",)))
register(OpDef("softmax", ROWWISE, 1, shape=same_shape, dtype=float_result, vjp=_softmax_vjp,
               doc="exp(a - max) / sum(exp(a - max)) along axis", attrs=("axis",)))
register(OpDef("log_softmax", ROWWISE, 1, shape=same_shape, dtype=float_result, vjp=_log_softmax_vjp,
               doc="a - max - log(sum(exp(a - max))) along axis", attrs=("axis",)))
register(OpDef("one_hot", INDEX, 1, shape=one_hot_shape, dtype=float32_out,
               doc="integer labels (n,) -> (n, num_classes) rows of 0/1", attrs=("num_classes", "dtype")))


def formula(node: "Node") -> sp.Expr:
    """The sympy expression of a pointwise node over arg_symbols(len(inputs))."""
    from .symbolic import arg_symbols

    op = OPS[node.op]
    assert op.formula is not None, f"{node.op} is not pointwise"
    return op.formula(arg_symbols(len(node.inputs)), node.attrs)
