# amaranth: UnusedElaboratable=no
"""hw/control.py in amaranth.sim (tests/hw/ctlbench.py): every instruction's fetch, dispatch,
start and end, the done cycle and every counter equal ``ir.timeline.schedule`` on compiled
programs and hand-built token programs, also with the fetch buffer and the queues at depth
1-2 so their bounds bind; random stalls on the fetch port keep order and consistency; errors
stop the controller with their code."""

import dataclasses
import random

import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ShiftflowError
from shiftflow.hw.control import UNITS, Controller
from shiftflow.hw.csr import STATUS_BUSY, STATUS_DONE, STATUS_ERROR, UNIT_COUNTERS, ErrorCode, Reg
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode, Unit, encode
from shiftflow.ir.program import ProgramError
from shiftflow.ir.timeline import schedule
from tests.backend.models import vec_model
from tests.hw.ctlbench import run_segments
from tests.modelgen import conv_layer_model

TIGHT = dataclasses.replace(TINY, name="tight", fetch_depth=1, queue_depth=1)
NARROW = dataclasses.replace(TINY, name="narrow", fetch_depth=2, queue_depth=2, dram_latency=5)


def compiled(tmp_path, model, cfg=TINY):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, cfg)


def accel_segments(program):
    return [(s["start"], s["count"]) for s in program.manifest["segments"] if s.get("kind") == "accel"]


def check_exact(cfg, program: bytes, segments, obs_list):
    """Every observed time and counter equals the cycle model's."""
    for (first, count), obs in zip(segments, obs_list, strict=True):
        instrs = decode_program(program, first, count)
        tl = schedule(cfg, instrs)
        assert obs.error is None, obs.regs
        assert obs.fetch == tl.fetch
        assert obs.dispatch == tl.dispatch
        for u in UNITS:
            mine = [k for k, ins in enumerate(instrs) if ins.unit == u and ins.opcode != Opcode.FINISH]
            assert obs.start[u] == [tl.start[k] for k in mine], u
            assert obs.end[u] == [tl.end[k] for k in mine], u
            assert obs.words[u] == [int.from_bytes(program[(first + k) * 64:(first + k + 1) * 64], "little")
                                    for k in mine]
        assert obs.done == tl.cycles == obs.regs[Reg.CYCLES] and not obs.busy_at_done
        assert obs.regs[Reg.STATUS] == STATUS_DONE and obs.regs[Reg.ERROR] == 0
        totals = tl.unit_totals()
        for u, (busy, stall) in zip(UNITS, UNIT_COUNTERS):
            assert (obs.regs[busy], obs.regs[stall]) == (totals[u.name.lower()]["busy"],
                                                         totals[u.name.lower()]["stall"]), u


MODELS = {
    "conv": lambda: conv_layer_model(cin=3, cout=4, hw=(6, 7)),
    "add": lambda: vec_model("add", c=4, hw=(5, 6)),
    "maxpool": lambda: vec_model("maxpool", hw=(6, 6)),
}


@pytest.mark.parametrize("cfg", [TINY, TIGHT, NARROW], ids=lambda c: c.name)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_compiled_programs_exact(model, cfg, tmp_path):
    prog = compiled(tmp_path, MODELS[model]())
    segs = accel_segments(prog)
    check_exact(cfg, prog.instructions, segs, run_segments(cfg, prog.instructions, segs, base=0x1000))


def word(op, **kw):
    return encode(op, None, **kw)


def load_wgt(**kw):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0x40, "nbytes": 24}, **kw)


def store(nrows=2, **kw):
    return encode(Opcode.STORE, {"dst": {"dram_addr": 0x100, "row_stride": 16, "blk_stride": 64, "nblk": 1,
                                         "nrows": nrows, "ncols": 3}}, **kw)


#: Hand-built segments: every token FIFO, pops in their push's cycle (the NOPs after the loads
#: and after the first STORE), a compute->store token left at FINISH, a FINISH that pops, and
#: a segment that is only its FINISH. (The compiled programs make the queue and fetch bounds
#: bind on TIGHT and NARROW.)
TOKEN_SEGMENTS = [
    [load_wgt(push_next=1), load_wgt(push_next=1), word(Opcode.NOP, pop_prev=1, push_next=1),
     store(pop_prev=1, push_prev=1), word(Opcode.NOP, pop_next=1, push_prev=1), load_wgt(pop_next=1),
     word(Opcode.NOP, pop_prev=1), word(Opcode.FINISH)],
    [store(), store(push_prev=1), word(Opcode.NOP, push_next=1), word(Opcode.NOP, push_prev=1, push_next=1),
     load_wgt(pop_next=1), store(pop_prev=1), word(Opcode.NOP), word(Opcode.NOP), word(Opcode.FINISH, pop_next=1)],
    [word(Opcode.FINISH)],
]


