"""The op spec table: for every op of ``gc.OPS`` and every contract function, how to
build it with the DSL, its NumPy reference, its torch equivalent, its safe input
domain and its non-smooth points, plus the argument shapes it is checked at.

Shared by tests/test_ops.py (the per-op checks), tests/test_property.py (random
graphs) and the Triton runs of both. ``draw`` and ``torch_reference`` give a
case's inputs and its float64 torch answer, forward and gradient.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.symbolic import arg_symbols

torch = pytest.importorskip("torch")
TF = torch.nn.functional

Shape = tuple[int, ...]
BROADCAST_SHAPES: tuple[Shape, ...] = ((), (3, 4), (3, 1), (1, 4))

# Samples closer than this to a kink (relu(0), a tie in maximum, a clamp bound) are
# redrawn, so a finite-difference stencil never straddles one: 1000 steps of margin.
KINK_MARGIN = 1e-3

# The contract's functions (DESIGN.md, "Public API contract"); each needs a spec.
CONTRACT = (
    "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "softplus", "maximum", "minimum", "clamp", "sum",
    "mean", "max", "matmul", "transpose", "reshape", "broadcast_to", "softmax", "log_softmax", "mse_loss",
    "l1_loss", "bce_loss", "bce_with_logits", "cross_entropy",
)


# --- input samplers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """How to draw one argument: floats (differentiable) or integer labels."""

    draw: Callable[[np.random.Generator, Shape], np.ndarray]
    integer: bool = False

    def sample(self, rng: np.random.Generator, shape: Shape) -> np.ndarray:
        return np.asarray(self.draw(rng, shape), dtype=np.int64 if self.integer else np.float64)


def normal(scale: float = 1.0) -> Arg:
    return Arg(lambda rng, s: scale * rng.standard_normal(s))


def uniform(lo: float, hi: float) -> Arg:
    return Arg(lambda rng, s: rng.uniform(lo, hi, s))


def nonzero(lo: float, hi: float) -> Arg:
    """|x| in [lo, hi] with a random sign: denominators, kept away from 0."""
    return Arg(lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(lo, hi, s))


def labels(classes: int) -> Arg:
    return Arg(lambda rng, s: rng.integers(0, classes, s), integer=True)


# --- kink distances: how far a sample is from the nearest non-smooth point --------------


def dist_to(*points: float) -> Callable[..., float]:
    return lambda x, *_: float(min(np.min(np.abs(x - p)) for p in points))


def dist_between(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.abs(a - b)))


def min_gap(x: np.ndarray) -> float:
    """Smallest distance between two elements: ties are max's kinks."""
    v = np.sort(np.ravel(x))
    return float(np.min(np.diff(v))) if v.size > 1 else np.inf


# --- specs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One op (or contract composite) under test, and its references."""

    op: str  # the gc.OPS entry or contract function it exercises
    label: str  # the variant, as the test ids show it
    gc_fn: Callable[..., gc.Tensor]
    np_fn: Callable[..., np.ndarray]
    torch_fn: Callable[..., Any]
    args: tuple[Arg, ...]
    shapes: tuple[tuple[Shape, ...], ...]  # one tuple of argument shapes per case
    kink: Callable[..., float] | None = None  # the inputs' distance from the nearest non-smooth point
    special: tuple[tuple[Any, ...], ...] = ()  # argument tuples at kinks and extremes


@dataclass(frozen=True)
class Case:
    """One spec at one tuple of argument shapes: the unit each test is parametrized over."""

    spec: Spec
    shapes: tuple[Shape, ...]

    @property
    def id(self) -> str:
        return f"{self.spec.label}-" + "-".join("x".join(map(str, s)) or "scalar" for s in self.shapes)

    @property
    def differentiable(self) -> bool:
        return any(not a.integer for a in self.spec.args)


def unary(op: str, gc_fn: Callable, np_fn: Callable, torch_fn: Callable, arg: Arg | None = None,
          label: str | None = None, **kw: Any) -> Spec:
    return Spec(op, label or op, gc_fn, np_fn, torch_fn, (arg or normal(),),
                tuple((s,) for s in BROADCAST_SHAPES), **kw)


