"""graphc: a static-graph compiler for small neural networks.

Declare a model in the DSL, take gradients symbolically, compile for a
backend ("numpy" reference or "triton"), and read every formula and kernel.
"""

from . import data, nn, optim, train
from .autodiff import grad
from .dsl import (
    abs, add, apply, bce_loss, bce_with_logits, broadcast_to, clamp, const, cross_entropy, div, exp, fn, input,
    l1_loss, log, log_softmax, matmul, max, maximum, mean, minimum, mse_loss, mul, neg, one_hot, param, pow,
    relu, reshape, sigmoid, softmax, softplus, sqrt, sub, sum, sum_to, tanh, transpose,
)
from .errors import (
    ArgumentError, CycleError, DTypeError, FeedError, GradError, GraphError, GraphStateError, NumericError, ShapeError,
    UnknownOpError,
)
from .ir import Graph, Node, Tensor
from .ops import OPS
from .program import Program, compile
from .verify import verify

__all__ = [
    "Graph", "Node", "Tensor", "OPS", "Program", "compile", "grad", "data", "nn", "optim", "train", "verify",
    "GraphError", "ArgumentError", "ShapeError", "DTypeError", "FeedError", "CycleError", "UnknownOpError", "GradError",
    "GraphStateError", "NumericError",
    "input", "param", "const", "apply", "fn",
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh",
    "softplus", "maximum", "minimum", "clamp", "sum", "mean", "max", "matmul", "transpose", "reshape",
    "broadcast_to", "sum_to", "softmax", "log_softmax", "one_hot",
    "mse_loss", "l1_loss", "bce_loss", "bce_with_logits", "cross_entropy",
]
