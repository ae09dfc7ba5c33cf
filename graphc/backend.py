"""How the core talks to backends, without importing any of them.

A backend module registers a factory under its name when imported; the core
imports a built-in backend's module by its dotted name only when asked for it,
so ``import graphc`` never pulls in triton or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .errors import ArgumentError

if TYPE_CHECKING:
    from .ir import Node
    from .plan import Plan


class Executable(Protocol):
    """A lowered Plan: the backend's compiled form of one step."""

    source: str  # everything the backend generated, for people to read
    num_kernels: int  # launches (or node evaluations) per call

    def asarray(self, value: Any, node: "Node") -> Any:
        """Convert a feed or a param value to this backend's array type and the node's dtype."""

    def to_numpy(self, value: Any) -> Any:
        """The inverse of asarray, for reports and checkpoints."""

    def run(self, feeds: dict[int, Any], params: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
        """Compute the outputs and the new values of updated params; must not modify `params`."""


Lowering = Callable[..., Executable]  # (plan, **options) -> Executable

_BACKENDS: dict[str, Lowering] = {}
_BUILTIN = {"numpy": "backends.numpy_ref", "triton": "backends.triton"}


def register_backend(name: str, lower: Lowering) -> None:
    _BACKENDS[name] = lower


def get_backend(name: str) -> Lowering:
    if name not in _BACKENDS and name in _BUILTIN:
        try:
            importlib.import_module(_BUILTIN[name])
        except ImportError as e:
            raise ArgumentError(f"backend {name!r} cannot be loaded: {e}",
                                hint="install its extras, e.g. pip install -e '.[triton]'") from e
    if name not in _BACKENDS:
        raise ArgumentError(f"unknown backend {name!r}",
                            hint=f"use one of {', '.join(sorted(set(_BUILTIN) | set(_BACKENDS)))}")
    return _BACKENDS[name]
