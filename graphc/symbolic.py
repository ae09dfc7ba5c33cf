"""sympy Functions for NN activations, with derivatives written in forward values.

``Sigmoid(x).diff(x)`` is ``Sigmoid(x)*(1 - Sigmoid(x))``, so a fused kernel's
``sympy.cse`` computes the sigmoid once for the forward and the backward.
Conventions follow PyTorch: ``Step(0) = 0`` (relu'(0) = 0), ``sign(0) = 0``.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp


class Step(sp.Function):
    """Heaviside step with Step(0) = 0 (PyTorch's relu'(0)); its derivative is 0."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_Number:
            return sp.Integer(1) if x > 0 else sp.Integer(0)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(0)


class Relu(sp.Function):
    """max(x, 0); derivative Step(x)."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_Number:
            return x if x > 0 else sp.Integer(0)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return Step(self.args[0])

    def _eval_rewrite_as_Piecewise(self, x: sp.Expr, **kw: object) -> sp.Expr:
        return sp.Piecewise((x, x > 0), (0, True))


class Sigmoid(sp.Function):
    """1 / (1 + exp(-x)); derivative Sigmoid(x) * (1 - Sigmoid(x))."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_Number and x.is_zero:
            return sp.Rational(1, 2)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kw: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return (1 / (1 + sp.exp(-self.args[0]))).evalf(prec)


class Softplus(sp.Function):
    """log(1 + exp(x)), evaluated stably; derivative Sigmoid(x)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kw: object) -> sp.Expr:
        return sp.log(1 + sp.exp(x))

    def _eval_rewrite_as_log(self, x: sp.Expr, **kw: object) -> sp.Expr:
        return sp.log(1 + sp.exp(x))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return sp.log(1 + sp.exp(self.args[0])).evalf(prec)


ACTIVATIONS: tuple[type[sp.Function], ...] = (Step, Relu, Sigmoid, Softplus)


def elementary(expr: sp.Expr) -> sp.Expr:
    """Rewrite the custom Functions into exp/log/Piecewise, for proofs with sympy."""
    return expr.replace(Sigmoid, lambda x: 1 / (1 + sp.exp(-x))).replace(
        Softplus, lambda x: sp.log(1 + sp.exp(x))
    ).replace(Relu, lambda x: sp.Piecewise((x, x > 0), (0, True))).replace(
        Step, lambda x: sp.Piecewise((1, x > 0), (0, True))
    )


@lru_cache(maxsize=None)
def arg_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The canonical real symbols a0..a{n-1} bound to a pointwise node's inputs."""
    return tuple(sp.Symbol(f"a{i}", real=True) for i in range(n))


GRAD_SYMBOL = sp.Symbol("g", real=True)


@lru_cache(maxsize=4096)
def derivative(expr: sp.Expr, wrt: sp.Symbol) -> sp.Expr:
    """d expr / d wrt, cached: the same op formulas are differentiated over and over.

    sign' and Heaviside' are DiracDelta, which is 0 everywhere but at one point: it is
    replaced by 0 (PyTorch's convention), so grad of grad works through abs and friends.
    """
    return sp.diff(expr, wrt).replace(sp.DiracDelta, lambda *args: sp.S.Zero)
