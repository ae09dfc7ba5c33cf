"""The split DESIGN.md fixes: the core knows no backend, and backends know not each other."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Top-level names of every import statement in a file, wherever it stands (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_imports_no_backend_and_no_gpu_runtime() -> None:
    # graphc/bench measures torch and JAX side by side, so it alone may import them (lazily).
    for path in (ROOT / "graphc").rglob("*.py"):
        allowed = {"torch", "jax", "triton", "matplotlib", "threadpoolctl"} if "bench" in path.parts else set()
        bad = (_imported_modules(path) & {"backends", "torch", "triton", "jax"}) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_backends_do_not_import_each_other() -> None:
    for backend in ("numpy_ref", "triton"):
        for path in (ROOT / "backends" / backend).rglob("*.py"):
            tree = ast.parse(path.read_text())
            others = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                      and n.module.startswith("backends.") and not n.module.startswith(f"backends.{backend}")}
            assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"


def test_import_graphc_and_train_without_torch_or_triton() -> None:
    code = """
import sys
for blocked in ("torch", "triton"):
    sys.modules[blocked] = None  # any import of them now fails
import numpy as np
import graphc as gc
with gc.Graph("g"):
    x = gc.input("x", (2, 3))
    w = gc.param("w", (3, 1), value=np.ones((3, 1)))
    loss = gc.sum(gc.relu(x @ w))
step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1))
print(float(step(x=np.ones((2, 3)))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "6.0"
