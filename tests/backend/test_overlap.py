"""Layer overlap (backend/overlap.py): chosen pairs are interleaved in program order, the
program stays free of hazards (an independent reading of the words), and the simulator's
outputs equal the interpreter's, with the pass on and off."""

import pytest

from shiftflow.backend.compile import compile_graph, run_backend
from shiftflow.backend.estimate import estimate_program
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.interpreter import Interpreter
from shiftflow.ir.config import TARGETS
from shiftflow.sim.check import compare_outputs
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model

from .hazards import check_program


def _graph(name, hw):
    return import_onnx(zoo_model(name, "w8a8", "qcdq", input_hw=hw))


@pytest.mark.parametrize("name, hw, target", [("mobilenet", (32, 32), "tiny"), ("detector", (64, 64), "zu3eg")])
def test_overlapped_pairs_interleave_and_stay_exact(name, hw, target):
    graph = _graph(name, hw)
    program = compile_graph(graph, TARGETS[target])
    layers = program.manifest["layers"]
    by_name = {x.name: x for x in run_backend(graph, TARGETS[target]).layers}
    pairs = [(i, x) for i, x in enumerate(layers) if "overlap" in by_name[x["name"]].params]
    assert pairs, "the model has depthwise -> pointwise pairs the pass should take"
    interleaved = 0
    for i, cons in pairs:
        prod = layers[i - 1]
        assert by_name[cons["name"]].params["overlap"] == prod["name"]
        assert by_name[prod["name"]].depthwise and by_name[prod["name"]].tiling.strips == 1
        assert by_name[cons["name"]].tiling.strips == 1
        interleaved += cons["first"] < prod["last"]  # a one-band producer has nothing to interleave
    assert interleaved, "some consumer starts before its producer ends"
    # the completion-front rule gives a pair's cycles to its layers in no meaningful split (on
    # det512 a consumer gets 12,868 cycles for 262,144 MAC cycles' work): the mean counts a pair
    # as one run, so it stays a utilization
    est = estimate_program(program)
    assert 0 < est["conv_mean_utilization"] <= 1 and 0 < est["conv_weighted_utilization"] <= 1
    check_program(program)
    result = simulate(program, seed=1)
    reference = Interpreter(program.graph).run(make_feeds(program, None, 1))
    assert compare_outputs(program, result.outputs, reference)["bit_exact"]


def test_overlap_off_keeps_layers_whole_and_the_same_outputs():
    graph = _graph("mobilenet", (16, 16))
    cfg = TARGETS["tiny"]
    off = compile_graph(graph, cfg, overlap=False)
    assert not any("overlap" in x.params for x in run_backend(graph, cfg, overlap=False).layers)
    layers = off.manifest["layers"]
    for a, b in zip(layers, layers[1:]):
        if a["segment"] == b["segment"]:
            # whole layers in order (only the next layer's first loads may be hoisted)
            assert b["last"] > a["last"]
    check_program(off)
    on = compile_graph(graph, cfg)
    outs = [simulate(p, seed=2).outputs for p in (off, on)]
    assert compare_outputs(on, outs[1], outs[0])["bit_exact"]
