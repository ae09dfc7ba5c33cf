"""The Triton backend on a CUDA device: the lecture models against the oracle, IEEE vs TF32
products, CUDA-graph capture, autotuned tiles. Skips cleanly without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

import graphc as gc  # noqa: E402
from lecture_models import MODELS, feeds  # noqa: E402

triton_backend = pytest.importorskip("backends.triton")
pytestmark = pytest.mark.gpu


def test_runs_compiled_not_interpreted() -> None:
    assert not triton_backend.INTERPRET and triton_backend.DEVICE.type == "cuda"


@pytest.mark.parametrize("name", list(MODELS))
def test_lecture_models_match_the_oracle_on_the_gpu(name: str) -> None:
    build, lr, target = MODELS[name]
    loss = build()
    ref = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="numpy")
    gpu = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton")
    assert gpu.num_kernels <= target and "@triton.autotune" in gpu.source
    batch = feeds(name, np.random.default_rng(0))
    for _ in range(5):
        want, got = ref(**batch), gpu(**batch)
        assert got.device.type == "cuda"
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-4)
    for k, v in ref.params.items():
        np.testing.assert_allclose(gpu.params[k].cpu().numpy(), v, rtol=1e-3, atol=1e-5 * np.abs(v).max())


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 3, 100), (100, 1000, 3), (1000, 256, 120)])
@pytest.mark.parametrize("precision,rtol", [("ieee", 1e-5), ("tf32", 5e-3)])
def test_matmul_precision(m: int, k: int, n: int, precision: str, rtol: float) -> None:
    """IEEE fp32 products match float64 to fp32 rounding; TF32 (10-bit mantissa inputs) to about 1e-3."""
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    with gc.Graph("mm"):
        out = gc.input("a", (m, k)) @ gc.input("b", (k, n))
    got = gc.compile(out, backend="triton", precision=precision)(a=a, b=b).cpu().numpy()
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.sqrt(k)  # the size of a sum of k unit products
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def test_cuda_graph_step_equals_the_eager_step() -> None:
    build, lr, _ = MODELS["mlp"]
    loss = build()
    eager = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton")
    graphed = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton", cuda_graph=True)
    rng = np.random.default_rng(1)
    for _ in range(4):
        batch = feeds("mlp", rng)
        np.testing.assert_allclose(graphed(**batch).cpu().numpy(), eager(**batch).cpu().numpy(), rtol=1e-6)
    for k in eager.params:
        torch.testing.assert_close(graphed.params[k], eager.params[k], rtol=1e-6, atol=1e-7)


def test_nan_propagates_through_max_and_relu_on_the_gpu() -> None:
    x = np.array([[np.nan, 1.0, -2.0], [3.0, -1.0, 0.5]], dtype=np.float32)
    with gc.Graph("nan"):
        t = gc.input("x", x.shape)
        outs = [gc.max(t, axis=1), gc.relu(t), gc.maximum(t, 0.0), gc.softmax(t, axis=1)]
    got = [o.cpu().numpy() for o in gc.compile(outs, backend="triton")(x=x)]
    want = gc.compile(outs, backend="numpy")(x=x)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-6, equal_nan=True)
