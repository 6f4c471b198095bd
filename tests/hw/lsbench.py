"""Load unit + compute unit + store unit on one joined DRAM port, in amaranth.sim, run in
lockstep with ``sim.machine`` over the instructions of a compiled program's segment.

``segments(program)`` runs the program through ``sim.run.simulate`` and records every
accelerator segment: its instruction words and the DRAM image and on-chip memories at its
start. ``run(cfg, seg, ...)`` executes the segment's instructions one at a time, in program
order, on :class:`Trio` (each waits for the previous one's ``done``) with the Python DRAM model
of ``tests/hw/memmodel.py`` on the joined port, executes each on a ``Machine`` too, and checks
after every instruction that the memory it wrote equals the machine's; it returns each
instruction's cycles from acceptance to ``done``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from shiftflow.hw.axi import MemJoin
from shiftflow.hw.compute import ComputeUnit
from shiftflow.hw.loadstore import LoadUnit, StoreUnit
from shiftflow.ir.config import AcceleratorConfig
from shiftflow.ir.decode import Instr, decode_program
from shiftflow.ir.isa import INSTR, INSTR_BYTES, PARAM_BYTES, PARAM_KEPT, Opcode, Unit
from shiftflow.ir.program import Program
from shiftflow.ir.timeline import instruction_cycles
from shiftflow.sim.machine import Machine
from shiftflow.sim.run import simulate as run_program
from tests.hw.memmodel import Dram
from tests.hw.streams import simulate
from tests.hw.trace import _Tracer, patch


class Trio(Elaboratable):
    """The three executors wired as the accelerator top wires them, the two DMA halves joined
    into one memory port (``join.mem``)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.load, self.compute, self.store = LoadUnit(cfg), ComputeUnit(cfg), StoreUnit(cfg)
        self.join = MemJoin(cfg.dram_bytes_per_cycle)

    def elaborate(self, platform):
        m = Module()
        m.submodules.load, m.submodules.compute, m.submodules.store = self.load, self.compute, self.store
        m.submodules.join = self.join
        for name in ("lb_w", "wb_w", "pb_w"):
            wiring.connect(m, getattr(self.load, name), getattr(self.compute, name))
        wiring.connect(m, self.store.ob_r, self.compute.ob_r)
        wiring.connect(m, self.compute.ob_rdata, self.store.ob_rdata)
        wiring.connect(m, self.load.mem, self.join.rd)
        wiring.connect(m, self.store.mem, self.join.wr)
        return m


@dataclass(frozen=True)
class Segment:
    instrs: list[Instr]
    words: list[bytes]
    dram: np.ndarray
    lb: np.ndarray
    wbuf: np.ndarray
    pbuf: np.ndarray
    obuf: np.ndarray


class _Recorder(_Tracer):
    """``tests/hw/trace.py``'s accelerator (the machine behind the host), keeping segments."""

    def __init__(self):
        super().__init__(lambda ins: False, 0)
        self.segments: list[Segment] = []

    def run_segment(self, start: int, count: int) -> int:
        mach, code = self.machine, self.program.instructions
        words = [code[i * INSTR_BYTES:(i + 1) * INSTR_BYTES] for i in range(start, start + count)]
        self.segments.append(Segment(self.instrs[start:start + count], words, mach.dram.copy(), mach.lb.copy(),
                                     mach.wbuf.copy(), mach.pbuf.copy(), mach.obuf.copy()))
        for ins in self.instrs[start:start + count]:
            mach.execute(ins)
        return 0


def segments(program: Program, seed: int = 0) -> list[Segment]:
    """Every accelerator segment of ``program`` run on random inputs drawn with ``seed``."""
    rec = _Recorder()
    run_program(program, seed=seed, accelerator=rec)
    return rec.segments


def pick(seg: Segment, picks: list[tuple[int, dict]]) -> Segment:
    """A segment of ``seg``'s instructions at the given positions, in the given order, each
    with body fields changed (``tests/hw/trace.patch``), on ``seg``'s starting state."""
    words = [patch(seg.words[k], seg.instrs[k].opcode, **fields) for k, fields in picks]
    return dataclasses.replace(seg, instrs=decode_program(b"".join(words)), words=words)


