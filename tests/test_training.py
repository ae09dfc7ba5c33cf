"""Training steps against PyTorch: the same model, the same initial weights, the same data,
step after step. The reference loops run in float64 (the exact trajectory); graphc runs the
models as declared (float32 params; one model mixes in float64 inputs), on every backend of
tests/conftest.py.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import graphc as gc
from conftest import Backend, to_numpy

torch = pytest.importorskip("torch")

RTOL = 2e-3  # on each step's loss and on the final weights (issue 2)


def params_of(step: gc.Program) -> dict[str, np.ndarray]:
    return {k: to_numpy(v) for k, v in step.params.items()}


def assert_weights_close(got: dict[str, np.ndarray], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for name, w in want.items():
        w = w.detach().numpy()
        # Elements near 0 have no meaningful relative error: atol is RTOL * 1e-3 of the largest weight.
        np.testing.assert_allclose(got[name], w, rtol=RTOL, atol=RTOL * 1e-3 * np.max(np.abs(w)), err_msg=name)


# --- the lecture's two-layer net ------------------------------------------------------------------

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LECTURE_LR = 1e-6


def lecture_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((N, D_IN)).astype(np.float32),
            "y": rng.standard_normal((N, D_OUT)).astype(np.float32),
            "w1": rng.standard_normal((D_IN, H)).astype(np.float32),
            "w2": rng.standard_normal((H, D_OUT)).astype(np.float32)}


def test_two_layer_net_sgd_trajectory_matches_a_pytorch_loop(backend: Backend) -> None:
    """N=64, 1000 -> 100 -> 10, relu as clamp(min=0), sum of squares, SGD lr 1e-6, as in the lecture.

    30 steps; 15 on an interpreted backend (Triton on a CPU spends about a quarter second a step
    in its interpreter, and the first 15 steps already cover the loss's rise and fall).
    """
    steps = 15 if backend.interpreted else 30
    d = lecture_data()
    with gc.Graph("two_layer"):
        x, y = gc.input("x", (N, D_IN)), gc.input("y", (N, D_OUT))
        w1 = gc.param("w1", (D_IN, H), value=d["w1"])
        w2 = gc.param("w2", (H, D_OUT), value=d["w2"])
        loss = gc.sum((x.mm(w1).clamp(min=0).mm(w2) - y) ** 2)
    step = backend.compile(loss, optimizer=gc.optim.SGD(lr=LECTURE_LR))
    losses = [float(to_numpy(step(x=d["x"], y=d["y"]))) for _ in range(steps)]

    # The lecture's PyTorch loop, verbatim but for the dtype.
    tx, ty = (torch.tensor(d[k], dtype=torch.float64) for k in ("x", "y"))
    tw1, tw2 = (torch.tensor(d[k], dtype=torch.float64, requires_grad=True) for k in ("w1", "w2"))
    want = []
    for _ in range(steps):
        t_loss = (tx.mm(tw1).clamp(min=0).mm(tw2) - ty).pow(2).sum()
        want.append(t_loss.item())
        t_loss.backward()
        with torch.no_grad():
            for w in (tw1, tw2):
                w -= LECTURE_LR * w.grad
                w.grad.zero_()
    np.testing.assert_allclose(losses, want, rtol=RTOL)
    assert want[-1] < want[0] / 10  # a trajectory that goes somewhere
    assert_weights_close(params_of(step), {"w1": tw1, "w2": tw2})


# --- a small net under torch.optim ------------------------------------------------------------------

BATCH, FEATURES, HIDDEN, CLASSES = 16, 8, 12, 3


def small_net(kind: str) -> tuple[gc.Tensor, list[gc.nn.Linear]]:
    """Two Linear layers with tanh between; a regression (mse) or a classification (cross-entropy) head."""
    with gc.Graph(f"small_{kind}"):
        x = gc.input("x", (BATCH, FEATURES))
        fc1, fc2 = gc.nn.Linear("fc1", FEATURES, HIDDEN, seed=10), gc.nn.Linear("fc2", HIDDEN, CLASSES, seed=20)
        out = fc2(gc.tanh(fc1(x)))
        if kind == "mse":
            loss = gc.mse_loss(out, gc.input("y", (BATCH, CLASSES)))
        else:
            loss = gc.cross_entropy(out, gc.input("labels", (BATCH,), dtype="int64"))
    return loss, [fc1, fc2]


def torch_small_net(layers: list[gc.nn.Linear], kind: str) -> tuple[Callable[..., Any], list[Any]]:
    """The same model in torch, from graphc's initial values (graphc stores Linear weights as (in, out))."""
    params = [torch.tensor(p.node.value, dtype=torch.float64, requires_grad=True)
              for layer in layers for p in layer.params]
    w1, b1, w2, b2 = params
    loss_fn = torch.nn.functional.mse_loss if kind == "mse" else torch.nn.functional.cross_entropy

    def loss(x: Any, target: Any) -> Any:
        return loss_fn(torch.tanh(x @ w1 + b1) @ w2 + b2, target)

    return loss, params


def small_data(seed: int, n: int = BATCH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, FEATURES)).astype(np.float32),
            "y": rng.standard_normal((n, CLASSES)).astype(np.float32),
            "labels": rng.integers(0, CLASSES, n).astype(np.int64)}


