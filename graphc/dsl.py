"""The user-facing DSL: inputs, params, constants, operators and functions.

Every function here ends in ``apply``, which checks shapes and dtypes with the
op table's rules *before* touching the graph, so a bad call leaves the graph
as it was.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from . import ops as _ops
from .errors import ArgumentError, DTypeError, GraphError, GraphStateError, ShapeError, UnknownOpError
from .ir import DTYPES, FLOAT_DTYPES, Graph, Shape, Tensor, user_source_line
from .symbolic import arg_symbols

Operand = Tensor | float | int | np.ndarray


# --- node creation ----------------------------------------------------------------


def _graph_of(args: Sequence[Any]) -> Graph:
    graphs = {id(a.graph): a.graph for a in args if isinstance(a, Tensor)}
    if len(graphs) > 1:
        names = ", ".join(repr(g.name) for g in graphs.values())
        raise GraphStateError(
            f"an op mixes tensors from different graphs ({names})",
            where=user_source_line(),
            hint="build the whole model inside one `with gc.Graph(...)` block",
        )
    return next(iter(graphs.values())) if graphs else Graph.current()


def _weak_dtype(args: Sequence[Any]) -> str:
    """The dtype a Python number takes next to these tensors (NumPy 2 / torch weak scalars)."""
    dtypes = [a.dtype for a in args if isinstance(a, Tensor)]
    floats = [d for d in dtypes if d in FLOAT_DTYPES]
    if floats:
        return _ops.promote(floats)
    return "float32"


def constant(graph: Graph, value: Any, dtype: str | None = None) -> Tensor:
    """A const node; scalars are shared per (value, dtype) so `x * 2 + 2` makes one node."""
    arr = np.asarray(value)
    if dtype is None:
        dtype = "float32" if arr.dtype.kind == "f" else str(arr.dtype) if str(arr.dtype) in DTYPES else "float32"
    arr = arr.astype(dtype)
    if arr.ndim == 0:
        key = (float(arr), dtype)
        if key in graph.scalar_consts:
            return Tensor(graph, graph.scalar_consts[key])
    node = graph.add("const", (), arr.shape, dtype, attrs={"shape": arr.shape, "dtype": dtype}, value=arr,
                     source=user_source_line())
    if arr.ndim == 0:
        graph.scalar_consts[key] = node.id
    return Tensor(graph, node.id)


def apply(op: str, *args: Operand, **attrs: Any) -> Tensor:
    """Create one node of `op` over `args`, after checking it with the op table's rules."""
    if op not in _ops.OPS:
        raise UnknownOpError(f"unknown op {op!r}", where=user_source_line(),
                             hint=f"known ops: {', '.join(sorted(_ops.OPS))}")
    opdef = _ops.OPS[op]
    graph = _graph_of(args)
    if opdef.arity is not None and len(args) != opdef.arity:
        raise ArgumentError(f"{op} takes {opdef.arity} inputs, got {len(args)}", where=user_source_line())
    weak = _weak_dtype(args)
    # Check before adding anything: build the operand list without touching the graph.
    shapes = [a.shape if isinstance(a, Tensor) else np.shape(a) for a in args]
    dtypes = [a.dtype if isinstance(a, Tensor) else weak for a in args]
    labels = [a.name if isinstance(a, Tensor) else repr(a) if np.ndim(a) == 0 else f"array{np.shape(a)}"
              for a in args]
    where = f"{op}({', '.join(labels)}) at {user_source_line()}"
    try:
        shape = tuple(int(d) for d in opdef.shape(shapes, attrs))
        dtype = opdef.dtype(dtypes, attrs)
    except GraphError as e:
        raise e.located(where) from None
    inputs = [a if isinstance(a, Tensor) else constant(graph, a, weak) for a in args]
    node = graph.add(op, (t.id for t in inputs), shape, dtype, attrs=attrs, source=user_source_line())
    return Tensor(graph, node.id)


