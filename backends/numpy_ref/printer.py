"""sympy -> NumPy: the pointwise formulas of the op table as NumPy code.

Activations print as calls to the stable helpers below, so a float32 run of
sigmoid(-100) or softplus(1000) stays finite.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter


def sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


HELPERS: dict[str, Callable[..., Any]] = {"_sigmoid": sigmoid, "_softplus": softplus}


class GraphcNumPyPrinter(NumPyPrinter):
    """NumPyPrinter plus graphc's activations (printed as stable helpers or ufuncs)."""

    def _print_Sigmoid(self, e: sp.Function) -> str:
        return f"_sigmoid({self._print(e.args[0])})"

    def _print_Softplus(self, e: sp.Function) -> str:
        return f"_softplus({self._print(e.args[0])})"

    def _print_Relu(self, e: sp.Function) -> str:
        # maximum propagates NaN, as torch.relu does
        return f"numpy.maximum({self._print(e.args[0])}, 0)"

    def _print_Step(self, e: sp.Function) -> str:
        # int8, so multiplying by a float32 gradient keeps float32, and (unlike bool) it can be negated
        return f"numpy.asarray(numpy.greater({self._print(e.args[0])}, 0)).view(numpy.int8)"


def lambdify(expr: sp.Expr, symbols: tuple[sp.Symbol, ...]) -> Callable[..., Any]:
    """A NumPy function of `symbols` computing `expr`; its source is in `.__doc__`-free `source(fn)`."""
    return sp.lambdify(symbols, expr, modules=[HELPERS, "numpy"], printer=GraphcNumPyPrinter, cse=True)


def to_source(expr: sp.Expr) -> str:
    return GraphcNumPyPrinter().doprint(expr)
