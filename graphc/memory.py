"""Memory accounting of a Plan: what a step holds and moves, node by node (unfused)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .plan import Plan


def nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


@dataclass(frozen=True)
class MemoryPlan:
    param_bytes: int
    input_bytes: int
    peak_bytes: int  # live intermediates at the worst point, with buffers freed after their last use

    def summary(self) -> str:
        return (f"memory: params {self.param_bytes:,} B, inputs {self.input_bytes:,} B, "
                f"peak intermediates {self.peak_bytes:,} B")


def plan_memory(plan: "Plan") -> MemoryPlan:
    g = plan.graph
    position = {nid: i for i, nid in enumerate(plan.order)}
    last_use = {nid: max((position[c] for c in g.consumers(nid) if c in position), default=len(plan.order))
                for nid in plan.order}
    for o in plan.outputs + list(plan.updates.values()):
        last_use[o] = len(plan.order)
    live = peak = 0
    frees: dict[int, int] = {}
    for i, nid in enumerate(plan.order):
        node = g.node(nid)
        if node.op in ("input", "param", "const"):
            continue
        live += nbytes(node.shape, node.dtype)
        peak = max(peak, live)
        frees[last_use[nid]] = frees.get(last_use[nid], 0) + nbytes(node.shape, node.dtype)
        live -= frees.pop(i, 0)
    return MemoryPlan(
        param_bytes=sum(nbytes(n.shape, n.dtype) for n in plan.params.values()),
        input_bytes=sum(nbytes(n.shape, n.dtype) for n in plan.inputs.values()),
        peak_bytes=peak,
    )
