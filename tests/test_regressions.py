"""Every failure the differential fuzzer found, kept as a named test.

Each entry is the shrunk graph (a GraphSpec pasted from the fuzzer's report), the
input seed, what went wrong, and where it was fixed. An entry whose bug is still
open is a strict xfail naming the bug: it fails (XPASS) the moment the bug is
fixed, so the marker is removed then. The fuzz test tolerates graphs that fail
with an open bug's signature (and counts them), so CI stays green for known
bugs and red for new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fuzz_report import count
from fuzzgraphs import Const, GraphSpec, Source, Step, check_spec, triton_available

TRITON = triton_available()


@dataclass(frozen=True)
class Regression:
    spec: GraphSpec
    found: str  # what went wrong, and the fix
    backend: str  # the backend that failed
    seed: int = 0
    open_bug: str | None = None  # a substring of the failure while the bug is open (the test is a strict xfail)


REGRESSIONS: dict[str, Regression] = {
    "triton_constant_output_keyerror": Regression(
        GraphSpec((Source("p0", (), param=True), Source("x1", (2, 3), domain="positive"), Step("log", (1,)),
                   Step("neg", (0,)))),
        "d(-p0)/dp0 is the constant -1: Program outputs that are consts or sources raised KeyError in "
        "runtime.run (fixed in 29c5d63, 'runtime returns source outputs')", "triton"),
    "triton_pow_rank0_exponent": Regression(
        GraphSpec((Source("x0", (2,), domain="positive"), Source("x1", ()), Step("pow", (0, 1)))),
        "x ** b with a rank-0 tensor exponent: the _pow helper's `is_int & ...` ran bitwise_and on floats "
        "under the interpreter (fixed in 3e38bd8)", "triton"),
    "triton_matmul_mixed_dtypes": Regression(
        GraphSpec((Source("x0", (2, 2)), Source("x1", (2, 2), dtype="float64"), Step("matmul", (0, 1)))),
        "float32 @ float64: tl.dot asserted 'Both operands must be same dtype' (fixed in b74d0f7)", "triton"),
    "triton_abs_of_exp_prints_re": Regression(
        GraphSpec((Source("x0", ()), Step("exp", (0,)), Step("abs", (1,)))),
        "the gradient of |exp(x)|: the Triton printer was handed sympy's re() around a CSE temporary "
        "(re(tmp0)) and raised TritonPrintError (fixed in the Triton backend)", "triton"),
    "triton_softmax_over_size_one_middle_axis": Regression(
        GraphSpec((Source("x0", (1, 1, 2)), Step("softmax", (0,), (("axis", 1),)))),
        "softmax along a middle axis of size 1: the kernel's pointer block had the wrong shape "
        "('Expected pointer argument to have shape') (fixed in the Triton backend)", "triton"),
    "triton_reshape_and_transpose_of_one_fused_value": Regression(
        GraphSpec((Source("x0", (1, 2)), Step("log_softmax", (0,), (("axis", 0),)), Step("abs", (1,)),
                   Step("reshape", (2,), (("shape", (1, 1, 2)),)), Step("transpose", (2,), (("perm", (0, 1)),)))),
        "a value read through a reshape and an (identity) transpose by the backward pass: fusion raised "
        "NotFusable ('is read at another position than it was computed') (fixed in the Triton backend)",
        "triton"),
    "triton_broadcast_of_a_reshaped_fn_flaky_inf": Regression(
        GraphSpec((Source("p0", (2, 3, 3), domain="positive", param=True), Source("x1", (), domain="positive"),
                   Source("x2", (3,), domain="positive"), Step("fn", (0, 2), (("expr", "log_ratio"),)),
                   Source("x4", (), dtype="float64", domain="unit", wrt=False),
                   Step("bce_with_logits", (1, 4), (("reduction", "mean"),)),
                   Step("reshape", (3,), (("shape", (9, -1)),)), Step("abs", (6,)), Step("sub", (1, 7)),
                   Step("maximum", (7, Const((1, 2), (-1.5, -1.5)))),
                   Step("broadcast_to", (6,), (("shape", (3, 9, 2)),)))),
        "seen once in the 10,000-graph run (seed 12345, graph 2,087): the broadcast_to output had inf in 9 of 54 "
        "elements on the first call and was right on every rerun, a read of memory no kernel wrote; not "
        "reproduced in isolation, so this test passes unless it becomes deterministic", "triton", seed=1751305),
    "triton_matmul_of_a_float64_fn_result_and_float32": Regression(
        GraphSpec((Source("x1", (1, 2), dtype="float64", domain="positive"),
                   Step("fn", (0, 0), (("expr", "log_ratio"),)), Step("add", (-0.5, 1)), Source("x11", (2, 1)),
                   Step("matmul", (2, 3)))),
        "found in the 10,000-graph run (seed 777, graph 5,221): a float64 fn result (log(x/x) + -0.5) times a "
        "float32 matrix: tl.dot asserted 'Both operands must be same dtype' (the mixed-dtype fix of b74d0f7 "
        "had not reached this kernel; fixed in the Triton backend)", "triton", seed=1),
    "triton_minimum_of_maximum_with_one_hot": Regression(
        GraphSpec((Source("y0", (2,), dtype="int64", classes=2), Step("one_hot", (0,), (("num_classes", 2),)),
                   Source("x2", ()), Step("maximum", (2, 1)), Step("minimum", (2, 3)))),
        "found in the 10,000-graph run (seed 778, graph 489): minimum(x, maximum(x, one_hot(y))) and its "
        "gradient: a kernel applied `|` to float operands ('bitwise_or' not supported under the interpreter; "
        "fixed in the Triton backend)", "triton", seed=1),
    "numpy_fast_negated_boolean_mask": Regression(
        GraphSpec((Source("x0", ()), Source("x1", ()), Step("abs", (1,)), Step("sigmoid", (2,)), Step("log", (3,)),
                   Step("clamp", (4,), (("max", -0.5), ("min", -1.0))), Step("abs", (5,)), Step("add", (4, 6)))),
        "found in the 10,000-graph run (seed 779, graph 8,537): the NumPy fast path prints a clamp's 0/1 "
        "derivative as a bool mask and then negates it with `-` (numpy refuses boolean negative; fixed: "
        "masks print as int8)", "numpy-fast", seed=0),
    "triton_max_of_a_quotient_gradient_nan": Regression(
        GraphSpec((Source("x0", (1,)), Source("x1", ()), Step("abs", (1,)), Step("maximum", (Const((1,), (3.0,)), 2)),
                   Step("div", (2, 3)), Step("max", (4,), (("axis", None), ("keepdims", False))))),
        "found in a 3,000-graph run with Triton on every graph (seed 781, graph 3,129): the gradient of "
        "max(|x| / maximum(3, |x|)) is NaN on Triton, -1/3 on the reference: the max kernel and the "
        "is-max mask's kernel each recomputed the quotient, printed as a * (1/b) in one and a/b in the other, "
        "so no element equalled the max and the mask's count was 0 (0/0); fixed in graphc/fusion.py: a "
        "computed input of a max that other nodes read is materialized (SELECTING_REDUCTIONS)", "triton",
        seed=2),
}

OPEN_BUGS: dict[str, Regression] = {name: r for name, r in REGRESSIONS.items() if r.open_bug}


def known_bug(backend: str, message: str) -> str | None:
    """The name of the open bug of `backend` that a failure message shows, if any."""
    return next((name for name, r in OPEN_BUGS.items() if r.backend == backend and r.open_bug in message), None)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str, request: pytest.FixtureRequest) -> None:
    r = REGRESSIONS[name]
    if r.backend == "triton" and not TRITON:
        pytest.skip("the Triton backend is not importable here")
    if r.open_bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"open bug: {r.found}"))
    count("regressions", **{"open" if r.open_bug else "fixed": 1})
    outcome = check_spec(r.spec, r.seed, triton=r.backend == "triton")
    assert outcome.compared
    assert not outcome.mismatches, outcome.mismatches
