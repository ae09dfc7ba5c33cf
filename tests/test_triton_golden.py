"""Golden files: the generated kernel module of each lecture model's training step.

A change to fusion or code generation shows up here as a readable diff. Refresh
the files only on purpose: ``GRAPHC_UPDATE_GOLDEN=1 pytest tests/test_triton_golden.py``.
Paths in the per-node comments are reduced to file names, so the files do not
depend on the directory pytest runs from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import graphc as gc
from lecture_models import MODELS

triton_backend = pytest.importorskip("backends.triton")

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GRAPHC_UPDATE_GOLDEN") == "1"


def normalized(source: str) -> str:
    return re.sub(r"\[(computed|inlined); (?:[^\]]*/)?([^/\]]+:\d+)\]", r"[\1; \2]", source)


@pytest.mark.skipif(not triton_backend.INTERPRET, reason="golden files hold the interpreter's block sizes")
@pytest.mark.parametrize("name", list(MODELS))
def test_generated_module_matches_golden(name: str) -> None:
    build, lr, _ = MODELS[name]
    source = normalized(gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend="triton").source)
    path = GOLDEN / f"{name}_step.py"
    if UPDATE:
        path.write_text(source)
    assert path.exists(), f"no golden file {path}; create it with GRAPHC_UPDATE_GOLDEN=1"
    assert source == path.read_text(), f"{path.name} differs; if intended, refresh with GRAPHC_UPDATE_GOLDEN=1"


def test_golden_modules_run_on_their_own(tmp_path: Path) -> None:
    """`python <module>` launches every kernel on random data without graphc (one interpreter for all)."""
    import subprocess
    import sys

    paths = [GOLDEN / f"{name}_step.py" for name in MODELS]
    code = "import runpy, sys\nfor p in sys.argv[1:]:\n    runpy.run_path(p, run_name='__main__')"
    env = {**os.environ, "TRITON_INTERPRET": "1" if triton_backend.INTERPRET else "0"}
    out = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    kernels = [k for p in paths for k in re.findall(r"^def ((?:pointwise|reduce|rowwise|matmul)_\d+)\(",
                                                       p.read_text(), re.M)]
    assert out.stdout.split() == [w for k in kernels for w in ("ran", k)]
