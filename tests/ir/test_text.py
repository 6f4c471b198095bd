"""The IR text form round-trips (print → parse → equal) and rejects bad text clearly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.errors import ParseError
from shiftflow.ir.graph import Graph, Op
from shiftflow.ir.text import parse_graph, print_graph
from shiftflow.ir.types import TensorType, parse_type

names = st.text(alphabet="abcXYZ09_./:- ", min_size=1, max_size=8)


@st.composite
def int_types(draw, shape=None):
    bits = draw(st.integers(1, 32))
    signed = draw(st.booleans())
    shape = shape or tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    frac = draw(st.one_of(st.integers(-20, 40), st.lists(st.integers(-5, 20), min_size=shape[0], max_size=shape[0])))
    return TensorType(shape, "int", bits, signed, frac if isinstance(frac, int) else tuple(frac))


@settings(max_examples=100, deadline=None)
@given(t=st.one_of(int_types(), st.builds(TensorType.float32, st.lists(st.integers(0, 9), max_size=4))))
def test_type_round_trip(t):
    assert parse_type(str(t)) == t


@settings(max_examples=60, deadline=None)
@given(wt=int_types(), xname=names, opname=names, data=st.data())
def test_graph_round_trip(wt, xname, opname, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    w = rng.integers(wt.qmin, wt.qmax + 1, size=wt.shape, dtype=np.int64).astype(wt.storage_dtype())
    x = TensorType((1, 2, 3, 3), "int", 8, True, 3)
    attrs = {"strides": (1, 2), "pads": (0, 1, 0, 1), "groups": 1, "act": "leaky", "leaky_exp": -3,
             "clip": (-5, 7), "scale": data.draw(st.floats(allow_nan=False, allow_infinity=False)),
             "note": data.draw(st.text(max_size=10))}
    g = Graph(data.draw(names), (xname,), ("y",), (Op(opname, "requant", (xname,), ("y",), attrs),),
              {xname: x, "y": x, "w": wt}, {"w": w})
    text = print_graph(g)
    assert parse_graph(text) == g
    assert print_graph(parse_graph(text)) == text


def test_elided_text_does_not_parse():
    t = TensorType((2,), "int", 8, True, 0)
    g = Graph("g", ("x",), ("x",), (), {"x": t, "c": t}, {"c": np.zeros(2, np.int8)})
    with pytest.raises(ParseError, match="constant data was elided"):
        parse_graph(print_graph(g, elide=True))


@pytest.mark.parametrize("text, message", [
    ("", "empty IR text"),
    ("graph g(%x: q8[1]) -> (%x) {\n}", "expected a tensor type"),
    ("graph g(%x: i8<0>[1]) -> (%x) {\n  %y: i8<0>[1] = requant @r(%x) {bad json\n}", "bad attribute object"),
    ("graph g(%x: i8<0>[1]) -> (%x) {", "expected the closing"),
])
def test_parse_errors(text, message):
    with pytest.raises(ParseError, match=message):
        parse_graph(text)
