"""torch.nn-style layers that declare their params in the open graph."""

from __future__ import annotations

from . import dsl as F
from .ir import Tensor


class Linear:
    """y = x @ w + b with w (in, out), b (out,); torch.nn.Linear's default init
    (uniform in +-1/sqrt(in)) unless values are given."""

    def __init__(self, name: str, in_features: int, out_features: int, bias: bool = True, seed: int | None = None):
        self.weight = F.param(f"{name}_w", (in_features, out_features), init="linear", seed=seed)
        self.bias = None
        if bias:
            bound_init = lambda rng, shape: rng.uniform(-1, 1, shape) / in_features**0.5  # noqa: E731
            self.bias = F.param(f"{name}_b", (out_features,), init=bound_init,
                                seed=None if seed is None else seed + 1)

    def __call__(self, x: Tensor) -> Tensor:
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y

    @property
    def params(self) -> list[Tensor]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])
