"""Reverse mode on worked examples: the lecture's numbers, PyTorch's conventions at kinks,
finite gradients at extremes, accumulation, seeds, targets anywhere in the graph, and
gradients of gradients. Every test runs on each backend of tests/conftest.py.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest

import graphc as gc
from conftest import Backend, to_numpy

torch = pytest.importorskip("torch")


def run(backend: Backend, outputs: Sequence[gc.Tensor], **feeds: Any) -> list[np.ndarray]:
    """Compile `outputs` on `backend`, call it once with `feeds`, and return NumPy arrays."""
    return [to_numpy(v) for v in backend.compile(list(outputs))(**feeds)]


# --- the lecture's worked examples ------------------------------------------------------------


def test_lecture_sum_times(backend: Backend) -> None:
    """f = (x + y) * z at x=-2, y=5, z=-4: f = -12, df/dx = df/dy = z = -4, df/dz = x + y = 3."""
    with gc.Graph("sum_times"):
        x, y, z = (gc.input(n, ()) for n in "xyz")
        f = (x + y) * z
    outs = run(backend, [f, *gc.grad(f, [x, y, z])], x=-2.0, y=5.0, z=-4.0)
    assert [float(v) for v in outs] == [-12.0, -4.0, -4.0, 3.0]


def test_lecture_quadratic_with_a_ones_seed(backend: Backend) -> None:
    """z = 2x^2 + 5x at x = 2, backpropagated from a ones seed: dz/dx = 4x + 5 = 13 everywhere."""
    with gc.Graph("quadratic"):
        x = gc.input("x", (2, 2))
        z = 2 * x ** 2 + 5 * x
        dx = gc.grad(z, x, seed=np.ones((2, 2)))
    z_v, dx_v = run(backend, [z, dx], x=np.full((2, 2), 2.0))
    np.testing.assert_array_equal(z_v, np.full((2, 2), 18.0))
    np.testing.assert_array_equal(dx_v, np.full((2, 2), 13.0))


# --- PyTorch's conventions at kinks ------------------------------------------------------------


ZERO = torch.tensor(0.0)

KINKS = {  # name: (graphc, torch, points, the gradient PyTorch's convention gives there)
    "relu": (gc.relu, torch.relu, [-1.0, 0.0, 2.0], [0.0, 0.0, 1.0]),  # relu'(0) = 0
    "abs": (gc.abs, torch.abs, [-1.0, 0.0, 2.0], [-1.0, 0.0, 1.0]),  # abs'(0) = 0
    # clamp passes the gradient on its bounds
    "clamp(min=0)": (lambda x: x.clamp(min=0), lambda t: t.clamp(min=0), [-1.0, 0.0, 2.0], [0.0, 1.0, 1.0]),
    "clamp(-1,1)": (lambda x: gc.clamp(x, -1, 1), lambda t: t.clamp(-1, 1), [-1.0, 0.5, 1.0], [1.0, 1.0, 1.0]),
    # ties split the gradient
    "maximum": (lambda x: gc.maximum(x, 0.0), lambda t: torch.maximum(t, ZERO), [-1.0, 0.0, 2.0], [0.0, 0.5, 1.0]),
    "minimum": (lambda x: gc.minimum(x, 0.0), lambda t: torch.minimum(t, ZERO), [-1.0, 0.0, 2.0], [1.0, 0.5, 0.0]),
    "max": (gc.max, torch.amax, [3.0, 1.0, 3.0], [0.5, 0.0, 0.5]),
}


@pytest.mark.parametrize("name", KINKS)
def test_gradient_at_kinks_follows_pytorch(backend: Backend, name: str) -> None:
    build, torch_fn, at, want = KINKS[name]
    with gc.Graph("kink"):
        x = gc.input("x", (3,))
        dx = gc.grad(gc.sum(build(x)), x)
    (got,) = run(backend, [dx], x=np.array(at))
    t = torch.tensor(at, requires_grad=True)
    torch_fn(t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), want)  # the convention, as torch states it
    np.testing.assert_array_equal(got, want)


# --- finite gradients where the forward is finite -------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_and_sigmoid_gradients_stay_finite_at_extremes(backend: Backend, dtype: str) -> None:
    at = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with gc.Graph("extremes"):
        x = gc.input("x", (5,), dtype=dtype)
        sp_, sg = gc.softplus(x), gc.sigmoid(x)
        d_sp = gc.grad(gc.sum(sp_), x)
        d_sg = gc.grad(gc.sum(sg), x)
    sp_v, sg_v, d_sp_v, d_sg_v = run(backend, [sp_, sg, d_sp, d_sg], x=at)
    for v in (sp_v, sg_v, d_sp_v, d_sg_v):
        assert np.all(np.isfinite(v)), v
    np.testing.assert_allclose(sp_v, [0.0, 0.0, np.log(2), 100.0, 1000.0], atol=1e-6)
    np.testing.assert_allclose(d_sp_v, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-30)  # softplus' = sigmoid
    np.testing.assert_allclose(sg_v, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-30)
    np.testing.assert_allclose(d_sg_v, [0.0, 0.0, 0.25, 0.0, 0.0], atol=1e-30)  # s * (1 - s)


def test_log_softmax_on_logits_of_1e4(backend: Backend) -> None:
    """Naive exp(1e4) overflows; the graph's log_softmax and its gradient stay exact."""
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]], dtype=np.float32)
    with gc.Graph("big_logits"):
        z = gc.input("z", (2, 3))
        ls = gc.log_softmax(z, axis=1)
        dz = gc.grad(gc.sum(ls), z)
    ls_v, dz_v = run(backend, [ls, dz], z=logits)
    np.testing.assert_allclose(ls_v, [[0.0, -1e4, -2e4], [-np.log(2), -np.log(2), -1e4 - np.log(2)]], rtol=1e-6)
    # d/dz sum(log_softmax(z)) = 1 - n * softmax(z), with n = 3 classes
    np.testing.assert_allclose(dz_v, [[-2.0, 1.0, 1.0], [-0.5, -0.5, 1.0]], rtol=1e-6)


