"""Readable views, checked as exact strings: the jaxpr-style listing of a graph (forward,
gradient and update nodes), a compiled Program's graph and formulas, and reprs."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.printing import format_node


def listing(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def two_layer() -> tuple[gc.Graph, gc.Tensor, gc.Tensor, gc.Tensor]:
    """The lecture's two-layer net, as written there."""
    with gc.Graph("two_layer") as g:
        x = gc.input("x", (64, 1000))
        y = gc.input("y", (64, 10))
        w1 = gc.param("w1", (1000, 100))
        w2 = gc.param("w2", (100, 10))
        loss = gc.sum((gc.relu(x @ w1) @ w2 - y) ** 2)
    return g, loss, w1, w2


TWO_LAYER_FORWARD = listing("""
    graph two_layer {
      inputs: x:f32[64,1000] y:f32[64,10]
      params: w1:f32[1000,100] w2:f32[100,10]
      t4:f32[64,100] = matmul x w1
      t5:f32[64,100] = relu t4
      t6:f32[64,10] = matmul t5 w2
      t7:f32[64,10] = sub t6 y
      t8:f32[64,10] = scalar_pow[exponent=2] t7
      t9:f32[] = sum[axis=(0, 1), keepdims=False] t8
    }
""")


def test_forward_graph_prints_one_line_per_node(capsys: pytest.CaptureFixture[str]) -> None:
    g, *_ = two_layer()
    print(g)
    assert capsys.readouterr().out == TWO_LAYER_FORWARD + "\n"
    assert str(g) == TWO_LAYER_FORWARD


def test_gradient_nodes_are_marked() -> None:
    """grad adds the backward pass to the same graph; each of its nodes ends in `# grad`."""
    g, loss, w1, w2 = two_layer()
    gc.grad(loss, [w1, w2])
    assert str(g) == TWO_LAYER_FORWARD.removesuffix("}") + listing("""
      t11:f32[1,1] = reshape[shape=(1, 1)] 1.0   # grad
      t12:f32[64,10] = broadcast_to[shape=(64, 10)] t11   # grad
      t13:f32[64,10] = fn[expr=2*a0*a1] t7 t12   # grad
      t14:f32[10,100] = transpose[perm=(1, 0)] w2   # grad
      t15:f32[64,100] = matmul t13 t14   # grad
      t16:f32[100,64] = transpose[perm=(1, 0)] t5   # grad
      t17:f32[100,10] = matmul t16 t13   # grad
      t18:f32[64,100] = fn[expr=a1*Step(a0)] t4 t15   # grad
      t19:f32[100,1000] = transpose[perm=(1, 0)] w1   # grad
      t20:f32[64,1000] = matmul t18 t19   # grad
      t21:f32[1000,64] = transpose[perm=(1, 0)] x   # grad
      t22:f32[1000,100] = matmul t21 t18   # grad
    }
    """)


def test_node_line_for_one_node() -> None:
    g, *_ = two_layer()
    (matmul, *_) = (n for n in g.nodes() if n.op == "matmul")
    assert format_node(g, matmul) == "t4:f32[64,100] = matmul x w1"


def test_compiled_program_prints_only_what_it_computes_and_its_outputs() -> None:
    """The Program's graph drops work its outputs do not need (here d loss/dx) and lists the outputs."""
    g, loss, w1, w2 = two_layer()
    dw1, dw2 = gc.grad(loss, [w1, w2])
    f = gc.compile([loss, dw1, dw2])
    lines = f.graph.splitlines()
    assert "t20:f32[64,1000] = matmul t18 t19   # grad" in str(g)
    assert not any(line.startswith(("  t19:", "  t20:")) for line in lines)
    assert lines[-2:] == ["  outputs: t9 t22 t17", "}"]
    assert f.formulas() == listing("""
        t5 = Relu(t4)
        t7 = t6 - y
        t8 = t7**2
        t13 = 2*t12*t7
        t18 = t15*Step(t4)
    """)
    assert f.formulas(latex=True).splitlines()[::4] == [
        r"t5 = \operatorname{Relu}{\left(t_{4} \right)}",
        r"t18 = t_{15} \operatorname{Step}{\left(t_{4} \right)}",
    ]


