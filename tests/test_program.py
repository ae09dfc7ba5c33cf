"""Program semantics: feeds by name, fed params, single vs tuple results."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def _model() -> tuple[gc.Tensor, gc.Tensor, gc.Tensor]:
    with gc.Graph("fit") as g:
        x = gc.input("x", (4, 3))
        y = gc.input("y", (4, 1))
        w = gc.param("w", (3, 1), value=np.ones((3, 1)))
        pred = x @ w
        loss = gc.mse_loss(pred, y)
    return pred, loss, w


def test_a_program_ignores_declared_inputs_it_does_not_read() -> None:
    pred, _, _ = _model()
    f = gc.compile(pred)
    out = f(x=np.ones((4, 3)), y=np.zeros((4, 1)))  # y is the training target; pred does not read it
    np.testing.assert_allclose(out, np.full((4, 1), 3.0))
    with pytest.raises(gc.FeedError, match="unknown feed 'z'"):
        f(x=np.ones((4, 3)), z=1.0)


def test_a_fed_param_is_used_for_that_call_only() -> None:
    pred, _, _ = _model()
    f = gc.compile(pred)
    np.testing.assert_allclose(f(x=np.ones((4, 3)), w=np.zeros((3, 1))), np.zeros((4, 1)))
    np.testing.assert_allclose(f(x=np.ones((4, 3))), np.full((4, 1), 3.0))
    np.testing.assert_array_equal(f.params["w"], np.ones((3, 1)))


def test_a_training_step_fed_a_param_trains_from_it() -> None:
    _, loss, _ = _model()
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1))
    x, y = np.ones((4, 3)), np.zeros((4, 1))
    step(x=x, y=y, w=np.zeros((3, 1)))  # zero prediction, zero error: the update keeps zeros
    np.testing.assert_array_equal(step.params["w"], np.zeros((3, 1)))


def test_one_tensor_in_one_result_out_sequence_gives_tuple() -> None:
    pred, loss, _ = _model()
    feeds = {"x": np.ones((4, 3)), "y": np.zeros((4, 1))}
    assert isinstance(gc.compile(loss)(**feeds), np.ndarray)
    both = gc.compile([loss, pred])(**feeds)
    assert isinstance(both, tuple) and len(both) == 2
    assert float(both[0]) == pytest.approx(9.0)
