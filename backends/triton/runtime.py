"""The launcher: a Plan -> (cached) kernel module -> a flat list of launches over preallocated buffers.

``run`` walks no graph: it binds feeds and params to pointer slots, checks
integer labels, and launches the module's kernels in order. Intermediates live
in one arena, laid out once by the memory plan; results (outputs and new param
values) are fresh tensors, so nothing a caller holds is overwritten by a later
call and the params passed in are never modified (Program swaps in the new
values only after the step succeeded). On a GPU the whole step can be
captured as a CUDA graph (``cuda_graph=True``).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch
import triton

from graphc.errors import GraphError, NumericError
from graphc.fusion import schedule
from graphc.ir import Node
from graphc.memory import nbytes, plan_memory
from graphc.ops import SOURCE, OPS
from graphc.plan import Plan
from graphc.printing import format_graph

from . import cache
from .codegen import Tuning, check_lowerable, generate_module

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "bool": torch.bool}

_GENERATOR_FILES = ("codegen.py", "printer.py", "runtime.py")


def _generator_fingerprint() -> str:
    """Hash of the code that writes modules: editing the generator invalidates the cache.

    Taken once, when this module is imported (right after the generator's modules), so the key
    describes the code this process runs even if the files are edited while it runs."""
    import graphc.fusion
    import graphc.memory

    here = Path(__file__).parent
    files = [here / f for f in _GENERATOR_FILES] + [Path(graphc.fusion.__file__), Path(graphc.memory.__file__)]
    h = hashlib.sha256(triton.__version__.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


GENERATOR = _generator_fingerprint()


def graph_key(plan: Plan, options: dict[str, Any]) -> str:
    """Everything the module text depends on, hashed."""
    g = plan.graph
    parts = [
        GENERATOR,
        repr(sorted(options.items())),
        format_graph(g, plan.order, plan.outputs),
        repr(sorted(plan.updates.items())),
        *(f"{g.node(n).label} {g.node(n).source} {g.node(n).role}" for n in plan.order),
    ]
    return cache.digest("\n".join(parts))


Step = Callable[[dict[int, torch.Tensor]], None]


class TritonExecutable:
    """A Plan lowered to a kernel module; see the module docstring."""

    def __init__(self, plan: Plan, module: ModuleType, source: str, device: torch.device, interpret: bool,
                 cuda_graph: bool = False, cache_hit: bool = False):
        self.plan = plan
        self.module = module
        self.source = source
        self.device = device
        self.interpret = interpret
        self.cache_hit = cache_hit
        self.num_kernels = len(module.LAUNCHES)
        g = plan.graph
        self._results = [n for n in dict.fromkeys([*plan.outputs, *plan.updates.values()])
                         if OPS[g.node(n).op].kind != SOURCE]
        self._arena = torch.empty(module.ARENA["bytes"], dtype=torch.uint8, device=device)
        self._static: dict[int, torch.Tensor] = {}
        for nid, off in module.ARENA["offsets"].items():
            node = g.node(nid)
            nb = nbytes(node.shape, node.dtype)
            self._static[nid] = self._arena[off:off + nb].view(TORCH_DTYPE[node.dtype]).view(node.shape)
        for nid in plan.order:
            node = g.node(nid)
            if node.op == "const" and nid in module.BUFFERS:
                self._static[nid] = self.asarray(node.value, node)
        self._steps = self._build_steps()
        self._cuda_graph = cuda_graph and device.type == "cuda" and not interpret
        self._graph: "torch.cuda.CUDAGraph | None" = None
        self._graph_bufs: dict[int, torch.Tensor] = {}

    # -- building ------------------------------------------------------------------------
    def _build_steps(self) -> list[tuple[bool, Step]]:
        g = self.plan.graph
        checks = {}  # labels node -> the one_hot nodes that read it
        for nid in self.plan.order:
            node = g.node(nid)
            if node.op == "one_hot":
                checks.setdefault(node.inputs[0], []).append(node)
        steps: list[tuple[bool, Step]] = []  # (is a kernel launch, step); the others check labels
        for launch in self.module.LAUNCHES:
            # labels are checked once, before the first kernel that reads them
            for labels in [p for p in launch["ptrs"] if p in checks and p not in launch["writes"]]:
                steps.append((False, self._label_check(labels, checks.pop(labels))))
            steps.append((True, self._launch(launch)))
        return steps

    def _label_check(self, labels: int, one_hots: list[Node]) -> Step:
        n = min(o.attrs["num_classes"] for o in one_hots)
        node = one_hots[0]

        def check(bufs: dict[int, torch.Tensor]) -> None:
            v = bufs[labels]
            bad = (v < 0) | (v >= n)
            if bool(bad.any()):
                raise NumericError(f"label {int(v[bad].flatten()[0])} is out of range for {n} classes", node=node,
                                   hint=f"labels must lie in [0, {n - 1}]")
        return check

    def _launch(self, launch: dict[str, Any]) -> Step:
        fn = getattr(self.module, launch["kernel"])
        ptrs, sizes, meta = launch["ptrs"], launch["sizes"], launch["meta"]
        if all(isinstance(d, int) for d in launch["grid"]):
            grid: Any = tuple(launch["grid"])
        else:  # autotuned tiles: the grid follows the chosen config
            tiles = launch["grid"]
            grid = lambda m: tuple(triton.cdiv(size, m[block]) for size, block in tiles)  # noqa: E731
        kernel = fn[grid]

        def step(bufs: dict[int, torch.Tensor]) -> None:
            kernel(*[bufs[p] for p in ptrs], *sizes, **meta)
        return step

    # -- the Executable protocol ---------------------------------------------------------------
    def asarray(self, value: Any, node: Node) -> torch.Tensor:
        dtype = TORCH_DTYPE[node.dtype]
        if isinstance(value, torch.Tensor):
            return value.detach().to(device=self.device, dtype=dtype).contiguous()
        return torch.as_tensor(np.asarray(value), device=self.device).to(dtype).contiguous()

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

    def _bind(self, feeds: dict[int, Any], params: dict[int, Any]) -> dict[int, torch.Tensor]:
        bufs = dict(self._static)
        bufs.update(feeds)
        bufs.update(params)
        g = self.plan.graph
        for nid in self._results:
            node = g.node(nid)
            bufs[nid] = torch.empty(node.shape, dtype=TORCH_DTYPE[node.dtype], device=self.device)
        return bufs

    def _execute(self, bufs: dict[int, torch.Tensor]) -> None:
        quiet = np.errstate(all="ignore") if self.interpret else contextlib.nullcontext()
        with quiet:  # masked lanes of the interpreter compute on zeros; IEEE results as on a GPU
            for _, step in self._steps:
                step(bufs)

    def run(self, feeds: dict[int, Any], params: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
        if self._cuda_graph:
            bufs = self._replay(feeds, params)
        else:
            bufs = self._bind(feeds, params)
            self._execute(bufs)
        outputs = [self._result(o, bufs) for o in self.plan.outputs]
        updated = {p: self._result(u, bufs) for p, u in self.plan.updates.items()}
        return outputs, updated

    def _result(self, nid: int, bufs: dict[int, torch.Tensor]) -> torch.Tensor:
        """A result the caller owns: kernel outputs as they are, sources (an input, a constant) copied."""
        node = self.plan.graph.node(nid)
        if OPS[node.op].kind != SOURCE:
            return bufs[nid].clone() if self._cuda_graph else bufs[nid]
        if nid not in bufs:  # a scalar constant, inlined in the kernels
            return self.asarray(node.value, node)
        return bufs[nid].clone()

    def _replay(self, feeds: dict[int, Any], params: dict[int, Any]) -> dict[int, torch.Tensor]:
        """CUDA-graph mode: copy into static buffers, replay the captured step."""
        if self._graph is None:
            self._graph_bufs = {k: v.clone() for k, v in {**feeds, **params}.items()}
            bufs = self._bind({}, {})
            bufs.update(self._graph_bufs)
            self._graph_bufs = bufs
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._execute(bufs)  # warm-up: autotuning and JIT happen outside the capture
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._launch_only(bufs)
        for k, v in {**feeds, **params}.items():
            self._graph_bufs[k].copy_(v)
        self._check_labels_eagerly(self._graph_bufs)
        self._graph.replay()
        return self._graph_bufs

    def _launch_only(self, bufs: dict[int, torch.Tensor]) -> None:
        for is_launch, step in self._steps:
            if is_launch:
                step(bufs)

    def _check_labels_eagerly(self, bufs: dict[int, torch.Tensor]) -> None:
        """Label checks read values on the host, so they run before a replay, not inside the graph."""
        for is_launch, step in self._steps:
            if not is_launch:
                step(bufs)

    def report(self) -> str:
        rep = self.module.REPORT
        read = sum(r for _, r, _ in rep["kernels"])
        wrote = sum(w for _, _, w in rep["kernels"])
        mode = "interpreter (CPU)" if self.interpret else str(self.device)
        lines = [f"  triton on {mode}: {self.num_kernels} kernels, {read:,} B read + {wrote:,} B written per call, "
                 f"arena {rep['peak_bytes']:,} B" + (" (module from cache)" if self.cache_hit else "")]
        lines += [f"    {name}: reads {r:,} B, writes {w:,} B" for name, r, w in rep["kernels"]]
        return "\n".join(lines)


def lower(plan: Plan, precision: str = "ieee", cuda_graph: bool = False, fuse: bool = True,
          autotune: bool | None = None) -> TritonExecutable:
    """The Triton backend's entry point: ``gc.compile(..., backend="triton", precision=..., cuda_graph=...)``.

    precision: "ieee" (fp32 products as the NumPy oracle computes them) or "tf32"
    (faster tensor cores on NVIDIA GPUs, about 1e-3 relative error).
    """
    from . import INTERPRET, DEVICE

    if precision not in ("ieee", "tf32"):
        raise GraphError(f"unknown precision {precision!r}", hint='use "ieee" or "tf32"')
    tuning = Tuning(interpret=INTERPRET, precision=precision,
                    autotune=(not INTERPRET) if autotune is None else autotune and not INTERPRET)
    check_lowerable(plan)
    options = {"interpret": INTERPRET, "precision": precision, "fuse": fuse, "autotune": tuning.autotune}
    key = graph_key(plan, options)
    body = cache.read(key)
    hit = body is not None
    if body is None:
        sched = schedule(plan, fuse=fuse)
        body = generate_module(sched, plan_memory(plan, sched), tuning,
                               f"Schedule:\n{sched}".replace('"""', "'''"))
        cache.write(key, body)
    module = cache.load(key)
    return TritonExecutable(plan, module, body, DEVICE, INTERPRET, cuda_graph=cuda_graph, cache_hit=hit)


__all__ = ["TritonExecutable", "graph_key", "lower"]
