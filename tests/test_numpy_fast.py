"""The NumPy backend's generated fast path against its node-by-node interpreter (the oracle)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from backends.numpy_ref import NumpyExecutable
from backends.numpy_ref.fast import FastExecutable, clear_cache, signature
from graphc.bench.workloads import WORKLOADS, Workload, batch, graphc_loss, initial_params

import fuzzgraphs as fz

# A W4 with the same structure at a size the test suite can afford.
SMALL_W4 = dataclasses.replace(WORKLOADS["W4"], key="W4s", sizes=(78, 64, 64, 10), batch=32)
MODELS = [WORKLOADS["W1"], WORKLOADS["W2"], WORKLOADS["W3"], SMALL_W4]


def _grads_program(w: Workload, **options: object) -> gc.Program:
    loss = graphc_loss(w, initial_params(w))
    params = [gc.Tensor(loss.graph, n.id) for n in loss.graph.by_name("param").values()]
    return gc.compile([loss, *gc.grad(loss, params)], backend="numpy", **options)


@pytest.mark.parametrize("w", MODELS, ids=lambda w: w.key)
def test_lecture_models_loss_and_grads_match_the_interpreter(w: Workload) -> None:
    data = batch(w)
    fast, interp, f64 = (_grads_program(w, **o) for o in ({}, {"fast": False}, {"dtype": "float64"}))
    assert isinstance(fast.executable, FastExecutable)
    assert isinstance(interp.executable, NumpyExecutable) and isinstance(f64.executable, NumpyExecutable)
    got, ref, exact = fast(**data), interp(**data), f64(**data)
    for g, r, e in zip(got, ref, exact, strict=True):
        assert g.dtype == np.float32 and g.shape == r.shape
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("w", MODELS, ids=lambda w: w.key)
def test_lecture_models_train_like_the_interpreter(w: Workload) -> None:
    data, params = batch(w), initial_params(w)
    steps = [gc.compile(graphc_loss(w, params), optimizer=gc.optim.SGD(lr=w.lr, momentum=0.9), backend="numpy",
                        **o) for o in ({}, {"fast": False})]
    for _ in range(3):
        fast_loss, ref_loss = (float(s(**data)) for s in steps)
        assert fast_loss == pytest.approx(ref_loss, rel=1e-5)
    for name, value in steps[1].params.items():
        np.testing.assert_allclose(steps[0].params[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_source_is_one_function_with_views_and_buffers() -> None:
    step = gc.compile(graphc_loss(WORKLOADS["W2"], initial_params(WORKLOADS["W2"])),
                      optimizer=gc.optim.SGD(lr=0.01))
    src = step.source
    assert src.startswith("def program(x, y, w1, b1, w2, b2, w3, b3):")
    assert "w3.T" in src and "transpose(" not in src  # matmul operands are transposed views
    writes = re.findall(r"out=(_buf\d+)", src)
    assert len(writes) >= 12  # matmuls and pointwise regions write preallocated buffers ...
    assert len(set(writes)) <= len(writes) - 6  # ... reused once the value and its views are dead
    assert "broadcast_to" not in src  # the loss seed's broadcasts folded into numbers
    interp = gc.compile(graphc_loss(WORKLOADS["W2"], initial_params(WORKLOADS["W2"])),
                        optimizer=gc.optim.SGD(lr=0.01), fast=False)
    assert step.num_kernels < interp.num_kernels  # fused regions and free views


def test_outputs_do_not_alias_buffers_between_calls() -> None:
    with gc.Graph("alias") as _:
        x = gc.input("x", (3, 4))
        w = gc.param("w", (4, 2))
        h = x @ w
    f = gc.compile([h, gc.relu(h) @ gc.transpose(w)], backend="numpy")
    first = [np.array(v) for v in f(x=np.ones((3, 4), np.float32))]
    kept = f(x=np.ones((3, 4), np.float32))
    f(x=np.full((3, 4), 5, np.float32))
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)


def test_feeds_are_not_modified_and_params_are_copied() -> None:
    with gc.Graph("nomod") as _:
        x = gc.input("x", (2, 2))
        w = gc.param("w", (2, 2), value=np.eye(2))
        loss = gc.sum(x @ w)
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.5))
    xv, wv = np.ones((2, 2), np.float32), np.eye(2, dtype=np.float32)
    step(x=xv, w=wv)
    np.testing.assert_array_equal(xv, np.ones((2, 2)))
    np.testing.assert_array_equal(wv, np.eye(2))


def test_one_hot_out_of_range_names_the_node() -> None:
    with gc.Graph("labels") as _:
        logits = gc.input("logits", (2, 3))
        y = gc.input("y", (2,), dtype="int64")
        loss = gc.cross_entropy(logits, y)
    f = gc.compile(loss)
    with pytest.raises(gc.NumericError, match="out of range"):
        f(logits=np.zeros((2, 3), np.float32), y=np.array([0, 3]))


def test_codegen_cache_hits_on_a_new_graph_of_the_same_model_with_fresh_buffers() -> None:
    clear_cache()
    w = WORKLOADS["W2"]
    # Built on one line: error messages quote the user's source line, so it is part of the key.
    a, b = (gc.compile(graphc_loss(w, initial_params(w, seed=s)), optimizer=gc.optim.SGD(lr=w.lr)) for s in (1, 2))
    assert signature(a.plan) == signature(b.plan) and a.source == b.source
    assert a.executable._fn.__globals__["_buf0"] is not b.executable._fn.__globals__["_buf0"]
    data = batch(w)
    assert float(a(**data)) != float(b(**data))  # different weights, so the cache did not share state


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=fz.graph_specs(max_steps=6), seed=st.integers(0, 2**16))
def test_random_graphs_match_the_interpreter(spec: fz.GraphSpec, seed: int) -> None:
    built = fz.build(spec)
    outs = built.outputs
    ref_prog = gc.compile(outs, backend="numpy", dtype="float64")
    rng = np.random.default_rng(seed)
    for _ in range(fz.MAX_DRAWS):
        feeds = fz.draw_feeds(built, rng)
        ref = [np.asarray(v) for v in fz.call(ref_prog, feeds)]
        if fz.redraw_reason(built, feeds, ref) is None:
            break
    else:
        return  # no fair draw: the fuzz suite counts these
    fast = fz.call(gc.compile(outs, backend="numpy"), feeds)
    interp = fz.call(gc.compile(outs, backend="numpy", fast=False), feeds)
    labels = built.labels()
    assert not fz.mismatches(labels, interp, fast, 1e-5)
    assert not fz.mismatches(labels, ref, fast, fz.TOL_F32)
    # Asked for the sinks only, intermediates live in reused buffers (outputs never do).
    sinks = built.sinks
    fast_sinks = fz.call(gc.compile(sinks, backend="numpy"), feeds)
    interp_sinks = fz.call(gc.compile(sinks, backend="numpy", fast=False), feeds)
    assert not fz.mismatches([t.name for t in sinks], interp_sinks, fast_sinks, 1e-5)