def test_training_step_prints_update_nodes_and_optimizer_state() -> None:
    with gc.Graph("step"):
        x = gc.input("x", (4, 3))
        w = gc.param("w", (3,), value=np.zeros(3))
        loss = gc.mean((x * w) ** 2)
    step = gc.compile(loss, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9))
    assert step.graph == listing("""
        graph step {
          inputs: x:f32[4,3]
          params: w:f32[3] w__velocity:f32[3]
          t2:f32[4,3] = mul x w
          t3:f32[4,3] = scalar_pow[exponent=2] t2
          t4:f32[] = sum[axis=(0, 1), keepdims=False] t3
          t6:f32[] = div t4 12.0
          t9:f32[1,1] = reshape[shape=(1, 1)] 0.083333336   # grad
          t10:f32[4,3] = broadcast_to[shape=(4, 3)] t9   # grad
          t11:f32[4,3] = fn[expr=2*a0*a1] t2 t10   # grad
          t12:f32[4,3] = fn[expr=a0*a1] x t11   # grad
          t13:f32[1,3] = sum[axis=(0,), keepdims=True] t12   # grad
          t14:f32[3] = reshape[shape=(3,)] t13   # grad
          t16:f32[3] = fn[expr=0.9*a0 + a1] w__velocity t14   # update
          t17:f32[3] = fn[expr=a0 - 0.1*a1] w t16   # update
          outputs: t6
        }
    """)
    assert step.formulas().splitlines()[-2:] == ["t16 = t14 + 0.9*w__velocity", "t17 = -0.1*t16 + w"]
    assert list(step.params) == ["w"]  # optimizer state is printed, but is not a trainable param


def test_constants_dtypes_and_attributes() -> None:
    """Scalar constants print inline in their own dtype; array constants are declared up top."""
    with gc.Graph("small") as g:
        a = gc.input("a", (3,))
        b = gc.param("b", (3,), value=np.zeros(3))
        c = gc.const(np.ones((2, 3)))
        gc.sum(a * b + c * 2.0, axis=1, keepdims=True)
        labels = gc.input("labels", (2,), dtype="int64")
        gc.input("mask", (2,), dtype="bool")
        logits = gc.input("logits", (2, 3), dtype="float64")
        gc.cross_entropy(logits, labels)
    assert str(g) == listing("""
        graph small {
          inputs: a:f32[3] labels:i64[2] mask:bool[2] logits:f64[2,3]
          params: b:f32[3]
          consts: t2:f32[2,3]
          t3:f32[3] = mul a b
          t5:f32[2,3] = mul t2 2.0
          t6:f32[2,3] = add t3 t5
          t7:f32[2,1] = sum[axis=(1,), keepdims=True] t6
          t11:f64[2,3] = one_hot[num_classes=3, dtype=float64] labels
          t12:f64[2,3] = log_softmax[axis=1] logits
          t13:f64[2,3] = mul t11 t12
          t14:f64[2] = sum[axis=(1,), keepdims=False] t13
          t15:f64[2] = neg t14
          t16:f64[] = sum[axis=(0,), keepdims=False] t15
          t18:f64[] = div t16 2.0
        }
    """)


def test_stability_rewrites_show_in_the_listing() -> None:
    """After grad, log(sigmoid(z)) reads as -softplus(-z) and log(1 - sigmoid(z)) as -softplus(z)."""
    with gc.Graph("logistic") as g:
        z = gc.input("z", (4,))
        y = gc.input("y", (4,))
        cost = -gc.mean(y * gc.log(gc.sigmoid(z)) + (1 - y) * gc.log(1 - gc.sigmoid(z)))
    gc.grad(cost, z)
    lines = str(g).splitlines()
    for line in ("  t16:f32[4] = neg z", "  t17:f32[4] = softplus t16", "  t3:f32[4] = neg t17",
                 "  t18:f32[4] = softplus z", "  t9:f32[4] = neg t18",
                 "  t25:f32[4] = fn[expr=a1*Sigmoid(a0)] z t24   # grad"):
        assert line in lines
    assert not any(" = log " in line for line in lines)


def test_reprs() -> None:
    g, loss, *_ = two_layer()
    assert repr(loss) == "<gc.Tensor t9:f32[] = sum>"
    assert repr(g) == "<gc.Graph 'two_layer': 10 nodes>"
    with gc.Graph("lecture"):
        x, y, z = (gc.input(n, ()) for n in "xyz")
        f = (x + y) * z
    assert repr(x) == "<gc.Tensor x:f32[] = input>"
    assert repr(gc.compile([f, *gc.grad(f, [x, y, z])])) == "<gc.Program 'lecture' on numpy: 2 kernels>"
