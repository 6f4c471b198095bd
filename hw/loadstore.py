"""The load and store units: executors for LOAD_ACT / LOAD_WGT and STORE around ``hw/dma.py``.

::

    instr (LOAD_*) ─▶ LoadUnit: fields ─▶ DmaCmd ─▶ DMA ─ rd_req/rd_resp ─┐
                                          sram_wr ─┬─▶ lb_w (line buffer)  ├─ MemJoin (hw/axi.py)
                                                   ├─▶ wb_w (weight banks) │   ─▶ one mem port
                                                   └─▶ pb_w (param banks)  │   ─▶ AXI4Master
    instr (STORE) ──▶ StoreUnit: fields ─▶ DmaCmd ─▶ DMA ─ wr_req/wr_data/wr_resp ─┘
                                ob_r ◀─ sram_rd, ob_rdata ─▶ sram_rdata

Semantics are docs/isa.md's and ``sim/machine.py``'s: LOAD_ACT copies word ``(b, r, j)`` of its
DRAM box to ring slot ``(slot0 + r) mod slots`` (``slot0 < 2*slots``, one conditional
subtract), block ``b``, column ``j``; LOAD_WGT copies ``nbytes`` bytes to byte ``sram_addr`` of
weight or parameter bank ``bank``; STORE copies output-buffer word
``obuf_addr + (r*ncols + j)*nblk + b`` of ``half`` to the DRAM box. The instruction fields are
read through the ``ir.isa.INSTR`` view; each unit turns them into one :data:`hw.dma.DmaCmd`.

Executor contract (the controller's, ``/docs/isa.md`` cycle model): ``instr`` is accepted
when ``instr.ready = ~busy | done``; an instruction accepted in cycle ``s`` pulses ``done`` in
cycle ``s + ir.timeline.instruction_cycles(cfg, ins)`` when the memory never stalls,
accepts a request a cycle and answers ``dram_latency`` cycles after a request (reads) or after
a burst's last beat (write responses) — ``ir.cost.dma_box_cycles`` / ``dma_linear_cycles``
(``2 + dram_latency + beats``: the DMA registers the command, its first request goes out two
cycles after the accept) and
``dma_store_cycles`` (``ir.cost.store_read_cycles`` more: the output buffer's read, and the
register slice of ``cfg.store_read_slice`` in front of it). Memory stalls only add cycles.

What the on-chip memories require, and compiled programs satisfy: LOAD_ACT DRAM addresses
and strides are multiples of ``tn`` (line-buffer writes are word aligned); a LOAD_WGT's
``sram_addr`` and ``dram_addr`` agree modulo the beat (``dram_bytes_per_cycle``), since the
weight and parameter buffers take beats at beat-aligned on-chip addresses and the DMA does not
shift bytes within a beat; a STORE's DRAM address is a multiple of ``tn``.
"""

from __future__ import annotations

from amaranth import Module, Mux, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.config import AcceleratorConfig
from ..ir.isa import INSTR, Opcode, WgtTarget
from .buffers import ObufRead
from .dma import BOX_FIELDS, DMA, mem_signature
from .linebuf import beat_write_layout
from .skid import RegisterSlice

#: ``DmaCmd.sel`` of a load: the target memory in bits 0..1, the weight/parameter bank in bit 2.
SEL_LINE, SEL_WEIGHTS, SEL_PARAMS = 0, 1, 2


def check_config(cfg: AcceleratorConfig) -> None:
    """Raise ``ShiftflowError`` (one line) unless the load/store units can be built for ``cfg``."""
    if cfg.dram_latency < 1:
        raise ShiftflowError(f"load/store units for target {cfg.name!r}: dram_latency ({cfg.dram_latency}) must be "
                             "at least 1 (a memory answers a request in a later cycle)")
    if cfg.tn & (cfg.tn - 1) or cfg.dram_bytes_per_cycle > 128:
        raise ShiftflowError(f"load/store units for target {cfg.name!r}: tn ({cfg.tn}) must be a power of two and "
                             f"a DRAM beat ({cfg.dram_bytes_per_cycle} bytes) at most 128 bytes")


def _box(cmd, box) -> list:
    """Assignments of a DMA command's DRAM box from an ISA ``DramBox`` view."""
    return [getattr(cmd, name).eq(getattr(box, name)) for name in BOX_FIELDS]