def binary(op: str, gc_fn: Callable, np_fn: Callable, torch_fn: Callable, args: tuple[Arg, Arg] | None = None,
           label: str | None = None, **kw: Any) -> Spec:
    return Spec(op, label or op, gc_fn, np_fn, torch_fn, args or (normal(), normal()),
                tuple(itertools.product(BROADCAST_SHAPES, repeat=2)), **kw)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def t64(x: Any) -> Any:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def pair(f: Callable[..., Any]) -> Callable[..., Any]:
    """A torch loss that wants equal shapes, applied after broadcasting (as graphc's losses do)."""
    return lambda p, t, **kw: f(*torch.broadcast_tensors(p, t), **kw)


A0, A1 = arg_symbols(2)

POINTWISE_SPECS = [
    unary("neg", lambda a: -a, np.negative, torch.neg),
    unary("exp", gc.exp, np.exp, torch.exp, special=(([-80.0, 0.0, 80.0],),)),
    unary("log", gc.log, np.log, torch.log, uniform(0.5, 3.0), special=(([1e-30, 1.0, 1e30],),)),
    unary("sqrt", gc.sqrt, np.sqrt, torch.sqrt, uniform(0.5, 3.0), special=(([1e-30, 4.0, 1e30],),)),
    unary("abs", gc.abs, np.abs, torch.abs, kink=dist_to(0.0), special=(([-1.0, 0.0, 2.0],),)),
    unary("relu", gc.relu, lambda x: np.maximum(x, 0), torch.relu, kink=dist_to(0.0),
          special=(([-1.0, 0.0, 2.0],),)),
    unary("sigmoid", gc.sigmoid, np_sigmoid, torch.sigmoid, normal(2.0),
          special=(([-100.0, -20.0, 0.0, 20.0, 100.0],),)),
    unary("tanh", gc.tanh, np.tanh, torch.tanh, normal(1.5), special=(([-100.0, 0.0, 100.0],),)),
    unary("softplus", gc.softplus, lambda x: np.logaddexp(0, x), TF.softplus, normal(2.0),
          special=(([-1000.0, -100.0, 0.0, 100.0, 1000.0],),)),
    unary("clamp", lambda a: gc.clamp(a, min=-0.5, max=0.5), lambda x: np.clip(x, -0.5, 0.5),
          lambda x: torch.clamp(x, -0.5, 0.5), label="clamp(-0.5,0.5)", kink=dist_to(-0.5, 0.5),
          special=(([-1.0, -0.5, 0.0, 0.5, 1.0],),)),
    unary("clamp", lambda a: a.clamp(min=0), lambda x: np.maximum(x, 0), lambda x: x.clamp(min=0),
          label="x.clamp(min=0)", kink=dist_to(0.0), special=(([-1.0, 0.0, 1.0],),)),
    unary("clamp", lambda a: gc.clamp(a, max=0.25), lambda x: np.minimum(x, 0.25), lambda x: x.clamp(max=0.25),
          label="clamp(max=0.25)", kink=dist_to(0.25), special=(([0.0, 0.25, 1.0],),)),
    unary("scalar_pow", lambda a: a ** 2, np.square, lambda x: x ** 2, label="x**2"),
    unary("scalar_pow", lambda a: a ** 3, lambda x: x ** 3, lambda x: x ** 3, label="x**3"),
    unary("scalar_pow", lambda a: a ** 0.5, np.sqrt, lambda x: x ** 0.5, uniform(0.5, 3.0), label="x**0.5"),
    unary("scalar_pow", lambda a: a ** -1.5, lambda x: x ** -1.5, lambda x: x ** -1.5, uniform(0.5, 3.0),
          label="x**-1.5"),
    # A Python number on either side of each operator.
    unary("add", lambda a: a + 2.5, lambda x: x + 2.5, lambda x: x + 2.5, label="x+2.5"),
    unary("add", lambda a: 2.5 + a, lambda x: 2.5 + x, lambda x: 2.5 + x, label="2.5+x"),
    unary("sub", lambda a: a - 1.5, lambda x: x - 1.5, lambda x: x - 1.5, label="x-1.5"),
    unary("sub", lambda a: 1.5 - a, lambda x: 1.5 - x, lambda x: 1.5 - x, label="1.5-x"),
    unary("mul", lambda a: a * -3, lambda x: x * -3, lambda x: x * -3, label="x*-3"),
    unary("mul", lambda a: 3 * a, lambda x: 3 * x, lambda x: 3 * x, label="3*x"),
    unary("div", lambda a: a / 4, lambda x: x / 4, lambda x: x / 4, label="x/4"),
    unary("div", lambda a: 4 / a, lambda x: 4 / x, lambda x: 4 / x, nonzero(0.5, 2.0), label="4/x"),
    unary("pow", lambda a: 2 ** a, lambda x: 2 ** x, lambda x: 2 ** x, label="2**x"),
    unary("maximum", lambda a: gc.maximum(a, 0.25), lambda x: np.maximum(x, 0.25),
          lambda x: torch.maximum(x, t64(0.25)), label="maximum(x,0.25)", kink=dist_to(0.25),
          special=(([0.0, 0.25, 1.0],),)),
    unary("minimum", lambda a: gc.minimum(-1.0, a), lambda x: np.minimum(-1.0, x),
          lambda x: torch.minimum(t64(-1.0), x), label="minimum(-1,x)", kink=dist_to(-1.0),
          special=(([-2.0, -1.0, 0.0],),)),
    binary("add", lambda a, b: a + b, np.add, torch.add),
    binary("sub", lambda a, b: a - b, np.subtract, torch.sub),
    binary("mul", lambda a, b: a * b, np.multiply, torch.mul),
    binary("div", lambda a, b: a / b, np.divide, torch.div, (normal(), nonzero(0.5, 2.0))),
    binary("pow", lambda a, b: a ** b, np.power, torch.pow, (uniform(0.5, 2.0), normal())),
    binary("maximum", gc.maximum, np.maximum, torch.maximum, kink=dist_between,
           special=(([1.0, 2.0, 3.0], [1.0, 0.0, 5.0]),)),
    binary("minimum", gc.minimum, np.minimum, torch.minimum, kink=dist_between,
           special=(([1.0, 2.0, 3.0], [1.0, 0.0, 5.0]),)),
    binary("fn", lambda a, b: gc.fn(A0 * sp.exp(-A1) + sp.sin(A0) * A1 ** 2, a, b),
           lambda a, b: a * np.exp(-b) + np.sin(a) * b ** 2,
           lambda a, b: a * torch.exp(-b) + torch.sin(a) * b ** 2, label="fn(a0*exp(-a1)+sin(a0)*a1**2)"),
]


