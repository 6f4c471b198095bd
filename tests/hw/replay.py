"""Replay traced compute instructions (``tests/hw/trace.py``) on ``hw.compute.ComputeUnit`` in
amaranth.sim: preload the memories with the machine's state, run the instruction, and return
the cycles from acceptance to ``done`` and the output buffer afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shiftflow.hw.compute import ComputeUnit
from shiftflow.ir.config import AcceleratorConfig
from shiftflow.ir.decode import Instr
from shiftflow.ir.isa import INSTR
from shiftflow.ir.timeline import instruction_cycles
from tests.hw.streams import simulate
from tests.hw.trace import Snapshot


@dataclass(frozen=True)
class Outcome:
    cycles: int
    obuf: np.ndarray


def expected_cycles(cfg: AcceleratorConfig, ins: Instr) -> int:
    """The cycle model's count for ``ins`` (``ir.timeline.instruction_cycles``), which the
    compute unit must take from acceptance to ``done``."""
    return instruction_cycles(cfg, ins)


def replay(cfg: AcceleratorConfig, snapshots: list[Snapshot], dut: ComputeUnit | None = None) -> list[Outcome]:
    """Run every snapshot's instruction, one after another, on one simulated compute unit."""
    dut = dut or ComputeUnit(cfg)
    out = []
    deadline = sum(expected_cycles(cfg, s.ins) + 10 for s in snapshots) + 100

    async def bench(ctx):
        loaded = {}
        for snap in snapshots:
            for name, mem, value in (("lb", dut.lb, snap.lb), ("wb", dut.wb, snap.wbuf), ("pb", dut.pb, snap.pbuf),
                                     ("ob", dut.ob, snap.obuf_before)):
                if name not in loaded or not np.array_equal(loaded[name], value):
                    mem.sim_load(ctx, value)
                    loaded[name] = value
            ctx.set(dut.instr.payload, INSTR.from_bits(int.from_bytes(snap.word, "little")))
            ctx.set(dut.instr.valid, 1)
            await ctx.tick()
            ctx.set(dut.instr.valid, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            for _ in range(1 + dut.ob.write_reg):  # the last words land (a cycle later through the write register)
                await ctx.tick()
            out.append(Outcome(cycles, dut.ob.sim_dump(ctx)))
            loaded["ob"] = out[-1].obuf

    simulate(dut, bench, deadline=deadline)
    return out