def test_log_of_softmax_is_rewritten_to_log_softmax(backend: Backend) -> None:
    logits = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    with gc.Graph("log_of_softmax"):
        z = gc.input("z", (1, 3))
        y = gc.sum(gc.log(gc.softmax(z)))
        dz = gc.grad(y, z)
    y_v, dz_v = run(backend, [y, dz], z=logits)
    np.testing.assert_allclose(y_v, -3e4, rtol=1e-6)
    np.testing.assert_allclose(dz_v, [[-2.0, 1.0, 1.0]], rtol=1e-6)


def test_lecture_logistic_cost_written_naively_has_the_textbook_gradient(backend: Backend) -> None:
    """-mean(y log s + (1-y) log(1-s)), s = sigmoid(z): dJ/dz = (s - y) / m, without NaN at |z| = 60.

    In float32 sigmoid(60) rounds to 1, so log(1 - s) would be -inf and its gradient NaN; the
    stability rewrites turn both logs into softplus before differentiating.
    """
    z_v = np.array([-60.0, -60.0, -1.0, 0.0, 2.0, 60.0, 60.0], dtype=np.float32)
    y_v = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=np.float32)
    with gc.Graph("logistic"):
        z, y = gc.input("z", (7,)), gc.input("y", (7,))
        s = gc.sigmoid(z)
        cost = -gc.mean(y * gc.log(s) + (1 - y) * gc.log(1 - s))
        dz = gc.grad(cost, z)
    cost_v, dz_v = run(backend, [cost, dz], z=z_v, y=y_v)
    assert np.isfinite(cost_v) and np.all(np.isfinite(dz_v))
    z64, y64 = z_v.astype(np.float64), y_v.astype(np.float64)
    sig = 1 / (1 + np.exp(-z64))
    np.testing.assert_allclose(dz_v, (sig - y64) / len(z64), rtol=1e-5, atol=1e-9)
    want_cost = np.mean(np.logaddexp(0, z64) - y64 * z64)  # the same cost, computed stably
    np.testing.assert_allclose(cost_v, want_cost, rtol=1e-5)


# --- accumulation, targets and seeds ---------------------------------------------------------------


