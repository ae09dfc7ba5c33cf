"""The sympy -> Triton printer: exact strings for every construct, then the same formulas run in a
kernel against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("backends.triton")

from backends.triton.printer import TritonPrintError, texpr  # noqa: E402
from graphc.fusion import AsFloat, FloorDiv, Rem  # noqa: E402
from graphc.symbolic import Relu, Sigmoid, Softplus, Step  # noqa: E402

x, y = sp.symbols("x y", real=True)
NAN = "propagate_nan=tl.PropagateNan.ALL"

EXACT = [
    (x + y, "x + y"),
    (x - 2 * y, "x - 2*y"),
    (x / y, "x/y"),
    (x ** 2, "(x * x)"),
    ((x - y) ** 2, "((x - y) * (x - y))"),
    (x ** 3, "(x * x * x)"),
    (x ** -1, "(1.0 / (x))"),
    (x ** -2, "(1.0 / (x * x))"),
    (x ** sp.Rational(1, 2), "(tl.sqrt(x))"),
    (sp.sqrt(x), "(tl.sqrt(x))"),
    (x ** sp.Float(0.5), "(tl.sqrt(x))"),
    (x ** sp.Rational(-1, 2), "(1.0 / (tl.sqrt(x)))"),
    (x ** sp.Rational(3, 2), "(x * tl.sqrt(x))"),
    (x ** sp.Float(-1.5), "(1.0 / (x * tl.sqrt(x)))"),
    (x ** 0.3, "tl.exp(0.3 * tl.log(x))"),
    (x ** 9, "tl.where(x < 0, -tl.exp(9.0 * tl.log(tl.abs(x))), tl.exp(9.0 * tl.log(tl.abs(x))))"),
    (x ** 10, "tl.exp(10.0 * tl.log(tl.abs(x)))"),
    (x ** y, "_pow(x, y)"),
    (2 ** x, "tl.exp(x * 0.6931471805599453)"),
    (sp.Float(0.25) ** (x - 1.5), "tl.exp((x - 1.5) * -1.3862943611198906)"),
    (sp.exp(x), "tl.exp(x)"),
    (sp.log(x), "tl.log(x)"),
    (sp.tanh(x), "_tanh(x)"),
    (sp.sin(x) + sp.cos(x), "tl.sin(x) + tl.cos(x)"),
    (sp.Abs(x), "tl.abs(x)"),
    (sp.sign(x), "tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))"),
    (Sigmoid(x), "_sigmoid(x)"),
    (Softplus(x), "_softplus(x)"),
    (Relu(x), f"tl.maximum(x, 0.0, {NAN})"),
    (Step(x), "tl.where(x > 0, 1.0, 0.0)"),
    (sp.Max(x, y), f"tl.maximum(x, y, {NAN})"),
    (sp.Min(x, y), f"tl.minimum(x, y, {NAN})"),
    (sp.Piecewise((0, x < 0), (x, True)), "tl.where((x < 0), 0, x)"),
    (sp.Piecewise((1, sp.Eq(x, y)), (2, x > y), (3, True)), "tl.where((x == y), 1, tl.where((x > y), 2, 3))"),
    (sp.Piecewise((x, sp.And(x > 0, y <= 1)), (y, True)), "tl.where(tl.where((y <= 1), (x > 0), False), x, y)"),
    (sp.Piecewise((x, sp.Or(x > 0, y <= 1)), (y, True)), "tl.where(tl.where((y <= 1), True, (x > 0)), x, y)"),
    (sp.Piecewise((x, sp.Ne(x, y)), (y, True)), "tl.where((x != y), x, y)"),
    (sp.Float(0.1) * x, "0.1*x"),
    (sp.Rational(1, 4) * x, "(0.25)*x"),
    (sp.pi * x, "3.141592653589793*x"),
    (sp.exp(2) * x, "x*7.38905609893065"),
    (sp.oo, 'float("inf")'),
    (-sp.oo, 'float("-inf")'),
    (sp.nan, 'float("nan")'),
    (FloorDiv(x, 10), "(x // 10)"),
    (Rem(FloorDiv(x, 10), 64), "((x // 10) % 64)"),
    (FloorDiv(x + 3 * y, 10), "((x + 3*y) // 10)"),
    (Rem(x + y, 4), "((x + y) % 4)"),
    (AsFloat(x, 32), "(x).to(tl.float32)"),
]


@pytest.mark.parametrize("expr,text", EXACT, ids=[t for _, t in EXACT])
def test_prints_exactly(expr: sp.Expr, text: str) -> None:
    assert texpr(expr) == text


@pytest.mark.parametrize("expr", [sp.Mod(x, 3), sp.gamma(x), sp.Function("f")(x), sp.atan(x), sp.Derivative(x ** 2, x),
                                  sp.Piecewise((x, x > 0))], ids=str)
def test_refuses_what_it_cannot_print(expr: sp.Expr) -> None:
    with pytest.raises(TritonPrintError):
        texpr(expr)


NUMERIC = {
    "tanh": (sp.tanh(x), np.tanh, np.r_[-30, -3, -0.5, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 0.1249, 0.1251, 2, 30]),
    "sigmoid": (Sigmoid(x), lambda v: 1 / (1 + np.exp(-v)), np.r_[-100, -20, -1, 0, 1, 20, 100]),
    "softplus": (Softplus(x), lambda v: np.logaddexp(0, v), np.r_[-1000, -30, -1e-3, 0, 1e-3, 1, 30, 1000]),
    "pow": (x ** y, np.power, (np.r_[-2, -2, -2, 0, 0, 3, 0.5], np.r_[3, 2, 0.5, 0, 2, -1.5, 4])),
    "number_pow": (sp.Float(0.25) ** (x - 1.5), lambda v: 0.25 ** (v - 1.5), np.r_[-2, 0, 0.3, 4]),
    "relu_nan": (Relu(x), lambda v: np.maximum(v, 0), np.r_[np.nan, -1, 0, 2]),
    "max_nan": (sp.Max(x, y), np.maximum, (np.r_[np.nan, 1, 2], np.r_[0, np.nan, 1])),
    "sign": (sp.sign(x), np.sign, np.r_[-2, 0, 3]),
    "piecewise": (sp.Piecewise((x * 2, x < 0), (x, True)), lambda v: np.where(v < 0, 2 * v, v), np.r_[-1, 0, 1]),
}


@pytest.mark.parametrize("name", list(NUMERIC))
def test_printed_formula_runs_and_matches_numpy(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The printed expression inside a real kernel module, under the interpreter on a CPU."""
    import importlib.util

    import torch

    from backends.triton.printer import HELPERS

    expr, ref, values = NUMERIC[name]
    args = values if isinstance(values, tuple) else (values,)
    names = ["x", "y"][:len(args)]
    src = "\n".join([
        "import triton", "import triton.language as tl", "", HELPERS, "",
        "@triton.jit",
        f"def k({', '.join(f'p{n}' for n in names)}, out, n, B: tl.constexpr):",
        "    i = tl.arange(0, B)",
        "    m = i < n",
        *(f"    {n} = tl.load(p{n} + i, m)" for n in names),
        f"    tl.store(out + i, {texpr(expr)}, m)",
    ])
    path = tmp_path / f"k_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"printer_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ins = [torch.tensor(np.asarray(a, dtype=np.float32)) for a in args]
    out = torch.empty_like(ins[0])
    with np.errstate(all="ignore"):
        mod.k[(1,)](*ins, out, len(out), B=16)
        want = ref(*(np.asarray(a, dtype=np.float64) for a in args))
    np.testing.assert_allclose(out.numpy(), want, rtol=2e-6, atol=1e-30, equal_nan=True)
