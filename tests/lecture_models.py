"""The lecture's three models, shared by the fusion, Triton and golden-file tests."""

from __future__ import annotations

from typing import Callable

import numpy as np

import graphc as gc


def two_layer(n: int = 64, d_in: int = 1000, h: int = 100, d_out: int = 10) -> gc.Tensor:
    """The lecture's autograd example: relu via clamp(min=0), sum of squares."""
    with gc.Graph("two_layer"):
        x = gc.input("x", (n, d_in))
        y = gc.input("y", (n, d_out))
        w1 = gc.param("w1", (d_in, h), seed=1)
        w2 = gc.param("w2", (h, d_out), seed=2)
        return gc.sum((x.mm(w1).clamp(min=0).mm(w2) - y) ** 2)


def lenet_head(n: int = 64) -> gc.Tensor:
    """The lecture's 256 -> 120 -> 84 -> 10 classifier head: biases, ReLU, cross-entropy on int64 labels."""
    with gc.Graph("mlp"):
        x = gc.input("x", (n, 256))
        labels = gc.input("labels", (n,), dtype="int64")
        h = x
        for i, (a, b) in enumerate([(256, 120), (120, 84), (84, 10)]):
            w = gc.param(f"w{i + 1}", (a, b), init="linear", seed=10 + i)
            bias = gc.param(f"b{i + 1}", (b,), init="linear", seed=20 + i)
            h = h @ w + bias
            if i < 2:
                h = gc.relu(h)
        return gc.cross_entropy(h, labels)


def logistic(n: int = 100, d: int = 3, with_logits: bool = False) -> gc.Tensor:
    """Logistic regression, full batch: sigmoid + binary cross-entropy (or the fused logits form)."""
    with gc.Graph("logistic"):
        x = gc.input("x", (n, d))
        y = gc.input("y", (n, 1))
        w = gc.param("w", (d, 1), init="zeros")
        b = gc.param("b", (1,), init="zeros")
        z = x @ w + b
        return gc.bce_with_logits(z, y) if with_logits else gc.bce_loss(gc.sigmoid(z), y)


def feeds(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch for each model at its default sizes."""
    n = 100 if name == "logistic" else 64
    if name == "two_layer":
        return {"x": rng.standard_normal((n, 1000)).astype(np.float32),
                "y": rng.standard_normal((n, 10)).astype(np.float32)}
    if name == "mlp":
        return {"x": rng.standard_normal((n, 256)).astype(np.float32), "labels": rng.integers(0, 10, n)}
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return {"x": x, "y": (x @ np.array([[1.0], [-2.0], [0.5]]) > 0).astype(np.float32)}


#: name -> (builder, learning rate, kernel-count target per training step from the issue)
MODELS: dict[str, tuple[Callable[[], gc.Tensor], float, int]] = {
    "two_layer": (two_layer, 1e-6, 6),
    "mlp": (lenet_head, 0.1, 12),
    "logistic": (logistic, 0.5, 3),
}