@pytest.mark.parametrize("cfg", [TINY, TIGHT, NARROW, ZU3EG], ids=lambda c: c.name)
def test_token_programs_exact(cfg):
    program = b"".join(w for seg in TOKEN_SEGMENTS for w in seg)
    starts = [sum(len(s) for s in TOKEN_SEGMENTS[:i]) for i in range(len(TOKEN_SEGMENTS))]
    segs = [(s, len(seg)) for s, seg in zip(starts, TOKEN_SEGMENTS)] * 2  # and again: state resets at start
    check_exact(cfg, program, segs, run_segments(cfg, program, segs))


def test_writes_while_busy_are_ignored():
    """A start and new SEG_ADDR / SEG_LEN written during a segment change nothing."""
    program = b"".join(TOKEN_SEGMENTS[0])
    segs = [(0, len(TOKEN_SEGMENTS[0]))]
    (obs,) = run_segments(TINY, program, segs, base=0x40, meddle=10)
    check_exact(TINY, program, segs, [obs])
    assert (obs.regs[Reg.SEG_ADDR], obs.regs[Reg.SEG_LEN]) == (0x40, len(TOKEN_SEGMENTS[0]))


@pytest.mark.parametrize("cfg,stall", [(NARROW, 0.3), (NARROW, 0.7), (TIGHT, 0.5)],
                         ids=["narrow-0.3", "narrow-0.7", "tight-0.5"])
def test_fetch_stalls_keep_order(cfg, stall, tmp_path):
    """With a stalling fetch port the times move, but every instruction runs once, in order,
    and the counters agree with what the executors saw."""
    prog = compiled(tmp_path, MODELS["add"]())
    segs = accel_segments(prog)
    for (first, count), obs in zip(segs, run_segments(cfg, prog.instructions, segs, stall=stall, seed=3)):
        instrs = decode_program(prog.instructions, first, count)
        tl = schedule(cfg, instrs)
        assert obs.error is None and obs.done == obs.regs[Reg.CYCLES] >= tl.cycles
        assert len(obs.dispatch) == count and all(d >= f for d, f in zip(obs.dispatch, obs.fetch))
        assert all(b > a for a, b in zip(obs.dispatch, obs.dispatch[1:]))
        position = {u: 0 for u in UNITS}
        ends = {u: 0 for u in UNITS}
        busy, stall_cycles = {u: 0 for u in UNITS}, {u: 0 for u in UNITS}
        for k, ins in enumerate(instrs):
            u = ins.unit
            if ins.opcode == Opcode.FINISH:
                s, e = obs.done - 1, obs.done
                assert s >= max(ends.values())
            else:
                i = position[u]
                position[u] += 1
                s, e = obs.start[u][i], obs.end[u][i]
                assert obs.words[u][i] == int.from_bytes(prog.instruction(first + k), "little")
                assert e - s == tl.cost[k]
            ready = max(obs.dispatch[k] + 1 + cfg.dispatch_stage, ends[u])
            assert s >= ready
            busy[u] += e - s
            stall_cycles[u] += s - ready
            ends[u] = e
        for u, (b, st) in zip(UNITS, UNIT_COUNTERS):
            assert (obs.regs[b], obs.regs[st]) == (busy[u], stall_cycles[u])


@pytest.mark.parametrize("bad,code", [
    (encode(Opcode.NMS), ErrorCode.ILLEGAL_OPCODE),
    ((7).to_bytes(64, "little"), ErrorCode.ILLEGAL_OPCODE),
    (word(Opcode.NOP), ErrorCode.NO_FINISH),  # the segment's last word is not FINISH
])
def test_errors_stop(bad, code):
    program = load_wgt() + word(Opcode.NOP) + bad + word(Opcode.FINISH)
    segs = [(0, 3), (2, 1), (3, 1)]  # the bad segment, one more bad one, then a good one (restart)
    first, second, good = run_segments(TINY, program, segs)
    for obs in (first, second):
        assert obs.done is None and obs.error is not None
        assert obs.regs[Reg.STATUS] == STATUS_ERROR and obs.regs[Reg.ERROR] == code
    assert first.start[Unit.LOAD] and first.error > first.start[Unit.LOAD][0]
    check_exact(TINY, program, [(3, 1)], [good])


