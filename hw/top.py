"""The accelerator's top level: controller, load / compute / store units, two AXI4 masters.

::

    csr ──▶ Controller ── fetch (mem) ──▶ AXI4Master ──▶ ifetch__*   (instruction fetch, reads only)
              │ load      │ compute      │ store
              ▼           ▼              ▼
           LoadUnit ──▶ ComputeUnit ──▶ StoreUnit
         lb_w/wb_w/pb_w            ob_r/ob_rdata
              │ mem (reads)              │ mem (writes)
              └──────── MemJoin ─────────┘
                          │ mem
                      AXI4Master ──▶ axi__*   (data: loads read, stores write)

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

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, flipped

from ..ir.config import AcceleratorConfig
from .axi import AXI4Master, MemJoin, axi4_signature
from .compute import ComputeUnit
from .control import Controller
from .csr import csr_signature
from .loadstore import LoadUnit, StoreUnit

__all__ = ["AcceleratorTop"]


class AcceleratorTop(wiring.Component):
    """The whole accelerator for target ``cfg`` (validated by its units' constructors).

    The submodules are attributes (``controller``, ``load``, ``compute``, ``store``,
    ``data_master``, ``fetch_master``) so benches can name their signals."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        beat = cfg.dram_bytes_per_cycle
        self.controller = Controller(cfg)
        self.load = LoadUnit(cfg)
        self.compute = ComputeUnit(cfg)
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
        wiring.connect(m, self.join.mem, self.data_master.mem)
        wiring.connect(m, ctl.fetch, self.fetch_master.mem)
        wiring.connect(m, self.data_master.axi, flipped(self.axi))
        wiring.connect(m, self.fetch_master.axi, flipped(self.ifetch))

        m.d.comb += [
            self.done.eq(ctl.done),
            self.busy.eq(ctl.busy),
            self.error.eq(ctl.error | self.data_master.error | self.fetch_master.error),
        ]
        return m
