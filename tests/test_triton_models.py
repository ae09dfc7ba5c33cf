"""The Triton backend end to end: lecture models trained step by step against the NumPy oracle,
ragged sizes, every reduction axis, readable source, reports, and failure atomicity."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from conftest import to_numpy as as_np
from lecture_models import MODELS, feeds

pytest.importorskip("backends.triton")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", list(MODELS))
def test_training_matches_numpy_step_by_step(name: str) -> None:
    build, lr, target = MODELS[name]
    loss = build()
    ref = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="numpy")
    tri = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton")
    assert tri.num_kernels <= target
    batch = feeds(name, np.random.default_rng(0))
    for _ in range(3):
        want, got = ref(**batch), tri(**batch)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(as_np(got), want, rtol=1e-4)
    for k, v in ref.params.items():
        np.testing.assert_allclose(as_np(tri.params[k]), v, rtol=1e-3, atol=1e-5 * np.abs(v).max())


def test_feeds_may_be_torch_tensors_and_outputs_are_gradients_too() -> None:
    build, _, _ = MODELS["mlp"]
    loss = build()
    ws = [t for t in (gc.Tensor(loss.graph, n.id) for n in loss.graph.by_name("param").values())]
    outs = [loss, *gc.grad(loss, ws)]
    batch = feeds("mlp", np.random.default_rng(1))
    want = gc.compile(outs, backend="numpy", dtype="float64")(**batch)
    got = gc.compile(outs, backend="triton")(**{k: torch.as_tensor(v) for k, v in batch.items()})
    for w, g in zip(want, got):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-4, atol=1e-5 * np.abs(w).max())


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 1), (17, 3, 100), (100, 1000, 3), (1, 100, 17)])
def test_ragged_sizes(m: int, k: int, n: int) -> None:
    """Sizes that are multiples of no block: matmul, bias, softmax rows, reductions, seeded grads."""
    rng = np.random.default_rng(m * 1000 + n)
    with gc.Graph("ragged"):
        a = gc.input("a", (m, k))
        b = gc.input("b", (k, n))
        c = gc.input("c", (n,))
        z = gc.tanh(a @ b + c)
        outs = [gc.softmax(z, axis=-1), gc.sum(z, axis=0, keepdims=True), gc.max(z, axis=1), gc.mean(z)]
        grads = gc.grad(gc.sum(outs[0] * outs[0]) + outs[3], [a, b, c])
    feed = {"a": rng.standard_normal((m, k)).astype(np.float32),
            "b": (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32),
            "c": rng.standard_normal(n).astype(np.float32)}
    want = gc.compile([*outs, *grads], backend="numpy", dtype="float64")(**feed)
    got = gc.compile([*outs, *grads], backend="triton")(**feed)
    for w, g in zip(want, got):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("axis", [0, 1, 2, (0, 2), (1, 2), None])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_over_any_axis(axis, keepdims: bool) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(3).standard_normal((3, 17, 5)).astype(np.float32)
    with gc.Graph("red"):
        t = gc.input("x", x.shape)
        outs = [gc.sum(t, axis=axis, keepdims=keepdims), gc.max(gc.exp(t), axis=axis, keepdims=keepdims)]
    got = gc.compile(outs, backend="triton")(x=x)
    np.testing.assert_allclose(as_np(got[0]), x.astype(np.float64).sum(axis=axis, keepdims=keepdims), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(as_np(got[1]), np.exp(x).max(axis=axis, keepdims=keepdims), rtol=1e-6)


def test_softmax_along_a_leading_axis_and_nan_propagation() -> None:
    x = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    x[2, 1] = np.nan
    with gc.Graph("sm"):
        t = gc.input("x", x.shape)
        outs = [gc.softmax(t, axis=0), gc.log_softmax(t, axis=1), gc.max(t, axis=0), gc.relu(t)]
    want = gc.compile(outs, backend="numpy")(x=x)
    got = gc.compile(outs, backend="triton")(x=x)
    for w, g in zip(want, got):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-5, equal_nan=True)
    assert np.isnan(as_np(got[2])[1]) and not np.isnan(as_np(got[2])[0])


def test_label_out_of_range_raises_and_leaves_params_untouched() -> None:
    build, lr, _ = MODELS["mlp"]
    step = gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend="triton")
    before = {k: v.clone() for k, v in step.params.items()}
    batch = feeds("mlp", np.random.default_rng(5))
    batch["labels"][7] = 10
    with pytest.raises(gc.NumericError, match="label 10 is out of range for 10 classes"):
        step(**batch)
    for k, v in step.params.items():
        assert torch.equal(v, before[k])


def test_source_is_readable() -> None:
    build, lr, _ = MODELS["two_layer"]
    step = gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend="triton")
    src = step.source
    kernels = re.findall(r"^def (\w+)\(", src, re.M)
    assert [k for k in kernels if not k.startswith("_") and k != "main"] == [
        "matmul_0", "matmul_1", "reduce_2", "matmul_3", "matmul_4", "matmul_5"]
    # each kernel opens with a comment naming its nodes and the user's lines
    head = src[src.index("# matmul_0"):src.index("def matmul_0")]
    assert "t4:f32[64,1000]" not in head and "t4:f32[64,100] = matmul x w1" in head and "lecture_models.py:" in head
    for name in ("in_ptr0", "out_ptr0", "xnumel", "xoffset", "xindex", "xmask", "tmp0", "rindex"):
        assert name in src
    assert 'input_precision="ieee"' in src and "propagate_nan=tl.PropagateNan.ALL" in src
    assert "tl.arange(0, 64)" not in src  # extents are constexpr powers of two, never ragged literals


def test_report_counts_kernels_and_bytes() -> None:
    build, lr, _ = MODELS["logistic"]
    step = gc.compile(build(), optimizer=gc.optim.SGD(lr=lr), backend="triton")
    text = step.report()
    assert "3 kernels" in text and "B read" in text and "B written" in text and "arena" in text


def test_cse_shares_the_forward_sigmoid_with_its_gradient() -> None:
    with gc.Graph("cse"):
        x = gc.input("x", (17,))
        w = gc.input("w", (17,))
        s = gc.sigmoid(x)
        (g,) = gc.grad(s, [x], seed=w)
    prog = gc.compile([s, g], backend="triton")
    assert prog.num_kernels == 1
    body = prog.source[prog.source.index("def pointwise_0"):prog.source.index("LAUNCHES")]
    assert body.count("_sigmoid(") == 1
    xv = np.linspace(-5, 5, 17).astype(np.float32)
    sv, gv = prog(x=xv, w=np.ones(17, np.float32))
    ref = 1 / (1 + np.exp(-xv.astype(np.float64)))
    np.testing.assert_allclose(as_np(sv), ref, rtol=1e-6)
    np.testing.assert_allclose(as_np(gv), ref * (1 - ref), rtol=1e-5)


def test_outputs_that_are_sources_or_constants() -> None:
    with gc.Graph("src"):
        x = gc.input("x", (3,))
        p = gc.param("p", (3,), value=np.arange(3.0))
        (gx,) = gc.grad(gc.sum(x), [x])
    a, b, c = gc.compile([x, p, gx], backend="triton")(x=np.ones(3))
    assert as_np(a).tolist() == [1, 1, 1] and as_np(b).tolist() == [0, 1, 2] and as_np(c).tolist() == [1, 1, 1]


def test_unfused_mode_gives_the_same_numbers() -> None:
    build, lr, _ = MODELS["logistic"]
    loss = build()
    batch = feeds("logistic", np.random.default_rng(6))
    fused = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton")
    plain = gc.compile(loss, optimizer=gc.optim.SGD(lr=lr), backend="triton", fuse=False)
    assert plain.num_kernels > fused.num_kernels
    np.testing.assert_allclose(as_np(plain(**batch)), as_np(fused(**batch)), rtol=1e-6)


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


@pytest.mark.parametrize("interpret", [True, False])
def test_block_sizes_follow_the_gpu_rules(interpret: bool) -> None:
    """Power-of-two extents, tl.dot tiles of at least 16: for the interpreter's blocks and the GPU's."""
    from backends.triton.codegen import AUTOTUNE_CONFIGS, Tuning, generate_module
    from graphc.fusion import schedule
    from graphc.memory import plan_memory
    from graphc.plan import build_plan

    for name, (build, lr, _) in MODELS.items():
        plan = build_plan([build()], gc.optim.SGD(lr=lr))
        sched = schedule(plan)
        src = generate_module(sched, plan_memory(plan, sched), Tuning(interpret=interpret, autotune=not interpret), "")
        ns: dict = {}
        exec(src[src.index("LAUNCHES = ["):src.index("BUFFERS =")], ns)
        for launch in ns["LAUNCHES"]:
            assert all(_pow2(v) for v in launch["meta"].values()), launch
            if launch["kernel"].startswith("matmul") and interpret:
                assert min(launch["meta"].values()) >= 16
        if not interpret:
            assert src.count("@triton.autotune(") == sum(k.kind == "matmul" for k in sched)
    assert all(_pow2(v) and v >= 16 for cfg in AUTOTUNE_CONFIGS for v in cfg[:3])


def test_int64_offsets_only_when_a_tensor_may_exceed_2_31_elements() -> None:
    with gc.Graph("huge"):
        big = gc.exp(gc.input("x", (2**16, 2**15 + 1)))
    with gc.Graph("small"):
        small = gc.exp(gc.input("x", (3, 4)))
    assert "tl.program_id(0).to(tl.int64)" in gc.compile(big, backend="triton").source
    assert ".to(tl.int64)" not in gc.compile(small, backend="triton").source


def test_computed_labels_are_range_checked_after_they_are_computed() -> None:
    with gc.Graph("labels"):
        a = gc.input("a", (5,), dtype="int64")
        b = gc.input("b", (5,), dtype="int64")
        hot = gc.one_hot(a + b, 4)
    prog = gc.compile(hot, backend="triton")
    av, bv = np.array([0, 1, 2, 0, 1]), np.array([0, 1, 1, 3, 2])
    np.testing.assert_array_equal(as_np(prog(a=av, b=bv)), np.eye(4)[av + bv])
    with pytest.raises(gc.NumericError, match="label 4 is out of range for 4 classes"):
        prog(a=av, b=bv + np.array([0, 0, 0, 1, 0]))


def test_precision_option() -> None:
    with gc.Graph("prec"):
        out = gc.input("a", (17, 3)) @ gc.input("b", (3, 5))
    assert 'input_precision="tf32"' in gc.compile(out, backend="triton", precision="tf32").source
    assert 'input_precision="ieee"' in gc.compile(out, backend="triton").source
    with pytest.raises(gc.GraphError, match="unknown precision"):
        gc.compile(out, backend="triton", precision="fp16")


def test_cross_entropy_and_its_logits_gradient_in_one_row_kernel() -> None:
    with gc.Graph("ce"):
        z = gc.input("z", (64, 10))
        labels = gc.input("labels", (64,), dtype="int64")
        loss = gc.cross_entropy(z, labels)
        dz = gc.grad(loss, z)
    rng = np.random.default_rng(7)
    feed = {"z": rng.standard_normal((64, 10)).astype(np.float32), "labels": rng.integers(0, 10, 64)}
    prog = gc.compile([loss, dz], backend="triton")
    assert prog.num_kernels == 2  # the row kernel (log_softmax, row sums, dz) and the batch mean
    assert "pass 4: what needs the row reductions" in prog.source
    for want, got in zip(gc.compile([loss, dz], backend="numpy", dtype="float64")(**feed), prog(**feed)):
        np.testing.assert_allclose(as_np(got), want, rtol=1e-5, atol=1e-7)


def test_deep_pointwise_chain_matches_numpy() -> None:
    with gc.Graph("deep"):
        x = gc.input("x", (17,))
        y = x
        for _ in range(12):
            y = gc.tanh(y * y + y)
    xv = np.linspace(-1, 1, 17).astype(np.float32)
    want = gc.compile(y, backend="numpy", dtype="float64")(x=xv)
    np.testing.assert_allclose(as_np(gc.compile(y, backend="triton")(x=xv)), want, rtol=1e-4, atol=1e-6)


def test_reshape_of_a_transpose_inside_a_reduction() -> None:
    """Index arithmetic with // and % of compound offsets (row * 12 + column) prints parenthesized."""
    xv = np.arange(24, dtype=np.float32).reshape(4, 6) / 10
    with gc.Graph("idx"):
        x = gc.input("x", (4, 6))
        y = gc.exp(gc.reshape(gc.transpose(x), (2, 12)))
        outs = [gc.sum(y, axis=1), gc.max(gc.reshape(y, (3, 8)), axis=0)]
    want = gc.compile(outs, backend="numpy", dtype="float64")(x=xv)
    for w, g in zip(want, gc.compile(outs, backend="triton")(x=xv)):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-5)


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 2), (24,), (2, 12)])
def test_layout_chains_feeding_reductions_and_matmuls(perm: tuple, shape: tuple) -> None:
    """transpose -> reshape -> broadcast -> reduce / matmul: every index map against NumPy."""
    xv = np.random.default_rng(sum(shape)).standard_normal((2, 3, 4)).astype(np.float32)
    with gc.Graph("layout"):
        x = gc.input("x", (2, 3, 4))
        r = gc.reshape(gc.transpose(gc.sigmoid(x), perm), shape)
        flat = gc.reshape(r, (4, 6))
        outs = [gc.sum(r, axis=0), gc.max(r, axis=-1, keepdims=True), gc.transpose(flat) @ flat,
                gc.broadcast_to(gc.reshape(r, (1, 24)), (3, 24)) * 2.0, gc.softmax(flat, axis=0)]
        outs.append(gc.grad(gc.sum(outs[2]) + gc.sum(outs[4] * outs[4]), x))
    want = gc.compile(outs, backend="numpy", dtype="float64")(x=xv)
    for w, g in zip(want, gc.compile(outs, backend="triton")(x=xv)):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-4, atol=1e-6)