def reduction_specs() -> list[Spec]:
    """sum, mean and max over every axis choice of the broadcast shapes, keepdims or not."""
    impls = {
        "sum": (gc.sum, np.sum, lambda x, dim, keepdim: torch.sum(x, dim=dim, keepdim=keepdim), None),
        "mean": (gc.mean, np.mean, lambda x, dim, keepdim: torch.mean(x, dim=dim, keepdim=keepdim), None),
        # amax, not max(dim): amax shares the gradient among ties, as graphc does.
        "max": (gc.max, np.max, lambda x, dim, keepdim: torch.amax(x, dim=dim, keepdim=keepdim), min_gap),
    }
    axes_for: dict[Shape, tuple[Any, ...]] = {(): (None,), (3, 4): (None, 0, -1, (0, 1)), (3, 1): (None, 0, 1),
                                              (1, 4): (None, 0, -1), (2, 3, 4): ((0, 2), 1)}
    specs = []
    for op, (g, n, t, kink) in impls.items():
        for shape, axes in axes_for.items():
            for axis, keepdims in itertools.product(axes, (False, True)):
                dim = tuple(range(len(shape))) if axis is None else axis
                special = (([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]],),) if op == "max" and shape == (3, 4) else ()
                specs.append(Spec(
                    op, f"{op}(axis={axis},keepdims={keepdims})",
                    lambda a, g=g, axis=axis, k=keepdims: g(a, axis=axis, keepdims=k),
                    lambda x, n=n, axis=axis, k=keepdims: n(x, axis=axis, keepdims=k),
                    lambda x, t=t, dim=dim, k=keepdims: t(x, dim, k),
                    (normal(),), ((shape,),), kink=kink, special=special))
    return specs


