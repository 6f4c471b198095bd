"""The cycle model against hand-computed timelines (docs/isa.md, "Cycle model")."""

import dataclasses

import pytest

from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Dataflow, Opcode, WgtTarget, encode
from shiftflow.ir.program import ProgramError
from shiftflow.ir.timeline import schedule

# TINY: dram_latency 16, 8 bytes/cycle, so instruction k is fetched at 16 + 8*(k+1); with its
# dispatch stage a queue's head is visible two cycles after its dispatch.
assert (TINY.dram_latency, TINY.dram_bytes_per_cycle, TINY.queue_depth, TINY.pe_latency, TINY.dispatch_stage) == (
    16, 8, 4, 11, 1)


def wgt(nbytes, **flags):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0, "nbytes": nbytes, "target": WgtTarget.WEIGHTS}, **flags)


def conv_1x4(**flags):
    """Pixel-parallel 1x1 conv over one row of 4 columns, 1 channel: cost 1 (the start) +
    rows*ceil(cols/tn)*max(steps=1, drain=ceil(tm*tn/ppu_lanes)=2) + min(steps, drain) + pe_latency
    = 15."""
    return encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1},
                                "inp": {"chans": 1}, "tile": {"rows": 1, "cols": 4}}, **flags)


def timeline(*words):
    return schedule(TINY, decode_program(b"".join(words)))


def test_three_instructions_with_a_token():
    tl = timeline(wgt(64, push_next=1), conv_1x4(pop_prev=1), encode(Opcode.FINISH))
    assert tl.fetch == [24, 32, 40]
    assert tl.dispatch == [24, 32, 40]
    # LOAD_WGT: 2 + 16 + 64/8 = 26 cycles from 26. CONV waits for its token (end of the load, 52).
    assert tl.start == [26, 52, 67]
    assert tl.end == [52, 67, 68]
    assert tl.cost == [26, 15, 1]
    assert tl.stall == [0, 52 - 34, 0]
    assert tl.cycles == 68
    assert tl.unit_totals() == {"load": {"busy": 26, "stall": 0}, "compute": {"busy": 16, "stall": 18},
                                "store": {"busy": 0, "stall": 0}, "nms": {"busy": 0, "stall": 0}}


def test_queue_depth_delays_dispatch():
    # Six 118-cycle loads: with 4 queue entries, load 5 dispatches only once load 1 has
    # started (144 + 1), and the FINISH behind it dispatches one cycle later.
    tl = timeline(*[wgt(800)] * 6, encode(Opcode.FINISH))
    assert tl.fetch == [24, 32, 40, 48, 56, 64, 72]
    assert tl.dispatch == [24, 32, 40, 48, 56, 145, 146]
    assert tl.start == [26, 144, 262, 380, 498, 616, 734]
    assert tl.end == [144, 262, 380, 498, 616, 734, 735]
    assert tl.stall == [0, 0, 0, 0, 0, 0, 734 - 148]


def test_fetch_bound_program():
    # Each NOP starts two cycles after its dispatch (the stage), at its fetch + 2.
    tl = timeline(*[encode(Opcode.NOP)] * 3, encode(Opcode.FINISH))
    assert tl.start == [26, 34, 42, 50]
    assert tl.cycles == 51


def test_fetch_buffer_bound():
    # fetch_depth 2: instruction k's request waits for instruction k-2's dispatch, and its word
    # arrives 1 + latency 16 + 8 beats after it; the queue (depth 4) holds dispatch 5 to 145,
    # so the FINISH's word is requested only then.
    tl = schedule(dataclasses.replace(TINY, fetch_depth=2),
                  decode_program(b"".join([wgt(800)] * 7 + [encode(Opcode.FINISH)])))
    assert tl.fetch == [24, 32, 49, 57, 74, 82, 99, 145 + 25]
    assert tl.dispatch[:6] == [24, 32, 49, 57, 74, 145]
    assert all(tl.fetch[k] == max(tl.fetch[k - 1] + 8, tl.dispatch[k - 2] + 25) for k in range(2, 8))


def test_token_fifo_depth_is_enforced():
    long_conv = encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1},
                                     "inp": {"chans": 1}, "tile": {"rows": 1, "cols": 400}})
    # Three loads end (and push) while the long conv runs: three tokens wait at once.
    words = [wgt(8, push_next=1)] * 3 + [long_conv] + [conv_1x4(pop_prev=1)] * 3 + [encode(Opcode.FINISH)]
    assert schedule(dataclasses.replace(TINY, token_depth=3), decode_program(b"".join(words))).cycles > 0
    with pytest.raises(ProgramError, match=r"instruction 2 \(LOAD_WGT\) pushes a token that would be number 3 "
                                           r"waiting in the load->compute FIFO, deeper than token_depth \(2\)"):
        schedule(dataclasses.replace(TINY, token_depth=2), decode_program(b"".join(words)))