def _words(ctx, banks, nwords: int, nbanks: int, tn: int) -> np.ndarray:
    """Words ``0..nwords-1`` interleaved over ``banks`` (word ``a`` in bank ``a % nbanks``)."""
    vals = [int(ctx.get(banks[a % nbanks].data[a // nbanks])) for a in range(nwords)]
    return np.frombuffer(b"".join(v.to_bytes(tn, "little") for v in vals), np.uint8).reshape(nwords, tn)


def dump_lb(ctx, cu: ComputeUnit) -> list[np.ndarray]:
    """Every line-buffer copy as ``words × tn`` bytes."""
    lb = cu.lb
    return [_words(ctx, copy, lb.words, lb.banks, lb.tn) for copy in lb.mems]


def dump_wb(ctx, cu: ComputeUnit) -> np.ndarray:
    return cu.wb.sim_dump(ctx)


def dump_pb(ctx, cu: ComputeUnit) -> np.ndarray:
    """Both parameter banks as ``2 × param_entries × PARAM_KEPT`` bytes (the bytes kept on chip)."""
    pb = cu.pb
    row_bytes = PARAM_KEPT * pb.tm
    rows = _words(ctx, [pb.mem], 2 * pb.rows_per_bank, 1, row_bytes)
    return rows.reshape(2, pb.rows_per_bank * pb.tm, PARAM_KEPT)[:, :pb.entries]


@dataclass
class Outcome:
    cycles: list[int]  # accept -> done of each executed instruction
    instrs: list[Instr]


def run(cfg: AcceleratorConfig, seg: Segment, count: int | None = None, *, stall: float = 0.0, seed: int = 0,
        pairs: set[int] = frozenset()) -> Outcome:
    """Execute the first ``count`` instructions of ``seg`` (FINISH skipped) in lockstep with a
    ``Machine``; assert after each that what it wrote matches. ``pairs``: indices ``i`` whose
    instruction is issued in the same cycle as instruction ``i + 1`` (on another unit), to
    exercise the load and store halves of the port at once."""
    trio = Trio(cfg)
    instrs = [ins for ins in seg.instrs[:count] if ins.opcode != Opcode.FINISH]
    words = {ins.index: w for ins, w in zip(seg.instrs, seg.words)}
    mach = Machine(cfg, len(seg.dram))
    mach.dram[:] = seg.dram
    mach.lb[:], mach.wbuf[:], mach.pbuf[:], mach.obuf[:] = seg.lb, seg.wbuf, seg.pbuf, seg.obuf
    dram = Dram(trio.join.mem, cfg.dram_bytes_per_cycle, latency=cfg.dram_latency, stall=stall, seed=seed)
    dram.mem.update({a: int(v) for a, v in enumerate(seg.dram) if v})
    ports = {Unit.LOAD: trio.load, Unit.COMPUTE: trio.compute, Unit.STORE: trio.store}
    out = Outcome([], instrs)

    async def issue(ctx, group):
        """Issue ``group`` (instructions on distinct units) in one cycle; their accept->done cycles."""
        units = [ports[ins.unit] for ins in group]
        for u, ins in zip(units, group):
            ctx.set(u.instr.payload, INSTR.from_bits(int.from_bytes(words[ins.index], "little")))
            ctx.set(u.instr.valid, 1)
        _clk, _rst, *ready = await ctx.tick().sample(*[u.instr.ready for u in units])
        assert all(ready), f"{group[0].where()}: not accepted by an idle unit"
        for u in units:
            ctx.set(u.instr.valid, 0)
        took, cycles = [None] * len(group), 1
        while None in took:
            for k, u in enumerate(units):
                if took[k] is None and ctx.get(u.done):
                    took[k] = cycles
            await ctx.tick()
            cycles += 1
        return took

    async def bench(ctx):
        cu = trio.compute
        if seg.lb.any() or seg.wbuf.any() or seg.pbuf.any() or seg.obuf.any():
            cu.lb.sim_load(ctx, seg.lb)
            cu.wb.sim_load(ctx, seg.wbuf)
            cu.pb.sim_load(ctx, seg.pbuf)
            cu.ob.sim_load(ctx, seg.obuf)
        k = 0
        while k < len(instrs):
            group = instrs[k:k + 2] if k in pairs else instrs[k:k + 1]
            out.cycles += await issue(ctx, group)
            if cu.ob.write_reg:  # a CONV's last words land in the output buffer a cycle later
                await ctx.tick()
            for ins in group:
                mach.execute(ins)
                check(ctx, ins)
            k += len(group)

    def check(ctx, ins: Instr):
        cu, f = trio.compute, ins.f
        where = f"{ins.where()} {f}"
        if ins.opcode == Opcode.LOAD_ACT:
            for copy in dump_lb(ctx, cu):
                bad = np.argwhere(copy != mach.lb)
                assert not len(bad), f"{where}: line buffer differs at (word, lane) {bad[0].tolist()}"
        elif ins.opcode == Opcode.LOAD_WGT:
            np.testing.assert_array_equal(dump_wb(ctx, cu), mach.wbuf[:, :cu.wb.bank_words * cu.wb.word_bytes],
                                          err_msg=where)
            want = mach.pbuf.reshape(2, cfg.param_entries, PARAM_BYTES)[:, :, :PARAM_KEPT]
            np.testing.assert_array_equal(dump_pb(ctx, cu), want, err_msg=where)
        elif ins.opcode in (Opcode.CONV, Opcode.VEC):
            np.testing.assert_array_equal(cu.ob.sim_dump(ctx), mach.obuf, err_msg=where)
        elif ins.opcode == Opcode.STORE:
            image = np.zeros_like(mach.dram)
            for a, v in dram.mem.items():
                image[a] = v
            bad = np.flatnonzero(image != mach.dram)
            assert not len(bad), f"{where}: DRAM differs at bytes {bad[:8].tolist()}"

    deadline = sum(instruction_cycles(cfg, ins) for ins in instrs) * (4 if stall else 1) + 1000
    simulate(trio, bench, background=[dram.run], deadline=deadline)
    return out
