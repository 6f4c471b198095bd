"""Scheduling: tokens balance (every pop has an earlier push, none is left over), no program
deadlocks, DMA overlaps compute, and the cycle estimate equals the simulator's timeline."""

import numpy as np
import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.backend.estimate import estimate_program
from shiftflow.ir.isa import to_dict
from shiftflow.sim.run import simulate
from shiftflow.zoo import zoo_model
from tests.backend.hazards import clocks, decode, segments
from tests.modelgen import conv_layer_model

ZOO = [("mnist", None), ("resnet", None), ("mobilenet", None), ("detector", (64, 64))]


@pytest.mark.parametrize("target", ["tiny", "zu3eg"])
@pytest.mark.parametrize("name, hw", ZOO)
def test_tokens_balance_and_estimate_matches_simulator(name, hw, target):
    program = compile_model(zoo_model(name, "w8a8", "qcdq", input_hw=hw), target)
    words = decode(program)
    for _, seg in segments(program, words):
        clocks(seg)  # raises on a pop without an earlier push
        counts = {f: sum(d[f] for d in seg) for f in ("pop_prev", "pop_next", "push_prev", "push_next")}
        assert counts["push_next"] == counts["pop_prev"] and counts["push_prev"] == counts["pop_next"], counts
    est = estimate_program(program)
    sim = simulate(program)
    assert est["total_cycles"] == sim.total_cycles
    assert [r["cycles"] for r in est["layers"]] == [r["cycles"] for r in sim.layers][:len(est["layers"])]


def test_dma_overlaps_compute(tmp_path):
    """A compute-bound layer runs within a few percent of its PE-array time: loads of the next
    band and the stores of the previous tile hide under the current tile."""
    path = tmp_path / "pw.onnx"
    onnx.save(conv_layer_model(cin=64, cout=64, hw=(48, 40), k=3, pad=1), path)
    program = compile_model(path, "tiny")
    est = estimate_program(program)
    seg = [x for x in program.manifest["segments"] if x["kind"] == "accel"][0]
    from tests.backend.hazards import decode as dec
    from shiftflow.ir.cost import conv_cycles
    words = dec(program)[seg["start"]:seg["start"] + seg["count"]]
    busy = sum(conv_cycles(program.config, w["conv"]["dataflow"] == "pixel", False, w["conv"]["inp"]["chans"], 3, 3,
                           w["conv"]["tile"]["rows"], w["conv"]["tile"]["cols"]) for w in words if w["opcode"] == "CONV")
    assert busy <= est["total_cycles"] <= 1.05 * busy


def test_relay_nops_only_hand_over_between_load_and_store():
    program = compile_model(zoo_model("resnet", "w8a8", "qcdq"), "tiny")
    words = decode(program)
    for d in words:
        if d["opcode"] == "NOP":
            assert d["pop_next"] or d["pop_prev"] and d["push_next"] or d["push_prev"]
    assert np.mean([d["opcode"] == "NOP" for d in words]) < 0.05


def test_decode_agrees_with_to_dict():
    program = compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny")
    words = decode(program)
    for i in range(0, program.n_instructions, 7):
        assert words[i] == to_dict(program.instruction(i))
