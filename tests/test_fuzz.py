"""Differential fuzzing: random valid graphs, forward and every gradient, on every backend.

Each graph (tests/fuzzgraphs.py) runs on the NumPy interpreter in float64 (the
reference), the NumPy fast path in the declared dtypes, the NumPy interpreter in
float32, torch autograd in float64 and, when it imports, the Triton backend
(under the interpreter on a CPU, with these tiny tensors, about 0.1 s a graph;
GRAPHC_FUZZ_TRITON_EVERY=k runs it on every k-th graph only). CI runs GRAPHC_FUZZ_EXAMPLES=200
graphs, derandomized so a green build stays green; scripts/fuzz.sh runs many
more with fresh randomness. Counts appear in the "graphc reliability" summary.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st

import graphc as gc
from backends.numpy_ref import lowering
from fuzz_report import count
from fuzzgraphs import FUZZ_OPS, GraphSpec, Source, Step, check_spec, graph_specs, mismatches, triton_available
from test_regressions import known_bug

EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "200"))
LONG_RUN = "GRAPHC_FUZZ_EXAMPLES" in os.environ  # scripts/fuzz.sh: explore, do not replay CI's graphs
TRITON = triton_available()
TRITON_EVERY = int(os.environ.get("GRAPHC_FUZZ_TRITON_EVERY", "1"))
_graph_number = itertools.count()

# The DSL functions that are composites (no op-table entry of their own) but are fuzzed as steps.
COMPOSITES = {"mean", "mse_loss", "l1_loss", "bce_loss", "bce_with_logits", "cross_entropy"}


def test_every_op_and_composite_is_fuzzed() -> None:
    """Adding an op to graphc.ops.OPS without a FUZZ_OPS entry fails here."""
    sources = {name for name, op in gc.OPS.items() if op.kind == "source"}
    assert set(gc.OPS) - sources <= set(FUZZ_OPS), sorted(set(gc.OPS) - sources - set(FUZZ_OPS))
    assert COMPOSITES <= set(FUZZ_OPS)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(spec=graph_specs(), seed=st.integers(0, 2**32 - 1))
def test_random_graphs_agree_on_every_backend(spec: GraphSpec, seed: int) -> None:
    run_triton = TRITON and next(_graph_number) % TRITON_EVERY == 0
    outcome = check_spec(spec, seed, triton=run_triton)
    # A backend's failure that shows one of its open bugs in tests/test_regressions.py is counted, not failed.
    for backend, messages in list(outcome.mismatches.items()):
        known = {known_bug(backend, m) for m in messages}
        if None not in known:
            del outcome.mismatches[backend]
            count("fuzz", **{f"known_bug_{name}": 1 for name in known})
    count("fuzz", graphs=1, draws=outcome.draws, compared=int(outcome.compared),
          rejected=int(not outcome.compared), mismatches=int(bool(outcome.mismatches)),
          **{f"redraw_{k}": v for k, v in outcome.redraws.items()}, **{f"ran_{b}": 1 for b in outcome.backends},
          **{f"op_{n.op}": 1 for n in spec.nodes if isinstance(n, Step)})
    if not outcome.compared:
        reject()
    note(f"spec = {spec!r}\nseed = {seed}")
    assert not outcome.mismatches, "\n".join(f"[{b}] {m}" for b, ms in outcome.mismatches.items() for m in ms)


# --- the fuzzer itself must catch bugs -----------------------------------------------------------

SOFTMAX_SPEC = GraphSpec((
    Source("x0", (2, 3)),
    Step("softmax", (0,), (("axis", -1),)),
    Step("mul", (1, 0)),
    Step("sum", (2,), (("axis", None), ("keepdims", False))),
))


def test_fuzzer_passes_a_known_good_graph() -> None:
    outcome = check_spec(SOFTMAX_SPEC, seed=1)
    assert outcome.compared and not outcome.mismatches


def test_fuzzer_catches_a_planted_lowering_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """A softmax lowering off by 1e-3 (in the reference itself) is caught by torch."""
    right = lowering.LOWERINGS["softmax"]
    monkeypatch.setitem(lowering.LOWERINGS, "softmax", lambda node, x: right(node, x) * (1 + 1e-3))
    outcome = check_spec(SOFTMAX_SPEC, seed=1)
    assert any(m.startswith("node 1 (softmax)") for m in outcome.mismatches["torch-f64"])


def test_fuzzer_catches_a_planted_gradient_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """A softmax vector-Jacobian rule that forgets the centring term is caught in the gradient only."""
    wrong = dataclasses.replace(gc.OPS["softmax"], vjp=lambda ctx, g: [ctx.out * g])
    monkeypatch.setitem(gc.OPS, "softmax", wrong)
    outcome = check_spec(SOFTMAX_SPEC, seed=1)
    assert [m.split(":")[0] for m in outcome.mismatches["torch-f64"]] == ["dsum/dx0"]


def test_fuzzer_redraws_inputs_at_kinks() -> None:
    """relu of a value that sits on its kink for every draw is never compared: the graph is rejected."""
    spec = GraphSpec((Source("x0", (3,)), Step("sub", (0, 0)), Step("add", (1, 1e-9)), Step("relu", (2,))))
    outcome = check_spec(spec, seed=0)
    assert not outcome.compared and outcome.redraws["kink"] == outcome.draws


def test_mismatch_report_names_the_output() -> None:
    bad = mismatches(["node 3 (exp)"], [np.ones(2)], [np.array([1.0, 1.1])], tol=1e-4)
    assert len(bad) == 1 and bad[0].startswith("node 3 (exp): max error 0.1")
    assert mismatches(["n"], [np.array([np.inf, 1.0])], [np.array([np.nan, 1.0])], tol=1e-4)
    assert not mismatches(["n"], [np.array([np.inf, 1.0])], [np.array([np.inf, 1.00001])], tol=1e-4)