def torch_target(feeds: dict[str, np.ndarray], kind: str) -> Any:
    return torch.tensor(feeds["y"], dtype=torch.float64) if kind == "mse" else torch.tensor(feeds["labels"])


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.9, 0.01), (0.0, 0.01)])
def test_sgd_matches_torch_optim(backend: Backend, kind: str, momentum: float, weight_decay: float) -> None:
    """gc.optim.SGD against torch.optim.SGD: p <- p - lr * v, v <- momentum * v + g + weight_decay * p.

    30 steps; 10 on an interpreted backend, where each step launches its kernels in Triton's interpreter.
    """
    steps, lr = (10 if backend.interpreted else 30), 0.1
    loss, layers = small_net(kind)
    step = backend.compile(loss, optimizer=gc.optim.SGD(lr=lr, momentum=momentum, weight_decay=weight_decay))
    t_loss, t_params = torch_small_net(layers, kind)
    opt = torch.optim.SGD(t_params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    feeds = small_data(0)
    feeds = {"x": feeds["x"], **({"y": feeds["y"]} if kind == "mse" else {"labels": feeds["labels"]})}
    tx, target = torch.tensor(feeds["x"], dtype=torch.float64), torch_target(feeds, kind)
    losses, want = [], []
    for _ in range(steps):
        losses.append(float(to_numpy(step(**feeds))))
        opt.zero_grad()
        value = t_loss(tx, target)
        value.backward()
        opt.step()
        want.append(value.item())
    np.testing.assert_allclose(losses, want, rtol=RTOL)
    assert want[-1] < want[0]  # the trajectory goes somewhere
    names = [p.name for layer in layers for p in layer.params]
    assert_weights_close(params_of(step), dict(zip(names, t_params)))


def test_minibatch_fit_matches_torch_over_the_same_batches(backend: Backend) -> None:
    """gc.train.fit over gc.data.minibatches: 3 epochs of 4 shuffled batches, as a torch loop over the same batches."""
    loss, layers = small_net("cross_entropy")
    step = backend.compile(loss, optimizer=gc.optim.SGD(lr=0.2, momentum=0.5))
    data = small_data(1, n=4 * BATCH)
    arrays = {"x": data["x"], "labels": data["labels"]}
    history = gc.train.fit(step, arrays, epochs=3, batch_size=BATCH, seed=5)
    t_loss, t_params = torch_small_net(layers, "cross_entropy")
    opt = torch.optim.SGD(t_params, lr=0.2, momentum=0.5)
    want = []
    for epoch in range(3):
        batch_losses = []
        for feeds in gc.data.minibatches(arrays, BATCH, shuffle=True, seed=5 + epoch):
            opt.zero_grad()
            value = t_loss(torch.tensor(feeds["x"], dtype=torch.float64), torch.tensor(feeds["labels"]))
            value.backward()
            opt.step()
            batch_losses.append(value.item())
        want.append(float(np.mean(batch_losses)))
    np.testing.assert_allclose(history, want, rtol=RTOL)
    names = [p.name for layer in layers for p in layer.params]
    assert_weights_close(params_of(step), dict(zip(names, t_params)))


def test_float32_params_stay_float32_in_a_float64_graph(backend: Backend) -> None:
    """A float32 param feeding float64 inputs: the step computes in float64, but the param and its
    momentum buffer keep float32, as in torch (whose gradient takes the param's dtype)."""
    rng = np.random.default_rng(4)
    xv, yv = rng.standard_normal((BATCH, FEATURES)), rng.standard_normal((BATCH, 1))
    w0 = rng.standard_normal((FEATURES, 1)).astype(np.float32)
    with gc.Graph("mixed_precision"):
        x, y = gc.input("x", (BATCH, FEATURES), dtype="float64"), gc.input("y", (BATCH, 1), dtype="float64")
        w = gc.param("w", (FEATURES, 1), value=w0)
        loss = gc.mse_loss(x @ w, y)
    assert loss.dtype == "float64"
    step = backend.compile(loss, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9))
    tw = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.SGD([tw], lr=0.1, momentum=0.9)
    tx, ty = torch.tensor(xv), torch.tensor(yv)
    for _ in range(5):
        value = to_numpy(step(x=xv, y=yv))
        opt.zero_grad()
        t_loss = torch.nn.functional.mse_loss(tx @ tw.double(), ty)
        t_loss.backward()
        opt.step()
        assert value.dtype == np.float64
        np.testing.assert_allclose(value, t_loss.item(), rtol=1e-6)
    w_v = to_numpy(step.params["w"])
    assert w_v.dtype == np.float32 and tw.dtype == torch.float32
    np.testing.assert_allclose(w_v, tw.detach().numpy(), rtol=1e-6, atol=1e-7)
