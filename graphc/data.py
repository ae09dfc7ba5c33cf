"""Mini-batches for static graphs: every batch has the graph's fixed batch size."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np


def minibatches(arrays: Mapping[str, np.ndarray], batch_size: int, shuffle: bool = True,
                seed: int | None = 0) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of feeds dicts. The last partial batch is dropped: a compiled
    graph has one batch size (declare a second graph to evaluate the remainder)."""
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"arrays disagree on their number of samples: {sorted(lengths)}")
    (n,) = lengths
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size {batch_size} must lie in [1, {n}]")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield {k: a[idx] for k, a in arrays.items()}
