"""The one accelerator interface (docs/design.md, convention 6) and its simulator implementation.

The runner (``sim/run.py``) drives any ``Accelerator`` the same way: ``load_program``, write
the constants and inputs into DRAM, ``run_segment`` for each accelerator segment, read
results back. ``SimAccelerator`` implements it with the functional model and the cycle
model; the RTL bench implements it with the Amaranth design under cocotb, so the same tests
run against both.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from ..ir.decode import decode_program
from ..ir.isa import Unit
from ..ir.program import Program, ProgramError
from ..ir.timeline import Timeline, schedule
from .cache import PROGRAMS, target_key
from .machine import Machine, dma_bytes
from .races import find_race


def dram_size(program: Program) -> int:
    """The DRAM size an implementation must provide for ``program`` (its manifest's
    ``dram.size``); ``ProgramError`` unless it is an integer the target allows: positive, or
    0 for a program without instructions (a model of host ops only needs no DRAM)."""
    cfg = program.config
    size = program.manifest.get("dram", {}).get("size")
    least = 1 if program.n_instructions else 0
    if not isinstance(size, int) or not least <= size <= cfg.dram_bytes:
        raise ProgramError(f"manifest DRAM size {size!r} must be a{' positive' if least else 'n'} integer of at "
                           f"most {cfg.dram_bytes} bytes (target {cfg.name!r})")
    return size


class Accelerator(abc.ABC):
    """An accelerator that runs ``Program`` segments against its own DRAM."""

    @abc.abstractmethod
    def load_program(self, program: Program) -> None:
        """Reset the machine (DRAM zeroed, ``manifest["dram"]["size"]`` bytes) and take the
        program's instructions. Raises ``ProgramError`` for a program it cannot run."""

    @abc.abstractmethod
    def write_dram(self, addr: int, data: bytes) -> None:
        """Write ``data`` to DRAM at byte ``addr``."""

    @abc.abstractmethod
    def read_dram(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes of DRAM from byte ``addr``."""

    @abc.abstractmethod
    def run_segment(self, start: int, count: int) -> int:
        """Run instructions ``start .. start+count-1`` (ending with FINISH) to completion;
        return the segment's cycle count."""

    @abc.abstractmethod
    def counters(self) -> dict:
        """Totals since ``load_program``: ``{"cycles", "segments", "instructions",
        "dram_bytes", "units": {"load"|"compute"|"store": {"busy", "stall"}}}``."""

    def timeline(self) -> Timeline | None:
        """Per-instruction timing of the last segment, when the implementation records it."""
        return None


class SimAccelerator(Accelerator):
    """The simulator: bit-exact functional model (L2) + cycle model (L3).

    ``progress`` (optional) is called with the number of instructions executed, as they run.
    ``check_races`` rejects segments whose tokens leave conflicting memory accesses of
    different units unordered (``sim/races.py``; costs about half a simulation).
    """

    def __init__(self, progress: Callable[[int], object] | None = None, check_races: bool = False):
        self._progress = progress
        self._check_races = check_races
        self._program: Program | None = None
        self._machine: Machine | None = None
        self._instrs: list = []
        # (instructions, {(start, count): (timeline, DMA bytes, unit totals)}, Machine plan memo)
        self._decoded: tuple = ([], {}, {})
        self._timeline: Timeline | None = None
        self._counters: dict = {}

    def load_program(self, program: Program) -> None:
        cfg = program.config
        size = dram_size(program)
        self._program = program
        # Decoding and the timelines depend only on the instruction words: a program run
        # again (the next frame) reuses them.
        key = (target_key(cfg), bytes(program.instructions))
        self._decoded = PROGRAMS.get(key)
        if self._decoded is None:
            self._decoded = PROGRAMS.put(key, (decode_program(program.instructions, config=cfg), {}, {}))
        self._instrs = self._decoded[0]
        self._machine = Machine(cfg, size, memo=self._decoded[2])
        self._timeline = None
        self._counters = {"cycles": 0, "segments": 0, "instructions": 0, "dram_bytes": 0,
                          "units": {u.name.lower(): {"busy": 0, "stall": 0} for u in Unit}}

    def _loaded(self) -> Machine:
        if self._machine is None:
            raise ProgramError("no program loaded: call load_program first")
        return self._machine

    def write_dram(self, addr: int, data: bytes) -> None:
        dram = self._loaded().dram
        if addr < 0 or addr + len(data) > dram.size:
            raise ProgramError(f"DRAM write of {len(data)} bytes at {addr} is outside the DRAM of {dram.size} bytes")
        dram[addr:addr + len(data)] = memoryview(data).cast("B")

    def read_dram(self, addr: int, n: int) -> bytes:
        dram = self._loaded().dram
        if addr < 0 or n < 0 or addr + n > dram.size:
            raise ProgramError(f"DRAM read of {n} bytes at {addr} is outside the DRAM of {dram.size} bytes")
        return dram[addr:addr + n].tobytes()

    def run_segment(self, start: int, count: int) -> int:
        machine = self._loaded()
        if start < 0 or count <= 0 or start + count > len(self._instrs):
            raise ProgramError(f"segment {start}..{start + count - 1} is outside the program's "
                               f"{len(self._instrs)} instructions")
        instrs = self._instrs[start:start + count]
        # The timeline first: it rejects deadlocking token use before any state changes.
        timelines = self._decoded[1]
        known = timelines.get((start, count))
        if known is None:
            timeline = schedule(machine.cfg, instrs)
            known = timelines[start, count] = (timeline, sum(dma_bytes(machine.cfg, ins) for ins in instrs),
                                               timeline.unit_totals())
        timeline, moved, unit_totals = known
        # The tiles' matrix products are small: threaded BLAS only adds synchronisation, and
        # on a busy 2-core machine it made the detector 6x slower (12 s instead of 2 s).
        with threadpool_limits(limits=1, user_api="blas"):
            machine.run(instrs, self._progress)
        if machine.measured:  # NMS: its cycles depend on the data it just ran on
            timeline = schedule(machine.cfg, instrs, machine.measured)
            unit_totals = timeline.unit_totals()
        # After execution, which has validated every address the footprints are built from.
        race = find_race(machine.cfg, timeline) if self._check_races else None
        if race:
            raise ProgramError(race)
        self._timeline = timeline
        c = self._counters
        c["cycles"] += timeline.cycles
        c["segments"] += 1
        c["instructions"] += count
        c["dram_bytes"] += moved
        for unit, totals in unit_totals.items():
            for k, v in totals.items():
                c["units"][unit][k] += v
        return timeline.cycles

    def counters(self) -> dict:
        return {k: ({u: dict(t) for u, t in v.items()} if k == "units" else v) for k, v in self._counters.items()}

    def timeline(self) -> Timeline | None:
        return self._timeline
