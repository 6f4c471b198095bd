"""The Accelerator interface of the simulator, and hostile programs: every bad address or
field is a ProgramError naming the instruction, never a crash or a hang."""

import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.ir.config import TINY
from shiftflow.ir.cost import DMA_START
from shiftflow.ir.graph import Graph
from shiftflow.ir.isa import INSTR_BYTES, Dataflow, Opcode, VecOp, WgtTarget, encode
from shiftflow.ir.program import Program, ProgramError
from shiftflow.sim.accelerator import SimAccelerator
from tests.sim.asm import DRAM_SIZE, Asm, dram_box, geom, conv_asm, ring


def run(*words, dram_size=DRAM_SIZE):
    acc = SimAccelerator()
    acc.load_program(Program(TINY, b"".join(words), b"", Graph("t", (), (), (), {}), {"dram": {"size": dram_size}}))
    return acc, acc.run_segment(0, len(words))


FINISH = encode(Opcode.FINISH)


def test_dram_round_trip_and_counters():
    asm = Asm()
    asm.put(100, bytes(range(1, 33)))
    asm.emit(Opcode.LOAD_ACT, {"src": dram_box(100, 2, 1, 4, 16, 16), "ring": ring(0, 1, 8, 4)}, push_next=1)
    asm.emit(Opcode.VEC, {"op": VecOp.REQUANT, "win": {"sh": 1, "sw": 1}, "inp": geom(ring(0, 1, 8, 4), 1, 4, 8, False),
                          "tile": {"rows": 1, "cols": 4, "obuf_blk": 2, "obuf_cols": 4},
                          "post": {"lo": 0, "hi": 255}}, pop_prev=1, push_next=1)
    asm.emit(Opcode.STORE, {"dst": dram_box(200, 2, 1, 4, 16, 16)}, pop_prev=1)
    asm.emit(Opcode.FINISH)
    acc, cycles = asm.run(TINY)
    assert acc.read_dram(200, 32) == bytes(range(1, 33))
    c = acc.counters()
    assert c["cycles"] == cycles == acc.timeline().cycles
    assert c["dram_bytes"] == 64 and c["instructions"] == 4 and c["segments"] == 1
    # two 16-byte segments at 100 and 116, each starting 4 bytes into an 8-byte beat: 3 beats each
    assert c["units"]["load"]["busy"] == DMA_START + 16 + 2 * 3  # dram_latency 16, 3 beats each
    acc.run_segment(3, 1)  # FINISH alone is a segment too
    assert acc.counters()["segments"] == 2


def test_interface_errors():
    acc = SimAccelerator()
    with pytest.raises(ProgramError, match="no program loaded"):
        acc.read_dram(0, 1)
    acc, _ = run(FINISH, dram_size=64)
    with pytest.raises(ProgramError, match="outside the DRAM of 64 bytes"):
        acc.write_dram(60, bytes(8))
    with pytest.raises(ProgramError, match="outside the DRAM of 64 bytes"):
        acc.read_dram(-1, 2)
    with pytest.raises(ProgramError, match="outside the program's 1 instructions"):
        acc.run_segment(0, 2)
    with pytest.raises(ProgramError, match="DRAM size"):
        SimAccelerator().load_program(Program(TINY, FINISH, b"", Graph("t", (), (), (), {}), {"dram": {}}))


