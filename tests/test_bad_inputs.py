"""The bad-input suite: every misuse a user can make raises a typed gc.GraphError subclass
whose message names the node, the user's line (this file and the line of the failing
call, marked `# misuse`) and the fix.

Semantics decided here (docs/reliability.md): a Graph is open inside its `with`
block only. After it closes it cannot be re-entered, and gc.input / gc.param /
gc.const need an open graph; operators, gc functions and gc.grad on its tensors
still add nodes to it (that is how gradients and losses are added after the model).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import graphc as gc
from conftest import BACKENDS, Backend
from fuzz_report import count
from graphc.ops import ROWWISE, OpDef, same_shape


@dataclass
class Model:
    """A small classifier every misuse starts from."""

    g: gc.Graph
    x: gc.Tensor  # f32[3,4]
    y: gc.Tensor  # f32[2]
    labels: gc.Tensor  # i64[3]
    w: gc.Tensor  # param f32[4,2]
    logits: gc.Tensor  # f32[3,2]
    loss: gc.Tensor  # f32[]

    def program(self, **options: object) -> gc.Program:
        return gc.compile(self.loss, **options)

    @staticmethod
    def feeds() -> dict[str, np.ndarray]:
        return {"x": np.ones((3, 4), np.float32), "labels": np.array([0, 1, 1])}


def model() -> Model:
    with gc.Graph("classifier") as g:
        x = gc.input("x", (3, 4))
        y = gc.input("y", (2,))
        labels = gc.input("labels", (3,), dtype="int64")
        w = gc.param("w", (4, 2))
        logits = x @ w
        loss = gc.cross_entropy(logits, labels)
    return Model(g, x, y, labels, w, logits, loss)


@dataclass(frozen=True)
class Misuse:
    run: Callable[[Model], object]
    error: type[gc.GraphError]
    node: str | None  # the node the message must name
    says: str  # a phrase the message must contain

    @property
    def line(self) -> int:
        """The line marked `# misuse` in the case's source: the user's line the message must name."""
        lines, start = inspect.getsourcelines(self.run)
        return start + next(i for i, text in enumerate(lines) if text.rstrip().endswith("# misuse"))


MISUSES: dict[str, Misuse] = {}


def misuse(error: type[gc.GraphError], node: str | None, says: str) -> Callable[[Callable[[Model], object]], None]:
    def register(run: Callable[[Model], object]) -> None:
        MISUSES[run.__name__] = Misuse(run, error, node, says)

    return register


# --- building the graph ----------------------------------------------------------------------------


@misuse(gc.ShapeError, "add(x, y)", "do not broadcast")
def shapes_that_do_not_broadcast(m: Model) -> object:
    return m.x + m.y  # misuse


@misuse(gc.ShapeError, "maximum(x, array(4, 3))", "do not broadcast")
def array_operand_that_does_not_broadcast(m: Model) -> object:
    return gc.maximum(m.x, np.zeros((4, 3)))  # misuse


@misuse(gc.ShapeError, "matmul(x, x)", "inner dimensions 4 and 3 differ")
def matmul_of_incompatible_shapes(m: Model) -> object:
    return m.x @ m.x  # misuse


@misuse(gc.ShapeError, "matmul(y, w)", "matmul takes two matrices")
def matmul_of_a_vector(m: Model) -> object:
    return gc.matmul(m.y, m.w)  # misuse


@misuse(gc.ShapeError, "sum(x, axis=2)", "axis 2 is out of range")
def reduction_axis_out_of_range(m: Model) -> object:
    return gc.sum(m.x, axis=2)  # misuse


@misuse(gc.ShapeError, "softmax(x, axis=-3)", "axis -3 is out of range")
def softmax_axis_out_of_range(m: Model) -> object:
    return gc.softmax(m.x, axis=-3)  # misuse


@misuse(gc.ShapeError, "max(x, axis=(0, -2))", "repeats an axis")
def reduction_axis_named_twice(m: Model) -> object:
    return gc.max(m.x, axis=(0, -2))  # misuse


@misuse(gc.ShapeError, "reshape(x)", "cannot reshape (3, 4)")
def reshape_that_changes_the_element_count(m: Model) -> object:
    return m.x.reshape((5, 2))  # misuse


@misuse(gc.ShapeError, "broadcast_to(x)", "shapes (3, 4), (4, 4) do not broadcast")
def broadcast_to_an_incompatible_shape(m: Model) -> object:
    return gc.broadcast_to(m.x, (4, 4))  # misuse


@misuse(gc.ShapeError, "transpose(x)", "is not a permutation")
def transpose_with_a_bad_permutation(m: Model) -> object:
    return gc.transpose(m.x, (0, 0))  # misuse


@misuse(gc.ArgumentError, "x (input, f32[3])", "name 'x' is already used")
def duplicate_input_name(m: Model) -> object:
    with gc.Graph("dup"):
        gc.input("x", (3,))
        return gc.input("x", (3, 4))  # misuse


@misuse(gc.DTypeError, None, "dtype 'float16' is not supported")
def unsupported_dtype(m: Model) -> object:
    with gc.Graph("half"):
        return gc.input("h", (3,), dtype="float16")  # misuse


@misuse(gc.DTypeError, "(sum, f32[3])", "one_hot needs int64 labels, got float32")
def cross_entropy_with_float_labels(m: Model) -> object:
    scores = gc.sum(m.logits, axis=1)
    return gc.cross_entropy(m.logits, scores)  # misuse


@misuse(gc.ShapeError, "y (input, f32[2])", "cross_entropy takes logits (n, classes) and labels (n,)")
def cross_entropy_labels_of_the_wrong_length(m: Model) -> object:
    return gc.cross_entropy(m.logits, m.y)  # misuse


@misuse(gc.ShapeError, None, "param 'b' declared (2,) but its value has shape (3,)")
def param_value_of_the_wrong_shape(m: Model) -> object:
    with gc.Graph("bias"):
        return gc.param("b", (2,), value=np.zeros(3))  # misuse


@misuse(gc.GraphStateError, None, "graph 'classifier' was closed")
def graph_entered_after_closing(m: Model) -> object:
    with m.g:  # misuse
        return gc.input("late", (3,))


@misuse(gc.GraphStateError, None, "no graph is open")
def input_outside_any_graph(m: Model) -> object:
    return gc.input("z", (3,))  # misuse


@misuse(gc.GraphStateError, None, "mixes tensors from different graphs ('classifier', 'other')")
def tensors_from_two_graphs(m: Model) -> object:
    with gc.Graph("other"):
        z = gc.input("z", (3, 4))
    return m.x + z  # misuse


@misuse(gc.GraphStateError, "x (input, f32[3,4])", "no truth value")
def python_if_on_a_tensor(m: Model) -> object:
    return m.x if m.x else m.y  # misuse


@misuse(gc.ArgumentError, None, "clamp needs min, max or both")
def clamp_without_bounds(m: Model) -> object:
    return gc.clamp(m.x)  # misuse


@misuse(gc.ArgumentError, None, "unknown reduction 'avg'")
def unknown_loss_reduction(m: Model) -> object:
    return gc.mse_loss(m.x, m.x, reduction="avg")  # misuse


@misuse(gc.UnknownOpError, None, "unknown op 'cumsum'")
def unknown_op(m: Model) -> object:
    return gc.apply("cumsum", m.x)  # misuse


# --- gradients ---------------------------------------------------------------------------------------


@misuse(gc.GradError, "t4 (matmul, f32[3,2])", "grad of the non-scalar t4 (f32[3,2]) needs a seed")
def grad_of_a_non_scalar_without_seed(m: Model) -> object:
    return gc.grad(m.logits, m.w)  # misuse


@misuse(gc.GradError, "t4 (matmul, f32[3,2])", "seed shape (3,) differs from the output's (3, 2)")
def grad_with_a_seed_of_the_wrong_shape(m: Model) -> object:
    return gc.grad(m.logits, m.w, seed=np.ones(3))  # misuse


@misuse(gc.DTypeError, "labels (input, i64[3])", "cannot differentiate with respect to labels, of dtype int64")
def grad_with_respect_to_integer_labels(m: Model) -> object:
    return gc.grad(m.loss, m.labels)  # misuse


@misuse(gc.GradError, "y (input, f32[2])", "does not depend on y")
def grad_with_respect_to_an_unreachable_tensor(m: Model) -> object:
    return gc.grad(m.loss, [m.w, m.y])  # misuse


# --- compiling and running ---------------------------------------------------------------------------


@misuse(gc.FeedError, "x (input, f32[3,4])", "missing feed 'x'")
def missing_feed(m: Model) -> object:
    return m.program()(labels=np.array([0, 1, 1]))  # misuse


@misuse(gc.FeedError, None, "unknown feed 'X'")
def unknown_feed_name(m: Model) -> object:
    return m.program()(**Model.feeds(), X=np.ones((3, 4)))  # misuse


@misuse(gc.FeedError, "x (input, f32[3,4])", "feed 'x' has shape (4, 3), the graph declares (3, 4)")
def feed_of_the_wrong_shape(m: Model) -> object:
    return m.program()(x=np.ones((4, 3)), labels=np.array([0, 1, 1]))  # misuse


@misuse(gc.FeedError, "labels (input, i64[3])", "feed 'labels' holds floats but the graph declares int64")
def float_feed_for_integer_labels(m: Model) -> object:
    return m.program()(x=np.ones((3, 4)), labels=np.array([0.0, 1.0, 1.0]))  # misuse


@misuse(gc.FeedError, "w (param, f32[4,2])", "feed 'w' has shape (2, 4), the graph declares (4, 2)")
def param_fed_with_the_wrong_shape(m: Model) -> object:
    return m.program()(**Model.feeds(), w=np.ones((2, 4)))  # misuse


@misuse(gc.NumericError, "one_hot", "label 7 is out of range for 2 classes")
def labels_out_of_range_in_cross_entropy(m: Model) -> object:
    return m.program()(x=np.ones((3, 4)), labels=np.array([0, 7, 1]))  # misuse


@misuse(gc.NumericError, "(log, f32[3,4])", "a value is NaN or inf")
def non_finite_value_under_check_finite(m: Model) -> object:
    with gc.Graph("logs"):
        x = gc.input("x", (3, 4))
        out = gc.sum(gc.sqrt(gc.log(x)))
    return gc.compile(out, check_finite=True)(x=-np.ones((3, 4)))  # misuse


@misuse(gc.UnknownOpError, "(cummax, f32[3,4])", "the numpy backend cannot lower op 'cummax'")
def op_a_backend_cannot_lower(m: Model) -> object:
    gc.OPS["cummax"] = OpDef("cummax", ROWWISE, 1, shape=same_shape, dtype=lambda d, a: d[0], attrs=("axis",))
    try:
        out = gc.apply("cummax", m.x, axis=1)
        return gc.compile(out, fast=False)  # misuse
    finally:
        del gc.OPS["cummax"]


@misuse(gc.CycleError, "x (input, f32[3,4])", "the graph has a cycle: x -> t4")
def cycle_made_by_editing_the_networkx_graph(m: Model) -> object:
    m.g.nx.add_edge(m.logits.id, m.x.id, key=0)
    return gc.verify(m.g)  # misuse


@misuse(gc.ArgumentError, None, "unknown backend 'cuda'")
def unknown_backend(m: Model) -> object:
    return gc.compile(m.loss, backend="cuda")  # misuse


@misuse(gc.GraphStateError, "z (input, f32[3])", "compile() outputs come from different graphs")
def compile_outputs_of_two_graphs(m: Model) -> object:
    with gc.Graph("other"):
        z = gc.input("z", (3,))
    return gc.compile([m.loss, z])  # misuse


@misuse(gc.GradError, "(sum, f32[])", "the loss depends on no float param")
def training_a_loss_without_params(m: Model) -> object:
    return gc.compile(gc.sum(m.x), optimizer=gc.optim.SGD(lr=0.1))  # misuse


# --- the tests ---------------------------------------------------------------------------------------


def test_at_least_thirty_distinct_misuses() -> None:
    assert len(MISUSES) >= 30
    count("bad inputs", misuses=len(MISUSES))


@pytest.mark.parametrize("name", sorted(MISUSES))
def test_misuse_raises_a_typed_error_naming_node_line_and_fix(name: str) -> None:
    case = MISUSES[name]
    m = model()
    with pytest.raises(gc.GraphError) as info:
        case.run(m)
    err = info.value
    message = str(err)
    assert type(err) is case.error and type(err) is not gc.GraphError, f"{type(err).__name__}: {message}"
    assert case.says in message, message
    assert f"test_bad_inputs.py:{case.line}" in message, message  # the user's line
    assert "\n  fix: " in message, message
    if case.node is not None:
        assert case.node in message, message
    count("bad inputs", raised_as_documented=1)


def test_case_lines_point_at_the_call() -> None:
    """The `# misuse` marker is found (guards the line check itself)."""
    case = MISUSES["shapes_that_do_not_broadcast"]
    assert inspect.getsourcelines(case.run)[0][case.line - inspect.getsourcelines(case.run)[1]].strip() \
        == "return m.x + m.y  # misuse"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "numpy-oracle"], ids=str)
def test_labels_out_of_range_are_caught_on_every_backend(backend: Backend) -> None:
    m = model()
    with pytest.raises(gc.NumericError, match="out of range"):
        backend.compile(m.loss)(x=np.ones((3, 4)), labels=np.array([0, 2, 1]))
    with pytest.raises(gc.NumericError, match="out of range"):
        backend.compile(m.loss)(x=np.ones((3, 4)), labels=np.array([0, -1, 1]))


@pytest.mark.parametrize("backend", BACKENDS, ids=str)
def test_an_op_a_backend_cannot_lower_is_an_unknown_op_error(backend: Backend,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gc.OPS, "cummax", OpDef("cummax", ROWWISE, 1, shape=same_shape, dtype=lambda d, a: d[0],
                                                 attrs=("axis",)))
    m = model()
    out = gc.apply("cummax", m.x, axis=1)
    with pytest.raises(gc.UnknownOpError, match="cannot lower op 'cummax'") as info:
        backend.compile(out)
    assert "(cummax, f32[3,4])" in str(info.value) and "test_bad_inputs.py:" in str(info.value)
