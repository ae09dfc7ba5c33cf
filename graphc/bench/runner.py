"""Run the workloads on every engine, interleaved, check that the losses agree, and report.

Each engine is warmed up, then the engines take turns (eight rounds, the order
rotating every round), each turn a few timed steps, so a noisy neighbour on a
shared machine slows every engine alike while each turn still runs with warm
caches. Steady-state time is the median of the per-step times.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from graphc.errors import NumericError

from .engines import (Factory, Prepared, Skip, graphc_engine, jax_engine, numpy_engine, torch_compile_engine,
                      torch_eager_engine)
from .workloads import WORKLOADS, Workload, batch, initial_params

REFERENCE = "numpy"  # ratios and the loss check are against the hand-written NumPy step (else the first engine)
LOSS_RTOL = 2e-3  # float32 engines sum in different orders; trajectories drift apart slowly


class LossMismatchError(NumericError):
    """Two engines trained the same model from the same weights and got different losses."""


def engines_for(device: str, quick: bool) -> dict[str, Factory]:
    """The engine table, in table order."""
    return {
        "graphc": graphc_engine,
        "numpy": numpy_engine,
        "torch": torch_eager_engine,
        "torch.compile": partial(torch_compile_engine, quick=quick),
        "jax": jax_engine,
    }


@dataclass
class EngineResult:
    status: str  # "ok" or "skipped"
    reason: str = ""
    ms_per_step: float | None = None
    first_call_s: float | None = None
    peak_bytes: int | None = None
    ops_per_step: int | None = None
    ops_what: str = ""
    final_loss: float | None = None
    ratio: float | None = None  # ms_per_step over the reference engine's
    note: str = ""
    losses: list[float] = field(default_factory=list)


def check_agreement(key: str, losses: dict[str, list[float]], reference: str, rtol: float = LOSS_RTOL) -> None:
    """Raise LossMismatchError unless every trajectory matches the reference's step by step."""
    ref = np.asarray(losses[reference], dtype=np.float64)
    atol = 1e-6 * float(np.max(np.abs(ref))) if ref.size else 0.0
    for name, traj in losses.items():
        got = np.asarray(traj, dtype=np.float64)
        if got.shape != ref.shape:
            raise LossMismatchError(f"{key}: {name} ran {got.size} steps, {reference} ran {ref.size}",
                                    hint="every engine must run the same number of steps")
        bad = ~np.isclose(got, ref, rtol=rtol, atol=atol) | ~np.isfinite(got)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise LossMismatchError(
                f"{key}: {name}'s loss at step {i} is {got[i]:.7g}, {reference}'s is {ref[i]:.7g} "
                f"(rtol {rtol})",
                hint="the engines no longer compute the same model; compare their gradients on this workload")


def run_workload(w: Workload, engines: dict[str, Factory], device: str = "cpu", quick: bool = False,
                 rounds: int | None = None, warmup: int = 2, log: Callable[[str], None] = lambda s: None
                 ) -> dict[str, EngineResult]:
    params, data = initial_params(w), batch(w)
    results: dict[str, EngineResult] = {}
    ready: dict[str, Prepared] = {}
    for name, factory in engines.items():
        log(f"  {w.key} {name}: building")
        try:
            ready[name] = factory(w, params, data, device)
        except Skip as s:
            results[name] = EngineResult("skipped", reason=str(s))
    losses = {n: [p.first_loss] for n, p in ready.items()}
    times: dict[str, list[float]] = {n: [] for n in ready}
    for name, p in ready.items():
        losses[name] += [p.step() for _ in range(warmup)]
    steps = w.quick_steps if quick else w.steps
    rounds = min(steps, 8) if rounds is None else rounds
    per_round = max(1, -(-steps // rounds))
    names = list(ready)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)] if names else []:
            for _ in range(per_round):
                t0 = time.perf_counter()
                loss = ready[name].step()
                times[name].append(time.perf_counter() - t0)
                losses[name].append(loss)
    ref = reference(names)
    if ref is not None:
        check_agreement(w.key, losses, ref)
    ref_ms = statistics.median(times[ref]) * 1e3 if ref is not None else None
    for name, p in ready.items():
        log(f"  {w.key} {name}: peak memory")
        ms = statistics.median(times[name]) * 1e3
        results[name] = EngineResult(
            "ok", ms_per_step=ms, first_call_s=p.first_call_s, peak_bytes=p.peak_bytes(),
            ops_per_step=p.ops_per_step, ops_what=p.ops_what, final_loss=losses[name][-1],
            ratio=ms / ref_ms if ref_ms else None, note=p.note, losses=losses[name])
    return {n: results[n] for n in engines}


