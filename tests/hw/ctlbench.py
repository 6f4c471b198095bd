"""amaranth.sim bench for hw/control.py: the ``tests.hw.memmodel.Dram`` model on the fetch
port holding the program words, fake executors obeying the executor contract (accept with
``ready = ~busy | done``, pulse ``done`` exactly ``instruction_cycles`` later), a monitor of
fetch beats and dispatches, and a host that runs segments through the CSRs.

``run_segments`` returns one :class:`Observed` per segment with every time relative to the
segment's cycle 0 (the cycle after the CTRL write), so they compare directly with
``ir.timeline.schedule``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Module, Signal

from shiftflow.hw.control import UNITS, Controller
from shiftflow.hw.job import packed_products, products_layout
from shiftflow.hw.csr import Reg
from shiftflow.ir.config import AcceleratorConfig
from shiftflow.ir.cost import fetch_beats
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import INSTR_BYTES
from shiftflow.ir.timeline import instruction_cycles

from tests.hw.memmodel import Dram
from tests.hw.streams import simulate

UNIT_NAMES = {u: u.name.lower() for u in UNITS}


@dataclass
class Observed:
    """One segment as the bench saw it (cycles relative to its cycle 0)."""
    fetch: list[int] = field(default_factory=list)  # cycle after each word's last beat
    dispatch: list[int] = field(default_factory=list)
    start: dict = field(default_factory=lambda: {u: [] for u in UNITS})  # accept cycles per unit
    end: dict = field(default_factory=lambda: {u: [] for u in UNITS})  # done cycles per unit
    words: dict = field(default_factory=lambda: {u: [] for u in UNITS})  # accepted payloads (ints)
    done: int | None = None  # first cycle with the done output high
    error: int | None = None  # first cycle with the error output high
    busy_at_done: bool | None = None  # the busy output in the done cycle
    regs: dict = field(default_factory=dict)  # every CSR after the segment


def _costs(cfg: AcceleratorConfig, program: bytes) -> dict[int, int]:
    """Cycles of every instruction word of ``program`` that decodes, by its integer value."""
    out = {}
    for k in range(len(program) // INSTR_BYTES):
        word = program[k * INSTR_BYTES:(k + 1) * INSTR_BYTES]
        try:
            ins = decode_program(word)[0]
        except Exception:  # an invalid word never reaches an executor
            continue
        out[int.from_bytes(word, "little")] = instruction_cycles(cfg, ins)
    return out


def run_segments(cfg: AcceleratorConfig, program: bytes, segments: list[tuple[int, int]], *, base: int = 0,
                 stall: float = 0.0, seed: int = 0, deadline: int = 50_000,
                 meddle: int | None = None) -> list[Observed]:
    """Place ``program`` at DRAM byte ``base`` and run ``segments`` (``(first word, count)``)
    one after another, each until ``done`` or ``error`` rises (then until ``busy`` falls).
    ``meddle``: in that cycle of every segment, write SEG_ADDR, SEG_LEN and CTRL.start again
    (they must be ignored while busy)."""
    dut = Controller(cfg)
    top = dut
    if cfg.queue_products:
        # The products the compute queue carries beside its head, against the decoder's
        # products of the head word itself (checked at every compute accept).
        top = Module()
        top.submodules.ctl = dut
        reference = Signal(products_layout(cfg))
        top.d.comb += reference.eq(packed_products(cfg, dut.compute.payload))
    dram = Dram(dut.fetch, cfg.dram_bytes_per_cycle, latency=cfg.dram_latency, stall=stall, seed=seed)
    dram.write(base, program)
    costs = _costs(cfg, program)
    nb = fetch_beats(cfg)
    beats, dispatches = [], []  # absolute cycles
    execs = {u: {"start": [], "end": [], "words": []} for u in UNITS}
    out = []

    def executor(unit):
        log = execs[unit]

        def started(cycle, word, done_at):
            assert done_at > cycle
            log["start"].append(cycle)
            log["words"].append(word)

        return fake_executor(getattr(dut, UNIT_NAMES[unit]), getattr(dut, UNIT_NAMES[unit] + "_done"),
                             costs.__getitem__, started, log["end"].append)

    async def products_check(ctx):
        while True:
            _clk, _rst, valid, ready, got, want = await ctx.tick().sample(
                dut.compute.valid, dut.compute.ready, dut.compute_products.as_value(), reference.as_value())
            if valid and ready:
                assert got == want, "the compute queue's products are not its head word's"

    async def monitor(ctx):
        cycle, f = 0, dut.fetcher
        while True:
            _clk, _rst, rv, rr, wv, wr = await ctx.tick().sample(dut.fetch.rd_resp.valid, dut.fetch.rd_resp.ready,
                                                                 f.word.valid, f.word.ready)
            if rv and rr:
                beats.append(cycle)
            if wv and wr:
                dispatches.append(cycle)
            cycle += 1

    async def host(ctx):
        cycle = 0

        async def write(reg, value):
            nonlocal cycle
            ctx.set(dut.csr.addr, reg)
            ctx.set(dut.csr.wdata, value)
            ctx.set(dut.csr.we, 1)
            await ctx.tick()
            ctx.set(dut.csr.we, 0)
            cycle += 1

        for first, count in segments:
            while ctx.get(dut.busy):
                await ctx.tick()
                cycle += 1
            seen_beats, seen_dispatches = len(beats), len(dispatches)
            seen = {u: {k: len(v) for k, v in execs[u].items()} for u in UNITS}
            await write(Reg.SEG_ADDR, base + first * INSTR_BYTES)
            await write(Reg.SEG_LEN, count)
            await write(Reg.CTRL, 1)
            zero = cycle  # the segment's cycle 0
            obs = Observed()
            while obs.done is None and obs.error is None:
                if cycle - zero == meddle:
                    for reg in (Reg.SEG_ADDR, Reg.SEG_LEN, Reg.CTRL):
                        await write(reg, 1)
                    continue
                if ctx.get(dut.done):
                    obs.done, obs.busy_at_done = cycle - zero, bool(ctx.get(dut.busy))
                if ctx.get(dut.error):
                    obs.error = cycle - zero
                await ctx.tick()
                cycle += 1
            while ctx.get(dut.busy):
                await ctx.tick()
                cycle += 1
            for reg in Reg:
                ctx.set(dut.csr.addr, reg)
                obs.regs[reg] = ctx.get(dut.csr.rdata)
            # The monitors lag by at most the cycle just sampled; one more tick settles them.
            await ctx.tick()
            cycle += 1
            obs.fetch = [t + 1 - zero for t in beats[seen_beats:][nb - 1::nb]]
            obs.dispatch = [t - zero for t in dispatches[seen_dispatches:]]
            for u in UNITS:
                for k in ("start", "end", "words"):
                    vals = execs[u][k][seen[u][k]:]
                    getattr(obs, k)[u] = vals if k == "words" else [t - zero for t in vals]
            out.append(obs)

    checks = [products_check] if cfg.queue_products else []
    simulate(top, host, background=[executor(u) for u in UNITS] + [monitor, dram.run] + checks, deadline=deadline)
    return out


def fake_executor(port, done, cost_of, started, ended=None):
    """An amaranth.sim process standing in for a unit behind the controller's ``port`` (its
    instruction stream) and ``done``: it takes a word with ``ready = idle | done`` and pulses
    ``done`` ``cost_of(word)`` cycles later; ``started(cycle, word, done_cycle)`` and
    ``ended(cycle)`` see each instruction (cycles counted from the process's start)."""

    async def run(ctx):
        cycle, done_at = 0, None
        while True:
            pulse = done_at == cycle
            ctx.set(done, pulse)
            ready = done_at is None or pulse
            ctx.set(port.ready, ready)
            _clk, _rst, valid, payload = await ctx.tick().sample(port.valid, port.payload)
            if pulse:
                if ended is not None:
                    ended(cycle)
                done_at = None
            if valid and ready:
                word = payload.as_bits()
                done_at = cycle + cost_of(word)
                started(cycle, word, done_at)
            cycle += 1
    return run
