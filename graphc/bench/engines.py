"""The engines a workload runs on, each building its own training step from the same spec.

An engine factory takes (workload, initial params, batch, device) and returns a
Prepared step: a callable doing forward + backward + update and returning the
loss as a float, plus what the table reports about it. A factory that cannot
run here raises Skip with the reason, which the table prints.

torch and jax are imported inside the factories: ``import graphc`` never needs them.
"""

from __future__ import annotations

import copy
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import graphc as gc

from .workloads import Arrays, Workload, graphc_loss, param_names


class Skip(Exception):
    """An engine that cannot run here; the message is the reason shown in the table."""


@dataclass
class Prepared:
    step: Callable[[], float]  # one training step; returns the loss before the update
    first_call_s: float  # build + compile + first step (the first step's loss is in first_loss)
    first_loss: float
    ops_per_step: int | None
    ops_what: str  # what ops_per_step counts
    peak_bytes: Callable[[], int | None]  # bytes allocated at the peak of one step, above what was held before
    note: str = ""


Factory = Callable[[Workload, Arrays, Arrays, str], Prepared]


def _timed_first(build: Callable[[], Callable[[], float]]) -> tuple[Callable[[], float], float, float]:
    t0 = time.perf_counter()
    step = build()
    loss = step()
    return step, time.perf_counter() - t0, loss


def tracemalloc_peak(step: Callable[[], float]) -> int:
    """Peak NumPy allocation during one step (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# --- graphc ------------------------------------------------------------------------


def graphc_engine(w: Workload, params: Arrays, data: Arrays, device: str, **options: Any) -> Prepared:
    backend = "triton" if device == "cuda" else "numpy"
    prog: gc.Program | None = None

    def build() -> Callable[[], float]:
        nonlocal prog
        prog = gc.compile(graphc_loss(w, params), optimizer=gc.optim.SGD(lr=w.lr), backend=backend, **options)
        feeds = _to_device(data, device)
        return lambda: float(prog(**feeds))

    step, first, loss = _timed_first(build)
    assert prog is not None
    held = getattr(prog.executable, "buffer_bytes", 0)  # buffers allocated once count toward every step's peak
    peak = (lambda: tracemalloc_peak(step) + held) if device == "cpu" else _cuda_peak(step)
    return Prepared(step, first, loss, prog.num_kernels, f"{backend} kernels", peak)


def _to_device(data: Arrays, device: str) -> dict[str, Any]:
    if device == "cpu":
        return dict(data)
    import torch

    return {k: torch.as_tensor(v, device=device) for k, v in data.items()}


# --- hand-written NumPy (the CPU floor) -----------------------------------------------------


def numpy_step(w: Workload, p: Arrays, x: np.ndarray, y: np.ndarray) -> float:
    """Forward, backward and in-place SGD written by hand, as the lecture's NumPy example does."""
    hs, zs = [x], []
    for i in range(1, w.layers + 1):
        z = hs[-1] @ p[f"w{i}"]
        if w.bias:
            z += p[f"b{i}"]
        zs.append(z)
        if i < w.layers:
            hs.append(np.maximum(z, 0))
    out = zs[-1]
    loss, g = NUMPY_HEADS[w.head](out, y)
    for i in range(w.layers, 0, -1):
        dw = hs[i - 1].T @ g
        db = g.sum(axis=0) if w.bias else None
        if i > 1:
            g = (g @ p[f"w{i}"].T) * (zs[i - 2] > 0)
        p[f"w{i}"] -= w.lr * dw
        if db is not None:
            p[f"b{i}"] -= w.lr * db
    return float(loss)


