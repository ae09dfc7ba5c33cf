"""The CUDA half of ``graphc bench --gpu``: engines for a GPU, and fused pointwise kernel bandwidth.

Engines: graphc on the Triton backend, without and with CUDA-graph capture
(the backend's ``cuda_graph=True`` option), PyTorch eager, and torch.compile
with ``mode="reduce-overhead"`` (which captures CUDA graphs itself). The
hand-written NumPy floor and JAX stay on the CPU table.

Bandwidth: each lecture pointwise region (SGD update, ReLU backward, the
sigmoid-BCE gradient, momentum SGD's two outputs) is compiled alone on large
vectors; its time per call against the bytes it must move (every input read
once, every output written once) gives achieved GB/s, reported as a fraction of
the device's theoretical peak (memory clock x bus width x 2) and of a
device-to-device copy.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import graphc as gc
from graphc.symbolic import Step, arg_symbols

from .engines import Factory, Prepared, Skip, graphc_engine, torch_compile_engine, torch_eager_engine
from .workloads import Arrays, Workload


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _graphc_cuda_graph(w: Workload, params: Arrays, data: Arrays, device: str) -> Prepared:
    try:
        return graphc_engine(w, params, data, device, cuda_graph=True)
    except (TypeError, gc.GraphError) as e:  # a backend without capture says so in its error
        raise Skip(f"the Triton backend did not accept cuda_graph=True: {str(e).splitlines()[0][:120]}") from e


def engines() -> dict[str, Factory]:
    """The GPU engine table, in table order (ratios there are to the first engine, graphc on Triton)."""
    return {
        "graphc": graphc_engine,
        "graphc+cudagraph": _graphc_cuda_graph,
        "torch": torch_eager_engine,
        "torch.compile": partial(torch_compile_engine, quick=False),
    }


# --- fused pointwise bandwidth ---------------------------------------------------------------

A0, A1 = arg_symbols(2)


@dataclass(frozen=True)
class Region:
    name: str
    inputs: int
    outputs: Callable[[list[gc.Tensor]], list[gc.Tensor]]


REGIONS: tuple[Region, ...] = (
    Region("SGD update p - lr*g", 2, lambda t: [gc.fn(A0 - 0.01 * A1, t[0], t[1])]),
    Region("ReLU backward g*Step(h)", 2, lambda t: [gc.fn(A1 * Step(A0), t[0], t[1])]),
    Region("sigmoid-BCE grad (sigmoid(z)-y)/n", 2, lambda t: [(gc.sigmoid(t[0]) - t[1]) / 1024]),
    Region("momentum SGD (v', p')", 3, lambda t: _momentum(t)),
)


def _momentum(t: list[gc.Tensor]) -> list[gc.Tensor]:
    p, g, v = t
    v_new = gc.fn(0.9 * A0 + A1, v, g)
    return [v_new, gc.fn(A0 - 0.01 * A1, p, v_new)]


def peak_bandwidth() -> float | None:
    """Theoretical DRAM bandwidth in bytes/s from the device properties (None if torch does not say)."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def _cuda_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds per call, CUDA events around each call."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def pointwise_bandwidth(n: int = 1 << 25, repeats: int = 20) -> dict[str, Any]:
    """Achieved bandwidth of graphc's fused pointwise kernels on n-element float32 vectors."""
    import torch

    peak = peak_bandwidth()
    src = torch.randn(n, device="cuda")
    copy_s = _cuda_time(lambda: src.clone(), repeats)
    copy_bw = 2 * src.nbytes / copy_s
    rows = []
    for region in REGIONS:
        with gc.Graph(region.name.split()[0]) as _:
            ins = [gc.input(f"in{i}", (n,)) for i in range(region.inputs)]
            outs = region.outputs(ins)
        prog = gc.compile(outs, backend="triton")
        feeds = {f"in{i}": torch.rand(n, device="cuda") + 0.5 for i in range(region.inputs)}
        seconds = _cuda_time(lambda: prog(**feeds), repeats)
        moved = 4 * n * (region.inputs + len(outs))
        bw = moved / seconds
        rows.append({"region": region.name, "kernels": prog.num_kernels, "ms": seconds * 1e3, "GB_per_s": bw / 1e9,
                     "fraction_of_peak": bw / peak if peak else None, "fraction_of_copy": bw / copy_bw})
    return {"elements": n, "peak_GB_per_s": peak / 1e9 if peak else None, "copy_GB_per_s": copy_bw / 1e9,
            "regions": rows}


def bandwidth_markdown(bw: dict[str, Any]) -> str:
    peak = bw["peak_GB_per_s"]
    lines = [f"Fused pointwise kernels on {bw['elements']:,} float32 elements (device peak "
             f"{'unknown' if peak is None else f'{peak:.0f} GB/s'}, torch copy {bw['copy_GB_per_s']:.0f} GB/s):", "",
             "| region | kernels | ms | GB/s | of peak | of copy |", "|---|---:|---:|---:|---:|---:|"]
    for r in bw["regions"]:
        frac = "-" if r["fraction_of_peak"] is None else f"{r['fraction_of_peak']:.0%}"
        lines.append(f"| {r['region']} | {r['kernels']} | {r['ms']:.3f} | {r['GB_per_s']:.0f} | {frac} | "
                     f"{r['fraction_of_copy']:.0%} |")
    return "\n".join(lines)


__all__ = ["cuda_available", "engines", "pointwise_bandwidth", "bandwidth_markdown", "peak_bandwidth", "REGIONS"]
