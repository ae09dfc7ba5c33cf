"""The lecture workloads, each one spec that every engine builds its own training step from.

All four are multilayer perceptrons: ``sizes`` lists the layer widths, hidden
layers use ReLU, and ``head`` names the loss. Every engine starts from the same
float32 weights and the same fixed batch, so their loss trajectories must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import graphc as gc

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    sizes: tuple[int, ...]  # input width, hidden widths..., output width
    batch: int
    head: str  # "sse": sum of squares; "ce": softmax cross-entropy on int64 labels; "bce": sigmoid + BCE
    lr: float
    bias: bool
    init: str  # "normal" (the lecture's randn) or "linear" (torch.nn.Linear's uniform)
    steps: int  # timed steps per engine in a full run
    quick_steps: int  # in --quick

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def flops_per_step(self) -> int:
        """Matmul flops of forward and backward (2 per multiply-add; 3 matmuls per layer, 2 for the first)."""
        per_layer = [2 * self.batch * a * b for a, b in zip(self.sizes, self.sizes[1:])]
        return sum(per_layer) * 3 - per_layer[0]


WORKLOADS: dict[str, Workload] = {w.key: w for w in (
    Workload("W1", "two-layer net 64x1000->100->10, ReLU, sum of squares, SGD 1e-6", (1000, 100, 10), 64, "sse",
             1e-6, bias=False, init="normal", steps=160, quick_steps=4),
    Workload("W2", "256->120->84->10 + biases, ReLU, cross-entropy, batch 64, SGD 0.01", (256, 120, 84, 10), 64,
             "ce", 0.01, bias=True, init="linear", steps=240, quick_steps=4),
    Workload("W3", "logistic regression 10,000x64, sigmoid + BCE, full batch, SGD 0.1", (64, 1), 10_000, "bce",
             0.1, bias=True, init="linear", steps=240, quick_steps=4),
    Workload("W4", "784->1024->1024->10, batch 1024, ReLU, cross-entropy, SGD 0.01", (784, 1024, 1024, 10), 1024,
             "ce", 0.01, bias=True, init="linear", steps=16, quick_steps=2),
)}


def param_names(w: Workload) -> list[str]:
    names = []
    for i in range(1, w.layers + 1):
        names.append(f"w{i}")
        if w.bias:
            names.append(f"b{i}")
    return names


def initial_params(w: Workload, seed: int = 0) -> Arrays:
    """float32 weights (in, out) and zero biases, from one seeded generator."""
    rng = np.random.default_rng(seed)
    out: Arrays = {}
    for i, (fan_in, fan_out) in enumerate(zip(w.sizes, w.sizes[1:]), start=1):
        if w.init == "normal":
            out[f"w{i}"] = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
        else:
            out[f"w{i}"] = (rng.uniform(-1, 1, (fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        if w.bias:
            out[f"b{i}"] = np.zeros(fan_out, np.float32)
    return out


def batch(w: Workload, seed: int = 1) -> Arrays:
    """One fixed batch: x (batch, in) and targets shaped for the head."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.batch, w.sizes[0])).astype(np.float32)
    if w.head == "sse":
        y = rng.standard_normal((w.batch, w.sizes[-1])).astype(np.float32)
    elif w.head == "ce":
        y = rng.integers(0, w.sizes[-1], w.batch).astype(np.int64)
    else:  # labels drawn from a planted logistic model, so the loss can fall
        true_w = rng.standard_normal((w.sizes[0], 1)) / np.sqrt(w.sizes[0])
        p = 1 / (1 + np.exp(-(x @ true_w)))
        y = (rng.uniform(size=p.shape) < p).astype(np.float32)
    return {"x": x, "y": y}


# --- the graphc model ---------------------------------------------------------------

HEADS_GC: dict[str, Callable[[gc.Tensor, gc.Tensor], gc.Tensor]] = {
    "sse": lambda out, y: gc.sum((out - y) ** 2),
    "ce": gc.cross_entropy,
    "bce": lambda out, y: gc.bce_loss(gc.sigmoid(out), y),
}


def graphc_loss(w: Workload, params: Arrays) -> gc.Tensor:
    """The workload as a graphc graph; ReLU via clamp(min=0) in W1, as the lecture writes it."""
    data = batch(w)
    with gc.Graph(w.key) as _:
        h = gc.input("x", data["x"].shape)
        y = gc.input("y", data["y"].shape, dtype=str(data["y"].dtype))
        for i in range(1, w.layers + 1):
            h = h @ gc.param(f"w{i}", params[f"w{i}"].shape, value=params[f"w{i}"])
            if w.bias:
                h = h + gc.param(f"b{i}", params[f"b{i}"].shape, value=params[f"b{i}"])
            if i < w.layers:
                h = gc.clamp(h, min=0) if w.head == "sse" else gc.relu(h)
        return HEADS_GC[w.head](h, y)
