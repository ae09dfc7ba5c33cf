"""The lecture's two-layer net: N=64, 1000 -> 100 -> 10, ReLU, sum of squares, SGD lr 1e-6, 500 steps.

Written as in the lecture's autograd example, `x.mm(w1).clamp(min=0).mm(w2)`,
but declared once and compiled: the step (forward, backward, update) is one
static program.
"""

from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

N, D_IN, H, D_OUT = 64, 1000, 100, 10


def build() -> gc.Tensor:
    with gc.Graph("two_layer"):
        x = gc.input("x", (N, D_IN))
        y = gc.input("y", (N, D_OUT))
        w1 = gc.param("w1", (D_IN, H), init="normal", seed=1)
        w2 = gc.param("w2", (H, D_OUT), init="normal", seed=2)
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        return gc.sum((y_pred - y) ** 2)


def data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((N, D_IN)).astype(np.float32),
            "y": rng.standard_normal((N, D_OUT)).astype(np.float32)}


def train(steps: int = 500, backend: str = "numpy", lr: float = 1e-6, log_every: int = 0) -> list[float]:
    step = gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend=backend)
    feeds = data()
    losses = []
    for t in range(steps):
        losses.append(float(np.asarray(step(**feeds))))
        if log_every and (t % log_every == 0 or t == steps - 1):
            print(f"step {t:4d}  loss {losses[-1]:.6g}")
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args()
    losses = train(args.steps, args.backend, log_every=50)
    print(f"loss fell from {losses[0]:.6g} to {losses[-1]:.6g} in {args.steps} steps ({args.backend} backend)")


if __name__ == "__main__":
    main()
