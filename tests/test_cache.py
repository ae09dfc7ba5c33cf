"""The on-disk kernel cache: private, atomic, content-checked, shared safely between processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("backends.triton")

from backends.triton import cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# A small training step compiled in child processes (no test imports needed there).
SCRIPT = """
import json, sys
import numpy as np
import graphc as gc
from backends.triton import cache
with gc.Graph("cached") as g:
    x = gc.input("x", (17, 3))
    y = gc.input("y", (17, 1))
    w = gc.param("w", (3, 1), init="zeros")
    loss = gc.mse_loss(x @ w, y)
step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1), backend="triton")
rng = np.random.default_rng(0)
value = float(step(x=rng.standard_normal((17, 3)), y=rng.standard_normal((17, 1))))
print(json.dumps({"stats": cache.STATS, "hit": step.executable.cache_hit, "loss": value}))
"""


def run_child(cache_dir: Path) -> dict:
    env = {**os.environ, cache.ENV: str(cache_dir), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.ENV, str(tmp_path / "gc"))
    return tmp_path / "gc"


def test_directory_is_private(cache_dir: Path) -> None:
    d = cache.cache_dir()
    assert d.parent == cache_dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    os.chmod(d, 0o777)
    cache.cache_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_write_read_and_content_check(cache_dir: Path) -> None:
    key = cache.digest("some graph")
    body = "import triton\nX = 1\n"
    path = cache.write(key, body)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith(cache.HEADER) and cache.read(key) == body
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]  # no temp file left
    rejected = cache.STATS["rejected"]
    path.write_text(path.read_text().replace("X = 1", "X = 2"))  # tampered
    assert cache.read(key) is None and cache.STATS["rejected"] == rejected + 1
    cache.write(key, body)
    path.write_text(path.read_text()[:-5])  # truncated
    assert cache.read(key) is None
    path.write_bytes(b"\xff\xfe garbage")
    assert cache.read(key) is None


def test_failed_write_leaves_nothing_behind(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = cache.digest("another graph")

    def boom(*a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        cache.write(key, "X = 1\n")
    assert not cache.path_for(key).exists()
    assert not [p for p in cache.cache_dir().iterdir() if p.name.startswith(".tmp-")]


def test_second_process_compiles_nothing_and_tampering_is_repaired(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_child(tmp_path)
    assert first["stats"]["generated"] == 1 and not first["hit"]
    second = run_child(tmp_path)
    assert second["stats"] == {"generated": 0, "hits": 1, "rejected": 0} and second["hit"]
    assert second["loss"] == first["loss"]
    (path,) = (tmp_path / "kernels").glob("graphc_*.py")
    path.write_text(path.read_text().replace("tl.store", "tl.store ", 1))  # tampered
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    before = dict(cache.STATS)
    with monkeypatch.context() as m:
        m.setattr("sys.stdout", open(os.devnull, "w"))
        exec(SCRIPT, {"__name__": "here"})  # the same graph, compiled in this process
    assert cache.STATS["rejected"] == before["rejected"] + 1 and cache.STATS["generated"] == before["generated"] + 1
    assert cache.read(path.stem.removeprefix("graphc_")) is not None  # repaired on disk


def _compile_in_worker(cache_dir: str) -> tuple[float, dict]:
    """Run SCRIPT inside a multiprocessing worker, against the shared cache directory."""
    import contextlib
    import io

    os.environ[cache.ENV] = cache_dir
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(SCRIPT, {"__name__": "worker"})
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return result["loss"], result["stats"]


def test_two_processes_compiling_at_once_both_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_compile_in_worker, [str(tmp_path)] * 2)
    (loss_a, _), (loss_b, _) = results
    assert loss_a == loss_b and np.isfinite(loss_a)
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    (module,) = cache.cache_dir().iterdir()  # one module, complete (whoever renamed last)
    assert cache.read(module.stem.removeprefix("graphc_")) is not None


def test_nothing_is_unpickled() -> None:
    for f in (ROOT / "backends" / "triton").glob("*.py"):
        text = f.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, f
