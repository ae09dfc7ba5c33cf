"""Errors: the typed hierarchy, and the guarantee that a failing call changes nothing.

A step that raises leaves params and optimizer state bit-identical and the next
good step equal to a twin program's that never failed (no poisoned cache); a
failing grad leaves the graph exactly as it was (node count and listing); a
failing DSL call adds no node.
"""

from __future__ import annotations

import dataclasses
import inspect
import os

import numpy as np
import pytest

import graphc as gc
from conftest import Backend, to_numpy

ERRORS = [gc.ArgumentError, gc.ShapeError, gc.DTypeError, gc.FeedError, gc.CycleError, gc.UnknownOpError,
          gc.GradError, gc.GraphStateError, gc.NumericError]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: e.__name__)
def test_every_error_is_a_graph_error_with_node_line_and_fix(err: type[gc.GraphError]) -> None:
    with gc.Graph("e"):
        x = gc.input("x", (2,))
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    e = err("something is wrong", node=x.node, hint="do the right thing")
    assert isinstance(e, gc.GraphError)
    assert str(e).splitlines() == ["something is wrong", f"  at node {x.node.describe()}",
                                   f"  at {os.path.relpath(__file__)}:{line}", "  fix: do the right thing"]
    relocated = e.located("add(x, 1) at model.py:7")
    assert type(relocated) is err and relocated.node is x.node and "at add(x, 1) at model.py:7" in str(relocated)


def test_errors_are_also_the_matching_builtin_exceptions() -> None:
    """So code that catches ValueError / TypeError / KeyError keeps working."""
    assert issubclass(gc.ShapeError, ValueError) and issubclass(gc.FeedError, ValueError)
    assert issubclass(gc.ArgumentError, ValueError) and issubclass(gc.DTypeError, TypeError)
    assert issubclass(gc.UnknownOpError, KeyError) and issubclass(gc.NumericError, FloatingPointError)


# --- a failing step changes nothing --------------------------------------------------------------------


def _classifier(backend: Backend, momentum: float = 0.9, **options: object) -> gc.Program:
    with gc.Graph("clf"):
        x = gc.input("x", (4, 3))
        labels = gc.input("labels", (4,), dtype="int64")
        w = gc.param("w", (3, 2), init="linear")
        b = gc.param("b", (2,), init="zeros")
        loss = gc.cross_entropy(x @ w + b, labels)
    return backend.compile(loss, optimizer=gc.optim.SGD(lr=0.5, momentum=momentum), **options)


X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
GOOD = np.array([0, 1, 1, 0])


def _state(step: gc.Program) -> dict[int, bytes]:
    """Every value the program holds between calls (params and optimizer state), as raw bytes."""
    return {nid: to_numpy(v).tobytes() for nid, v in step._state.items()}


@pytest.mark.parametrize("bad", [
    dict(x=X, labels=np.array([0, 5, 1, 0])),  # a label out of range, found while the step runs
    dict(x=X, labels=GOOD, w=np.ones((2, 3))),  # a param fed with the wrong shape
    dict(x=X[:2], labels=GOOD),  # a feed of the wrong shape
    dict(x=X),  # a missing feed
], ids=["label_out_of_range", "param_wrong_shape", "feed_wrong_shape", "missing_feed"])
def test_a_failing_step_leaves_params_and_optimizer_state_bit_identical(backend: Backend, bad: dict) -> None:
    step, twin = _classifier(backend), _classifier(backend)
    step(x=X, labels=GOOD)
    twin(x=X, labels=GOOD)  # both now hold a non-zero velocity
    before = _state(step)
    assert any(name.endswith("__velocity") for name in step.plan.params)
    with pytest.raises(gc.GraphError):
        step(**bad)
    assert _state(step) == before
    # The program still works, and exactly as one that never failed.
    np.testing.assert_array_equal(to_numpy(step(x=X, labels=GOOD)), to_numpy(twin(x=X, labels=GOOD)))
    assert _state(step) == _state(twin)


def test_a_step_stopped_by_check_finite_changes_no_param() -> None:
    with gc.Graph("nan"):
        x = gc.input("x", (3,))
        w = gc.param("w", (3,), value=np.ones(3))
        loss = gc.sum(gc.log(x * w))
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1), check_finite=True)
    before = step.params["w"].copy()
    with pytest.raises(gc.NumericError, match="NaN or inf"):
        step(x=np.array([1.0, -1.0, 2.0]))
    np.testing.assert_array_equal(step.params["w"], before)


# --- a failing grad or DSL call changes no graph ----------------------------------------------------------


def _graph() -> tuple[gc.Graph, gc.Tensor, gc.Tensor, gc.Tensor]:
    with gc.Graph("g") as g:
        x = gc.input("x", (3, 2))
        w = gc.param("w", (2, 2))
        out = gc.log(gc.sigmoid(x @ w))  # a pattern the stability pass rewrites
    return g, x, w, out


def _snapshot(g: gc.Graph) -> tuple[int, str, list]:
    return len(g), str(g), sorted(g.nx.edges(keys=True))


@pytest.mark.parametrize("call", [
    lambda x, w, out: gc.grad(out, w),  # non-scalar without seed: raised after the stability pass ran
    lambda x, w, out: gc.grad(out, w, seed=np.ones(2)),  # seed of the wrong shape
    lambda x, w, out: gc.grad(out, [w, "w"]),  # not a Tensor
], ids=["no_seed", "seed_shape", "not_a_tensor"])
def test_a_failing_grad_leaves_the_graph_as_it_was(call) -> None:  # type: ignore[no-untyped-def]
    g, x, w, out = _graph()
    before = _snapshot(g)
    with pytest.raises(gc.GraphError):
        call(x, w, out)
    assert _snapshot(g) == before


def test_a_vjp_rule_failing_midway_leaves_the_graph_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    g, x, w, out = _graph()
    loss = gc.sum(out)
    before = _snapshot(g)

    def broken(ctx, grad):  # type: ignore[no-untyped-def]
        gc.transpose(ctx.inputs[0])  # adds a node, then fails
        raise gc.ShapeError("planted failure", node=ctx.node)

    monkeypatch.setitem(gc.OPS, "matmul", dataclasses.replace(gc.OPS["matmul"], vjp=broken))
    with pytest.raises(gc.ShapeError, match="planted failure"):
        gc.grad(loss, w)
    assert _snapshot(g) == before
    monkeypatch.undo()
    dw = gc.grad(loss, w)  # and the graph is still good for a real gradient
    assert dw.shape == (2, 2) and len(g) > before[0]


def test_a_rejected_op_adds_no_node() -> None:
    g, x, w, out = _graph()
    before = _snapshot(g)
    for bad in (lambda: x + np.ones(4), lambda: x @ x, lambda: gc.sum(x, axis=3), lambda: gc.clamp(x)):
        with pytest.raises(gc.GraphError):
            bad()
    assert _snapshot(g) == before


def test_a_failed_compile_leaves_the_graph_and_later_compiles_alone() -> None:
    g, x, w, out = _graph()
    before = _snapshot(g)
    with pytest.raises(gc.ArgumentError):
        gc.compile(out, backend="nope")
    assert _snapshot(g) == before  # compile works on a copy: not even the stability rewrite leaks
    got = gc.compile(out)(x=np.ones((3, 2)))
    np.testing.assert_allclose(got, -np.log1p(np.exp(-np.ones((3, 2)) @ gc.compile(w)())), rtol=1e-6)
