"""Typed errors. Each names the node, the user's source line, and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ir import Node


class GraphError(Exception):
    """Base of every error graphc raises on bad input."""

    def __init__(self, message: str, node: "Node | None" = None, hint: str | None = None,
                 where: str | None = None):
        if where is None:  # the user's line that made the failing call (the first frame outside graphc)
            from .ir import user_source_line

            where = user_source_line()
        self.node = node
        self.hint = hint
        self.message = message
        self.where = where
        parts = [message]
        if node is not None:
            parts.append(f"  at node {node.describe()}")
        if where is not None:
            parts.append(f"  at {where}")
        if hint:
            parts.append(f"  fix: {hint}")
        super().__init__("\n".join(parts))

    def located(self, where: str) -> "GraphError":
        """The same error, re-raised with the place the user wrote the failing call."""
        return type(self)(self.message, node=self.node, hint=self.hint, where=where)


class ShapeError(GraphError, ValueError):
    """Shapes that do not fit the op (broadcast, matmul, reshape, axis)."""


class DTypeError(GraphError, TypeError):
    """A dtype the op cannot take (e.g. grad w.r.t. an integer input)."""


class FeedError(GraphError, ValueError):
    """A feed passed to a compiled Program is missing, unknown or ill-shaped."""


class ArgumentError(GraphError, ValueError):
    """An argument no op can take: a name already used, an unknown reduction, init or backend."""


class CycleError(GraphError):
    """The graph is not a DAG."""


class UnknownOpError(GraphError, KeyError):
    """An op name that is not in the op table, or that a backend cannot lower."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return Exception.__str__(self)


class GradError(GraphError):
    """grad() asked for something it cannot give (non-scalar without seed, unreachable)."""


class GraphStateError(GraphError):
    """A graph used outside its context, after closing, or mixed with another graph."""


class NumericError(GraphError, FloatingPointError):
    """A checked run produced NaN or inf, or an integer input was out of range."""