def _idle_writes(m: Module, mem) -> None:
    """Tie off the write channels of a read-only ``mem`` port (valid 0, response ready 1)."""
    m.d.comb += [mem.wr_req.valid.eq(0), mem.wr_data.valid.eq(0), mem.wr_resp.ready.eq(1)]


def _idle_reads(m: Module, mem) -> None:
    """Tie off the read channels of a write-only ``mem`` port."""
    m.d.comb += [mem.rd_req.valid.eq(0), mem.rd_resp.ready.eq(1)]


class _DmaExecutor(wiring.Component):
    """An executor around its own DMA: ``instr``, ``done``, ``mem`` and the unit's ``ports``.
    The instruction goes to the DMA as it arrives (the subclass drives the command payload),
    so an instruction is accepted exactly when the DMA accepts its command and ``done`` is the
    DMA's."""

    def __init__(self, cfg: AcceleratorConfig, ports: dict):
        check_config(cfg)
        self.cfg = cfg
        self.lg_tn = (cfg.tn - 1).bit_length()
        self.dma = DMA(beat_bytes=cfg.dram_bytes_per_cycle, word_bytes=cfg.tn)
        super().__init__({"instr": In(stream.Signature(INSTR)), "done": Out(1),
                          "mem": Out(mem_signature(cfg.dram_bytes_per_cycle)), **ports})

    def _start(self, m: Module):
        """Add the DMA and the instruction handshake; returns the DMA."""
        m.submodules.dma = dma = self.dma
        m.d.comb += [dma.cmd.valid.eq(self.instr.valid), self.instr.ready.eq(dma.cmd.ready), self.done.eq(dma.done)]
        return dma


class LoadUnit(_DmaExecutor):
    """Executor for LOAD_ACT and LOAD_WGT (see the module docstring for semantics and timing).

    Ports: ``instr`` (stream of ``ir.isa.INSTR``; only LOAD_ACT / LOAD_WGT are sent here),
    ``done``, ``mem`` (:func:`hw.dma.mem_signature`; reads only, the write channels idle),
    ``lb_w`` / ``wb_w`` / ``pb_w`` (the compute unit's write ports, ``wiring.connect`` to them).
    """

    def __init__(self, cfg: AcceleratorConfig):
        beat = cfg.dram_bytes_per_cycle
        super().__init__(cfg, {
            "lb_w": Out(stream.Signature(beat_write_layout(beat))),
            "wb_w": Out(stream.Signature(beat_write_layout(beat, banked=True))),
            "pb_w": Out(stream.Signature(beat_write_layout(beat, banked=True))),
        })

    def elaborate(self, platform):
        m = Module()
        dma, lg_tn = self._start(m), self.lg_tn
        ins, cmd = self.instr.payload, dma.cmd.payload
        act, wgt = ins.body.load_act, ins.body.load_wgt
        # Constant fields are set in both branches: a process of constants alone becomes Verilog
        # that never runs (Verilator's lint: ALWNEVER, UNDRIVEN).
        with m.If(ins.header.opcode == Opcode.LOAD_ACT):
            slots = act.ring.slots
            slot0 = Mux(act.slot0 >= slots, act.slot0 - slots, act.slot0)
            m.d.comb += [
                cmd.store.eq(0), cmd.sel.eq(SEL_LINE), cmd.stride.eq(self.cfg.tn),
                *_box(cmd, act.src),
                cmd.seg_bytes.eq(act.src.ncols << lg_tn),
                # Ring geometry in bytes: block b of slot s starts at word base + s*slot_words + b*cols.
                cmd.sram_addr.eq(act.ring.base << lg_tn), cmd.sram_row_step.eq(act.ring.slot_words << lg_tn),
                cmd.sram_blk_step.eq(act.ring.cols << lg_tn), cmd.slots.eq(slots),
                # The DMA walks slots from slot0 < slots, wrapping after the last one.
                cmd.slot0.eq(slot0),
            ]
        with m.Else():  # LOAD_WGT: one segment into a bank
            target = Mux(wgt.target == WgtTarget.PARAMS, SEL_PARAMS, SEL_WEIGHTS)
            m.d.comb += [cmd.store.eq(0), cmd.sel.eq(target | (wgt.bank << 2)), cmd.stride.eq(self.cfg.tn),
                         cmd.dram_addr.eq(wgt.dram_addr),
                         cmd.nblk.eq(1), cmd.nrows.eq(1), cmd.seg_bytes.eq(wgt.nbytes),
                         cmd.sram_addr.eq(wgt.sram_addr), cmd.slots.eq(1)]

        # Reads from DRAM; the on-chip writes go to the memory ``sel`` names.
        mem = self.mem
        wiring.connect(m, dma.mem.rd_req, wiring.flipped(mem.rd_req))
        wiring.connect(m, wiring.flipped(mem.rd_resp), dma.mem.rd_resp)
        _idle_writes(m, mem)
        m.d.comb += [dma.mem.wr_req.ready.eq(0), dma.mem.wr_data.ready.eq(0), dma.mem.wr_resp.valid.eq(0)]
        w = dma.sram_wr
        sel = w.payload.sel
        ready = Mux(sel[:2] == SEL_LINE, self.lb_w.ready, Mux(sel[:2] == SEL_PARAMS, self.pb_w.ready, self.wb_w.ready))
        m.d.comb += w.ready.eq(ready)
        for port, code in ((self.lb_w, SEL_LINE), (self.wb_w, SEL_WEIGHTS), (self.pb_w, SEL_PARAMS)):
            m.d.comb += [port.valid.eq(w.valid & (sel[:2] == code)), port.payload.addr.eq(w.payload.addr),
                         port.payload.data.eq(w.payload.data), port.payload.strb.eq(w.payload.strb)]
            if port is not self.lb_w:
                m.d.comb += port.payload.bank.eq(sel[2])
        return m


