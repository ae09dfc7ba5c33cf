"""Every lecture example runs and reaches the numbers the lecture states."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sum_times_gives_the_lecture_gradients() -> None:
    assert load("autograd_basics").sum_times() == {"f": -12.0, "dx": -4.0, "dy": -4.0, "dz": 3.0}


def test_quadratic_with_ones_seed_gives_13() -> None:
    np.testing.assert_array_equal(load("autograd_basics").quadratic(), np.full((2, 2), 13.0))


def test_two_layer_net_trains_for_500_steps() -> None:
    losses = load("two_layer_net").train(steps=500)
    assert losses[0] > 1e6  # random N(0,1) weights: a huge initial loss, as in the lecture
    assert all(b < a for a, b in zip(losses[:50], losses[1:51]))  # falls monotonically at first
    assert losses[-1] < 1e-2


def test_linear_regression_fits_the_parabola() -> None:
    losses, fitted = load("linear_regression").train(steps=200)
    assert losses[-1] < 0.01 < losses[0]
    x, y = load("linear_regression").data()
    assert np.mean((fitted - y) ** 2) == pytest.approx(losses[-1], rel=0.2)


def test_logistic_regression_separates_the_blobs() -> None:
    losses, accuracy = load("logistic_regression").train(steps=300)
    assert losses[0] == pytest.approx(np.log(2), rel=1e-5)  # zero weights: p = 1/2 everywhere
    assert losses[-1] < 0.1 and accuracy > 0.95


def test_logistic_regression_minibatch_sgd() -> None:
    losses, accuracy = load("logistic_regression").train(steps=20, batch_size=50)
    assert losses[-1] < 0.1 and accuracy > 0.95


def test_mlp_256_cross_entropy_falls_from_chance() -> None:
    losses = load("mlp_256").train(steps=200)
    assert losses[0] == pytest.approx(np.log(10), abs=0.3)
    assert losses[-1] < losses[0] - 0.3