def _check_new_name(graph: Graph, name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ArgumentError(f"name {name!r} is not a valid identifier", where=user_source_line(),
                            hint="use a Python identifier such as 'x' or 'w1'; feeds are passed by keyword")
    taken = graph.by_name()
    if name in taken:
        raise ArgumentError(f"name {name!r} is already used", node=taken[name],
                            hint="give every input and param a distinct name")


def _check_dtype(dtype: str) -> str:
    dtype = str(np.dtype(dtype)) if dtype in ("f4", "f8", "i8", float, int, bool) else str(dtype)
    if dtype not in DTYPES:
        raise DTypeError(f"dtype {dtype!r} is not supported", where=user_source_line(),
                         hint=f"use one of {', '.join(DTYPES)}")
    return dtype


def _check_shape(shape: Sequence[int]) -> Shape:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ShapeError(f"shape {shape} must be a tuple of positive integers", where=user_source_line(),
                         hint="write e.g. (64, 1000)")
    return tuple(int(d) for d in shape)


def input(name: str, shape: Sequence[int], dtype: str = "float32") -> Tensor:  # noqa: A001 - the DSL's word
    """A value fed by name at every call of the compiled Program."""
    graph = Graph.current()
    _check_new_name(graph, name)
    shape, dtype = _check_shape(shape), _check_dtype(dtype)
    node = graph.add("input", (), shape, dtype, attrs={"shape": shape, "dtype": dtype}, name=name,
                     source=user_source_line())
    return Tensor(graph, node.id)


InitFn = Callable[[np.random.Generator, Shape], np.ndarray]

INITS: dict[str, InitFn] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
    # torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = shape[0] for (in, out) weights.
    "linear": lambda rng, shape: rng.uniform(-1, 1, shape) / np.sqrt(shape[0]),
}


def param(name: str, shape: Sequence[int], value: np.ndarray | None = None,
          init: str | InitFn = "normal", dtype: str = "float32", seed: int | None = None) -> Tensor:
    """A trainable value. Given `value`, it is copied; else drawn by `init` with a seed
    derived from the name (reproducible across runs) unless `seed` is given."""
    graph = Graph.current()
    _check_new_name(graph, name)
    shape, dtype = _check_shape(shape), _check_dtype(dtype)
    if value is None:
        if isinstance(init, str) and init not in INITS:
            raise ArgumentError(f"unknown init {init!r} for param {name!r}", where=user_source_line(),
                                hint=f"use one of {', '.join(INITS)} or a function (rng, shape) -> array")
        rng = np.random.default_rng(zlib.crc32(name.encode()) if seed is None else seed)
        value = (INITS[init] if isinstance(init, str) else init)(rng, shape)
    value = np.array(value, dtype=dtype)  # a private copy
    if value.shape != shape:
        raise ShapeError(f"param {name!r} declared {shape} but its value has shape {value.shape}",
                         where=user_source_line(), hint="pass a value of the declared shape")
    node = graph.add("param", (), shape, dtype, attrs={"shape": shape, "dtype": dtype}, name=name,
                     source=user_source_line(), value=value)
    return Tensor(graph, node.id)


def const(value: Any, dtype: str | None = None) -> Tensor:
    """A constant baked into the graph (a number or a NumPy array)."""
    return constant(Graph.current(), value, None if dtype is None else _check_dtype(dtype))


# --- pointwise functions ----------------------------------------------------------


def add(a: Operand, b: Operand) -> Tensor:
    return apply("add", a, b)


def sub(a: Operand, b: Operand) -> Tensor:
    return apply("sub", a, b)


def mul(a: Operand, b: Operand) -> Tensor:
    return apply("mul", a, b)


def div(a: Operand, b: Operand) -> Tensor:
    return apply("div", a, b)


def neg(a: Tensor) -> Tensor:
    return apply("neg", a)


def pow(a: Operand, b: Operand) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """a ** b; a Python-number exponent keeps the formula exact (x**2 -> 2*x)."""
    if isinstance(a, Tensor) and isinstance(b, (int, float, np.number)) and not isinstance(b, bool):
        return apply("scalar_pow", a, exponent=b)
    return apply("pow", a, b)


def exp(a: Tensor) -> Tensor:
    return apply("exp", a)


def log(a: Tensor) -> Tensor:
    return apply("log", a)


def sqrt(a: Tensor) -> Tensor:
    return apply("sqrt", a)


def abs(a: Tensor) -> Tensor:  # noqa: A001
    return apply("abs", a)


def relu(a: Tensor) -> Tensor:
    return apply("relu", a)


def sigmoid(a: Tensor) -> Tensor:
    return apply("sigmoid", a)


def tanh(a: Tensor) -> Tensor:
    return apply("tanh", a)