def structural_specs() -> list[Spec]:
    # Exact in float32: a float32 graph stores its constants in float32, and test_forward_matches_numpy
    # also runs the float32 graph in float64 against a float64 reference.
    const = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32).astype(np.float64)
    specs = [
        Spec("matmul", "a@b", lambda a, b: a @ b, np.matmul, torch.matmul, (normal(), normal()),
             (((3, 4), (4, 2)), ((1, 4), (4, 1)), ((3, 1), (1, 4)), ((4, 3), (3, 3)))),
        Spec("matmul", "ndarray@x", lambda b: const @ b, lambda x: const @ x, lambda x: t64(const) @ x,
             (normal(),), (((4, 2),), ((4, 1),))),
        Spec("matmul", "x.mm(w)", lambda a, b: a.mm(b), np.matmul, torch.mm, (normal(), normal()),
             (((5, 3), (3, 2)),)),
        Spec("transpose", "x.T", lambda a: a.T, np.transpose, lambda x: x.T, (normal(),),
             (((3, 4),), ((3, 1),), ((1, 4),))),
    ]
    for perm in ((1, 2, 0), (0, 2, 1)):
        specs.append(Spec("transpose", f"transpose{perm}", lambda a, p=perm: gc.transpose(a, p),
                          lambda x, p=perm: np.transpose(x, p), lambda x, p=perm: x.permute(*p), (normal(),),
                          (((2, 3, 4),),)))
    for src, dst in (((3, 4), (4, 3)), ((3, 4), (2, -1)), ((3, 1), (3,)), ((1, 4), (2, 2)), ((), (1, 1))):
        specs.append(Spec("reshape", f"reshape{dst}", lambda a, d=dst: gc.reshape(a, d),
                          lambda x, d=dst: np.reshape(x, d), lambda x, d=dst: x.reshape(d), (normal(),),
                          ((src,),)))
    for src, dst in (((), (3, 4)), ((3, 1), (3, 4)), ((1, 4), (2, 3, 4)), ((4,), (3, 4)), ((3, 4), (2, 3, 4))):
        specs.append(Spec("broadcast_to", f"broadcast_to{dst}", lambda a, d=dst: gc.broadcast_to(a, d),
                          lambda x, d=dst: np.broadcast_to(x, d), lambda x, d=dst: x.expand(d), (normal(),),
                          ((src,),)))
    big = [[1e4, 0.0, -1e4, 5e3], [1e4, 1e4, 0.0, 0.0]]
    for op, n, t in (("softmax", np_softmax, torch.softmax), ("log_softmax", np_log_softmax, torch.log_softmax)):
        for axis, shapes in ((-1, ((3, 4), (3, 1), (1, 4), (2, 3, 4))), (0, ((3, 4), (3, 1), (1, 4))),
                             (1, ((2, 3, 4),))):
            specs.append(Spec(op, f"{op}(axis={axis})", lambda a, f=getattr(gc, op), ax=axis: f(a, axis=ax),
                              lambda x, n=n, ax=axis: n(x, ax), lambda x, t=t, ax=axis: t(x, dim=ax),
                              (normal(2.0),), tuple((s,) for s in shapes),
                              special=((big,),) if axis == -1 else ()))
    for shape, classes in (((5,), 4), ((2, 3), 3)):
        specs.append(Spec("one_hot", f"one_hot({classes})", lambda l, c=classes: gc.one_hot(l, c),
                          lambda l, c=classes: np.eye(c)[l],
                          lambda l, c=classes: TF.one_hot(l, c).to(torch.float32), (labels(classes),),
                          ((shape,),)))
    return specs