def test_gradients_accumulate_over_every_use(backend: Backend) -> None:
    """x * x is two edges from x: d/dx = x + x. A value used by three consumers sums three parts."""
    xv = np.array([-1.5, 0.5, 2.0], dtype=np.float32)
    with gc.Graph("reuse"):
        x = gc.input("x", (3,))
        sq = x * x
        y = gc.sum(sq * 3.0 + gc.exp(sq) + sq)  # sq used three times, x twice
        d_sq, dx = gc.grad(gc.sum(x * x), x), gc.grad(y, x)
    d_sq_v, dx_v = run(backend, [d_sq, dx], x=xv)
    np.testing.assert_allclose(d_sq_v, 2 * xv, rtol=1e-6)
    np.testing.assert_allclose(dx_v, (3 + np.exp(xv ** 2) + 1) * 2 * xv, rtol=1e-5)


def test_grad_with_respect_to_inputs_params_and_intermediates(backend: Backend) -> None:
    """Targets may be inputs, params or any intermediate value, and one may lie below another."""
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((4, 3)).astype(np.float32)
    wv = rng.standard_normal((3, 2)).astype(np.float32)
    bv = rng.standard_normal((2,)).astype(np.float32)
    with gc.Graph("targets"):
        x = gc.input("x", (4, 3))
        w = gc.param("w", (3, 2), value=wv)
        b = gc.param("b", (2,), value=bv)
        h = x @ w + b
        loss = gc.sum(gc.tanh(h) ** 2)
        grads = gc.grad(loss, [x, w, b, h])
    got = run(backend, list(grads), x=xv)
    tx, tw, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (xv, wv, bv))
    th = tx @ tw + tb
    th.retain_grad()
    (torch.tanh(th) ** 2).sum().backward()
    for g, t in zip(got, (tx.grad, tw.grad, tb.grad, th.grad)):
        assert g.shape == tuple(t.shape) and g.dtype == np.float32
        np.testing.assert_allclose(g, t.numpy(), rtol=backend.rtol32_matmul, atol=1e-6)


def test_params_fed_by_name_replace_stored_values(backend: Backend) -> None:
    with gc.Graph("fed_param"):
        x = gc.input("x", (3,))
        w = gc.param("w", (3,), value=np.ones(3))
        y = gc.sum(w * x ** 2)
        dw = gc.grad(y, w)
    f = backend.compile([y, dw])
    xv = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    y1, dw1 = (to_numpy(v) for v in f(x=xv))
    y2, dw2 = (to_numpy(v) for v in f(x=xv, w=np.array([2.0, 0.0, 1.0])))
    assert float(y1) == 14.0 and float(y2) == 11.0
    np.testing.assert_array_equal(dw1, xv ** 2)
    np.testing.assert_array_equal(dw2, xv ** 2)


@pytest.mark.parametrize("kind", ["array", "tensor", "scalar"])
def test_seed_scales_the_gradient(backend: Backend, kind: str) -> None:
    """grad(y, x, seed=s) is d(s . y)/dx: the seed may be an array, a graph tensor or a number."""
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((2, 3)).astype(np.float32)
    sv = rng.standard_normal((2, 3)).astype(np.float32)
    feeds: dict[str, np.ndarray] = {"x": xv}
    with gc.Graph("seeded"):
        x = gc.input("x", (2, 3))
        if kind == "scalar":
            y, seed = gc.sum(gc.tanh(x)), 2.5
        else:
            y = gc.tanh(x)
            seed = sv if kind == "array" else gc.input("s", (2, 3))
        dx = gc.grad(y, x, seed=seed)
    if kind == "tensor":
        feeds["s"] = sv
    (got,) = run(backend, [dx], **feeds)
    scale = 2.5 if kind == "scalar" else sv
    np.testing.assert_allclose(got, scale * (1 - np.tanh(xv.astype(np.float64)) ** 2), rtol=1e-5, atol=1e-7)


