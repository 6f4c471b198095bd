# amaranth: UnusedElaboratable=no
"""hw/control.py with the NMS core (``Controller(cfg, nms=True)``) in amaranth.sim: the NMS
barrier exactly as ``ir.timeline.schedule`` models it. A test-local bench: the fetch port's
DRAM model holds the words, fake executors (``tests.hw.ctlbench.fake_executor``) pulse ``done`` ``instruction_cycles`` after their
start — the NMS executor after a per-instruction latency given by the test (the data-dependent
cost the simulator measures) — and every dispatch, start, end, the done cycle and CYCLES
equal the model's, with the fetch buffer and queues at depth 1-2 too (without the core NMS
stays ILLEGAL_OPCODE: tests/hw/test_control.py)."""

import dataclasses

import pytest

from shiftflow.hw.control import UNITS, Controller
from shiftflow.hw.csr import STATUS_DONE, Reg
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import INSTR_BYTES, Opcode, Unit, encode
from shiftflow.ir.timeline import instruction_cycles, schedule
from tests.hw.ctlbench import fake_executor
from tests.hw.memmodel import Dram
from tests.hw.streams import simulate

TIGHT = dataclasses.replace(TINY, name="tight", fetch_depth=1, queue_depth=1)
NARROW = dataclasses.replace(TINY, name="narrow", fetch_depth=2, queue_depth=2, dram_latency=5)
ALL = UNITS + (Unit.NMS,)


def run_segment(cfg, program: bytes, measured: dict[int, int], deadline: int = 20_000) -> dict:
    """Run all of ``program`` (one segment at DRAM 0) on ``Controller(cfg, nms=True)``;
    ``measured`` gives each NMS's cycles by its index. Times relative to the segment's cycle
    0 (the cycle after the CTRL write)."""
    dut = Controller(cfg, nms=True)
    dram = Dram(dut.fetch, cfg.dram_bytes_per_cycle, latency=cfg.dram_latency)
    dram.write(0, program)
    instrs = decode_program(program)
    costs = {}  # by word: equal words must cost the same (the bench tells them apart by word)
    for k, ins in enumerate(instrs):
        w = int.from_bytes(program[k * INSTR_BYTES:(k + 1) * INSTR_BYTES], "little")
        assert costs.setdefault(w, instruction_cycles(cfg, ins, measured)) == instruction_cycles(cfg, ins, measured)
    log = {u: [] for u in ALL}  # (start, end) per unit, absolute cycles
    dispatches, zero, obs = [], [None], {}

    def executor(unit):
        name = unit.name.lower()
        return fake_executor(getattr(dut, name), getattr(dut, name + "_done"), costs.__getitem__,
                             lambda cycle, _word, done_at: log[unit].append((cycle, done_at)))

    async def monitor(ctx):
        cycle = 0
        while True:
            _clk, _rst, v, r = await ctx.tick().sample(dut.fetcher.word.valid, dut.fetcher.word.ready)
            if v and r:
                dispatches.append(cycle)
            cycle += 1

    async def host(ctx):
        cycle = 0
        for reg, value in ((Reg.SEG_ADDR, 0), (Reg.SEG_LEN, len(instrs)), (Reg.CTRL, 1)):
            ctx.set(dut.csr.addr, reg)
            ctx.set(dut.csr.wdata, value)
            ctx.set(dut.csr.we, 1)
            await ctx.tick()
            cycle += 1
        ctx.set(dut.csr.we, 0)
        zero[0] = cycle
        while not (ctx.get(dut.done) or ctx.get(dut.error)):
            await ctx.tick()
            cycle += 1
        obs["done"] = cycle - zero[0]
        for reg in (Reg.STATUS, Reg.CYCLES, Reg.ERROR):
            ctx.set(dut.csr.addr, reg)
            obs[reg] = ctx.get(dut.csr.rdata)
        await ctx.tick()

    simulate(dut, host, background=[executor(u) for u in ALL] + [monitor, dram.run], deadline=deadline)
    obs["dispatch"] = [t - zero[0] for t in dispatches]
    obs["units"] = {u: [(s - zero[0], e - zero[0]) for s, e in log[u]] for u in ALL}
    return obs


def check_exact(cfg, program: bytes, measured: dict[int, int]) -> None:
    instrs = decode_program(program)
    tl = schedule(cfg, instrs, measured)
    obs = run_segment(cfg, program, measured)
    assert obs[Reg.STATUS] == STATUS_DONE and obs[Reg.ERROR] == 0
    assert obs["dispatch"] == tl.dispatch
    for u in ALL:
        mine = [k for k, ins in enumerate(instrs) if ins.unit == u and ins.opcode != Opcode.FINISH]
        assert obs["units"][u] == [(tl.start[k], tl.end[k]) for k in mine], u
    assert obs["done"] == obs[Reg.CYCLES] == tl.cycles


def load_wgt(n=0, **kw):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0x40 * (n + 1), "nbytes": 24 + n}, **kw)


def store(nrows=2, **kw):
    return encode(Opcode.STORE, {"dst": {"dram_addr": 0x100, "row_stride": 16, "blk_stride": 64, "nblk": 1,
                                         "nrows": nrows, "ncols": 3}}, **kw)


def nop(**kw):
    return encode(Opcode.NOP, None, **kw)


def nms(n=0):
    return encode(Opcode.NMS, {"levels": 1 + n, "channels": 1, "classes": 1, "table_addr": 0x40})


FINISH = encode(Opcode.FINISH)

#: Segments with NMS: after token traffic still in flight (the barrier waits for the store),
#: first, twice in a row, right before FINISH, and with work queued behind it.
SEGMENTS = {
    "after-tokens": [load_wgt(push_next=1), nop(pop_prev=1, push_next=1), store(nrows=6, pop_prev=1), nms(),
                     load_wgt(1), store(), FINISH],
    "first": [nms(), load_wgt(push_next=1), nop(pop_prev=1), FINISH],
    "twice": [store(nrows=3), nms(), nms(1), nop(), FINISH],
    "last": [load_wgt(), load_wgt(1), store(nrows=8), nop(), nms(), FINISH],
    "queued-behind": [load_wgt(), nms(), load_wgt(1), load_wgt(2), load_wgt(3), store(), store(nrows=4), nop(),
                      nop(), FINISH],
}


@pytest.mark.parametrize("cfg", [TINY, TIGHT, NARROW, ZU3EG], ids=lambda c: c.name)
@pytest.mark.parametrize("name", sorted(SEGMENTS))
@pytest.mark.parametrize("latency", [1, 37])
def test_nms_barrier_exact(name, cfg, latency):
    program = b"".join(SEGMENTS[name])
    measured = {k: latency + 3 * k for k, ins in enumerate(decode_program(program)) if ins.opcode == Opcode.NMS}
    check_exact(cfg, program, measured)


def test_nothing_dispatched_while_nms_runs():
    """The model's rule itself, seen on the RTL: the instruction after the NMS is dispatched
    in the NMS's done cycle, not before, though the fetch buffer held it long before."""
    program = b"".join(SEGMENTS["queued-behind"])
    obs = run_segment(TINY, program, {1: 200})
    ((s, e),) = obs["units"][Unit.NMS]
    assert obs["dispatch"][2] == e and e - s == 200
    assert s >= obs["units"][Unit.LOAD][0][1]

