"""Per-layer attribution: layers add up to the segment, overlapping ranges count once."""

from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode, WgtTarget, encode
from shiftflow.ir.timeline import schedule
from shiftflow.sim.report import format_layers, layer_rows


def _load(nbytes, **flags):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0, "nbytes": nbytes, "target": WgtTarget.WEIGHTS}, **flags)


def _timeline(words):
    return schedule(TINY, decode_program(b"".join(words)))


def test_overlapping_ranges_attribute_each_instruction_once():
    # 0: layer B's weights, hoisted; 1-2: layer A; 3-4: layer B; 5: FINISH
    words = [_load(80), _load(8, push_next=1), encode(Opcode.NOP, pop_prev=1), _load(160, push_next=1),
             encode(Opcode.NOP, pop_prev=1), encode(Opcode.FINISH)]
    tl = _timeline(words)
    layers = [{"name": "A", "op": "conv", "dataflow": "pixel", "macs": 100, "first": 1, "last": 2},
              {"name": "B", "op": "add", "dataflow": None, "macs": 0, "first": 0, "last": 4}]
    a, b = layer_rows(TINY, layers, [tl])
    assert a["cycles"] + b["cycles"] == tl.cycles
    assert a["cycles"] == max(tl.end[:3])  # the completion front after A's last instruction
    assert a["dram_bytes"] == 8 and b["dram_bytes"] == 80 + 160
    assert a["stall_cycles"] + b["stall_cycles"] == sum(tl.stall[:5])
    assert a["utilization"] == 100 / (16 * a["cycles"])
    text = format_layers([a, b], tl.cycles, TINY.clock_mhz)
    assert text.splitlines()[2].split()[:3] == ["B", "add", "-"]


def test_segment_without_layers_is_unattributed():
    tl = _timeline([_load(8), encode(Opcode.FINISH)])
    (row,) = layer_rows(TINY, [], [tl])
    assert row["name"] == "(unattributed)" and row["cycles"] == tl.cycles and row["dram_bytes"] == 8
