"""Op-table-driven tests: one spec per op of the contract, expanded over shapes.

Every spec says how to build the op in graphc, in NumPy and in torch, and where
to draw its inputs. Each case (spec x argument shapes) is checked for
  * forward against NumPy, in float32 and float64;
  * gradient against central finite differences in float64;
  * gradient against ``torch.autograd`` in float64 (and float32 loosely);
over several seeds, the pointwise ops over every pair of the broadcast shapes
(), (3, 4), (3, 1), (1, 4). Each spec's special points (kinks such as relu(0),
ties, extremes such as softplus(1000)) are checked against torch: the
conventions must match and everything must stay finite in float32.

A coverage test fails when an op is added to ``gc.OPS`` (or a function to the
contract) without a spec here.
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
from graphc.ops import SOURCE
from graphc.symbolic import arg_symbols

torch = pytest.importorskip("torch")
TF = torch.nn.functional

Shape = tuple[int, ...]
SEEDS = (0, 1, 2)
BROADCAST_SHAPES: tuple[Shape, ...] = ((), (3, 4), (3, 1), (1, 4))

# Central differences: truncation error is h**2 * f''' / 6 (about 1e-13 here); round-off
# is about eps * |loss| / h, which ROUNDOFF_ATOL bounds. h = 1e-6 balances the two.
FD_STEP = 1e-6
FD_RTOL = 1e-6
# Samples closer than this to a kink (relu(0), a tie in maximum, a clamp bound) are
# redrawn, so the finite-difference stencil never straddles one: 1000 steps of margin.
KINK_MARGIN = 1e-3
EPS64 = np.finfo(np.float64).eps

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


# --- running a case -----------------------------------------------------------------------


# The numpy backend's two ways to run a Program: the node-by-node interpreter (the oracle)
# and the generated fast path (the default). Both must agree with the references.
ORACLE = "interpreter"
PATHS: dict[str, dict[str, Any]] = {ORACLE: {"fast": False}, "fast": {"fast": True}}


@dataclass
class Built:
    """A case compiled: f(xs, w) returns (y, d(w.y)/dx_i for each float x_i)."""

    programs: dict[str, gc.Program]  # by path
    y: gc.Tensor
    grads: tuple[gc.Tensor, ...]
    float_args: list[int]  # positions of the differentiable arguments

    def __call__(self, xs: Sequence[np.ndarray], w: np.ndarray | None = None,
                 path: str = ORACLE) -> tuple[np.ndarray, ...]:
        feeds = {f"x{i}": x for i, x in enumerate(xs)}
        if self.float_args:
            feeds["w"] = np.ones(self.y.shape) if w is None else w
        return tuple(np.asarray(r) for r in self.programs[path](**feeds))


def build(spec: Spec, shapes: Sequence[Shape], dtype: str) -> Built:
    """The spec's graph over inputs x0.. of `dtype`, with gradients seeded by an input w."""
    with gc.Graph(spec.label):
        xs = [gc.input(f"x{i}", s, dtype="int64" if a.integer else dtype)
              for i, (a, s) in enumerate(zip(spec.args, shapes))]
        y = spec.gc_fn(*xs)
        float_args = [i for i, a in enumerate(spec.args) if not a.integer]
        grads: tuple[gc.Tensor, ...] = ()
        if float_args:
            w = gc.input("w", y.shape, dtype=dtype)
            grads = gc.grad(y, [xs[i] for i in float_args], seed=w)
    return Built({path: gc.compile([y, *grads], **opts) for path, opts in PATHS.items()}, y, grads, float_args)


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


# --- the tests ------------------------------------------------------------------------------


def test_every_op_and_contract_function_has_a_spec() -> None:
    """Adding an op to gc.OPS or a function to the contract without a spec fails here."""
    untested = {name for name, op in gc.OPS.items() if op.kind != SOURCE} - {s.op for s in SPECS}
    assert not untested, f"ops without a spec in tests/test_ops.py: {sorted(untested)}"
    missing = set(CONTRACT) - {s.op for s in SPECS}
    assert not missing, f"contract functions without a spec: {sorted(missing)}"
    assert all(callable(getattr(gc, name)) for name in CONTRACT)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.op in gc.OPS], ids=lambda s: s.label)