def loss_specs() -> list[Spec]:
    shapes = (((3, 4), (3, 4)), ((3, 4), (1, 4)), ((3, 1), (1, 4)), ((), ()))
    specs = []
    for reduction, np_red in (("mean", np.mean), ("sum", np.sum)):
        r = dict(reduction=reduction)
        specs += [
            Spec("mse_loss", f"mse_loss({reduction})", lambda p, t, r=r: gc.mse_loss(p, t, **r),
                 lambda p, t, f=np_red: f((p - t) ** 2), lambda p, t, r=r: pair(TF.mse_loss)(p, t, **r),
                 (normal(), normal()), shapes),
            Spec("l1_loss", f"l1_loss({reduction})", lambda p, t, r=r: gc.l1_loss(p, t, **r),
                 lambda p, t, f=np_red: f(np.abs(p - t)), lambda p, t, r=r: pair(TF.l1_loss)(p, t, **r),
                 (normal(), normal()), shapes, kink=dist_between, special=(([1.0, 2.0, 3.0], [1.0, 0.0, 5.0]),)),
            Spec("bce_loss", f"bce_loss({reduction})", lambda p, t, r=r: gc.bce_loss(p, t, **r),
                 lambda p, t, f=np_red: -f(t * np.log(p) + (1 - t) * np.log1p(-p)),
                 lambda p, t, r=r: pair(TF.binary_cross_entropy)(p, t, **r),
                 (uniform(0.05, 0.95), uniform(0.0, 1.0)), shapes,
                 special=(([1e-6, 0.5, 1 - 1e-6], [0.0, 1.0, 1.0]),)),
            Spec("bce_with_logits", f"bce_with_logits({reduction})",
                 lambda z, t, r=r: gc.bce_with_logits(z, t, **r),
                 lambda z, t, f=np_red: f(np.logaddexp(0, z) - t * z),
                 lambda z, t, r=r: pair(TF.binary_cross_entropy_with_logits)(z, t, **r),
                 (normal(3.0), uniform(0.0, 1.0)), shapes,
                 special=(([-1000.0, -100.0, 0.0, 100.0, 1000.0], [0.0, 1.0, 0.5, 0.0, 1.0]),)),
        ]
        for n, c in ((5, 4), (1, 3), (3, 1)):
            specs.append(Spec(
                "cross_entropy", f"cross_entropy({reduction})", lambda z, l, r=r: gc.cross_entropy(z, l, **r),
                lambda z, l, f=np_red: -f(np_log_softmax(z, 1)[np.arange(len(l)), l]),
                lambda z, l, r=r: TF.cross_entropy(z, l, **r), (normal(2.0), labels(c)), (((n, c), (n,)),),
                special=(([[1e4, 0.0, -1e4, 0.0], [0.0, 0.0, 0.0, 1e4]], [2, 1]),) if c == 4 else ()))
    # The lecture's logistic-regression cost on a sigmoid, once through bce_loss and once written naively.
    # graphc rewrites log(sigmoid) stably; the torch reference is the stable bce_with_logits.
    lecture = ((-60.0, -1.0, 0.0, 1.0, 60.0), (1.0, 0.0, 1.0, 0.0, 0.0))
    specs += [
        Spec("bce_loss", "bce_loss(sigmoid(z))", lambda z, y: gc.bce_loss(gc.sigmoid(z), y),
             lambda z, y: -np.mean(y * np.log(np_sigmoid(z)) + (1 - y) * np.log(1 - np_sigmoid(z))),
             pair(TF.binary_cross_entropy_with_logits), (normal(3.0), uniform(0.0, 1.0)), shapes,
             special=(lecture,)),
        Spec("log", "naive -mean(y*log(sigmoid(z))+(1-y)*log(1-sigmoid(z)))",
             lambda z, y: -gc.mean(y * gc.log(gc.sigmoid(z)) + (1 - y) * gc.log(1 - gc.sigmoid(z))),
             lambda z, y: -np.mean(y * np.log(np_sigmoid(z)) + (1 - y) * np.log(1 - np_sigmoid(z))),
             pair(TF.binary_cross_entropy_with_logits), (normal(3.0), uniform(0.0, 1.0)),
             (((3, 4), (3, 4)), ((4, 1), (4, 1))), special=(lecture,)),
    ]
    return specs


SPECS: list[Spec] = POINTWISE_SPECS + reduction_specs() + structural_specs() + loss_specs()
CASES: list[Case] = [Case(spec, shapes) for spec in SPECS for shapes in spec.shapes]
SPECIAL: list[tuple[Spec, tuple[Any, ...]]] = [(spec, point) for spec in SPECS for point in spec.special]


# --- drawing inputs and the torch reference ------------------------------------------------


def draw(case: Case, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Inputs (redrawn while too near a kink) and a seed cotangent w, reproducible per case and seed."""
    rng = np.random.default_rng([seed, zlib.crc32(case.id.encode())])
    spec = case.spec
    for _ in range(100):
        xs = [a.sample(rng, s) for a, s in zip(spec.args, case.shapes)]
        if spec.kink is None or spec.kink(*xs) > KINK_MARGIN:
            break
    else:
        raise AssertionError(f"{case.id}: no sample {KINK_MARGIN} away from a kink in 100 draws")
    y_shape = np.shape(spec.np_fn(*xs))
    return xs, rng.standard_normal(y_shape)


def torch_reference(spec: Spec, xs: Sequence[np.ndarray], w: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """torch's output and d(w.y)/dx for the float arguments, in float64."""
    ts = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in xs]
    y = spec.torch_fn(*ts)
    floats = [t for t in ts if t.requires_grad]
    if not floats:
        return y.detach().numpy(), []
    grads = torch.autograd.grad((y * torch.as_tensor(w)).sum(), floats, allow_unused=True)
    return y.detach().numpy(), [np.zeros(t.shape) if g is None else g.numpy() for t, g in zip(floats, grads)]


def scale_of(*arrays: np.ndarray) -> float:
    return max([1.0] + [float(np.max(np.abs(a))) for a in arrays if np.size(a)])
