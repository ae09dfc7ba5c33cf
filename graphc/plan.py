"""From user tensors to a Plan: the rewritten, differentiated, verified graph a backend lowers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from .autodiff import grad
from .errors import ArgumentError, GradError, GraphStateError
from .ir import FLOAT_DTYPES, Graph, Node, Tensor
from .rewrite import stabilize
from .verify import verify


class Optimizer(Protocol):
    def build(self, graph: Graph, params: list[Tensor], grads: list[Tensor]) -> dict[int, Tensor]: ...


@dataclass
class Plan:
    """Everything a backend needs; the graph is the Plan's own copy."""

    graph: Graph
    outputs: list[int]
    order: list[int]  # topological order of every node the step needs
    inputs: dict[str, Node]  # fed at every call
    params: dict[str, Node]  # held by the Program (optimizer state included, role "state")
    updates: dict[int, int] = field(default_factory=dict)  # param id -> id of its new value
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> list[Node]:
        return [self.graph.node(n) for n in self.order]


def build_plan(outputs: Sequence[Tensor], optimizer: Optimizer | None = None) -> Plan:
    """Copy the graph, stabilise it, add gradient and update nodes for a training step, verify."""
    if not outputs:
        raise ArgumentError("compile() needs at least one output Tensor")
    for t in outputs:
        if not isinstance(t, Tensor):
            raise ArgumentError(f"compile() takes Tensors, got {type(t).__name__}",
                                hint="pass the Tensors your model computed, e.g. the loss")
    graphs = {id(t.graph) for t in outputs}
    if len(graphs) > 1:
        raise GraphStateError("compile() outputs come from different graphs", node=outputs[1].node,
                              hint="compile tensors of one graph at a time")
    graph = outputs[0].graph.copy()
    out_ids = [t.id for t in outputs]
    stabilize(graph, graph.ancestors(out_ids))
    verify(graph)
    updates: dict[int, int] = {}
    if optimizer is not None:
        loss = Tensor(graph, out_ids[0])
        params = [Tensor(graph, n) for n in sorted(graph.ancestors([loss.id]))
                  if graph.node(n).op == "param" and graph.node(n).dtype in FLOAT_DTYPES]
        if not params:
            raise GradError("the loss depends on no float param, so there is nothing to train", node=loss.node,
                            hint="declare trainable values with gc.param")
        grads = grad(loss, params)
        first_update = graph._next
        updates = {pid: t.id for pid, t in optimizer.build(graph, params, list(grads)).items()}
        for nid in range(first_update, graph._next):
            if graph.node(nid).role == "forward":
                graph.node(nid).role = "update"
        verify(graph)
    needed = graph.ancestors([*out_ids, *updates.values()])
    order = graph.toposort(needed)
    nodes = [graph.node(n) for n in order]
    return Plan(
        graph=graph,
        outputs=out_ids,
        order=order,
        inputs={n.name: n for n in nodes if n.op == "input"},
        params={n.name: n for n in nodes if n.op == "param"},
        updates=updates,
    )