def test_spec_builds_the_op_it_names(spec: Spec) -> None:
    """A spec that claims to test an op-table entry puts that op in its forward graph."""
    with gc.Graph("probe") as g:
        xs = [gc.input(f"x{i}", s, dtype="int64" if a.integer else "float64")
              for i, (a, s) in enumerate(zip(spec.args, spec.shapes[0]))]
        spec.gc_fn(*xs)
    assert spec.op in {n.op for n in g.nodes()}, str(g)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_matches_numpy(case: Case) -> None:
    f64 = build(case.spec, case.shapes, "float64")
    f32 = build(case.spec, case.shapes, "float32")
    # The same float32 graph run in float64 by the reference backend's dtype option.
    f32_as_64 = gc.compile(f32.y, dtype="float64")
    for seed, path in itertools.product(SEEDS, PATHS):
        xs, _ = draw(case, seed)
        want = case.spec.np_fn(*xs)
        y64 = f64(xs, path=path)[0]
        assert y64.shape == np.shape(want) == f64.y.shape and y64.dtype == np.dtype(f64.y.dtype)
        assert f64.y.dtype == "float64" or not case.differentiable  # one_hot's dtype is its own attr
        np.testing.assert_allclose(y64, want, rtol=1e-12, atol=1e-12 * scale_of(want))
        np.testing.assert_allclose(f32_as_64(**{f"x{i}": x for i, x in enumerate(xs)}), want, rtol=1e-12,
                                   atol=1e-12 * scale_of(want))
        xs32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
        y32 = f32(xs32, path=path)[0]
        assert y32.dtype == np.dtype(f32.y.dtype) and (f32.y.dtype == "float32" or not case.differentiable)
        want32 = case.spec.np_fn(*(x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs32))
        np.testing.assert_allclose(y32, want32, rtol=1e-5, atol=1e-6 * scale_of(want32))


GRAD_CASES = [c for c in CASES if c.differentiable]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_grad_matches_finite_differences(case: Case) -> None:
    f = build(case.spec, case.shapes, "float64")
    for seed in SEEDS:
        xs, w = draw(case, seed)
        y, *grads = f(xs, w)
        assert all(g.dtype == np.float64 for g in grads)

        def loss(args: list[np.ndarray]) -> float:
            return float(np.sum(w * f(args, w)[0]))

        # Round-off in each loss evaluation, magnified by 1/(2h) in the difference quotient; the largest
        # seen over all cases is 1.3 of these units.
        atol = 8 * EPS64 * float(np.sum(np.abs(w))) * scale_of(y, *xs) / FD_STEP
        for i, g in zip(f.float_args, grads):
            numeric = np.zeros_like(xs[i])
            for idx in np.ndindex(xs[i].shape):
                hi, lo = list(xs), list(xs)
                hi[i], lo[i] = xs[i].copy(), xs[i].copy()
                hi[i][idx] += FD_STEP
                lo[i][idx] -= FD_STEP
                numeric[idx] = (loss(hi) - loss(lo)) / (2 * FD_STEP)
            np.testing.assert_allclose(g, numeric, rtol=FD_RTOL, atol=atol, err_msg=f"d/dx{i}, seed {seed}")


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_grad_matches_torch(case: Case) -> None:
    f64 = build(case.spec, case.shapes, "float64")
    f32 = build(case.spec, case.shapes, "float32")
    for seed, path in itertools.product(SEEDS, PATHS):
        xs, w = draw(case, seed)
        want_y, want = torch_reference(case.spec, xs, w)
        y, *grads = f64(xs, w, path)
        np.testing.assert_allclose(y, want_y, rtol=1e-10, atol=1e-12 * scale_of(want_y))
        for i, g, t in zip(f64.float_args, grads, want):
            assert g.shape == xs[i].shape and g.dtype == np.float64
            np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12 * scale_of(t),
                                       err_msg=f"{path} d/dx{i}, seed {seed}")
        xs32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
        _, want32 = torch_reference(case.spec, [x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs32], w)
        _, *grads32 = f32(xs32, w.astype(np.float32), path)
        for g, t in zip(grads32, want32):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-5 * scale_of(t), err_msg=f"{path} float32")


@pytest.mark.parametrize("spec,point", SPECIAL, ids=[f"{s.label}-{i}" for i, (s, _) in enumerate(SPECIAL)])
def test_special_points_match_torch(spec: Spec, point: tuple[Any, ...]) -> None:
    """Kinks take PyTorch's conventions (relu'(0) = abs'(0) = 0, ties split); extremes stay finite."""
    xs = [np.asarray(v, dtype=np.int64 if a.integer else np.float64) for a, v in zip(spec.args, point)]
    shapes = tuple(x.shape for x in xs)
    for dtype, rtol, atol in (("float64", 1e-7, 1e-300), ("float32", 1e-5, 1e-6)):
        f = build(spec, shapes, dtype)
        # The reference sees the inputs rounded to `dtype`, so only graphc's arithmetic is compared.
        rounded = [x.astype(dtype).astype(np.float64) if x.dtype.kind == "f" else x for x in xs]
        want_y, want = torch_reference(spec, rounded, np.ones(f.y.shape))
        assert np.all(np.isfinite(want_y)) and all(np.all(np.isfinite(t)) for t in want), "a bad special point"
        for path in PATHS:
            y, *grads = f([x.astype(dtype) if x.dtype.kind == "f" else x for x in xs], path=path)
            where = f"{path}, {dtype}"
            assert np.all(np.isfinite(y)) and all(np.all(np.isfinite(g)) for g in grads), f"not finite: {where}"
            np.testing.assert_allclose(y, want_y, rtol=rtol, atol=atol * scale_of(want_y), err_msg=where)
            for i, g, t in zip(f.float_args, grads, want):
                np.testing.assert_allclose(g, t, rtol=rtol, atol=atol * scale_of(t), err_msg=f"{where} d/dx{i}")
