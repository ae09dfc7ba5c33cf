"""A training loop over epochs of mini-batches, with an optional progress bar."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .data import minibatches
from .program import Program


def fit(step: Program, arrays: Mapping[str, np.ndarray], epochs: int, batch_size: int, shuffle: bool = True,
        seed: int = 0, progress: bool = False) -> list[float]:
    """Run `step` (a compiled training step) over `epochs` epochs; returns the mean loss of each epoch.
    With batch_size equal to the data size this is batch gradient descent; smaller, mini-batch SGD."""
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm  # optional: only when a bar is asked for

        bar = tqdm(total=epochs, unit="epoch")
    history = []
    for epoch in range(epochs):
        losses = [float(np.asarray(step(**feeds)))
                  for feeds in minibatches(arrays, batch_size, shuffle, seed + epoch)]
        history.append(float(np.mean(losses)))
        if bar is not None:
            bar.set_postfix(loss=f"{history[-1]:.4g}")
            bar.update()
    if bar is not None:
        bar.close()
    return history
