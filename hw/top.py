"""The accelerator's top level: controller, load / compute / store (/ NMS) units, two AXI4 masters.

::

    csr ──▶ Controller ── fetch (mem) ──▶ AXI4Master ──▶ ifetch__*   (instruction fetch, reads only)
              │ load      │ compute      │ store
              ▼           ▼              ▼
           LoadUnit ──▶ ComputeUnit ──▶ StoreUnit
         lb_w/wb_w/pb_w            ob_r/ob_rdata
              │ mem (reads)              │ mem (writes)
              └──────── MemJoin ─────────┘
                          │ mem                        NmsUnit (a target with the core)
                       MemMux ◀──── sel: ctl.nms_busy ───── │ mem (reads and writes)
                          │ mem
                      AXI4Master ──▶ axi__*   (data: loads read, stores write; the NMS both)

The NMS core (``cfg.nms_lanes`` > 0) is the controller's fourth executor, a barrier: it starts
when every other unit is idle and nothing is dispatched until it is done (hw/control.py), so
while it runs no other unit has a DRAM transfer open (a load is done with its last beat, a
store with its last write response; the NMS unit likewise). The data port is then switched
to it by :class:`MemMux` with the controller's ``nms_busy`` register as the select: no
arbiter, no added cycle, provided the NMS unit requests nothing in its start cycle (it is
high from the next cycle through its done cycle).

``AcceleratorTop(cfg)`` has exactly the ports of the shared spec's "Top": ``axi`` and
``ifetch`` (:func:`hw.axi.axi4_signature` of ``cfg.dram_bytes_per_cycle`` bytes, so a beat is
one cycle's bandwidth), ``csr`` (:func:`hw.csr.csr_signature`, the register map in
:class:`hw.csr.Reg`), ``done``, ``busy`` and ``error``. ``error`` is the controller's error
(STATUS.error) or a non-OKAY AXI response on either port (sticky in the masters).

Timing: with memories that present a read's first beat ``dram_latency`` cycles after
accepting its AR (beats back to back), answer a write burst ``dram_latency`` cycles after
its last W beat and never stall, a segment started by a CSR write of CTRL finishes in
exactly ``ir.timeline.schedule(cfg, instrs).cycles`` cycles, which CYCLES then reads (the
controller's contract, with every executor meeting ``instruction_cycles``). The top adds no
cycles: the joiner is wires, and the AXI masters add none while the memories are ready (their
request and write-data skid buffers pass straight through, hw/skid.py; WLAST bookkeeping aside).
"""

from __future__ import annotations

from amaranth import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, flipped

from ..ir.config import AcceleratorConfig
from .axi import AXI4Master, MemJoin, axi4_signature
from .compute import ComputeUnit
from .control import Controller
from .csr import csr_signature
from .dma import mem_signature
from .loadstore import LoadUnit, StoreUnit

__all__ = ["AcceleratorTop", "MemMux", "has_nms_core"]


def has_nms_core(cfg: AcceleratorConfig) -> bool:
    """Whether target ``cfg`` has the NMS core (``nms_lanes`` > 0)."""
    return cfg.nms_lanes > 0


