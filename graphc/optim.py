"""Optimizers build their update as graph nodes, so the step compiles (and fuses) as one graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dsl as F
from .ir import Graph, Tensor
from .symbolic import arg_symbols


@dataclass(frozen=True)
class SGD:
    """p <- p - lr * (g + weight_decay * p), with optional momentum (PyTorch's formulation:
    v <- momentum * v + g, p <- p - lr * v)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    def build(self, graph: Graph, params: list[Tensor], grads: list[Tensor]) -> dict[int, Tensor]:
        """New values keyed by the node id of the param (or optimizer state) they replace."""
        a0, a1, a2 = arg_symbols(3)
        updates: dict[int, Tensor] = {}
        for param, grad in zip(params, grads):
            if self.momentum:
                velocity = state(graph, param, "velocity")
                # v_new = momentum * v + (g + wd * p), over (v, g, p)
                v_new = F.fn(self.momentum * a0 + a1 + self.weight_decay * a2, velocity, grad, param)
                updates[velocity.id] = v_new
                updates[param.id] = F.fn(a0 - self.lr * a1, param, v_new)
            else:
                # p_new = p - lr * (g + wd * p), over (p, g)
                updates[param.id] = F.fn(a0 - self.lr * (a1 + self.weight_decay * a0), param, grad)
        return updates


def state(graph: Graph, param: Tensor, kind: str) -> Tensor:
    """A zero-initialised optimizer buffer shaped like `param`, held by the Program like a param."""
    node = graph.add("param", (), param.shape, param.dtype, attrs={"shape": param.shape, "dtype": param.dtype},
                     name=f"{param.name}__{kind}", source=param.node.source, role="state",
                     value=np.zeros(param.shape, dtype=param.dtype))
    return Tensor(graph, node.id)
