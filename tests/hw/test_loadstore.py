# amaranth: UnusedElaboratable=no
"""hw/loadstore.py in amaranth.sim on the ``tiny`` target: the load unit, the compute unit and
the store unit, the DMA halves joined on one memory port with the Python DRAM model, run the
instructions of compiled programs in lockstep with ``sim.machine`` (``tests/hw/lsbench.py``):
every memory an instruction writes (line buffer, weight and parameter banks, output buffer,
DRAM) equals the machine's bit for bit, and every instruction takes exactly
``ir.timeline.instruction_cycles`` from acceptance to ``done``."""

import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.ir.config import TINY
from shiftflow.ir.timeline import instruction_cycles
from tests.hw.lsbench import run, segments
from tests.modelgen import conv_layer_model


def compiled(tmp_path, model, dataflow="auto", cfg=TINY):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, cfg, dataflow=dataflow)


def check_exact(out, cfg=TINY):
    want = [instruction_cycles(cfg, ins) for ins in out.instrs]
    bad = [(ins.where(), got, w) for ins, got, w in zip(out.instrs, out.cycles, want) if got != w]
    assert not bad, f"(instruction, cycles, model) differ: {bad[:5]}"


@pytest.mark.parametrize("dataflow", ["channel"])
def test_conv_layer(dataflow, tmp_path):
    seg = segments(compiled(tmp_path, conv_layer_model(cin=6, cout=5, hw=(6, 7)), dataflow))[0]
    check_exact(run(TINY, seg))
