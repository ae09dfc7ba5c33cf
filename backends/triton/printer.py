"""sympy -> Triton: the op table's formulas and fusion's index arithmetic as Triton expressions.

Strict: anything without a rule below raises ``TritonPrintError`` instead of
printing Python that would fail (or silently differ) inside a kernel.

GPU rules honoured here: ``tl.maximum``/``tl.minimum`` propagate NaN explicitly
(the GPU default drops it), and the activations print as calls to the stable
helpers of ``HELPERS`` (defined in every generated module), never as the
overflowing textbook formulas.
"""

from __future__ import annotations

import math

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.pycode import _known_functions_math as _MATH_FUNCTIONS

from graphc.errors import UnknownOpError

NAN = "propagate_nan=tl.PropagateNan.ALL"

#: jit helpers every generated module defines; the printer calls them by name.
HELPERS = '''\
@triton.jit
def _maximum_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _log1p(x):
    # log(1 + x) without losing x when it is tiny (x > -1)
    return tl.where(tl.abs(x) < 1e-4, x * (1.0 - x * (0.5 - x / 3.0)), tl.log(1.0 + x))


@triton.jit
def _softplus(x):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): finite for every finite x
    return tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL) + _log1p(tl.exp(-tl.abs(x)))


@triton.jit
def _sigmoid(x):
    # exp of a non-positive number only, so neither tail overflows
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _tanh(x):
    # (1 - e) / (1 + e) with e = exp(-2|x|); a Taylor series near 0 where that cancels
    a = tl.abs(x)
    e = tl.exp(-2.0 * a)
    big = (1.0 - e) / (1.0 + e)
    x2 = x * x
    small = a * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0))))
    t = tl.where(a < 0.125, small, big)
    return tl.where(x < 0, -t, t)


@triton.jit
def _pow(x, y):
    # x ** y for a tensor exponent: exact signs for integer y, NaN for a negative base otherwise
    # (nested where, not &: x may be a scalar and y a block)
    r = tl.exp(y * tl.log(tl.abs(x)))
    is_int = y == tl.floor(y)
    odd = y - 2.0 * tl.floor(y * 0.5) == 1.0
    r = tl.where(x < 0, tl.where(is_int, tl.where(odd, -r, r), float("nan")), r)
    return tl.where(y == 0, 1.0, r)
'''


class TritonPrintError(UnknownOpError):
    """A sympy construct the Triton printer has no rule for."""


