"""The lecture's regression net: 1 -> 10 -> 1 with ReLU, fit to y = x^2 + noise on [-1, 1].

100 points, mean squared error, SGD lr 0.2, 200 steps. `--plot out.png`
draws the data and the fitted curve.
"""

from __future__ import annotations

import argparse

import numpy as np

import graphc as gc


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 100, dtype=np.float32)[:, None]
    y = (x**2 + 0.2 * rng.random(x.shape)).astype(np.float32)
    return x, y


def build() -> tuple[gc.Tensor, gc.Tensor]:
    with gc.Graph("regression"):
        x = gc.input("x", (100, 1))
        y = gc.input("y", (100, 1))
        hidden = gc.nn.Linear("hidden", 1, 10, seed=0)
        predict = gc.nn.Linear("predict", 10, 1, seed=2)
        prediction = predict(gc.relu(hidden(x)))
        return gc.mse_loss(prediction, y), prediction


def train(steps: int = 200, backend: str = "numpy", lr: float = 0.2) -> tuple[list[float], np.ndarray]:
    loss, prediction = build()
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend=backend)
    x, y = data()
    losses = [float(np.asarray(step(x=x, y=y))) for _ in range(steps)]
    predict = gc.compile(prediction, backend=backend)
    fitted = np.asarray(predict(x=x, **{k: np.asarray(v) for k, v in step.params.items()}))
    return losses, fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--plot", help="write a PNG of the fit here")
    args = ap.parse_args()
    losses, fitted = train(args.steps, args.backend)
    for t in range(0, args.steps, 20):
        print(f"step {t:4d}  mse {losses[t]:.5f}")
    print(f"final mse {losses[-1]:.5f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x, y = data()
        plt.scatter(x, y, s=8, label="data: x^2 + noise")
        plt.plot(x, fitted, "r-", lw=2, label="1-10-1 ReLU net")
        plt.legend()
        plt.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
