"""The verifier names the pass and the op, and says what must hold."""

import numpy as np
import pytest

from shiftflow.errors import VerifyError
from shiftflow.ir.graph import Graph, Op
from shiftflow.ir.types import TensorType
from shiftflow.ir.verify import verify

X = TensorType((1, 2, 5, 5), "int", 8, True, 4)
W = TensorType((3, 2, 3, 3), "int", 4, True, 3)
Y = TensorType((1, 3, 3, 3), "int", 8, False, 2)
CONV = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, "act": "relu"}


def graph(ops, types=None, consts=None, outputs=("y",)):
    types = {"x": X, "w": W, "y": Y, **(types or {})}
    consts = {"w": np.zeros(W.shape, np.int8), **(consts or {})}
    return Graph("g", ("x",), outputs, ops, types, consts)


def test_valid_graph_passes():
    g = graph([Op("c", "conv", ("x", "w"), ("y",), CONV)])
    assert verify(g) is g


@pytest.mark.parametrize("ops, types, consts, outputs, message", [
    ([Op("c", "conv", ("x", "w"), ("y",), {**CONV, "strides": (2, 2)})], None, None, ("y",),
     r"op @c \(conv\): output %y has shape \(1, 3, 3, 3\), the op gives \(1, 3, 2, 2\)"),
    ([Op("c", "conv", ("x", "nope"), ("y",), CONV)], None, None, ("y",), "input %nope is not defined before use"),
    ([Op("c", "conv", ("x", "w"), ("y",), CONV), Op("c", "requant", ("y",), ("z",))], {"z": Y}, None, ("z",),
     "op name @c used twice"),
    ([Op("c", "conv", ("x", "w"), ("y",), {**CONV, "act": "gelu"})], None, None, ("y",), "act must be one of"),
    ([Op("c", "conv", ("x", "w"), ("y",), {k: v for k, v in CONV.items() if k != "groups"})], None, None, ("y",),
     "missing attribute 'groups'"),
    ([Op("c", "conv", ("x", "w"), ("y",), CONV)], None, {"w": np.full(W.shape, 9, np.int8)}, ("y",),
     r"constant %w holds values in \[9, 9\] outside i4<3>"),
    ([Op("c", "frobnicate", ("x",), ("y",))], None, None, ("y",), "unknown op kind 'frobnicate'"),
    ([], None, None, ("y",), "graph output %y is never defined"),
])
def test_verifier_errors(ops, types, consts, outputs, message):
    with pytest.raises(VerifyError, match="IR invalid after my_pass: .*" + message):
        verify(graph(ops, types, consts, outputs), after="my_pass")