class MemMux(wiring.Component):
    """One :func:`hw.dma.mem_signature` port (``mem``) from ``a`` (``sel`` low) or ``b``
    (``sel`` high), every channel by ``sel``, combinationally: the deselected port's requests
    and write data are not accepted and it is presented no response. ``sel`` may change only
    while neither port has a transfer open (the barrier above guarantees it).

    ``b_gates_reads``: ``b`` requests reads only while ``sel`` is high and takes read beats
    only while it has reads open (it ignores ``rd_resp.valid`` otherwise: the NMS unit's read
    phases are its own registers), so its ``rd_req.ready`` and ``rd_resp.valid`` are the
    memory's, not gated by ``sel``."""

    def __init__(self, data_bytes: int, *, b_gates_reads: bool = False):
        self.b_gates_reads = b_gates_reads
        sig = mem_signature(data_bytes)
        super().__init__({"a": In(sig), "b": In(sig), "sel": In(1), "mem": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        sel, a, b, mem = self.sel, self.a, self.b, self.mem
        for name in ("rd_req", "wr_req", "wr_data"):  # initiator to memory
            out, pa, pb = getattr(mem, name), getattr(a, name), getattr(b, name)
            # ``b``'s read requests' ready not gated by ``sel`` when ``b_gates_reads`` (timing:
            # ``sel``'s fan-out is then not in front of the NMS unit's map walker).
            b_ready = out.ready if name == "rd_req" and self.b_gates_reads else out.ready & sel
            m.d.comb += [out.valid.eq(Mux(sel, pb.valid, pa.valid)), out.payload.eq(Mux(sel, pb.payload, pa.payload)),
                         pa.ready.eq(out.ready & ~sel), pb.ready.eq(b_ready)]
        for name in ("rd_resp", "wr_resp"):  # memory to initiator
            src, pa, pb = getattr(mem, name), getattr(a, name), getattr(b, name)
            # Likewise ``b``'s read beats (not in front of the cell former).
            b_valid = src.valid if name == "rd_resp" and self.b_gates_reads else src.valid & sel
            m.d.comb += [pa.valid.eq(src.valid & ~sel), pb.valid.eq(b_valid), pa.payload.eq(src.payload),
                         pb.payload.eq(src.payload), src.ready.eq(Mux(sel, pb.ready, pa.ready))]
        return m


class AcceleratorTop(wiring.Component):
    """The whole accelerator for target ``cfg`` (validated by its units' constructors).

    The submodules are attributes (``controller``, ``load``, ``compute``, ``store``,
    ``data_master``, ``fetch_master``; with the NMS core ``nms`` and ``mux``) so benches can
    name their signals."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        beat = cfg.dram_bytes_per_cycle
        nms = has_nms_core(cfg)
        self.controller = Controller(cfg, nms=nms)
        self.nms = self.mux = None
        if nms:
            from .nms_dma import NmsUnit

            self.nms, self.mux = NmsUnit(cfg), MemMux(beat, b_gates_reads=True)
        self.load = LoadUnit(cfg)
        self.compute = ComputeUnit(cfg, products_in=cfg.queue_products)
        self.store = StoreUnit(cfg)
        self.join = MemJoin(beat)
        self.data_master = AXI4Master(beat)
        self.fetch_master = AXI4Master(beat)
        super().__init__({
            "axi": Out(axi4_signature(beat)),
            "ifetch": Out(axi4_signature(beat)),
            "csr": In(csr_signature()),
            "done": Out(1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ctl, load, comp, store = self.controller, self.load, self.compute, self.store
        m.submodules.controller = ctl
        m.submodules.load = load
        m.submodules.compute = comp
        m.submodules.store = store
        m.submodules.join = self.join
        m.submodules.data_master = self.data_master
        m.submodules.fetch_master = self.fetch_master

        wiring.connect(m, flipped(self.csr), ctl.csr)
        # instruction streams and completions
        wiring.connect(m, ctl.load, load.instr)
        wiring.connect(m, ctl.compute, comp.instr)
        if self.cfg.queue_products:
            m.d.comb += comp.products.eq(ctl.compute_products)
        wiring.connect(m, ctl.store, store.instr)
        m.d.comb += [ctl.load_done.eq(load.done), ctl.compute_done.eq(comp.done), ctl.store_done.eq(store.done)]
        # on-chip memories: the load unit writes them, the store unit reads the output buffer
        wiring.connect(m, load.lb_w, comp.lb_w)
        wiring.connect(m, load.wb_w, comp.wb_w)
        wiring.connect(m, load.pb_w, comp.pb_w)
        wiring.connect(m, store.ob_r, comp.ob_r)
        wiring.connect(m, comp.ob_rdata, store.ob_rdata)
        # DRAM: loads' reads and stores' writes on one AXI port, instruction fetch on the other
        wiring.connect(m, load.mem, self.join.rd)
        wiring.connect(m, store.mem, self.join.wr)
        if self.nms is None:
            wiring.connect(m, self.join.mem, self.data_master.mem)
        else:  # the NMS unit: an executor whose DMA takes the data port while it runs
            m.submodules.nms, m.submodules.mux = nms, mux = self.nms, self.mux
            wiring.connect(m, ctl.nms, nms.instr)
            m.d.comb += [ctl.nms_done.eq(nms.done), mux.sel.eq(ctl.nms_busy)]
            wiring.connect(m, self.join.mem, mux.a)
            wiring.connect(m, nms.mem, mux.b)
            wiring.connect(m, mux.mem, self.data_master.mem)
        wiring.connect(m, ctl.fetch, self.fetch_master.mem)
        wiring.connect(m, self.data_master.axi, flipped(self.axi))
        wiring.connect(m, self.fetch_master.axi, flipped(self.ifetch))

        m.d.comb += [
            self.done.eq(ctl.done),
            self.busy.eq(ctl.busy),
            self.error.eq(ctl.error | self.data_master.error | self.fetch_master.error),
        ]
        return m
