"""Logistic regression with the lecture's cost, written naively:

    J = -1/m * sum(y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z)))

graphc's stability rewrite turns log(sigmoid(z)) into -softplus(-z) before
differentiating, so the gradient is (sigmoid(z) - y) / m and stays finite even
when |z| is large. Full-batch gradient descent on two Gaussian blobs, or
mini-batch SGD with `--batch-size`.
"""

from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

M, FEATURES = 500, 2


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(M, 1))
    centers = np.where(labels == 1, 1.5, -1.5)
    x = centers + rng.standard_normal((M, FEATURES))
    return x.astype(np.float32), labels.astype(np.float32)


def build(m: int = M) -> tuple[gc.Tensor, gc.Tensor]:
    with gc.Graph("logistic"):
        x = gc.input("x", (m, FEATURES))
        y = gc.input("y", (m, 1))
        w = gc.param("w", (FEATURES, 1), init="zeros")
        b = gc.param("b", (1,), init="zeros")
        a = gc.sigmoid(x @ w + b)
        cost = -gc.mean(y * gc.log(a) + (1 - y) * gc.log(1 - a))
        return cost, a


def train(steps: int = 300, backend: str = "numpy", lr: float = 0.1, batch_size: int = M) -> tuple[list[float], float]:
    """`steps` epochs; batch_size=M is batch gradient descent, smaller is mini-batch SGD."""
    cost, _ = build(batch_size)
    step = gc.compile(cost, optimizer=gc.optim.SGD(lr=lr), backend=backend)
    x, y = data()
    losses = gc.train.fit(step, {"x": x, "y": y}, epochs=steps, batch_size=batch_size, shuffle=batch_size < M)
    _, prob = build()
    p = np.asarray(gc.compile(prob, backend=backend)(x=x, **{k: np.asarray(v) for k, v in step.params.items()}))
    accuracy = float(np.mean((p > 0.5) == (y > 0.5)))
    return losses, accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--batch-size", type=int, default=M)
    args = ap.parse_args()
    losses, accuracy = train(args.steps, args.backend, batch_size=args.batch_size)
    print(f"cost {losses[0]:.4f} -> {losses[-1]:.4f}; training accuracy {accuracy:.1%}")


if __name__ == "__main__":
    main()
