"""The lecture's Net: 256 -> 120 -> 84 -> 10 fully connected, ReLU, softmax cross-entropy, SGD lr 0.01.

The lecture feeds one random 256-feature input; here a batch of 64 random
inputs with random class labels, trained for a few hundred steps so the loss
visibly falls (the net memorises the batch).
"""

from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

BATCH, CLASSES = 64, 10


def build() -> gc.Tensor:
    with gc.Graph("net_256"):
        x = gc.input("x", (BATCH, 256))
        labels = gc.input("labels", (BATCH,), dtype="int64")
        fc1, fc2, fc3 = gc.nn.Linear("fc1", 256, 120, seed=0), gc.nn.Linear("fc2", 120, 84, seed=2), \
            gc.nn.Linear("fc3", 84, 10, seed=4)
        logits = fc3(gc.relu(fc2(gc.relu(fc1(x)))))
        return gc.cross_entropy(logits, labels)


def data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((BATCH, 256)).astype(np.float32),
            "labels": rng.integers(0, CLASSES, size=BATCH).astype(np.int64)}


def train(steps: int = 300, backend: str = "numpy", lr: float = 0.01) -> list[float]:
    step = gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend=backend)
    feeds = data()
    return [float(np.asarray(step(**feeds))) for _ in range(steps)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args()
    losses = train(args.steps, args.backend)
    for t in range(0, args.steps, max(1, args.steps // 10)):
        print(f"step {t:4d}  cross-entropy {losses[t]:.4f}")
    print(f"cross-entropy {losses[0]:.4f} -> {losses[-1]:.4f} (ln 10 = {np.log(10):.4f} is chance)")


if __name__ == "__main__":
    main()
