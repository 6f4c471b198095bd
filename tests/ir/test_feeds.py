"""One input loader and one rule for check, simulate and rtlsim (ir/feeds.py)."""

import numpy as np
import pytest

from shiftflow.errors import UsageError
from shiftflow.ir.feeds import graph_feeds, load_array
from shiftflow.ir.graph import Graph
from shiftflow.ir.types import TensorType

GRAPH = Graph("g", ("x",), (), (), {"x": TensorType.float32((1, 2, 3, 3))})


def test_arrays_become_float32_of_the_input_shape():
    for dtype in (np.float64, np.float16, np.int64, np.uint8):
        feeds = graph_feeds(GRAPH, np.ones((1, 2, 3, 3), dtype))
        assert feeds["x"].dtype == np.float32 and (feeds["x"] == 1).all()
    special = np.array([np.nan, np.inf, -np.inf] * 6, np.float32).reshape(1, 2, 3, 3)
    assert np.array_equal(graph_feeds(GRAPH, special)["x"], special, equal_nan=True)  # values like any other
    random = graph_feeds(GRAPH, seed=4)["x"]
    assert random.dtype == np.float32 and np.array_equal(random, graph_feeds(GRAPH, None, 4)["x"])


@pytest.mark.parametrize("given, message", [
    (np.ones((1, 2, 3)), r"^input 'x' must have shape \[1, 2, 3, 3\], got \[1, 2, 3\]$"),
    (np.ones((1, 2, 3, 3), bool), r"^input 'x' must hold float or integer numbers, got dtype bool$"),
    (np.full((1, 2, 3, 3), "a"), r"^input 'x' must hold float or integer numbers, got dtype <U1$"),
    ({"y": np.ones((1, 2, 3, 3))}, r"^unknown input\(s\) \['y'\]; the model takes \['x'\]$"),
    ({}, r"^missing input 'x'; the model takes \['x'\]$"),
])
def test_bad_given_inputs(given, message):
    with pytest.raises(UsageError, match=message):
        graph_feeds(GRAPH, given)


def test_load_array(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    np.savez(tmp_path / "one.npz", np.arange(4))
    np.savez(tmp_path / "two.npz", a=np.arange(1), b=np.arange(2))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert load_array(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert load_array(tmp_path / "one.npz").tolist() == [0, 1, 2, 3]
    with pytest.raises(UsageError, match=r"'.*two.npz' holds 2 arrays; give a .npy with the one input$"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(UsageError, match=r"^cannot read '.*bad.npy' as a .npy/.npz array: "):
        load_array(tmp_path / "bad.npy")
    with pytest.raises(UsageError, match=r"^cannot read '.*': it is a directory, not a .npy/.npz file$"):
        load_array(tmp_path)
    with pytest.raises(UsageError, match=r"^cannot read '.*nope.npy': no such file$"):
        load_array(tmp_path / "nope.npy")