def test_gradient_is_linear_in_the_seed(backend: Backend) -> None:
    """d((a s1 + b s2) . y)/dx = a d(s1 . y)/dx + b d(s2 . y)/dx: the backward pass is a linear map."""
    rng = np.random.default_rng(2)
    xv, s1, s2 = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3))
    with gc.Graph("linear_in_seed"):
        x = gc.input("x", (3, 4))
        y = gc.softmax(x * gc.sigmoid(x), axis=1)
        seeds = [gc.input(f"s{i}", (3, 4)) for i in range(3)]
        d = [gc.grad(y, x, seed=s) for s in seeds]
    d1, d2, d12 = run(backend, d, x=xv, s0=s1, s1=s2, s2=2 * s1 - 3 * s2)
    np.testing.assert_allclose(d12, 2 * d1 - 3 * d2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("other", ["int64", "bool"])
def test_integer_operands_keep_a_float32_model_float32(backend: Backend, other: str) -> None:
    """float32 * int64 is float32, as in torch: the loss, the gradient and the trained param keep
    the param's dtype (NumPy's rule, float64, would turn the model into float64 after one step)."""
    mask = np.array([1, 0, 3]).astype(other)
    with gc.Graph("mixed"):
        m = gc.input("m", (3,), dtype=other)
        w = gc.param("w", (3,), value=np.ones(3))
        loss = gc.sum(w * w * m)
        dw = gc.grad(loss, w)
    t_dtype = torch.result_type(torch.ones(3), torch.as_tensor(mask))
    assert loss.dtype == dw.dtype == str(t_dtype).removeprefix("torch.") == "float32"
    step = backend.compile(loss, optimizer=gc.optim.SGD(lr=0.25))
    for _ in range(2):
        value = to_numpy(step(m=mask))
    w_v = to_numpy(step.params["w"])
    assert value.dtype == w_v.dtype == np.float32
    # w <- w - 0.25 * 2 w m = w (1 - m / 2), twice
    np.testing.assert_array_equal(w_v, (1 - mask.astype(np.float32) / 2) ** 2)


# --- gradients are graphs: gradients of gradients ---------------------------------------------------


def test_second_order_gradient_of_a_smooth_op(backend: Backend) -> None:
    """d/dx sum(d/dx sum(tanh(x))) = -2 tanh(x) (1 - tanh(x)^2), as torch's create_graph gives."""
    xv = np.array([-2.0, -0.3, 0.0, 0.7, 1.5], dtype=np.float32)
    with gc.Graph("second_order"):
        x = gc.input("x", (5,))
        g = gc.grad(gc.sum(gc.tanh(x)), x)
        h = gc.grad(gc.sum(g), x)
    g_v, h_v = run(backend, [g, h], x=xv)
    t = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.tanh(t).sum(), t, create_graph=True)
    (th,) = torch.autograd.grad(tg.sum(), t)
    np.testing.assert_allclose(g_v, tg.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h_v, th.numpy(), rtol=1e-5, atol=1e-7)


def test_hessian_vector_product_through_matmul(backend: Backend) -> None:
    """Second order through structural ops: H v for f(w) = sum(sigmoid(x @ w)), against torch."""
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((5, 3)).astype(np.float32)
    wv = rng.standard_normal((3, 2)).astype(np.float32)
    vv = rng.standard_normal((3, 2)).astype(np.float32)
    with gc.Graph("hvp"):
        x, w, v = gc.input("x", (5, 3)), gc.input("w", (3, 2)), gc.input("v", (3, 2))
        g = gc.grad(gc.sum(gc.sigmoid(x @ w)), w)
        hv = gc.grad(gc.sum(g * v), w)
    (hv_v,) = run(backend, [hv], x=xv, w=wv, v=vv)
    tx, tv = torch.tensor(xv, dtype=torch.float64), torch.tensor(vv, dtype=torch.float64)
    tw = torch.tensor(wv, dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.sigmoid(tx @ tw).sum(), tw, create_graph=True)
    (thv,) = torch.autograd.grad((tg * tv).sum(), tw)
    np.testing.assert_allclose(hv_v, thv.numpy(), rtol=backend.rtol32_matmul * 10, atol=1e-5)


def test_third_derivative_of_a_power(backend: Backend) -> None:
    """d^3/dx^3 x^4 = 24 x: sympy differentiates the fn nodes grad made, again and again."""
    with gc.Graph("third"):
        x = gc.input("x", (3,))
        d = x ** 4
        for _ in range(3):
            d = gc.grad(gc.sum(d), x)
    xv = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    (d_v,) = run(backend, [d], x=xv)
    np.testing.assert_allclose(d_v, 24 * xv, rtol=1e-6)


def test_grad_adds_gradient_nodes_to_the_same_graph() -> None:
    with gc.Graph("same_graph") as g:
        x = gc.input("x", (3,))
        y = gc.sum(gc.exp(x))
    before = len(g)
    dx = gc.grad(y, x)
    assert dx.graph is g and len(g) > before
    new = [g.node(n) for n in range(before, g._next) if n in g]
    assert new and all(n.role == "grad" for n in new)
    assert {n.role for n in g.nodes() if n.id < before} == {"forward"}
