"""How long graphc takes to compile a training step, and where that time goes.

``measure_compile`` times the stages of ``gc.compile`` (build the graph with the
DSL, plan it: stabilise, differentiate, add the optimizer, verify; lower it to
the backend's source) once cold, with every graphc and sympy cache emptied, and
then again with the caches warm (a cache hit: same model, new graph). A profile
of the cold compile attributes its time to the known hot spots (sympy's diff,
cse and printers, networkx's topological sort, the verifier).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .backend import get_backend
from .plan import build_plan

if TYPE_CHECKING:
    from .bench.workloads import Workload

# Hot spot -> (file suffix, function name) whose cumulative time the profile reports.
HOTSPOTS: dict[str, tuple[str, str]] = {
    "sympy diff": ("graphc/symbolic.py", "derivative"),
    "sympy cse": ("sympy/simplify/cse_main.py", "cse"),
    "sympy printing": ("sympy/printing/printer.py", "doprint"),
    "sympy lambdify": ("sympy/utilities/lambdify.py", "lambdify"),
    "autodiff (grad)": ("graphc/autodiff.py", "grad"),
    "networkx toposort": ("graphc/ir.py", "toposort"),
    "verify": ("graphc/verify.py", "verify"),
    "stability rewrites": ("graphc/rewrite.py", "stabilize"),
}


@dataclass
class CompileTiming:
    cold_s: float  # build + plan + lower with every cache empty
    cached_s: float  # the same, caches warm (median of repeats)
    stages_cold_s: dict[str, float]
    stages_cached_s: dict[str, float]
    breakdown_s: dict[str, float] = field(default_factory=dict)  # profiled cumulative time per hot spot

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def clear_caches(backend: str = "numpy") -> None:
    """Empty every cache a compile fills: sympy's, graphc's derivatives, and the backend's own
    (a backend's lowering function may carry a ``clear_cache`` attribute)."""
    import sympy.core.cache

    from . import symbolic

    sympy.core.cache.clear_cache()
    symbolic.derivative.cache_clear()
    clear = getattr(get_backend(backend), "clear_cache", None)
    if clear is not None:
        clear()


def time_stages(build: Callable[[], Any], optimizer: Any, backend: str = "numpy") -> dict[str, float]:
    """Seconds spent building the graph, planning it and lowering it (one compile)."""
    lower = get_backend(backend)
    t0 = time.perf_counter()
    loss = build()
    t1 = time.perf_counter()
    plan = build_plan([loss], optimizer)
    t2 = time.perf_counter()
    lower(plan)
    t3 = time.perf_counter()
    return {"build graph": t1 - t0, "plan (grad, rewrites, verify)": t2 - t1, "lower (codegen)": t3 - t2}


def hotspot_times(stats: pstats.Stats, hotspots: dict[str, tuple[str, str]] = HOTSPOTS) -> dict[str, float]:
    """Cumulative seconds per hot spot in a profile (0.0 for one that never ran)."""
    out = {name: 0.0 for name in hotspots}
    for (filename, _line, func), (_cc, _nc, _tt, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for name, (suffix, fname) in hotspots.items():
            if func == fname and filename.replace("\\", "/").endswith(suffix):
                out[name] = max(out[name], cumtime)  # recursive entries repeat; the outermost is largest
    return out


def profile_compile(build: Callable[[], Any], optimizer: Any, backend: str = "numpy") -> dict[str, float]:
    prof = cProfile.Profile()
    prof.enable()
    try:
        time_stages(build, optimizer, backend)
    finally:
        prof.disable()
    return hotspot_times(pstats.Stats(prof))


def measure_compile(w: "Workload", repeats: int = 5, backend: str = "numpy") -> CompileTiming:
    """Cold and cached compile time of a workload's SGD training step."""
    from . import optim
    from .bench.workloads import graphc_loss, initial_params

    params = initial_params(w)
    opt = optim.SGD(lr=w.lr)
    build = lambda: graphc_loss(w, params)  # noqa: E731 - a thunk
    clear_caches(backend)
    cold = time_stages(build, opt, backend)
    runs = [time_stages(build, opt, backend) for _ in range(repeats)]
    cached = {k: statistics.median(r[k] for r in runs) for k in cold}
    clear_caches(backend)
    breakdown = profile_compile(build, opt, backend)
    return CompileTiming(sum(cold.values()), statistics.median(sum(r.values()) for r in runs), cold, cached,
                         breakdown)
