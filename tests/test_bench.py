"""graphc bench: the CLI's JSON, the loss-agreement check, the op counters and the compile-time code."""

from __future__ import annotations

import cProfile
import json
import pstats
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import cli, compile_time, symbolic
from graphc.bench import runner
from graphc.bench.engines import (Prepared, Skip, count_entry_hlo_ops, count_numpy_calls, graphc_engine,
                                  numpy_engine, numpy_step)
from graphc.bench.workloads import WORKLOADS, Workload, batch, graphc_loss, initial_params

ENGINES = ("graphc", "numpy", "torch", "torch.compile", "jax")


def test_quick_bench_writes_json_with_every_engine_run_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                   ) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert cli.main(["bench", "--quick", "--workloads", "W2", "--json", str(out), "--png", str(png)]) == 0
    result = json.loads(out.read_text())
    engines = result["workloads"]["W2"]["engines"]
    assert tuple(engines) == ENGINES
    for name, r in engines.items():
        assert r["status"] in ("ok", "skipped"), name
        if r["status"] == "skipped":
            assert r["reason"], f"{name} skipped without a reason"
        else:
            assert r["ms_per_step"] > 0 and r["first_call_s"] > 0 and np.isfinite(r["final_loss"])
            assert len(r["losses"]) == len(engines["numpy"]["losses"])
    assert engines["graphc"]["status"] == engines["numpy"]["status"] == "ok"
    assert result["workloads"]["W2"]["reference"] == "numpy" and engines["numpy"]["ratio"] == pytest.approx(1.0)
    assert engines["torch.compile"]["status"] == "skipped" and "--quick" in engines["torch.compile"]["reason"]
    ct = result["compile_time"]
    assert ct["cold_s"] > 0 and ct["cached_s"] > 0 and set(ct["breakdown_s"]) == set(compile_time.HOTSPOTS)
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "| W2 | graphc |" in table and "skipped:" in table


def _lying(factory, factor: float):  # type: ignore[no-untyped-def]
    """An engine that reports its losses scaled by factor: a stand-in for a wrong gradient."""
    def make(w: Workload, params, data, device: str) -> Prepared:  # type: ignore[no-untyped-def]
        p = factory(w, params, data, device)
        step = p.step
        p.step = lambda: step() * factor
        return p
    return make


def test_a_disagreeing_engine_fails_the_run() -> None:
    w = WORKLOADS["W2"]
    engines = {"numpy": numpy_engine, "graphc": _lying(graphc_engine, 1.01)}
    with pytest.raises(runner.LossMismatchError, match="graphc's loss at step 1"):
        runner.run_workload(w, engines, quick=True, rounds=1, warmup=0)


def test_agreeing_engines_pass_and_report_ratios() -> None:
    w = WORKLOADS["W3"]
    res = runner.run_workload(w, {"numpy": numpy_engine, "graphc": graphc_engine}, quick=True, rounds=1, warmup=0)
    assert res["graphc"].losses == pytest.approx(res["numpy"].losses, rel=runner.LOSS_RTOL)
    assert res["graphc"].losses[-1] < res["graphc"].losses[0]  # it trains
    assert res["graphc"].ratio == pytest.approx(res["graphc"].ms_per_step / res["numpy"].ms_per_step)


def test_check_agreement_catches_length_nan_and_drift() -> None:
    runner.check_agreement("W", {"a": [1.0, 2.0], "b": [1.0, 2.0 * (1 + 1e-4)]}, "a")
    for bad in ([1.0], [1.0, float("nan")], [1.0, 2.1]):
        with pytest.raises(runner.LossMismatchError):
            runner.check_agreement("W", {"a": [1.0, 2.0], "b": bad}, "a")


def test_skipped_engines_are_reported_with_their_reason() -> None:
    def absent(*_: object) -> Prepared:
        raise Skip("not installed here")

    res = runner.run_workload(WORKLOADS["W3"], {"numpy": numpy_engine, "absent": absent}, quick=True, rounds=1,
                              warmup=0)
    assert res["absent"].status == "skipped" and res["absent"].reason == "not installed here"
    text = runner.markdown({"workloads": {"W3": {"title": "t", "steps": 2,
                                                 "engines": {n: r.__dict__ for n, r in res.items()}}}})
    assert "| W3 | absent | skipped: not installed here |" in text


def test_hand_written_numpy_step_matches_graphc_gradients() -> None:
    """The floor the ratios divide by computes the same update as graphc's compiled step."""
    for key in ("W1", "W2", "W3"):
        w = WORKLOADS[key]
        params, data = initial_params(w), batch(w)
        mine = {k: v.copy() for k, v in params.items()}
        loss = numpy_step(w, mine, data["x"], data["y"])
        step = gc.compile(graphc_loss(w, params), optimizer=gc.optim.SGD(lr=w.lr), fast=False)
        assert float(step(**data)) == pytest.approx(loss, rel=1e-5)
        for k in params:
            np.testing.assert_allclose(mine[k], step.params[k], rtol=1e-4, atol=1e-6, err_msg=f"{key} {k}")


