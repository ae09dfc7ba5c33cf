"""compile() and Program: the callable a user gets back."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .backend import Executable, get_backend
from .errors import FeedError
from .ir import FLOAT_DTYPES, Node, Tensor
from .plan import Optimizer, Plan, build_plan
from .printing import format_formulas, format_graph


class Program:
    """A compiled graph: call it with feeds by name. Holds params between calls."""

    def __init__(self, plan: Plan, executable: Executable, backend: str, single: bool):
        self.plan = plan
        self.executable = executable
        self.backend = backend
        self._single = single
        self._state = {n.id: executable.asarray(n.value, n) for n in plan.params.values()}
        # Updates computed in a wider dtype than their param (a float32 param in a float64 graph) are
        # stored in the param's own dtype, as torch keeps a param's dtype; only those pay a conversion.
        node = plan.graph.node
        self._narrowed = {pid for pid, uid in plan.updates.items() if node(uid).dtype != node(pid).dtype}
        self._declared = {n.name for n in plan.graph.by_name().values() if n.op in ("input", "param")}

    # -- what users read -------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """Current trainable values by name (backend arrays; optimizer state excluded)."""
        return {n.name: self._state[n.id] for n in self.plan.params.values() if n.role != "state"}

    @property
    def source(self) -> str:
        return self.executable.source

    @property
    def num_kernels(self) -> int:
        return self.executable.num_kernels

    @property
    def graph(self) -> str:
        return format_graph(self.plan.graph, self.plan.order, self.plan.outputs)

    def formulas(self, latex: bool = False) -> str:
        return format_formulas(self.plan.graph, self.plan.order, latex=latex)

    def report(self) -> str:
        from .memory import plan_memory

        mem = plan_memory(self.plan)
        report = getattr(self.executable, "report", None)
        lines = [
            f"program {self.plan.graph.name} on {self.backend}: {len(self.plan.order)} nodes, "
            f"{self.num_kernels} kernel launches per call",
            f"  inputs: {', '.join(self.plan.inputs) or '-'}; params: {', '.join(self.params) or '-'}; "
            f"updates: {len(self.plan.updates)}",
            f"  {mem.summary()}",
        ]
        if report is not None:
            lines.append(report())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<gc.Program {self.plan.graph.name!r} on {self.backend}: {self.num_kernels} kernels>"

    # -- running ---------------------------------------------------------------------
    def _feed(self, name: str, value: Any, node: Node) -> Any:
        shape = tuple(np.shape(value))
        if shape != node.shape:
            raise FeedError(f"feed {name!r} has shape {shape}, the graph declares {node.shape}", node=node,
                            hint=f"pass an array of shape {node.shape}")
        kind = np.dtype(str(getattr(value, "dtype", np.asarray(value).dtype)).replace("torch.", "")).kind
        if node.dtype not in FLOAT_DTYPES and kind == "f":
            raise FeedError(f"feed {name!r} holds floats but the graph declares {node.dtype}", node=node,
                            hint=f"pass integers (e.g. labels.astype(np.int64))")
        if node.dtype == "bool" and kind != "b":
            raise FeedError(f"feed {name!r} has dtype kind {kind!r}; the graph declares bool", node=node)
        return self.executable.asarray(value, node)

    def __call__(self, **feeds: Any) -> Any:
        plan = self.plan
        # Names the graph declares but this program does not read are accepted and ignored, so the
        # feeds of a training step also drive a prediction program compiled from the same graph.
        unknown = sorted(set(feeds) - self._declared)
        if unknown:
            raise FeedError(f"unknown feed {unknown[0]!r}",
                            hint=f"this program takes inputs {sorted(plan.inputs)} and params {sorted(plan.params)}")
        missing = sorted(set(plan.inputs) - set(feeds))
        if missing:
            raise FeedError(f"missing feed {missing[0]!r}", node=plan.inputs[missing[0]],
                            hint=f"call with {', '.join(f'{m}=...' for m in missing)}")
        fed = {plan.inputs[k].id: self._feed(k, v, plan.inputs[k]) for k, v in feeds.items() if k in plan.inputs}
        params = dict(self._state)
        for k, v in feeds.items():
            if k in plan.params:
                params[plan.params[k].id] = self._feed(k, v, plan.params[k])
        outputs, updated = self.executable.run(fed, params)
        for pid in self._narrowed:
            updated[pid] = self.executable.asarray(updated[pid], plan.graph.node(pid))
        # Only now, after the whole step succeeded, do params change. A param fed for this call
        # is not kept, unless the step updated it (then it trained from the fed value).
        self._state = {**self._state, **updated}
        return outputs[0] if self._single else tuple(outputs)


def compile(outputs: Tensor | Sequence[Tensor], backend: str = "numpy", optimizer: Optimizer | None = None,
            **options: Any) -> Program:  # noqa: A001 - the public name of the contract
    """Compile outputs (or, with an optimizer, a training step on outputs[0]) for a backend."""
    single = isinstance(outputs, Tensor)
    outs = [outputs] if single else list(outputs)
    lower = get_backend(backend)
    plan = build_plan(outs, optimizer)
    plan.options = dict(options)
    return Program(plan, lower(plan, **options), backend, single)
