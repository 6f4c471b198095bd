"""Machine state around single compute instructions of real compiled programs.

``trace(program, select)`` runs ``program`` through ``sim.run.simulate`` on an
``Accelerator`` that executes with the simulator's ``Machine`` one instruction at a time and,
for every CONV/VEC/SPCONV that ``select`` accepts, records what the RTL needs to replay it: the
instruction word and the line buffer, weight banks, parameter banks and output buffer
before it, and the output buffer after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shiftflow.ir.decode import Instr, decode_program
from shiftflow.ir.config import AcceleratorConfig
from shiftflow.ir.isa import BODY_OF, INSTR, INSTR_BYTES, Opcode, layout_table
from shiftflow.ir.program import Program
from shiftflow.ir.timeline import schedule
from shiftflow.sim.accelerator import Accelerator
from shiftflow.sim.machine import Machine
from shiftflow.sim.run import simulate


@dataclass(frozen=True)
class Snapshot:
    ins: Instr
    word: bytes
    lb: np.ndarray
    wbuf: np.ndarray
    pbuf: np.ndarray
    obuf_before: np.ndarray
    obuf_after: np.ndarray


class _Tracer(Accelerator):
    def __init__(self, select: Callable[[Instr], bool], limit: int):
        self.select, self.limit = select, limit
        self.snapshots: list[Snapshot] = []

    def load_program(self, program: Program) -> None:
        self.program = program
        self.instrs = decode_program(program.instructions)
        self.machine = Machine(program.config, program.manifest["dram"]["size"])

    def write_dram(self, addr: int, data: bytes) -> None:
        self.machine.dram[addr:addr + len(data)] = np.frombuffer(data, np.uint8)

    def read_dram(self, addr: int, n: int) -> bytes:
        return self.machine.dram[addr:addr + n].tobytes()

    def run_segment(self, start: int, count: int) -> int:
        mach = self.machine
        for ins in self.instrs[start:start + count]:
            keep = (ins.opcode in (Opcode.CONV, Opcode.VEC, Opcode.SPCONV) and len(self.snapshots) < self.limit
                    and self.select(ins))
            if keep:
                before = (mach.lb.copy(), mach.wbuf.copy(), mach.pbuf.copy(), mach.obuf.copy())
            mach.execute(ins)
            if keep:
                word = self.program.instructions[ins.index * INSTR_BYTES:(ins.index + 1) * INSTR_BYTES]
                self.snapshots.append(Snapshot(ins, word, *before, mach.obuf.copy()))
        return schedule(self.program.config, self.instrs[start:start + count]).cycles

    def counters(self) -> dict:
        return {"dram_bytes": 0}


def trace(program: Program, select: Callable[[Instr], bool] = lambda ins: True, limit: int = 1000,
          seed: int = 0) -> list[Snapshot]:
    """Snapshots of the first ``limit`` compute instructions ``select`` accepts (on random
    inputs drawn with ``seed``)."""
    tracer = _Tracer(select, limit)
    simulate(program, seed=seed, accelerator=tracer)
    return tracer.snapshots


def patch(word: bytes, opcode: Opcode, **fields) -> bytes:
    """Instruction ``word`` (of ``opcode``) with body fields changed (dotted names below the
    opcode's body, ``__`` for dots: ``post__pool=2``)."""
    body = BODY_OF[opcode]
    where = {path: (offset, width) for path, offset, width, _ in layout_table(INSTR)}
    value = int.from_bytes(word, "little")
    for name, v in fields.items():
        offset, width = where[f"body.{body}.{name.replace('__', '.')}"]
        mask = (1 << width) - 1
        value = value & ~(mask << offset) | (v & mask) << offset
    return value.to_bytes(INSTR_BYTES, "little")


def variant(cfg: AcceleratorConfig, snap: Snapshot, **fields) -> Snapshot:
    """``snap`` with body fields changed (dotted names below the opcode's body, ``__`` for
    dots: ``post__pool=2``) and the output buffer the simulator's machine computes for it."""
    word = patch(snap.word, snap.ins.opcode, **fields)
    ins = decode_program(word)[0]
    mach = Machine(cfg, 1)
    mach.lb[:], mach.wbuf[:], mach.pbuf[:], mach.obuf[:] = snap.lb, snap.wbuf, snap.pbuf, snap.obuf_before
    mach.execute(ins)
    return Snapshot(ins, word, snap.lb, snap.wbuf, snap.pbuf, snap.obuf_before, mach.obuf.copy())
