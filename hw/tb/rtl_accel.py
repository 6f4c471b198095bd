"""``RtlAccelerator``: the :class:`sim.accelerator.Accelerator` interface on the RTL.

The Verilog of :class:`hw.tb.axiram.ProgramBench` (``AcceleratorTop`` + an AXI4 DRAM model
with the target's latency and bandwidth) is built into a Verilator model once per target and
bench DRAM size (``hw.tb.runner.build_model`` caches it by the Verilog's hash); every program
is data. One simulator process (a cocotb run of ``hw.tb.program``, started on first use)
serves any number of programs, segment by segment, over a ``multiprocessing.connection``
socket — so ``sim.run.simulate(program, accelerator=RtlAccelerator())`` runs host ops in this
process and segments on the RTL, and many small programs share one process.

DRAM layout on the bench: the program's DRAM (``manifest["dram"]["size"]`` bytes) at 0, the
instructions after it at the next 4 KiB boundary (``SEG_ADDR`` points there). Each segment
reseeds the DRAM model's stall generators from ``seed`` and the segment number. A segment
with an NMS (a target with the core) is modelled with the NMS's data-dependent cycles, which
the functional model gives from the DRAM as the segment starts (``_nms_cycles``).

Checks, each a one-line :class:`RtlError` (a ``ProgramError``): STATUS.error (with the
ERROR code), no done within ``timeout`` times the cycle model's count (plus 10,000 cycles),
and a DRAM-model fault (request FIFO overflow, WLAST, address range, a write on the fetch
port). ``counters()`` come from the CSRs (busy/stall per unit, CYCLES); ``dram_bytes`` is
counted from the instructions, as the simulator does (the RTL has no byte counter).
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Listener
from pathlib import Path

import numpy as np

from ...ir.config import AcceleratorConfig
from ...ir.decode import decode_program
from ...errors import ShiftflowError, UnsupportedError
from ...ir.isa import INSTR_BYTES, Opcode, Unit
from ...ir.program import Program, ProgramError
from ...ir.timeline import schedule
from ...sim.accelerator import Accelerator, dram_size
from ...sim.machine import dma_bytes
from .axiram import FAULT_FULL, FAULT_RANGE, FAULT_WLAST, FAULT_WRITE, bench_design
from .runner import Model, build_model, cache_root, run_cocotb

__all__ = ["RtlAccelerator", "RtlError", "RtlSession", "bench_model"]

INSTR_ALIGN = 4096
FAULTS = {FAULT_FULL: "a request FIFO of the DRAM model overflowed", FAULT_WLAST: "WLAST disagreed with AWLEN",
          FAULT_RANGE: "an address past the bench DRAM", FAULT_WRITE: "a write on the instruction-fetch port"}


class RtlError(ProgramError):
    """The RTL failed a segment (error code, timeout, DRAM-model fault) or the bench died."""


_MODELS: dict[str, Model] = {}


def bench_model(cfg: AcceleratorConfig, dram_bytes: int = 1 << 24,
                progress: Callable[[str], object] | None = None) -> Model:
    """The Verilator model of the bench for ``cfg`` (built once, then from the cache; the
    Verilog is generated once per process). ``progress`` is told ``Verilog`` and
    ``Verilator build`` as they start. A target whose cycle model chains compute
    instructions by a rule the RTL does not build (``compute_chain`` without
    ``chain_retire_single`` and ``chain_front = pe_latency - 4``: a what-if) is refused."""
    if cfg.compute_chain:
        from ..compute import check_config  # the chaining rule the compute unit builds
        try:
            check_config(cfg)
        except ShiftflowError as exc:
            raise UnsupportedError(f"target {cfg.name!r}: the RTL does not build this compute_chain rule; its "
                                   f"cycles would not equal the cycle model's ({exc})") from None
    key = repr((cfg, dram_bytes))
    if key not in _MODELS:
        out = cache_root() / "verilog" / f"bench-{cfg.name}-{dram_bytes}"
        if progress:
            progress("Verilog")
        design = bench_design(cfg, out, dram_bytes)
        if progress:
            progress("Verilator build")
        _MODELS[key] = build_model(design)
    return _MODELS[key]


class RtlSession:
    """One simulator process serving bench requests (see ``hw/tb/program.py``)."""

    def __init__(self, cfg: AcceleratorConfig, dram_bytes: int = 1 << 24, work_dir: str | Path | None = None,
                 progress: Callable[[str], object] | None = None):
        self.cfg, self.dram_bytes = cfg, dram_bytes
        model = bench_model(cfg, dram_bytes, progress)
        if progress:
            progress("start RTL simulator")
        self._dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="sf-rtl-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(16)
        self._listener = Listener(str(self._dir / "bench.sock"), family="AF_UNIX", authkey=key)
        self._failure: BaseException | None = None
        self._connected = False
        env = {"SF_BENCH_ADDR": self._listener.address, "SF_BENCH_KEY": key.hex(),
               "SF_BENCH_BEAT": str(cfg.dram_bytes_per_cycle)}
        self._thread = threading.Thread(target=self._simulate, args=(model, env, key), daemon=True)
        self._thread.start()
        self._conn = self._listener.accept()
        self._connected = True

    def _simulate(self, model: Model, env: dict, key: bytes) -> None:
        from multiprocessing.connection import Client

        try:
            run_cocotb(model, "shiftflow.hw.tb.program", env=env, test_dir=self._dir / "run")
        except BaseException as exc:  # reported by the next call
            self._failure = exc
        finally:
            if not self._connected:  # the simulator died before connecting: unblock accept()
                try:
                    Client(self._listener.address, authkey=key).close()
                except OSError:
                    pass

    def call(self, *request):
        """Send one request and return its answer; raises :class:`RtlError` if the bench
        failed."""
        try:
            self._conn.send(request)
            kind, reply = self._conn.recv()
        except (EOFError, OSError):
            self._thread.join(timeout=30)
            raise RtlError(f"the RTL simulator exited: {self._failure or 'no result'}".splitlines()[0]) from None
        if kind == "exception":
            raise RtlError("RTL bench failed: " + reply.strip().splitlines()[-1])
        return reply

    def close(self) -> None:
        """Stop the simulator (failures were already raised by :meth:`call`)."""
        if self._thread.is_alive():
            try:
                self.call("quit")
            except RtlError:
                pass
            self._thread.join(timeout=60)
        self._conn.close()
        self._listener.close()


class RtlAccelerator(Accelerator):
    """Runs segments on the RTL. ``stall`` is the DRAM model's probability of withholding
    each AXI handshake each cycle (0: the reference memory, cycles comparable with the
    model); ``timeout`` bounds a segment at ``timeout * model cycles + 10000``. ``fresh``
    starts a new simulator process for every program (on-chip memories and registers at
    their power-on state, as the simulator's fresh ``Machine``; ~5 s each) instead of
    reusing one process (only DRAM is cleared between programs). ``progress`` (optional) is
    called with each phase's name as it starts: ``Verilog``, ``Verilator build`` (the first
    time a target is used in a process), ``start RTL simulator``, ``run, segment N``."""

    def __init__(self, stall: float = 0.0, seed: int = 0, dram_bytes: int = 1 << 24, timeout: float = 4.0,
                 fresh: bool = False, progress: Callable[[str], object] | None = None):
        if not 0.0 <= stall < 1.0:
            raise ProgramError(f"stall probability must be in [0, 1), got {stall}")
        self.stall, self.seed, self.dram_bytes, self.timeout, self.fresh = stall, seed, dram_bytes, timeout, fresh
        self.progress = progress
        self._session: RtlSession | None = None
        self._program: Program | None = None
        self._used = 0
        self._segment = 0
        self.segments: list[dict] = []  # per segment: start, count, cycles (CSR), edges (the bench's), ...
        self._counters: dict = {}

    # -- session ----------------------------------------------------------------------------
    def _open(self, cfg: AcceleratorConfig) -> RtlSession:
        if self._session is not None and self._session.cfg != cfg:
            self.close()
        if self._session is None:
            self._session = RtlSession(cfg, self.dram_bytes, progress=self.progress)
            self._used = 0
        return self._session

    def close(self) -> None:
        """Stop the simulator process (also done at exit)."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- Accelerator -----------------------------------------------------------------------
    def load_program(self, program: Program) -> None:
        cfg = program.config
        size = dram_size(program)
        self._instrs = decode_program(program.instructions, config=cfg)
        base = -(-size // INSTR_ALIGN) * INSTR_ALIGN
        end = base + len(program.instructions)
        if end > self.dram_bytes:
            raise ProgramError(f"program needs {end} bytes of DRAM with its instructions; the RTL bench has "
                               f"{self.dram_bytes}")
        if self.fresh:
            self.close()
        session = self._open(cfg)
        session.call("zero", max(self._used, end))
        session.call("write", base, bytes(program.instructions))
        self._program, self._size, self._base, self._used = program, size, base, end
        self._segment = 0
        self.segments = []
        self._counters = {"cycles": 0, "segments": 0, "instructions": 0, "dram_bytes": 0,
                          "units": {u.name.lower(): {"busy": 0, "stall": 0} for u in Unit}}

    def _check(self, addr: int, n: int, what: str) -> RtlSession:
        if self._session is None or self._program is None:
            raise ProgramError("no program loaded: call load_program first")
        if addr < 0 or n < 0 or addr + n > self._size:
            raise ProgramError(f"DRAM {what} of {n} bytes at {addr} is outside the DRAM of {self._size} bytes")
        return self._session

    def write_dram(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data), "write").call("write", addr, bytes(data))

    def read_dram(self, addr: int, n: int) -> bytes:
        return self._check(addr, n, "read").call("read", addr, n)

    def run_segment(self, start: int, count: int) -> int:
        session = self._check(0, 0, "run")
        if self.progress:
            self.progress(f"run, segment {self._segment + 1}")
        if start < 0 or count <= 0 or start + count > len(self._instrs):
            raise ProgramError(f"segment {start}..{start + count - 1} is outside the program's "
                               f"{len(self._instrs)} instructions")
        instrs = self._instrs[start:start + count]
        measured = self._nms_cycles(session, instrs)
        model = schedule(self._program.config, instrs, measured).cycles  # also rejects what the RTL would deadlock on
        limit = int(self.timeout * model) + 10_000
        r = session.call("run", self._base + start * INSTR_BYTES, count,
                         round(self.stall * 4096), (self.seed * 1_000_003 + self._segment) & (2**64 - 1), limit)
        self._segment += 1
        where = f"segment at instruction {start} ({count} instructions)"
        if r["timeout"]:
            raise RtlError(f"{where}: no STATUS.done within {limit} cycles (model: {model})")
        if r["status"] & 4 or r["error"]:
            raise RtlError(f"{where}: the accelerator reported ERROR code {r['error']} (STATUS {r['status']:#x})")
        faults = [msg for bit, msg in FAULTS.items() if (r["fault"] | r["fault"] >> 4) & bit]
        if faults:
            raise RtlError(f"{where}: DRAM model fault: {'; '.join(faults)}")
        if not r["done"]:
            raise RtlError(f"{where}: done pulse without STATUS.done (STATUS {r['status']:#x})")
        c = self._counters
        c["cycles"] += r["cycles"]
        c["segments"] += 1
        c["instructions"] += count
        c["dram_bytes"] += sum(dma_bytes(self._program.config, ins) for ins in instrs)
        for unit, totals in r["units"].items():
            for k, v in totals.items():
                c["units"][unit][k] += v
        self.segments.append({"start": start, "count": count, "cycles": r["cycles"], "model_cycles": model,
                              "waited": r["waited"], "edges": r["edges"], "seconds": r["seconds"],
                              "units": r["units"]})
        return r["cycles"]

    def _nms_cycles(self, session: RtlSession, instrs) -> dict[int, int] | None:
        """The cycle model's cost of each NMS of the segment (``ir.timeline``'s ``measured``):
        the functional model (``sim.nms_core``) run on a copy of the bench's DRAM as the
        segment starts — what the NMS reads when, as the compiler emits it, the NMS part is
        a segment of its own (NMS, FINISH). None without an NMS."""
        nms = [ins for ins in instrs if ins.opcode == Opcode.NMS]
        if not nms:
            return None
        from ...ir.nms import NmsCore
        from ...sim.nms_core import run_instruction

        cfg = self._program.config
        dram = np.frombuffer(session.call("read", 0, self._size), np.uint8).copy()
        try:
            return {ins.index: run_instruction(dram, ins.f, NmsCore.for_config(cfg), cfg).cycles for ins in nms}
        except ShiftflowError as exc:  # what the loader or the simulator would refuse
            raise ProgramError(f"{nms[0].where()}: {exc}") from None

    def counters(self) -> dict:
        return {k: ({u: dict(t) for u, t in v.items()} if k == "units" else v) for k, v in self._counters.items()}
