"""The space-to-depth stem (backend/stem.py): the rewrite is the same integer conv, applies
only where its rule says, and a compiled stem is bit-exact through the ladder and faster.
The RTL run of the rewritten stem is in tests/hw/test_stem_rtl.py."""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.backend.estimate import estimate_program
from shiftflow.backend.stem import _rearranged_weights, space_to_depth_stem, stem_candidates
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir import intmath
from shiftflow.ir.config import load_target
from shiftflow.sim.check import check_simulation
from tests.backend.test_graphs import check_graph
from tests.graphgen import GraphSpec, Node, build_model
from tests.strategies import graphs


def stem_spec(c: int, h: int = 16, w: int = 12, stride: int = 2, reuse: bool = False, pow2: bool = False) -> GraphSpec:
    """Input ``(c, h, w)`` → 3×3 conv (pads 1, ``stride``) → 1×1 conv; ``reuse``: the input
    also feeds a second branch (so it is not the stem's alone)."""
    conv = dict(cout=8, k=3, stride=stride, pads=(1, 1, 1, 1), dilation=1, groups=1, wbits=8, pow2=pow2,
                per_channel=True, bias=True, act="relu")
    point = dict(conv, k=1, stride=1, pads=(0, 0, 0, 0), cout=6, pow2=False)
    nodes = [Node("conv", (0,), conv), Node("conv", (1,), point)]
    outputs = (2,)
    if reuse:
        nodes.append(Node("conv", (0,), dict(conv, cout=4)))
        outputs = (2, 3)
    return GraphSpec((c, h, w), tuple(nodes), outputs, seed=3)


def save(spec: GraphSpec, tmp_path) -> str:
    path = tmp_path / "stem.onnx"
    onnx.save(build_model(spec), path)
    return str(path)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_rearranged_conv_is_the_same_integers(c, h, w, seed):
    """conv3x3/s2/p1(x, W) == conv2x2/s1/pads(1,1,0,0)(s2d(x), W') exactly, for any codes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, c, 2 * h, 2 * w))
    wt = rng.integers(-128, 128, (5, c, 3, 3))
    ref = intmath.conv2d(x, wt, (2, 2), (1, 1, 1, 1), (1, 1), 1, (h, w))
    s2d = x.reshape(1, c, h, 2, w, 2).transpose(0, 3, 5, 1, 2, 4).reshape(1, 4 * c, h, w)
    got = intmath.conv2d(s2d, _rearranged_weights(wt), (1, 1), (1, 1, 0, 0), (1, 1), 1, (h, w))
    assert np.array_equal(ref, got)


@pytest.mark.parametrize("target, c, kw, rewritten", [
    ("zu3eg", 3, {}, True), ("zu3eg", 4, {}, True), ("tiny", 1, {}, True),
    ("tiny", 3, {}, False),  # 12 channels are three words on tn = 4: slower, kept
    ("zu3eg", 3, {"stride": 1}, False), ("zu3eg", 3, {"h": 15}, False), ("zu3eg", 3, {"reuse": True}, False),
])
def test_rule(tmp_path, target, c, kw, rewritten):
    graph = import_onnx(save(stem_spec(c, **kw), tmp_path))
    assert bool(stem_candidates(graph, load_target(target))) == rewritten
    if not rewritten:
        assert space_to_depth_stem(graph, load_target(target)) is graph


@pytest.mark.parametrize("target, c, pow2", [("tiny", 1, False), ("zu3eg", 3, False), ("zu3eg", 2, True)])
def test_compiled_stem_bit_exact_and_faster(tmp_path, target, c, pow2):
    path = save(stem_spec(c, h=32, w=32, pow2=pow2), tmp_path)
    program = compile_model(path, target)
    assert any(op.name.endswith("/s2d_pack") for op in program.graph.ops)
    result = check_simulation(program, path, seed=1)
    for level in ("L2_vs_L1", "L1_vs_L0"):
        assert result.checks[level]["bit_exact"] and result.checks[level]["max_abs_diff"] == 0, result.checks
    plain = compile_model(path, target, s2d=False)
    assert not any(op.name.endswith("/s2d_pack") for op in plain.graph.ops)
    assert estimate_program(program)["total_cycles"] < estimate_program(plain)["total_cycles"]
    # MACs are the model's (27 taps of 3x3xC per output), not the rewrite's zero taps
    assert program.manifest["layers"][0]["macs"] == plain.manifest["layers"][0]["macs"]


@st.composite
def stem_graphs(draw, max_c: int):
    """A whole random graph (``tests.strategies.graphs``) behind a drawn eligible stem: the
    stem's output (its ``cout`` the drawn graph's input channels) is the graph's tensor 1."""
    spec = draw(graphs(max_nodes=5))
    c0, h, w = spec.shape
    stem = Node("conv", (0,), dict(cout=c0, k=3, stride=2, pads=(1, 1, 1, 1), dilation=1, groups=1,
                                   wbits=draw(st.sampled_from([8, 4, 6])), pow2=draw(st.booleans()),
                                   per_channel=draw(st.booleans()), bias=draw(st.booleans()),
                                   act=draw(st.sampled_from(["relu", "none"]))))
    moved = tuple(n._replace(inputs=tuple(t + 1 for t in n.inputs)) for n in spec.nodes)
    return spec._replace(shape=(draw(st.integers(1, max_c)), 2 * h, 2 * w), nodes=(stem,) + moved,
                         outputs=tuple(t + 1 for t in spec.outputs))


@pytest.mark.parametrize("target, max_c", [("zu3eg", 4), ("tiny", 1)])
@settings(max_examples=25, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_graphs_behind_a_stem_bit_exact(target, max_c, data, tmp_path_factory):
    """Whole random graphs behind a rewritten stem: every level of the ladder bit-exact."""
    spec = data.draw(stem_graphs(max_c))
    seen = check_graph(spec, target, tmp_path_factory.mktemp("graph") / "m.onnx")
    assume(not any(s.startswith("refused") for s in seen))
    assert "space-to-depth stem" in seen
