"""Slow tier: the compute unit as Verilog under Verilator + cocotb, on single instructions of
compiled programs (the same replay as tests/hw/test_compute.py, through the unit's own load
and store ports), and its synthesis figures."""

import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.hw.compute import ComputeUnit
from shiftflow.hw.synth import synthesize
from shiftflow.hw.tb.runner import build_model, run_cocotb
from shiftflow.hw.verilog import lint, write_verilog
from shiftflow.ir.config import TINY
from shiftflow.ir.isa import Opcode, VecOp
from tests.backend.models import vec_model
from tests.hw import cocotb_compute
from tests.hw.replay import expected_cycles
from tests.hw.trace import trace
from tests.modelgen import conv_layer_model

pytestmark = pytest.mark.slow


def written_words(ins) -> list[tuple[int, int]]:
    """(half, word) of every output-buffer word instruction ``ins`` writes."""
    f = ins.f
    p = f["post.pool"] or 1
    blk = TINY.tm // TINY.tn if ins.opcode == Opcode.CONV else f["tile.obuf_blk"]
    base, cols = f["tile.obuf_addr"], f["tile.obuf_cols"]
    return [(f["tile.half"], base + (r * cols + q) * blk + k)
            for r in range(f["tile.rows"] // p) for q in range(f["tile.cols"] // p) for k in range(blk)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    design = write_verilog(ComputeUnit(TINY), "compute_tiny", tmp_path_factory.mktemp("verilog"))
    return build_model(design)


CASES = [
    (conv_layer_model(cin=6, cout=5, hw=(6, 7), act="leaky"), "channel", Opcode.CONV),
    (conv_layer_model(cin=3, cout=4, hw=(6, 7), stride=2, pow2=True), "pixel", Opcode.CONV),
    (conv_layer_model(cin=4, cout=4, groups=4, hw=(7, 9)), "pixel", Opcode.CONV),
    (vec_model("maxpool", k=3, s=3, p=0, hw=(9, 15)), "pixel", Opcode.CONV),
    (vec_model("add"), "auto", Opcode.VEC),
    (vec_model("maxpool"), "auto", Opcode.VEC),
]


def test_compute_unit_under_verilator(model, tmp_path):
    snaps = []
    for k, (onnx_model, dataflow, opcode) in enumerate(CASES):
        path = tmp_path / f"m{k}.onnx"
        onnx.save(onnx_model, path)
        program = compile_model(path, "tiny", dataflow=dataflow)
        snaps += trace(program, lambda ins, op=opcode: ins.opcode == op, limit=2)
    assert {VecOp(s.ins.f["op"]) for s in snaps if s.ins.opcode == Opcode.VEC} == {VecOp.ADD, VecOp.MAXPOOL}
    cases = tmp_path / "cases.npz"
    cocotb_compute.save_cases(cases, snaps, [expected_cycles(TINY, s.ins) for s in snaps],
                              [written_words(s.ins) for s in snaps])
    run_cocotb(model, cocotb_compute.__name__, env={"COMPUTE_CASES": str(cases)}, test_dir=tmp_path / "run")


def test_compute_unit_lint_and_synthesis(tmp_path):
    design = write_verilog(ComputeUnit(TINY), "compute_tiny", tmp_path)
    lint(design)
    r = synthesize(design, "xilinx")
    assert r.dsp >= TINY.tm * TINY.tn  # one DSP per MAC
    assert r.bram >= 8, r  # the buffers are block RAM, not LUTs
