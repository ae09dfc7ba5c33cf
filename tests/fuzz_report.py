"""pytest plugin: the reliability suite's counts, printed in the terminal summary.

Tests call ``count("fuzz", graphs=1, ...)``. Under pytest-xdist each worker hands
its counts to the controller at the end of the session, and the controller
prints the sum, so CI output shows the figures however the suite is run. Load it
with ``pytest_plugins = ["fuzz_report"]`` (the reliability test modules do; a
top-level conftest listing it makes the xdist controller print it too).
Test modules import it before pytest loads it as a plugin: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

import pytest

COUNTS: dict[str, Counter] = {}
_KEY = "graphc_reliability_counts"


def count(section: str, **n: int) -> None:
    """Add to a section's counters (e.g. count("fuzz", graphs=1, draws=3))."""
    COUNTS.setdefault(section, Counter()).update(n)


def _fuzz(c: Counter) -> str:
    draws = c["draws"]
    redraws = {k[len("redraw_"):]: v for k, v in sorted(c.items()) if k.startswith("redraw_")}
    rate = 100.0 * sum(redraws.values()) / draws if draws else 0.0
    backends = ", ".join(f"{k[len('ran_'):]} {v}" for k, v in sorted(c.items()) if k.startswith("ran_"))
    ops = sum(1 for k in c if k.startswith("op_"))
    known = ", ".join(f"{k[len('known_bug_'):]} {v}" for k, v in sorted(c.items()) if k.startswith("known_bug_"))
    return (f"fuzz: {c['graphs']} graphs tried, {c['compared']} compared, {c['rejected']} rejected (no fair "
            f"draw), {c['mismatches']} mismatches; runs per backend: {backends or '-'}; "
            f"{draws} input draws, redraw rate {rate:.1f}% "
            f"({', '.join(f'{k} {v}' for k, v in redraws.items()) or 'none'}); {ops} distinct ops in "
            f"{sum(v for k, v in c.items() if k.startswith('op_'))} steps; graphs hitting open bugs: {known or 'none'}")


def _gradcheck(c: Counter) -> str:
    ops = sorted(k[len("op_"):] for k in c if k.startswith("op_"))
    return (f"gradcheck: {c['graphs']} graphs over {len(ops)} ops (central differences, dot-product test, "
            f"Hessian-vector products), {c['triton']} also through Triton; {c['no_float_input']} without a "
            f"float input, {c['rejected']} rejected (no fair draw)")


FORMATS: dict[str, Callable[[Counter], str]] = {"fuzz": _fuzz, "gradcheck": _gradcheck}


def _generic(section: str, c: Counter) -> str:
    return f"{section}: " + ", ".join(f"{v} {k}" for k, v in sorted(c.items()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput[_KEY] = json.dumps(COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: add a finished worker's counts."""
    for section, counts in json.loads(getattr(node, "workeroutput", {}).get(_KEY, "{}")).items():
        count(section, **counts)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COUNTS:
        return
    terminalreporter.section("graphc reliability")
    for section, c in sorted(COUNTS.items()):
        terminalreporter.write_line(FORMATS.get(section, lambda c: _generic(section, c))(c))
