"""A content-addressed, on-disk cache of generated kernel modules.

A module's file name is the hash of everything that determines its text (the
graph, the options, the generator's own source), so a second process with the
same graph imports the file and generates nothing. Files are real ``.py``
modules (Triton reads kernel source with ``inspect``), written atomically
(temp file + rename) into a directory private to the user (0700). The first
line records the hash of the rest: a truncated or tampered file fails the
check and is regenerated. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from graphc.errors import GraphError

ENV = "GRAPHC_CACHE_DIR"
HEADER = "# graphc-sha256: "

#: Counters for this process (tests read them): modules generated, found on disk, rejected.
STATS = {"generated": 0, "hits": 0, "rejected": 0}


class CacheError(GraphError):
    """The kernel cache directory is unusable (not ours, or not private)."""


def cache_dir() -> Path:
    """$GRAPHC_CACHE_DIR, else ~/.cache/graphc; created private to the user."""
    root = Path(os.environ.get(ENV) or Path.home() / ".cache" / "graphc")
    d = root / "kernels"
    for p in (root, d):
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CacheError(f"kernel cache {d} belongs to another user", hint=f"set {ENV} to a directory you own")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(d, 0o700)  # others must not plant kernels we would import
    return d


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def path_for(key: str) -> Path:
    return cache_dir() / f"graphc_{key[:40]}.py"


def read(key: str) -> str | None:
    """The cached module text for key, or None if absent or failing its content hash."""
    path = path_for(key)
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    first, _, body = text.partition("\n")
    if not first.startswith(HEADER) or first[len(HEADER):].strip() != digest(body):
        STATS["rejected"] += 1
        return None
    STATS["hits"] += 1
    return body


def write(key: str, body: str) -> Path:
    """Atomically (re)place the module for key: a concurrent reader sees the old file or the new one."""
    d = cache_dir()
    path = path_for(key)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{HEADER}{digest(body)}\n{body}")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    STATS["generated"] += 1
    return path


def load(key: str) -> ModuleType:
    """Import the module file for key (once per process)."""
    name = f"graphc_kernels_{key[:40]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path_for(key))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


__all__ = ["CacheError", "ENV", "STATS", "cache_dir", "digest", "load", "path_for", "read", "write"]