def reference(names: Sequence[str]) -> str | None:
    """The engine ratios divide by: hand-written NumPy on a CPU, else the first engine that ran."""
    return REFERENCE if REFERENCE in names else (names[0] if names else None)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for mod in ("sympy", "torch", "jax", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        info["cuda"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def limit_threads(n: int) -> dict[str, Any]:
    """Give every engine the same n CPU threads: BLAS (NumPy's and torch's), torch's intra-op pool, XLA.

    Interleaved engines with idle threads spinning steal cores from each other, so
    the default is one thread each; XLA reads its flags when jax is first imported.
    """
    limits: dict[str, Any] = {"threads": n}
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} "
                                       f"intra_op_parallelism_threads={n}")
    try:
        from threadpoolctl import threadpool_limits

        limits["threadpoolctl"] = threadpool_limits(limits=n)  # held for the life of the process
    except ImportError:
        limits["threadpoolctl"] = None  # BLAS keeps its default; the JSON says so
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return limits


def run(workloads: Sequence[str] = tuple(WORKLOADS), quick: bool = False, device: str = "cpu",
        engines: dict[str, Factory] | None = None, log: Callable[[str], None] = lambda s: None,
        compile_time: bool = True, threads: int = 1) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict."""
    table = engines if engines is not None else engines_for(device, quick)
    limits = limit_threads(threads)
    out: dict[str, Any] = {"command": " ".join(["graphc", *sys.argv[1:]]) if sys.argv else "graphc bench",
                           "quick": quick, "device": device, "threads": threads,
                           "blas_threads_limited": limits["threadpoolctl"] is not None,
                           "machine": machine_info(), "workloads": {}}
    for key in workloads:
        w = WORKLOADS[key]
        res = run_workload(w, table, device, quick, warmup=1 if quick else 2, log=log)
        ran = [n for n, r in res.items() if r.status == "ok"]
        out["workloads"][key] = {"title": w.title, "steps": len(res[ran[0]].losses) if ran else 0,
                                 "reference": reference(ran), "engines": {n: r.__dict__ for n, r in res.items()}}
    if compile_time:
        from graphc.compile_time import measure_compile

        out["compile_time"] = measure_compile(WORKLOADS["W2"], repeats=2 if quick else 5).as_dict()
    return out


# --- output -------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    """The table on stdout and in docs/benchmarks.md."""
    refs = {wl.get("reference") for wl in result["workloads"].values()} - {None}
    vs = "vs NumPy" if refs <= {REFERENCE} else "vs " + "/".join(sorted(refs))
    lines = [f"| workload | engine | ms/step | {vs} | first call (s) | peak MiB | ops/step | final loss |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, wl in result["workloads"].items():
        for name, r in wl["engines"].items():
            if r["status"] != "ok":
                lines.append(f"| {key} | {name} | skipped: {r['reason']} | | | | | |")
                continue
            peak = None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20
            ops = "-" if r["ops_per_step"] is None else f"{r['ops_per_step']} {r['ops_what']}"
            lines.append(f"| {key} | {name} | {_fmt(r['ms_per_step'], '.3f')} | "
                         f"{_fmt(r['ratio'], '.2f')}x | {_fmt(r['first_call_s'], '.3f')} | "
                         f"{_fmt(peak, '.2f')} | {ops} | {r['final_loss']:.6g} |")
    titles = [f"- {k}: {wl['title']} ({wl['steps']} steps, losses agree within rtol {LOSS_RTOL})"
              for k, wl in result["workloads"].items()]
    text = "\n".join(lines + [""] + titles)
    ct = result.get("compile_time")
    if ct:
        text += (f"\n\ngraphc compile of W2's training step (graph -> gradients -> plan -> source): "
                 f"cold {ct['cold_s'] * 1e3:.1f} ms, cached {ct['cached_s'] * 1e3:.1f} ms; "
                 f"cold breakdown: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in ct["breakdown_s"].items()))
    return text


def write_json(result: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=float)


def write_png(result: dict[str, Any], path: str) -> None:
    """Grouped bars: each engine's step time over the reference engine's, per workload, with ms on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result["workloads"])
    names = list(dict.fromkeys(n for wl in result["workloads"].values() for n in wl["engines"]))
    refs = sorted({wl.get("reference") or "-" for wl in result["workloads"].values()})
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        rows = [result["workloads"][k]["engines"].get(name, {}) for k in keys]
        xs = np.arange(len(keys)) + j * width
        bars = ax.bar(xs, [r.get("ratio") or 0.0 for r in rows], width, label=name)
        for bar, r in zip(bars, rows):  # skipped engines get no bar, and say so
            label = "skip" if r.get("status") != "ok" else f"{r['ms_per_step']:.3g}"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=6, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2, keys)
    ax.set_ylabel(f"step time / {'/'.join(refs)} step time (ms/step on the bars)")
    ax.set_title(f"graphc bench on {result['machine']['cpu']} ({result['device']}, median ms per training step)")
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