def test_token_overflow():
    """token_depth 1: the load unit's second push comes while the compute unit still waits for
    the store unit, so nothing popped the first: overflow (the model rejects it too)."""
    cfg = dataclasses.replace(TINY, token_depth=1)
    seg = [load_wgt(push_next=1), load_wgt(push_next=1), store(nrows=8, push_prev=1),
           word(Opcode.NOP, pop_prev=1, pop_next=1), word(Opcode.NOP, pop_prev=1), word(Opcode.FINISH)]
    with pytest.raises(ProgramError, match="token_depth"):
        schedule(cfg, decode_program(b"".join(seg)))
    (obs,) = run_segments(cfg, b"".join(seg), [(0, len(seg))])
    assert obs.error == obs.end[Unit.LOAD][1] + 1
    assert obs.regs[Reg.ERROR] == ErrorCode.TOKEN_OVERFLOW and obs.regs[Reg.STATUS] == STATUS_ERROR


def test_a_segment_after_an_overflow_starts_with_empty_queues():
    """The overflow stops the segment with words still queued (the NOPs wait for tokens):
    the queues and counters are held empty from then on, so the next segment runs exactly
    as if alone."""
    cfg = dataclasses.replace(TINY, token_depth=1)
    seg = [load_wgt(push_next=1), load_wgt(push_next=1), store(nrows=8, push_prev=1),
           word(Opcode.NOP, pop_prev=1, pop_next=1), word(Opcode.NOP, pop_prev=1), word(Opcode.FINISH)]
    good = [load_wgt(), word(Opcode.NOP), store(nrows=8), word(Opcode.FINISH)]
    program = b"".join(seg + good)
    bad_run, good_run = run_segments(cfg, program, [(0, len(seg)), (len(seg), len(good))])
    assert bad_run.regs[Reg.ERROR] == ErrorCode.TOKEN_OVERFLOW
    check_exact(cfg, program, [(len(seg), len(good))], [good_run])


def test_empty_segment_is_an_error():
    (obs,) = run_segments(TINY, word(Opcode.FINISH), [(0, 0)])
    assert obs.error == 1 and obs.regs[Reg.ERROR] == ErrorCode.NO_FINISH


def test_status_bits_match_the_map():
    assert (STATUS_BUSY, STATUS_DONE, STATUS_ERROR) == (1, 2, 4)


def test_bad_config():
    with pytest.raises(ShiftflowError, match="AcceleratorConfig"):
        Controller("tiny")


@pytest.mark.slow
def test_lint_clean(tmp_path):
    from shiftflow.hw.verilog import lint, write_verilog
    # Not TIGHT: amaranth's SyncFIFO of depth 1 has zero-width pointers, which Verilator flags
    # (ASCRANGE); real targets have queue_depth and fetch_depth of 4 and more.
    for cfg in (TINY, NARROW):
        lint(write_verilog(Controller(cfg), f"controller_{cfg.name}", tmp_path))


@pytest.mark.parametrize("head_word", [False, True], ids=["word_read", "head_word"])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_head_fifo_against_a_queue(depth, head_word):
    """hw.fetch.HeadFifo (the fetch buffer with ``fetch_head_reg``; the unit queues, with
    ``head_word`` under ``queue_head_reg``) behaves as a SyncFIFO with the tag beside the word:
    random writes and reads, checked cycle by cycle against a Python queue (``r_rdy``,
    ``w_rdy``, the head's word and its registered tag)."""
    from collections import deque

    from amaranth.sim import Simulator

    from shiftflow.hw.fetch import HeadFifo

    dut = HeadFifo(8, 3, depth, head_word=head_word)
    rng = random.Random(depth)
    model: deque = deque()
    seen = {"reads": 0}

    async def bench(ctx):
        for cycle in range(600):
            assert ctx.get(dut.r_rdy) == bool(model), cycle
            assert ctx.get(dut.w_rdy) == (len(model) < depth), cycle
            if model:
                assert (ctx.get(dut.r_data), ctx.get(dut.r_tag)) == model[0], cycle
            write = len(model) < depth and rng.random() < 0.55
            read = bool(model) and rng.random() < 0.5
            entry = (rng.randrange(256), rng.randrange(8))
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, entry[0])
            ctx.set(dut.w_tag, entry[1])
            ctx.set(dut.r_en, read)
            await ctx.tick()
            if read:
                model.popleft()
                seen["reads"] += 1
            if write:
                model.append(entry)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["reads"] > 100