def softplus(a: Tensor) -> Tensor:
    return apply("softplus", a)


def maximum(a: Operand, b: Operand) -> Tensor:
    return apply("maximum", a, b)


def minimum(a: Operand, b: Operand) -> Tensor:
    return apply("minimum", a, b)


def clamp(a: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clip to [min, max]; either bound may be None (torch.clamp)."""
    if min is None and max is None:
        raise ArgumentError("clamp needs min, max or both", where=user_source_line(), hint="e.g. clamp(x, min=0)")
    return apply("clamp", a, min=None if min is None else float(min), max=None if max is None else float(max))


def _scalar_value(a: Operand) -> float | None:
    """The value of a Python number or a scalar const node, else None."""
    if isinstance(a, Tensor):
        n = a.node
        return n.value.item() if n.op == "const" and n.value is not None and n.value.ndim == 0 else None
    return a.item() if isinstance(a, np.ndarray) and a.ndim == 0 else a if np.ndim(a) == 0 else None


def fn(expr: sp.Expr, *inputs: Operand) -> Tensor:
    """A pointwise node computing the sympy `expr` over symbols a0..an bound to `inputs`.

    Scalar constants are folded into the expression, and an expression that
    reduces to one of its operands returns that operand: no node is added.
    """
    syms = arg_symbols(len(inputs))
    by_name = {str(s): s for s in syms}
    extra = {str(s) for s in expr.free_symbols} - set(by_name)
    if extra:
        raise ArgumentError(f"fn expression {expr} uses unknown symbols {sorted(extra)}", where=user_source_line(),
                            hint=f"use gc.symbolic.arg_symbols({len(inputs)}) (real a0..a{len(inputs) - 1})")
    expr = expr.xreplace({s: by_name[str(s)] for s in expr.free_symbols})
    folded = {s: _scalar_value(a) for s, a in zip(syms, inputs)}
    expr = expr.xreplace({s: _number(v) for s, v in folded.items() if v is not None and s in expr.free_symbols})
    kept = [(s, a) for s, a in zip(syms, inputs) if folded[s] is None and s in expr.free_symbols]
    shape = broadcast_shape_of(inputs)
    if not kept:  # the expression is a constant
        return broadcast_to(constant(_graph_of(inputs), float(expr), _weak_dtype(inputs)), shape)
    new = arg_symbols(len(kept))
    expr = expr.xreplace({s: new[k] for k, (s, _) in enumerate(kept)})
    if len(kept) == 1 and expr == new[0] and isinstance(kept[0][1], Tensor) and kept[0][1].shape == shape:
        return kept[0][1]
    return broadcast_to(apply("fn", *(a for _, a in kept), expr=expr), shape)


def _number(v: float) -> sp.Number:
    """Exact where possible, so 1.0 * a0 folds to a0 and 2.0 * a0 prints as 2*a0."""
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)


def broadcast_shape_of(inputs: Sequence[Operand]) -> Shape:
    return _ops.broadcast_shapes([a.shape if isinstance(a, Tensor) else np.shape(a) for a in inputs])


# --- structural functions ------------------------------------------------------------


def _reduce(op: str, a: Tensor, axis: int | Sequence[int] | None, keepdims: bool) -> Tensor:
    try:
        axes = _ops.normalize_axes(axis, a.ndim)
    except GraphError as e:
        raise e.located(f"{op}({a.name}, axis={axis}) at {user_source_line()}") from None
    return apply(op, a, axis=axes, keepdims=bool(keepdims))


def sum(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce("sum", a, axis, keepdims)


def max(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce("max", a, axis, keepdims)


def mean(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    s = sum(a, axis, keepdims)
    count = int(np.prod(a.shape)) // int(np.prod(s.shape)) if a.shape else 1
    return s / count


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return apply("matmul", a, b)


def transpose(a: Tensor, perm: Sequence[int] | None = None) -> Tensor:
    perm = tuple(reversed(range(a.ndim))) if perm is None else tuple(int(p) for p in perm)
    return apply("transpose", a, perm=perm)


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = int(np.prod([d for d in shape if d != -1]))
        shape = tuple(int(np.prod(a.shape)) // known if d == -1 else d for d in shape)
    if shape == a.shape:
        return a
    return apply("reshape", a, shape=shape)


def broadcast_to(a: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(int(d) for d in shape)
    if shape == a.shape:
        return a
    return apply("broadcast_to", a, shape=shape)


def sum_to(a: Tensor, shape: Shape) -> Tensor:
    """Sum `a` down to `shape`: the adjoint of broadcasting `shape` up to `a.shape`."""
    if a.shape == tuple(shape):
        return a
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and a.shape[lead + i] != 1)
    return reshape(sum(a, axis=axes, keepdims=True), shape) if axes else reshape(a, shape)


def _row_axis(op: str, a: Tensor, axis: int) -> int:
    try:
        (ax,) = _ops.normalize_axes(axis, a.ndim)
    except GraphError as e:
        raise e.located(f"{op}({a.name}, axis={axis}) at {user_source_line()}") from None
    return ax


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    return apply("softmax", a, axis=_row_axis("softmax", a, axis))


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    return apply("log_softmax", a, axis=_row_axis("log_softmax", a, axis))


def one_hot(labels: Tensor, num_classes: int, dtype: str = "float32") -> Tensor:
    if labels.dtype != "int64":
        raise DTypeError(f"one_hot needs int64 labels, got {labels.dtype}", node=labels.node,
                         hint="declare the labels with gc.input(name, shape, dtype='int64')")
    return apply("one_hot", labels, num_classes=int(num_classes), dtype=dtype)


# --- losses (composites of the primitives above) ---------------------------------------


def _reduce_loss(per_element: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(per_element)
    if reduction == "sum":
        return sum(per_element)
    raise ArgumentError(f"unknown reduction {reduction!r}", where=user_source_line(), hint="use 'mean' or 'sum'")


def mse_loss(pred: Tensor, target: Operand, reduction: str = "mean") -> Tensor:
    """Mean of squared errors (torch.nn.MSELoss)."""
    return _reduce_loss((pred - target) ** 2, reduction)


def l1_loss(pred: Tensor, target: Operand, reduction: str = "mean") -> Tensor:
    """Mean of absolute errors (torch.nn.L1Loss)."""
    return _reduce_loss(abs(pred - target), reduction)


def bce_loss(prob: Tensor, target: Operand, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on probabilities; the rewrite pass makes it stable on sigmoid outputs."""
    return _reduce_loss(-(target * log(prob) + (1 - target) * log(1 - prob)), reduction)


def bce_with_logits(logits: Tensor, target: Operand, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits: softplus(z) - y*z, stable for any z."""
    return _reduce_loss(softplus(logits) - target * logits, reduction)


def cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of (n, classes) logits against int64 labels (n,)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ShapeError(f"cross_entropy takes logits (n, classes) and labels (n,), got {logits.shape} and "
                         f"{labels.shape}", node=labels.node, hint="labels hold one class index per row")
    picked = sum(one_hot(labels, logits.shape[1], dtype=logits.dtype) * log_softmax(logits, axis=1), axis=1)
    return _reduce_loss(-picked, reduction)


# --- Tensor operators and methods ----------------------------------------------------------


def _install_tensor_methods() -> None:
    swap: Callable[[Callable[[Any, Any], Tensor]], Callable[[Any, Any], Tensor]] = (
        lambda f: lambda self, other: f(other, self)
    )
    T = Tensor
    T.__add__, T.__radd__ = add, swap(add)
    T.__sub__, T.__rsub__ = sub, swap(sub)
    T.__mul__, T.__rmul__ = mul, swap(mul)
    T.__truediv__, T.__rtruediv__ = div, swap(div)
    T.__pow__, T.__rpow__ = pow, swap(pow)
    T.__matmul__, T.__rmatmul__ = matmul, swap(matmul)
    T.__neg__ = neg
    T.T = property(transpose)
    # torch-style methods, so the lecture's `x.mm(w1).clamp(min=0).mm(w2)` reads as written.
    for name, f in dict(mm=matmul, matmul=matmul, clamp=clamp, pow=pow, sum=sum, mean=mean, max=max,
                        exp=exp, log=log, sqrt=sqrt, abs=abs, relu=relu, sigmoid=sigmoid, tanh=tanh,
                        softplus=softplus, reshape=reshape, transpose=transpose, softmax=softmax,
                        log_softmax=log_softmax).items():
        setattr(T, name, f)


_install_tensor_methods()