class TritonPrinter(PythonCodePrinter):
    """Prints a sympy expression as one Triton expression (symbols print as their names)."""

    printmethod = "_tritoncode"

    def __init__(self, settings: dict | None = None):
        super().__init__({"strict": True, **(settings or {})})

    def _print(self, expr: object, **kwargs: object) -> str:
        # A constant subexpression (exp(2), log(3)/2 ...) is folded to a literal: Triton's math
        # functions take tensors, not Python numbers.
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Rational and not expr.is_Float:
            try:
                return _float(float(expr))
            except TypeError:  # complex (log of a negative number): let the rules below decide
                pass
        return super()._print(expr, **kwargs)

    # -- anything unknown is an error, never a guess --------------------------------------
    def _print_not_supported(self, expr: sp.Basic) -> str:
        raise TritonPrintError(f"the Triton printer cannot print {type(expr).__name__}: {expr}",
                               hint="add a _print_ rule to backends/triton/printer.py TritonPrinter")

    emptyPrinter = _print_not_supported
    _print_Function = _print_not_supported
    _print_Derivative = _print_not_supported
    _print_Integral = _print_not_supported

    # -- numbers ---------------------------------------------------------------------
    def _print_Integer(self, e: sp.Integer) -> str:
        return str(int(e))

    def _print_Float(self, e: sp.Float) -> str:
        return _float(float(e))

    def _print_Rational(self, e: sp.Rational) -> str:
        return _float(float(e))

    def _print_Half(self, e: sp.Rational) -> str:
        return "0.5"

    def _print_NumberSymbol(self, e: sp.Expr) -> str:
        return _float(float(e))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Infinity(self, e: sp.Expr) -> str:
        return 'float("inf")'

    def _print_NegativeInfinity(self, e: sp.Expr) -> str:
        return 'float("-inf")'

    def _print_NaN(self, e: sp.Expr) -> str:
        return 'float("nan")'

    def _print_BooleanTrue(self, e: sp.Expr) -> str:
        return "True"

    def _print_BooleanFalse(self, e: sp.Expr) -> str:
        return "False"

    # -- arithmetic --------------------------------------------------------------------
    def _print_Pow(self, e: sp.Pow, rational: bool = False) -> str:
        base, exp = e.args
        if not exp.is_Number:
            if base.is_Number and base > 0:  # b ** x = exp(x * log b), log b folded
                return f"tl.exp({self.parenthesize(exp, PRECEDENCE['Mul'])} * {_float(math.log(float(base)))})"
            return f"_pow({self._print(base)}, {self._print(exp)})"
        v = float(exp)
        b = self._print(base)
        m = abs(v)
        if (2 * m).is_integer() and m <= 8:  # x**n and x**(n + 1/2) as products: exact, any sign of x
            factor = self.parenthesize(base, PRECEDENCE["Mul"])
            factors = [factor] * int(m) + ([f"tl.sqrt({b})"] if not m.is_integer() else [])
            prod = " * ".join(factors)
            return f"({prod})" if v > 0 else f"(1.0 / ({prod}))"
        if v.is_integer():  # |x|**n with the sign of x**n
            mag = f"tl.exp({_float(v)} * tl.log(tl.abs({b})))"
            return f"tl.where({b} < 0, -{mag}, {mag})" if int(v) % 2 else mag
        return f"tl.exp({_float(v)} * tl.log({b}))"  # NaN for a negative base, as NumPy gives

    def _print_Mod(self, e: sp.Mod) -> str:
        raise TritonPrintError(f"sympy Mod has floored semantics Triton lacks: {e}",
                               hint="index arithmetic uses graphc.fusion.Rem")

    def _print_FloorDiv(self, e: sp.Expr) -> str:
        a, b = (self.parenthesize(arg, PRECEDENCE["Mul"]) for arg in e.args)
        return f"({a} // {b})"

    def _print_AsFloat(self, e: sp.Expr) -> str:
        x, bits = e.args
        return f"({self._print(x)}).to(tl.float{int(bits)})"

    def _print_Rem(self, e: sp.Expr) -> str:
        a, b = (self.parenthesize(arg, PRECEDENCE["Mul"]) for arg in e.args)
        return f"({a} % {b})"

    # -- elementwise functions ----------------------------------------------------------
    def _call(self, fn: str, e: sp.Function) -> str:
        return f"{fn}({', '.join(self._print(a) for a in e.args)})"

    def _print_exp(self, e: sp.Function) -> str:
        return self._call("tl.exp", e)

    def _print_log(self, e: sp.Function) -> str:
        return self._call("tl.log", e)

    def _print_sin(self, e: sp.Function) -> str:
        return self._call("tl.sin", e)

    def _print_cos(self, e: sp.Function) -> str:
        return self._call("tl.cos", e)

    def _print_floor(self, e: sp.Function) -> str:
        return self._call("tl.floor", e)

    def _print_ceiling(self, e: sp.Function) -> str:
        return self._call("tl.ceil", e)

    def _print_erf(self, e: sp.Function) -> str:
        return self._call("tl.erf", e)

    def _print_Abs(self, e: sp.Function) -> str:
        return self._call("tl.abs", e)

    def _print_tanh(self, e: sp.Function) -> str:
        return self._call("_tanh", e)

    def _print_Sigmoid(self, e: sp.Function) -> str:
        return self._call("_sigmoid", e)

    def _print_Softplus(self, e: sp.Function) -> str:
        return self._call("_softplus", e)

    def _print_Relu(self, e: sp.Function) -> str:
        return f"tl.maximum({self._print(e.args[0])}, 0.0, {NAN})"

    def _print_Step(self, e: sp.Function) -> str:
        return f"tl.where({self._print(e.args[0])} > 0, 1.0, 0.0)"

    def _print_sign(self, e: sp.Function) -> str:
        x = self._print(e.args[0])
        return f"tl.where({x} > 0, 1.0, tl.where({x} < 0, -1.0, 0.0))"

    def _print_Heaviside(self, e: sp.Function) -> str:
        x = self._print(e.args[0])
        half = self._print(e.args[1]) if len(e.args) > 1 else "0.5"
        return f"tl.where({x} > 0, 1.0, tl.where({x} < 0, 0.0, {half}))"

    def _minmax(self, fn: str, e: sp.Function) -> str:
        args = [self._print(a) for a in e.args]
        out = args[0]
        for a in args[1:]:
            out = f"{fn}({out}, {a}, {NAN})"
        return out

    def _print_Max(self, e: sp.Function) -> str:
        return self._minmax("tl.maximum", e)

    def _print_Min(self, e: sp.Function) -> str:
        return self._minmax("tl.minimum", e)

    # -- conditions ------------------------------------------------------------------------
    def _print_Piecewise(self, e: sp.Piecewise) -> str:
        *pieces, (last, cond) = e.args
        if cond != sp.true:
            raise TritonPrintError(f"Piecewise without a default branch: {e}",
                                   hint="end every Piecewise with (value, True)")
        out = self._print(last)
        for value, c in reversed(pieces):
            out = f"tl.where({self._print(c)}, {self._print(value)}, {out})"
        return out

    def _print_Relational(self, e: sp.Expr) -> str:
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[e.rel_op]
        return f"({self._print(e.lhs)} {op} {self._print(e.rhs)})"

    # And/Or as where(): an operand may be a scalar (a condition on a 0-d load) and another a block,
    # and Triton's interpreter rejects `scalar & block` (the GPU accepts both forms).
    def _print_And(self, e: sp.Expr) -> str:
        *rest, last = [self._print(a) for a in e.args]
        out = last
        for a in reversed(rest):
            out = f"tl.where({a}, {out}, False)"
        return out

    def _print_Or(self, e: sp.Expr) -> str:
        *rest, last = [self._print(a) for a in e.args]
        out = last
        for a in reversed(rest):
            out = f"tl.where({a}, True, {out})"
        return out

    def _print_Not(self, e: sp.Expr) -> str:
        return f"(~{self._print(e.args[0])})"


# The parent class prints math-module calls (math.sin ...) that cannot run in a kernel: every
# such rule this class does not define itself raises instead.
for _name in _MATH_FUNCTIONS:
    if f"_print_{_name}" not in TritonPrinter.__dict__:
        setattr(TritonPrinter, f"_print_{_name}", TritonPrinter._print_not_supported)


def _float(v: float) -> str:
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else 'float("-inf")'
    return repr(v)


def texpr(expr: sp.Basic) -> str:
    """One sympy expression as Triton source."""
    return TritonPrinter().doprint(expr)


__all__ = ["HELPERS", "TritonPrintError", "TritonPrinter", "texpr"]
