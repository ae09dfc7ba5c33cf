"""The NumPy reference backend (the oracle): node by node, unfused, float32 or float64."""

from .lowering import LOWERINGS, NumpyExecutable, lower

__all__ = ["LOWERINGS", "NumpyExecutable", "lower"]