def test_kth_pop_takes_kth_push():
    tl = timeline(wgt(8, push_next=1), wgt(80, push_next=1), conv_1x4(pop_prev=1), conv_1x4(pop_prev=1),
                  encode(Opcode.FINISH))
    assert tl.end[:2] == [45, 45 + 28]
    assert tl.start[2:4] == [45, 73]


def test_pop_without_push_is_a_deadlock():
    with pytest.raises(ProgramError, match=r"instruction 1 \(CONV\) pops a token from the load unit"):
        timeline(wgt(8), conv_1x4(pop_prev=1), encode(Opcode.FINISH))
    with pytest.raises(ProgramError, match="deadlock"):  # the push comes later in program order
        timeline(conv_1x4(pop_prev=1), wgt(8, push_next=1), encode(Opcode.FINISH))


def test_segment_must_end_with_its_only_finish():
    with pytest.raises(ProgramError, match="must end with FINISH"):
        timeline(wgt(8))
    with pytest.raises(ProgramError, match="instruction 0 \\(FINISH\\) ends the segment before"):
        timeline(encode(Opcode.FINISH), encode(Opcode.FINISH))


def conv(rows=1, chans=1, wide=0, **flags):
    """Pixel-parallel 1x1 conv over ``rows`` rows of 4 columns: ``chans`` steps a group, a drain of
    ceil(tm*tn/ppu_lanes) = 2 slots times 2**wide byte planes."""
    return encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1},
                                "inp": {"chans": chans}, "tile": {"rows": rows, "cols": 4}, "wide": wide}, **flags)


def chained(*words):
    return schedule(dataclasses.replace(TINY, compute_chain=True), decode_program(b"".join(words)))


def test_chained_compute_starts_the_next_conv_during_the_last_drain():
    words = (conv(rows=4), conv(rows=4), encode(Opcode.NOP), encode(Opcode.FINISH))
    # Each CONV: 1 + 4 groups * max(1, 2) + min(1, 2) + 11 = 21 cycles.
    assert timeline(*words).start == [26, 47, 68, 69]
    tl = chained(*words)
    # The second CONV starts 21 - (min(1, 2) + 11) = 9 cycles after the first, when a fifth
    # group would have; the NOP (not chained) waits for its end, FINISH for every end.
    assert tl.start == [26, 35, 56, 57]
    assert tl.end == [47, 56, 57, 58]
    assert tl.cost == [21, 21, 1, 1]


def test_chained_conv_waits_for_the_previous_last_drain():
    # The first CONV: 8 steps, a drain of 2 * 4 planes = 8 slots: 1 + 8 + 8 + 11 = 28 cycles
    # from 26; its unit is free at 54 - 19 = 35, its last drain ends at 54 - 11 = 43. The second
    # (1 step) would start its first drain 1 + 1 cycles after its start: not before 43.
    tl = chained(conv(chans=8, wide=2), conv(), encode(Opcode.FINISH))
    assert tl.start[:2] == [26, 41]
    assert tl.end[:2] == [54, 56]


def test_chained_tokens_still_follow_ends():
    # A token pushed by a chained CONV is pushed at its end, as without chaining.
    tl = chained(conv(rows=4, push_prev=1), conv(rows=4), wgt(64, pop_next=1), encode(Opcode.FINISH))
    assert tl.start[:2] == [26, 35]
    assert tl.start[2] == 47


def test_cheaper_chaining_rules():
    # chain_front 3: the second CONV starts 3 cycles later than fully chained (35 + 3).
    words = (conv(rows=4), conv(rows=4), encode(Opcode.FINISH))
    tiny = dataclasses.replace(TINY, compute_chain=True, chain_front=3)
    assert schedule(tiny, decode_program(b"".join(words))).start[:2] == [26, 38]


def test_built_chaining_rule():
    # chain_retire_single (hw/compute.py; ir.timeline.chain_back): the second CONV is taken
    # slots + pe_latency - chain_front cycles before the first one's end (47), and its start
    # is held until its first sums (lead 1 + 1 step, then chain_front cycles) reach retire
    # after that end: not before 47 + 1 - 2 - chain_front. Built front (11 - 4 = 7): taken at
    # 47 - (2 + 4) = 41, no hold (39 < 41). Front 3: taken at 47 - 10 = 37, held to 43, its
    # 21 cycles then end at 64.
    words = (conv(rows=4), conv(rows=4), encode(Opcode.FINISH))
    built = dataclasses.replace(TINY, compute_chain=True, chain_front=7, chain_retire_single=True)
    tl = schedule(built, decode_program(b"".join(words)))
    assert (tl.start[:2], tl.end[:2], tl.cost[:2]) == ([26, 41], [47, 62], [21, 21])
    tl = schedule(dataclasses.replace(built, chain_front=3), decode_program(b"".join(words)))
    assert (tl.start[:2], tl.end[:2], tl.cost[:2]) == ([26, 37], [47, 64], [21, 27])