@pytest.mark.parametrize("word, message", [
    (encode(Opcode.LOAD_WGT, {"dram_addr": DRAM_SIZE - 8, "nbytes": 16}), "reads DRAM bytes"),
    (encode(Opcode.LOAD_WGT, {"nbytes": 8, "target": WgtTarget.PARAMS, "sram_addr": 256 * 8 - 4}),
     "of a parameter bank of 2048"),
    (encode(Opcode.LOAD_ACT, {"src": dram_box(DRAM_SIZE - 8, 1, 1, 4, 16, 16), "ring": ring(0, 1, 4, 4)}),
     "outside the DRAM"),
    (encode(Opcode.LOAD_ACT, {"src": dram_box(0, 1, 1, 4, 16, 16), "ring": ring(4094, 1, 4, 4)}),
     "outside the line buffer of 4096"),
    (encode(Opcode.LOAD_ACT, {"src": dram_box(0, 2, 1, 4, 16, 16), "ring": ring(0, 1, 4, 4)}),
     "cannot hold 2 blocks of 4 columns"),
    (encode(Opcode.LOAD_ACT, {"src": dram_box(0, 1, 3, 4, 16, 16), "ring": ring(0, 2, 4, 4)}),
     "at most 2 rows"),
    (encode(Opcode.LOAD_ACT, {"src": dram_box(0, 1, 1, 4, 16, 16), "ring": ring(0, 0, 4, 4)}), "ring has 0 slots"),
    (encode(Opcode.STORE, {"dst": dram_box(0, 1, 1, 4, 16, 16), "obuf_addr": 510}), "of a half of 512"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1}, "inp": {"chans": 1},
                          "tile": {"rows": 1, "cols": 1, "obuf_blk": 1, "obuf_cols": 1}, "w_addr": 512}),
     "weight words 512..512 of a bank of 512"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1}, "inp": {"chans": 1},
                          "tile": {"rows": 1, "cols": 1, "obuf_blk": 1, "obuf_cols": 1}, "p_addr": 254}),
     "parameter entries 254..257"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1}, "inp": {"chans": 1},
                          "tile": {"rows": 1, "cols": 1, "obuf_blk": 1, "obuf_cols": 1}, "p_addr": 6}),
     "p_addr 6 is not a multiple of tm \\(4\\)"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 0, "sw": 1, "dh": 1, "dw": 1}}), "win.sh must be"),
    (encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 3, "dh": 1, "dw": 1},
                          "inp": {"chans": 1}, "tile": {"rows": 1, "cols": 1, "obuf_blk": 1, "obuf_cols": 1}}),
     "pixel-parallel reads column stride 1 or 2, win.sw is 3"),
    (encode(Opcode.CONV, {"dataflow": Dataflow.CHANNEL, "depthwise": 1, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1,
                                                                                 "dh": 1, "dw": 1}}),
     "no depthwise mode"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1},
                          "tile": {"rows": 3, "cols": 2, "obuf_blk": 1}, "post": {"pool": 2}}),
     "cannot be max-pooled"),
    (encode(Opcode.CONV, {"win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1},
                          "tile": {"rows": 2, "cols": 2, "obuf_blk": 2, "obuf_cols": 2}}), "must be 1"),
    (encode(Opcode.VEC, {"op": VecOp.REQUANT, "win": {"sh": 1, "sw": 1},
                         "inp": dict(geom(ring(0, 2, 8, 8), 4, 8, 4, True), slot_first=1),
                         "tile": {"rows": 4, "cols": 8, "obuf_blk": 1, "obuf_cols": 8}}), "not below 2\\*slots"),
    (encode(Opcode.NMS), "needs levels >= 1"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_instruction_is_named(word, message):
    with pytest.raises(ProgramError, match=r"instruction 1 \(") as info:
        run(encode(Opcode.NOP), word, FINISH)
    assert len(str(info.value).splitlines()) == 1
    assert re.search(message, str(info.value)), str(info.value)


def test_vec_ring_narrower_than_the_image():
    # ring of 4 columns, image 8 wide, tile reads columns 0..7: column 4 is outside the ring
    word = encode(Opcode.VEC, {"op": VecOp.REQUANT, "win": {"sh": 1, "sw": 1}, "inp": geom(ring(0, 2, 8, 4), 2, 8, 4, True),
                               "tile": {"rows": 2, "cols": 8, "obuf_blk": 1, "obuf_cols": 8}})
    with pytest.raises(ProgramError, match=r"instruction 0 \(VEC\): image column 4 is not in the ring \(columns 0..3\)"):
        run(word, FINISH)


def _conv_program() -> tuple[list[bytes], np.ndarray]:
    """A valid little conv program (and its DRAM image) to mutate."""
    rng = np.random.default_rng(0)
    asm, *_ = conv_asm(TINY, rng.integers(-9, 9, (5, 6, 6)), rng.integers(-9, 9, (6, 5, 3, 3)), np.zeros(6, int),
                       np.full(6, 4), pads=(1, 1, 1, 1), act="relu", pool=2)
    return asm.words, asm.dram


VALID_WORDS, VALID_DRAM = _conv_program()


@st.composite
def mutated_programs(draw):
    """The valid conv program with a few random bit flips in instruction bodies (headers kept,
    so the token protocol stays intact), or with random bodies."""
    words = [bytearray(w) for w in VALID_WORDS]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(words) - 2))
        if draw(st.booleans()):
            words[i][1:] = draw(st.binary(min_size=INSTR_BYTES - 1, max_size=INSTR_BYTES - 1))
        else:
            bit = draw(st.integers(8, 8 * INSTR_BYTES - 1))
            words[i][bit // 8] ^= 1 << (bit % 8)
    return [bytes(w) for w in words]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=mutated_programs())
def test_hostile_programs_fail_cleanly(words):
    t0 = time.perf_counter()
    acc = SimAccelerator(check_races=True)
    try:  # decoding rejects enum fields out of range, execution the rest
        acc.load_program(Program(TINY, b"".join(words), b"", Graph("t", (), (), (), {}), {"dram": {"size": DRAM_SIZE}}))
        acc.write_dram(0, VALID_DRAM.tobytes())
        acc.run_segment(0, len(words))
    except ProgramError as exc:
        assert "\n" not in str(exc) and re.match(r"instruction \d+ \(", str(exc)), str(exc)
    assert time.perf_counter() - t0 < 5


def test_zero_sized_boxes_are_no_ops():
    acc, cycles = run(encode(Opcode.LOAD_ACT, {"src": dram_box(DRAM_SIZE + 5, 0, 3, 3, 1, 1)}),
                      encode(Opcode.STORE, {"dst": dram_box(0, 1, 0, 1, 1, 1)}), FINISH)
    assert acc.read_dram(0, 4) == bytes(4)
    # empty DMAs take two cycles: LOAD_ACT 26..28, STORE 34..36 (another unit; tiny's heads start
    # two cycles after their dispatch); FINISH waits for its fetch (F = 16 + 3*8 = 40): 42..43
    assert cycles == 42 + TINY.dispatch_stage