def _sse(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = out - y
    return np.sum(d * d), 2 * d


def _ce(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = out.shape[0]
    shifted = out - out.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.log(s[:, 0]).sum() / n - shifted[rows, y].sum() / n
    g = e / s
    g[rows, y] -= 1
    g /= n
    return loss, g


def _bce(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = out.size
    loss = np.mean(np.logaddexp(0, out) - y * out)  # = mean BCE(sigmoid(out), y), stable
    with np.errstate(over="ignore"):
        prob = 1 / (1 + np.exp(-out))
    return loss, (prob - y) / n


NUMPY_HEADS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "sse": _sse, "ce": _ce, "bce": _bce,
}


class CountingArray(np.ndarray):
    """An ndarray that counts the NumPy calls (ufuncs, reductions, functions) made on it."""

    calls = 0

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        CountingArray.calls += 1
        args = [a.view(np.ndarray) if isinstance(a, CountingArray) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, CountingArray) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*args, **kwargs)
        return result.view(CountingArray) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        CountingArray.calls += 1
        return super().__array_function__(func, types, args, kwargs)


def count_numpy_calls(fn: Callable[..., Any], *arrays: Any) -> int:
    """How many NumPy calls fn makes on arrays (dicts of arrays are counted through)."""
    def wrap(a: Any) -> Any:
        if isinstance(a, dict):
            return {k: wrap(v) for k, v in a.items()}
        return np.array(a).view(CountingArray)

    CountingArray.calls = 0
    fn(*(wrap(a) for a in arrays))
    return CountingArray.calls


def numpy_engine(w: Workload, params: Arrays, data: Arrays, device: str) -> Prepared:
    if device != "cpu":
        raise Skip("the hand-written NumPy step is the CPU floor")
    p = copy.deepcopy(params)
    x, y = data["x"], data["y"]

    def build() -> Callable[[], float]:
        def step() -> float:
            with np.errstate(all="ignore"):
                return numpy_step(w, p, x, y)
        return step

    step, first, loss = _timed_first(build)
    ops = count_numpy_calls(lambda q, xx: numpy_step(w, q, xx, y), params, x)
    return Prepared(step, first, loss, ops, "NumPy calls", lambda: tracemalloc_peak(step))


# --- PyTorch ------------------------------------------------------------------------------


def _torch_model(w: Workload, params: Arrays, data: Arrays, device: str) -> tuple[Any, Any, Any, Callable[[], Any]]:
    """(torch params, x, y, loss function) from the same arrays."""
    import torch
    import torch.nn.functional as tf

    tp = [torch.tensor(params[n], device=device, requires_grad=True) for n in param_names(w)]
    x = torch.as_tensor(data["x"], device=device)
    y = torch.as_tensor(data["y"], device=device)
    heads: dict[str, Callable[[Any], Any]] = {
        "sse": lambda out: ((out - y) ** 2).sum(),
        "ce": lambda out: tf.cross_entropy(out, y),
        "bce": lambda out: tf.binary_cross_entropy(torch.sigmoid(out), y),
    }
    per = 2 if w.bias else 1

    def loss_fn() -> Any:
        h = x
        for i in range(w.layers):
            h = h @ tp[per * i]
            if w.bias:
                h = h + tp[per * i + 1]
            if i < w.layers - 1:
                h = h.clamp(min=0) if w.head == "sse" else torch.relu(h)
        return heads[w.head](h)

    return tp, x, y, loss_fn


def _torch_step(w: Workload, params: Arrays, data: Arrays, device: str) -> Callable[[], Any]:
    """zero_grad, forward, backward, torch.optim.SGD's step; returns the loss tensor."""
    import torch

    tp, _, _, loss_fn = _torch_model(w, params, data, device)
    opt = torch.optim.SGD(tp, lr=w.lr)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def count_aten_ops(fn: Callable[[], Any]) -> int:
    """ATen operators dispatched by one call of fn (what eager PyTorch launches)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def torch_peak(step: Callable[[], Any], device: str) -> int | None:
    """Peak bytes allocated in one step: CUDA allocator stats, or the CPU profiler's memory timeline."""
    import torch

    if device == "cuda":
        return _cuda_peak(step)()
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def _cuda_peak(step: Callable[[], Any]) -> Callable[[], int]:
    def measure() -> int:
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return measure


def torch_eager_engine(w: Workload, params: Arrays, data: Arrays, device: str) -> Prepared:
    import torch  # noqa: F401 - imported before the clock starts: first call measures the step, not the import
    def build() -> Callable[[], float]:
        raw = _torch_step(w, params, data, device)
        return lambda: float(raw())

    step, first, loss = _timed_first(build)
    ops = count_aten_ops(_torch_step(w, params, data, device))  # on a copy: the timed one keeps its trajectory
    return Prepared(step, first, loss, ops, "ATen ops", lambda: torch_peak(step, device), note="torch.optim.SGD")


def torch_compile_engine(w: Workload, params: Arrays, data: Arrays, device: str, quick: bool = False) -> Prepared:
    import torch

    if quick and device == "cpu":
        raise Skip("skipped in --quick: torch.compile takes ~15 s per workload on this CPU")
    mode = "reduce-overhead" if device == "cuda" else None

    def build() -> Callable[[], float]:
        raw = _torch_step(w, params, data, device)
        compiled = torch.compile(raw, mode=mode)
        return lambda: float(compiled())

    from torch._inductor import metrics

    metrics.reset()
    try:
        step, first, loss = _timed_first(build)
    except Exception as e:  # no C++ compiler, unsupported platform, ...: report why
        raise Skip(f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}") from e
    return Prepared(step, first, loss, metrics.generated_kernel_count, "inductor kernels",
                    lambda: torch_peak(step, device), note=f"mode={mode or 'default'}")


# --- JAX ------------------------------------------------------------------------------------


def jax_engine(w: Workload, params: Arrays, data: Arrays, device: str) -> Prepared:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise Skip("jax is not installed (pip install -e '.[bench]')") from None
    names = param_names(w)
    heads: dict[str, Callable[[Any, Any], Any]] = {
        "sse": lambda out, y: jnp.sum((out - y) ** 2),
        "ce": lambda out, y: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out, axis=1), y[:, None], axis=1)),
        "bce": lambda out, y: jnp.mean(jax.nn.softplus(out) - y * out),
    }

    def loss_fn(p: dict[str, Any], x: Any, y: Any) -> Any:
        h = x
        for i in range(1, w.layers + 1):
            h = h @ p[f"w{i}"] + (p[f"b{i}"] if w.bias else 0)
            if i < w.layers:
                h = jnp.maximum(h, 0)
        return heads[w.head](h, y)

    def update(p: dict[str, Any], x: Any, y: Any) -> tuple[Any, dict[str, Any]]:
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return loss, {k: p[k] - w.lr * g[k] for k in names}

    jitted = jax.jit(update)
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
    state = {"p": {k: jnp.asarray(params[k]) for k in names}}

    def build() -> Callable[[], float]:
        def step() -> float:
            loss, state["p"] = jitted(state["p"], x, y)
            return float(loss)
        return step

    step, first, loss = _timed_first(build)
    hlo = jitted.lower(state["p"], x, y).compile().as_text()
    return Prepared(step, first, loss, count_entry_hlo_ops(hlo), "XLA HLO ops", lambda: None,
                    note="jit(value_and_grad); peak memory not reported on CPU")


def count_entry_hlo_ops(hlo: str) -> int:
    """Instructions of the ENTRY computation (a fusion counts once), parameters and tuples aside."""
    lines = hlo.split("ENTRY", 1)[1].split("\n}", 1)[0].splitlines()[1:]
    skip = ("parameter(", "tuple(", "get-tuple-element(", "constant(")
    return sum(1 for line in lines if " = " in line and not any(k in line for k in skip))
