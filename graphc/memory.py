"""Memory plan of a step: buffers by liveness, bytes each kernel moves, peak buffer bytes.

Works on a fusion Schedule: every stored intermediate gets an offset in one
arena, and buffers whose lifetimes do not overlap share bytes. Results
(outputs and new param values) are not in the arena: they belong to the
caller once the step returns. Without a schedule the plan is accounted node by
node (what an unfused interpreter moves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .fusion import Schedule
    from .plan import Plan

ALIGN = 64  # bytes; every arena buffer starts on a cache line (and any dtype's alignment)


def nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


@dataclass(frozen=True)
class KernelTraffic:
    """Bytes one kernel reads (each buffer once) and writes per call."""

    name: str
    read_bytes: int
    write_bytes: int


@dataclass(frozen=True)
class MemoryPlan:
    param_bytes: int
    input_bytes: int
    peak_bytes: int  # the arena: live intermediates at the worst point, with reuse
    kernels: tuple[KernelTraffic, ...] = ()
    offsets: dict[int, int] = field(default_factory=dict)  # intermediate node id -> arena byte offset
    result_bytes: int = 0  # outputs and new param values, allocated per call

    @property
    def read_bytes(self) -> int:
        return sum(k.read_bytes for k in self.kernels)

    @property
    def write_bytes(self) -> int:
        return sum(k.write_bytes for k in self.kernels)

    def summary(self) -> str:
        return (f"memory: params {self.param_bytes:,} B, inputs {self.input_bytes:,} B, "
                f"peak intermediates {self.peak_bytes:,} B; per call {len(self.kernels)} kernels read "
                f"{self.read_bytes:,} B and write {self.write_bytes:,} B")


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan_memory(plan: "Plan", schedule: "Schedule | None" = None) -> MemoryPlan:
    """Offsets for the schedule's intermediates (first fit by liveness) and per-kernel traffic."""
    from .fusion import unfused_schedule

    sched = schedule if schedule is not None else unfused_schedule(plan)
    g = plan.graph
    size = lambda n: nbytes(g.node(n).shape, g.node(n).dtype)  # noqa: E731
    results = set(plan.outputs) | set(plan.updates.values())
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k in sched.kernels:
        for n in k.stores:
            first.setdefault(n, k.index)
            last.setdefault(n, k.index)
        for n in k.reads:
            if n in first:
                last[n] = max(last[n], k.index)
    offsets: dict[int, int] = {}
    live: list[tuple[int, int, int]] = []  # (offset, bytes, last use)
    peak = 0
    for n in sorted((n for n in first if n not in results), key=lambda n: (first[n], n)):
        live = [b for b in live if b[2] >= first[n]]  # a buffer read by kernel i is free for kernel i + 1
        need, at = _align(size(n)), 0
        for off, nb, _ in sorted(live):
            if at + need <= off:
                break
            at = max(at, off + _align(nb))
        offsets[n] = at
        live.append((at, size(n), last[n]))
        peak = max(peak, at + need)
    traffic = tuple(KernelTraffic(k.name, sum(size(n) for n in k.reads), sum(size(n) for n in k.stores))
                    for k in sched.kernels)
    return MemoryPlan(
        param_bytes=sum(nbytes(n.shape, n.dtype) for n in plan.params.values()),
        input_bytes=sum(nbytes(n.shape, n.dtype) for n in plan.inputs.values()),
        peak_bytes=peak,
        kernels=traffic,
        offsets=offsets,
        result_bytes=sum(size(n) for n in results),
    )


__all__ = ["ALIGN", "KernelTraffic", "MemoryPlan", "nbytes", "plan_memory"]
