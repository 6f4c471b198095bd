"""The race check: conflicting accesses of different units must be ordered by tokens."""

import numpy as np
import pytest

from shiftflow.ir.config import TINY
from shiftflow.ir.cost import DMA_START
from shiftflow.ir.isa import Opcode, VecOp
from shiftflow.ir.program import ProgramError
from shiftflow.sim.accelerator import SimAccelerator
from tests.sim.asm import Asm, blocked, conv_asm, dram_box, geom, load_image

X = np.arange(-24, 24).reshape(3, 4, 4)  # 3 channels (one block of tn=4) of 4x4


def requant_tile(asm, rg, half, **flags):
    asm.emit(Opcode.VEC, {"op": VecOp.REQUANT, "win": {"sh": 1, "sw": 1}, "inp": geom(rg, 4, 4, 3, True),
                          "tile": {"rows": 4, "cols": 4, "obuf_blk": 1, "obuf_cols": 4, "half": half},
                          "post": {"lo": -128, "hi": 127}}, **flags)


def store(asm, addr, half, **flags):
    asm.emit(Opcode.STORE, {"dst": dram_box(addr, 1, 4, 4, 16, 64), "half": half}, **flags)


def race(asm):
    acc = SimAccelerator(check_races=True)
    acc.load_program(asm.program(TINY))
    acc.write_dram(0, asm.dram.tobytes())
    try:
        acc.run_segment(0, len(asm.words))
    except ProgramError as exc:
        return str(exc)
    return None


def copy_program(load_push=1, vec_pop=1, vec_push=1, store_pop=1):
    asm = Asm()
    asm.put(0, blocked(X, 4))
    rg = load_image(asm, TINY, X, 0, 0, push_next=load_push)
    requant_tile(asm, rg, 0, pop_prev=vec_pop, push_next=vec_push)
    store(asm, 0x1000, 0, pop_prev=store_pop)
    asm.emit(Opcode.FINISH)
    return asm


def test_ordered_programs_have_no_race():
    assert race(copy_program()) is None
    rng = np.random.default_rng(0)
    asm, *_ = conv_asm(TINY, rng.integers(-9, 9, (5, 6, 6)), rng.integers(-9, 9, (9, 5, 3, 3)), np.zeros(9, int),
                       np.full(9, 4), pads=(1, 1, 1, 1))
    assert race(asm) is None


def test_load_then_compute_without_token():
    message = race(copy_program(load_push=0, vec_pop=0))
    start = 33 + TINY.dispatch_stage  # both leave their queues then; the staged word adds a cycle
    end = start + DMA_START + 16  # the load starts then too: DMA_START, dram_latency 16, its beat
    assert message.startswith("instruction 0 (LOAD_ACT) and instruction 1 (VEC) race on line buffer 0..3: "
                              f"the later one starts at cycle {start}, before the earlier one ends at cycle {end}")


def test_compute_then_store_without_token():
    assert "instruction 1 (VEC) and instruction 2 (STORE) race on output buffer half 0" in \
        race(copy_program(vec_push=0, store_pop=0))


def test_output_half_reused_before_the_store_read_it():
    asm = copy_program()
    asm.words.pop()  # FINISH
    requant_tile(asm, {"base": 0, "slots": 4, "slot_words": 4, "cols": 4}, 0)  # same half, no pop_next
    asm.emit(Opcode.FINISH)
    assert "instruction 2 (STORE) and instruction 3 (VEC) race on output buffer half 0" in race(asm)


def test_dram_written_by_store_and_read_by_a_load():
    def program(chain):
        asm = copy_program()
        asm.words.pop()
        asm.words.pop()
        store(asm, 0x1000, 0, pop_prev=1, push_prev=chain)
        if chain:
            asm.emit(Opcode.NOP, pop_next=1, push_prev=1)
        asm.emit(Opcode.LOAD_ACT, {"src": dram_box(0x1000 + 16, 1, 2, 4, 16, 64),
                                   "ring": {"base": 100, "slots": 2, "slot_words": 4, "cols": 4}}, pop_next=chain)
        asm.emit(Opcode.FINISH)
        return asm

    assert race(program(chain=1)) is None
    assert "instruction 2 (STORE) and instruction 3 (LOAD_ACT) race on DRAM 4112..4127" in race(program(chain=0))


@pytest.mark.parametrize("target", ["read", "write"])
def test_disjoint_accesses_do_not_race(target):
    asm = copy_program(load_push=1, vec_pop=1)
    asm.words.pop()
    # another unit touches a different ring (reads a DRAM box nobody writes)
    asm.emit(Opcode.LOAD_ACT, {"src": dram_box(0x2000, 1, 4, 4, 16, 64),
                               "ring": {"base": 500, "slots": 4, "slot_words": 4, "cols": 4}})
    asm.emit(Opcode.FINISH)
    assert race(asm) is None