def test_count_numpy_calls_counts_ufuncs_reductions_and_functions() -> None:
    def f(a: np.ndarray, p: dict[str, np.ndarray]) -> None:
        b = a @ p["w"]  # matmul ufunc
        c = np.maximum(b, 0)  # ufunc
        c.sum(axis=0)  # add.reduce
        np.concatenate([c, c])  # array function

    assert count_numpy_calls(f, np.ones((2, 2)), {"w": np.ones((2, 2))}) == 4


def test_count_entry_hlo_ops_skips_parameters_and_tuples() -> None:
    hlo = """HloModule m

fused_computation {
  p = f32[2] parameter(0)
  ROOT e = f32[2] exponential(p)
}

ENTRY main {
  a = f32[2] parameter(0)
  c = f32[] constant(1)
  f = f32[2] fusion(a), kind=kLoop, calls=fused_computation
  d = f32[2,2] dot(f, f)
  ROOT t = (f32[2], f32[2,2]) tuple(f, d)
}
"""
    assert count_entry_hlo_ops(hlo) == 2


def test_hotspot_times_attributes_profiled_time() -> None:
    prof = cProfile.Profile()
    prof.enable()
    symbolic.derivative.cache_clear()
    a0 = symbolic.arg_symbols(1)[0]
    symbolic.derivative(symbolic.Sigmoid(a0) * a0, a0)
    prof.disable()
    times = compile_time.hotspot_times(pstats.Stats(prof))
    assert set(times) == set(compile_time.HOTSPOTS)
    assert times["sympy diff"] > 0 and times["networkx toposort"] == 0.0


def test_clear_caches_empties_derivatives_and_generated_code() -> None:
    from backends.numpy_ref import fast

    w = WORKLOADS["W2"]
    stages = compile_time.time_stages(lambda: graphc_loss(w, initial_params(w)), gc.optim.SGD(lr=w.lr))
    assert list(stages) == ["build graph", "plan (grad, rewrites, verify)", "lower (codegen)"]
    assert all(v > 0 for v in stages.values())
    assert symbolic.derivative.cache_info().currsize > 0 and fast._CACHE
    compile_time.clear_caches()
    assert symbolic.derivative.cache_info().currsize == 0 and not fast._CACHE


def test_measure_compile_reports_cold_cached_and_stages() -> None:
    t = compile_time.measure_compile(WORKLOADS["W3"], repeats=1)
    assert t.cold_s == pytest.approx(sum(t.stages_cold_s.values()))
    assert set(t.stages_cached_s) == set(t.stages_cold_s)
    assert t.breakdown_s["autodiff (grad)"] > 0


def test_show_prints_graph_formulas_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["show", "w1"]) == 0
    out = capsys.readouterr().out
    assert "## graph" in out and "matmul x w1" in out and "def program(x, y, w1, w2):" in out
    assert cli.main(["show", "W9"]) == 2


def test_gpu_mode_without_cuda_says_so_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    from graphc.bench import gpu

    if gpu.cuda_available():
        pytest.skip("a CUDA device is present: scripts/gpu_bench.sh runs the real thing")
    assert cli.main(["bench", "--gpu", "--quick"]) == 0
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_engine_table_and_bandwidth_table() -> None:
    from graphc.bench import gpu

    assert list(gpu.engines()) == ["graphc", "graphc+cudagraph", "torch", "torch.compile"]
    bw = {"elements": 8, "peak_GB_per_s": 4800.0, "copy_GB_per_s": 4000.0, "regions": [
        {"region": "SGD update p - lr*g", "kernels": 1, "ms": 0.1, "GB_per_s": 3600.0, "fraction_of_peak": 0.75,
         "fraction_of_copy": 0.9}]}
    text = gpu.bandwidth_markdown(bw)
    assert "| SGD update p - lr*g | 1 | 0.100 | 3600 | 75% | 90% |" in text and "4800 GB/s" in text
    # Every region builds a pointwise graph whose outputs the runner can count bytes for.
    for region in gpu.REGIONS:
        with gc.Graph("r") as _:
            outs = region.outputs([gc.input(f"in{i}", (4,)) for i in range(region.inputs)])
        assert all(o.shape == (4,) for o in outs)


def test_gpu_bandwidth_regions_are_one_fused_triton_kernel_each() -> None:
    """What the GPU script times as 'one fused pointwise kernel' is one kernel, and computes the right thing
    (under the Triton interpreter here)."""
    pytest.importorskip("backends.triton")
    import torch

    from graphc.bench import gpu

    rng = np.random.default_rng(0)
    for region in gpu.REGIONS:
        with gc.Graph("r") as _:
            outs = region.outputs([gc.input(f"in{i}", (256,)) for i in range(region.inputs)])
        prog = gc.compile(outs, backend="triton")
        assert prog.num_kernels == 1, region.name
        feeds = {f"in{i}": (rng.random(256) + 0.5).astype(np.float32) for i in range(region.inputs)}
        got = prog(**{k: torch.as_tensor(v) for k, v in feeds.items()})
        want = gc.compile(outs, backend="numpy", fast=False)(**feeds)
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g.cpu().numpy(), r, rtol=1e-5, err_msg=region.name)