def test_float64_scalar_inside_a_float32_matmul_prologue() -> None:
    """The fuzzer's case: a float64 loss term makes the gradient flowing into a float32 matmul float64."""
    rng = np.random.default_rng(87)
    with gc.Graph("mixed"):
        x2 = gc.input("x2", (3, 2))
        p1 = gc.input("p1", (2, 3))
        x6 = gc.input("x6", (3, 3), dtype="float64")
        z = x2 @ p1
        loss = gc.bce_with_logits(z, 0.5, reduction="sum") + gc.l1_loss(z, x6)
        grads = gc.grad(loss, [x2, p1, x6])
    feed = {"x2": rng.standard_normal((3, 2)), "p1": rng.random((2, 3)) + 0.1, "x6": rng.standard_normal((3, 3))}
    want = gc.compile([loss, *grads], backend="numpy", dtype="float64")(**feed)
    for w, g in zip(want, gc.compile([loss, *grads], backend="triton")(**feed)):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-4, atol=1e-6)


def test_constant_float64_tile_and_scalar_conditions() -> None:
    """Two fuzzer finds: a matmul whose float64 operand folds to a constant (log(x/x) - 0.5), and
    min/max of a 0-d input against a one-hot (conditions mixing a scalar and a block)."""
    with gc.Graph("fuzzed"):
        x1 = gc.input("x1", (1, 2), dtype="float64")
        x11 = gc.input("x11", (2, 1))
        prod = (gc.log(x1 / x1) - 0.5) @ x11
        y0 = gc.input("y0", (2,), dtype="int64")
        x2 = gc.input("x2", ())
        mm = gc.minimum(x2, gc.maximum(x2, gc.one_hot(y0, 2)))
        grads = gc.grad(gc.sum(mm) + gc.sum(prod), [x2, x11])
    feed = {"x1": np.array([[0.5, 2.0]]), "x11": np.array([[1.0], [-3.0]]), "y0": np.array([1, 0]),
            "x2": np.float32(0.25)}
    outs = [prod, mm, *grads]
    want = gc.compile(outs, backend="numpy", dtype="float64")(**feed)
    for w, g in zip(want, gc.compile(outs, backend="triton")(**feed)):
        np.testing.assert_allclose(as_np(g), w, rtol=1e-5)
