# amaranth: UnusedElaboratable=no
"""hw/loadstore.py in amaranth.sim on the ``tiny`` target (``tn = 4``, 8-byte beats): the load
unit, the compute unit and the store unit, the DMA halves joined on one memory port with the
Python DRAM model, run the instructions of compiled programs in lockstep with ``sim.machine``
(``tests/hw/lsbench.py``): every memory an instruction writes (line buffer, weight and
parameter banks, output buffer, DRAM) equals the machine's bit for bit, and without memory
stalls every instruction takes exactly ``ir.timeline.instruction_cycles`` from acceptance to
``done``."""

import dataclasses

import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ShiftflowError
from shiftflow.hw.axi import MemJoin
from shiftflow.hw.loadstore import LoadUnit, StoreUnit
from shiftflow.ir.config import TINY
from shiftflow.ir.isa import Opcode
from shiftflow.ir.timeline import instruction_cycles
from shiftflow.zoo import zoo_model
from tests.backend.models import vec_model
from tests.hw.lsbench import pick, run, segments
from tests.modelgen import conv_layer_model

DMA_OPS = (Opcode.LOAD_ACT, Opcode.LOAD_WGT, Opcode.STORE)


def compiled(tmp_path, model, dataflow="auto"):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, TINY, dataflow=dataflow)


def check_exact(out):
    want = [instruction_cycles(TINY, ins) for ins in out.instrs]
    bad = [(ins.where(), got, w) for ins, got, w in zip(out.instrs, out.cycles, want) if got != w]
    assert not bad, f"(instruction, cycles, model) differ: {bad[:5]}"


def has(seg, opcode, pred):
    return any(ins.opcode == opcode and pred(ins.f) for ins in seg.instrs)


def test_conv_layer_with_a_store_and_a_load_at_once(tmp_path):
    """A channel-parallel layer (two input blocks, odd and unaligned row segments); one STORE
    and the next LOAD_ACT are issued in the same cycle: the read and write halves of the port
    are independent, so both keep their exact cycles."""
    seg = segments(compiled(tmp_path, conv_layer_model(cin=6, cout=5, hw=(6, 7)), "channel"))[0]
    for feature in (lambda f: f["src.nblk"] == 2, lambda f: f["src.dram_addr"] % 8, lambda f: f["src.ncols"] % 2):
        assert has(seg, Opcode.LOAD_ACT, feature)
    at = next(k for k, ins in enumerate(seg.instrs)
              if ins.opcode == Opcode.STORE and seg.instrs[k + 1].opcode == Opcode.LOAD_ACT)
    check_exact(run(TINY, seg, pairs={at}))


def test_depthwise_both_banks(tmp_path):
    """Weights and parameters into both banks; stores at unaligned DRAM addresses."""
    seg = segments(compiled(tmp_path, conv_layer_model(cin=8, cout=8, groups=8, hw=(7, 9)), "pixel"))[0]
    for target in (0, 1):
        for bank in (0, 1):
            assert has(seg, Opcode.LOAD_WGT, lambda f: (f["target"], f["bank"]) == (target, bank))
    assert has(seg, Opcode.STORE, lambda f: f["dst.dram_addr"] % 8)
    check_exact(run(TINY, seg))


def test_vector_ops(tmp_path):
    seg = segments(compiled(tmp_path, vec_model("add", hw=(5, 6))))[0]
    assert has(seg, Opcode.VEC, lambda f: True)
    check_exact(run(TINY, seg))


def test_fields_the_compiler_leaves_alone(tmp_path):
    """Instructions of a compiled program with fields changed where the ISA allows more: ring
    rows that wrap past the last slot, a first slot beyond the ring (slot0 >= slots), a ring
    at word 1; weights and parameters into bank 1 at nonzero on-chip addresses from
    unaligned DRAM; a STORE of two blocks (output-buffer stride 2) with row and block strides
    that are not multiples of the beat; empty transfers."""
    seg = segments(compiled(tmp_path, conv_layer_model(cin=3, cout=4, hw=(6, 7)), "pixel"))[0]
    ops = [ins.opcode for ins in seg.instrs]
    assert ops[:6] == [Opcode.LOAD_WGT, Opcode.LOAD_WGT, Opcode.LOAD_ACT, Opcode.LOAD_ACT, Opcode.CONV,
                       Opcode.STORE], ops
    f2, f5 = seg.instrs[2].f, seg.instrs[5].f
    slots, nrows = f2["ring.slots"], f2["src.nrows"]
    assert slots >= nrows + 2
    variant = pick(seg, [
        (0, {}), (1, {}),
        (2, {"slot0": slots - 2}),  # rows wrap to slots 0..
        (2, {"slot0": slots + 1, "src__nrows": nrows - 1}),  # slot0 >= slots: one conditional subtract
        (2, {"ring__base": 1}),
        (0, {"dram_addr": 4, "sram_addr": 12, "nbytes": 101, "bank": 1}),
        (1, {"dram_addr": 132, "sram_addr": 20, "nbytes": 27, "bank": 1}),
        (3, {}), (4, {}), (5, {}),
        (5, {"dst__nblk": 2, "dst__ncols": 3, "dst__nrows": 2, "dst__row_stride": 36, "dst__blk_stride": 100,
             "dst__dram_addr": f5["dst.dram_addr"] + 4, "obuf_addr": 1}),
        (2, {"src__ncols": 0}), (0, {"nbytes": 0}), (5, {"dst__nrows": 0}),  # empty: one cycle each
    ])
    check_exact(run(TINY, variant))


def test_random_memory_stalls_stay_bit_exact(tmp_path):
    seg = segments(compiled(tmp_path, conv_layer_model(cin=3, cout=4, hw=(6, 7)), "pixel"))[0]
    out = run(TINY, seg, stall=0.3, seed=5)
    slower = [got > instruction_cycles(TINY, ins) for ins, got in zip(out.instrs, out.cycles) if ins.opcode in DMA_OPS]
    assert all(got >= instruction_cycles(TINY, ins) for ins, got in zip(out.instrs, out.cycles))
    assert any(slower), "the stalls never slowed a transfer"


def test_mnist_zoo_model():
    """The first instructions of the small mnist model's first segment."""
    seg = segments(compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny"))[0]
    n = next(k for k, ins in enumerate(seg.instrs) if ins.opcode == Opcode.STORE) + 1
    check_exact(run(TINY, seg, n))


@pytest.mark.parametrize("unit", [LoadUnit, StoreUnit])
def test_config_errors(unit):
    with pytest.raises(ShiftflowError, match="dram_latency") as err:
        unit(dataclasses.replace(TINY, dram_latency=0))
    assert "\n" not in str(err.value)


def test_join_width_error():
    with pytest.raises(ShiftflowError, match="power of two"):
        MemJoin(6)


@pytest.mark.slow
def test_verilator_lint(tmp_path):
    """Both units for both targets and the joiner are lint-clean Verilog."""
    from shiftflow.hw.verilog import lint, write_verilog
    from shiftflow.ir.config import ZU3EG
    for cfg in (TINY, ZU3EG):
        for unit in (LoadUnit, StoreUnit):
            lint(write_verilog(unit(cfg), f"{unit.__name__.lower()}_{cfg.name}", tmp_path))
    lint(write_verilog(MemJoin(TINY.dram_bytes_per_cycle), "mem_join", tmp_path))