class StoreUnit(_DmaExecutor):
    """Executor for STORE (see the module docstring for semantics and timing).

    Ports: ``instr`` (stream of ``ir.isa.INSTR``; only STOREs are sent here), ``done``,
    ``mem`` (:func:`hw.dma.mem_signature`; writes only, the read channels idle), ``ob_r`` /
    ``ob_rdata`` (the compute unit's output-buffer read port, ``wiring.connect`` to them).
    """

    def __init__(self, cfg: AcceleratorConfig):
        super().__init__(cfg, {"ob_r": Out(stream.Signature(ObufRead)),
                               "ob_rdata": In(stream.Signature(unsigned(8 * cfg.dram_bytes_per_cycle)))})

    def elaborate(self, platform):
        m = Module()
        dma, lg_tn = self._start(m), self.lg_tn
        st, cmd = self.instr.payload.body.store, dma.cmd.payload
        # On chip, segment (b, r) starts at word obuf_addr + r*ncols*nblk + b and its words are
        # nblk apart: one "slot" per row, never wrapping (slots = nrows).
        m.d.comb += [
            cmd.store.eq(1), cmd.sel.eq(st.half),
            *_box(cmd, st.dst),
            cmd.seg_bytes.eq(st.dst.ncols << lg_tn),
            cmd.sram_addr.eq(st.obuf_addr << lg_tn), cmd.sram_row_step.eq((st.dst.ncols * st.dst.nblk) << lg_tn),
            cmd.sram_blk_step.eq(self.cfg.tn), cmd.slots.eq(st.dst.nrows), cmd.slot0.eq(0),
            cmd.stride.eq(st.dst.nblk << lg_tn),
        ]
        mem = self.mem
        wiring.connect(m, dma.mem.wr_req, wiring.flipped(mem.wr_req))
        wiring.connect(m, dma.mem.wr_data, wiring.flipped(mem.wr_data))
        wiring.connect(m, wiring.flipped(mem.wr_resp), dma.mem.wr_resp)
        _idle_reads(m, mem)
        m.d.comb += [dma.mem.rd_req.ready.eq(0), dma.mem.rd_resp.valid.eq(0)]
        # On-chip reads: byte addresses and strides to words (a STORE's are whole words; a
        # masked leading word may sit below word 0 and wraps, as the output buffer's halves do).
        # With ``store_read_slice`` they pass a register slice (one cycle: ``ir.cost.store_read_cycles``).
        r, ob_r = dma.sram_rd, self.ob_r
        if self.cfg.store_read_slice:
            m.submodules.read_slice = read_slice = RegisterSlice(ObufRead)
            wiring.connect(m, read_slice.o, wiring.flipped(self.ob_r))
            ob_r = read_slice.i
        m.d.comb += [ob_r.valid.eq(r.valid), r.ready.eq(ob_r.ready),
                     ob_r.payload.half.eq(r.payload.sel[0]), ob_r.payload.addr.eq(r.payload.addr >> lg_tn),
                     ob_r.payload.stride.eq(r.payload.stride >> lg_tn)]
        wiring.connect(m, wiring.flipped(self.ob_rdata), dma.sram_rdata)
        return m
