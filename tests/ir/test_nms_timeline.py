"""NMS in the cycle model (ir/timeline.py, docs/nms_core.md): a barrier on its own unit — it
starts when every unit has ended, nothing is dispatched before it ends — whose cost the
functional model measures; it takes no tokens (ir/decode.py)."""

import pytest

from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode, Unit, WgtTarget, encode
from shiftflow.ir.program import ProgramError
from shiftflow.ir.timeline import schedule

NMS = {"table_addr": 64, "levels": 1, "channels": 1, "classes": 1, "patch_addr": 128, "out_addr": 256}


def wgt(nbytes):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0, "nbytes": nbytes, "target": WgtTarget.WEIGHTS})


def test_nms_is_a_barrier_with_its_measured_cost():
    instrs = decode_program(wgt(512) + encode(Opcode.NMS, NMS) + wgt(8) + encode(Opcode.FINISH))
    assert instrs[1].unit == Unit.NMS
    tl = schedule(TINY, instrs, {1: 500})
    assert tl.cost[1] == 500
    assert tl.start[1] == tl.end[0]  # waits for the load unit's long transfer
    assert tl.dispatch[2] == tl.end[1] and tl.start[2] == tl.end[1] + 1 + TINY.dispatch_stage  # dispatched when NMS ends
    assert tl.unit_totals()["nms"] == {"busy": 500, "stall": tl.stall[1]} and tl.stall[1] > 0
    # Without a measurement (before the data exists) NMS costs one cycle.
    assert schedule(TINY, instrs).cost[1] == 1


def test_nms_takes_no_tokens():
    for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
        with pytest.raises(ProgramError, match=r"instruction 0 \(NMS\): the NMS unit takes and gives no tokens"):
            decode_program(encode(Opcode.NMS, NMS, **{flag: 1}) + encode(Opcode.FINISH))
