"""AXI4 master for the DMA's memory port (SoC integration: a Zynq HP/HPC slave port).

:class:`AXI4Master` translates :func:`hw.dma.mem_signature` into the five AXI4 channels:
read requests → AR (INCR bursts, ``arlen = beats - 1``, full-width beats), R → read data,
write requests → AW, write data → W with ``WLAST`` generated from the burst lengths of
accepted AWs (kept in a small FIFO, so W never runs ahead of its AW by more than that
FIFO's depth), B → write responses. The DMA already keeps bursts within 256 beats and 4 KiB.
A non-OKAY ``RRESP``/``BRESP`` sets the sticky ``error`` output (the data still flows, so the
DMA never hangs on an error). Verilog port names are ``axi__<awaddr|...>`` — the usual AXI
names under one prefix. All IDs are 0: responses arrive in order, which the DMA relies on.

:class:`MemJoin` makes one such port of two DMAs' halves: the load unit's reads and the store
unit's writes (AXI4's read and write channels are independent, so neither waits for the other).
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out, flipped

from ..errors import ShiftflowError
from .dma import ADDR_BITS, DMA, mem_signature
from .skid import SkidBuffer


def axi4_signature(data_bytes: int, addr_bits: int = ADDR_BITS, id_bits: int = 1) -> wiring.Signature:
    """AXI4 (full) master signature: flows as seen from the master."""
    def ch(fields: dict, to_slave: bool) -> dict:
        return {name: (Out if to_slave else In)(w) for name, w in fields.items()}

    aw = {"awid": id_bits, "awaddr": addr_bits, "awlen": 8, "awsize": 3, "awburst": 2, "awvalid": 1}
    ar = {"arid": id_bits, "araddr": addr_bits, "arlen": 8, "arsize": 3, "arburst": 2, "arvalid": 1}
    w = {"wdata": 8 * data_bytes, "wstrb": data_bytes, "wlast": 1, "wvalid": 1}
    return wiring.Signature({
        **ch(aw, True), "awready": In(1), **ch(ar, True), "arready": In(1), **ch(w, True), "wready": In(1),
        **ch({"rid": id_bits, "rdata": 8 * data_bytes, "rresp": 2, "rlast": 1, "rvalid": 1}, False), "rready": Out(1),
        **ch({"bid": id_bits, "bresp": 2, "bvalid": 1}, False), "bready": Out(1),
    })


class AXI4Master(wiring.Component):
    """``mem`` (flipped :func:`mem_signature`, connect the DMA's ``mem`` to it) → ``axi``."""

    def __init__(self, data_bytes: int = 8, wlast_depth: int = 4):
        if data_bytes not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise ShiftflowError(f"AXI4 data width must be 1..128 bytes, a power of two; got {data_bytes}")
        if wlast_depth < 1:
            raise ShiftflowError(f"AXI4Master wlast_depth must be positive, got {wlast_depth}")
        self.data_bytes, self.wlast_depth = data_bytes, wlast_depth
        super().__init__({"mem": In(mem_signature(data_bytes)), "axi": Out(axi4_signature(data_bytes)),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        mem, axi = self.mem, self.axi
        size = (self.data_bytes - 1).bit_length()
        # AR, AW and W leave through skid buffers (hw/skid.py): the slave's ready reaches a
        # flip-flop, not the DMA's request and data logic; no cycle while the slave is ready.
        ar, aw, wd = (self._skid(m, name, getattr(mem, name)) for name in ("rd_req", "wr_req", "wr_data"))
        m.d.comb += [
            axi.araddr.eq(ar.payload.addr), axi.arlen.eq(ar.payload.beats - 1),
            axi.arsize.eq(size), axi.arburst.eq(1), axi.arvalid.eq(ar.valid),
            ar.ready.eq(axi.arready),
            mem.rd_resp.payload.eq(axi.rdata), mem.rd_resp.valid.eq(axi.rvalid), axi.rready.eq(mem.rd_resp.ready),
            axi.awsize.eq(size), axi.awburst.eq(1),
            mem.wr_resp.payload.eq(axi.bresp), mem.wr_resp.valid.eq(axi.bvalid), axi.bready.eq(mem.wr_resp.ready),
        ]
        # AW is accepted only with room to remember its length for WLAST.
        m.submodules.lens = lens = SyncFIFO(width=9, depth=self.wlast_depth)
        m.d.comb += [
            axi.awaddr.eq(aw.payload.addr), axi.awlen.eq(aw.payload.beats - 1),
            axi.awvalid.eq(aw.valid & lens.w_rdy), aw.ready.eq(axi.awready & lens.w_rdy),
            lens.w_en.eq(axi.awvalid & axi.awready), lens.w_data.eq(aw.payload.beats),
        ]
        sent = Signal(9)
        last = Signal()
        m.d.comb += [
            last.eq(sent + 1 == lens.r_data),
            axi.wdata.eq(wd.payload.data), axi.wstrb.eq(wd.payload.strb), axi.wlast.eq(last),
            axi.wvalid.eq(wd.valid & lens.r_rdy), wd.ready.eq(axi.wready & lens.r_rdy),
            lens.r_en.eq(axi.wvalid & axi.wready & last),
        ]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += sent.eq(sent + 1)
            with m.If(last):
                m.d.sync += sent.eq(0)
        with m.If((axi.rvalid & axi.rready & (axi.rresp != 0)) | (axi.bvalid & axi.bready & (axi.bresp != 0))):
            m.d.sync += self.error.eq(1)
        return m

    @staticmethod
    def _skid(m: Module, name: str, port):
        """``port`` (a stream the DMA drives) through a :class:`SkidBuffer`; returns its output."""
        skid = m.submodules[f"{name}_skid"] = SkidBuffer(port.payload.shape())
        wiring.connect(m, flipped(port), skid.i)
        return skid.o


class AxiDma(wiring.Component):
    """The DMA behind an AXI4 master: ``cmd``/``done``/on-chip ports of :class:`hw.dma.DMA`,
    and ``axi``. The unit the accelerator top instantiates, and the DMA bench's top."""

    def __init__(self, beat_bytes: int = 8, word_bytes: int = 4, max_burst: int = 16):
        self.dma = DMA(beat_bytes=beat_bytes, word_bytes=word_bytes, max_burst=max_burst)
        self.master = AXI4Master(beat_bytes)
        members = {k: v for k, v in self.dma.signature.members.items() if k != "mem"}
        super().__init__({**members, "axi": Out(axi4_signature(beat_bytes)), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma, m.submodules.master = self.dma, self.master
        wiring.connect(m, self.dma.mem, self.master.mem)
        wiring.connect(m, self.master.axi, flipped(self.axi))
        wiring.connect(m, flipped(self.cmd), self.dma.cmd)
        wiring.connect(m, flipped(self.sram_rdata), self.dma.sram_rdata)
        wiring.connect(m, self.dma.sram_wr, flipped(self.sram_wr))
        wiring.connect(m, self.dma.sram_rd, flipped(self.sram_rd))
        m.d.comb += [self.done.eq(self.dma.done), self.error.eq(self.master.error)]
        return m


class MemJoin(wiring.Component):
    """One :func:`hw.dma.mem_signature` port (``mem``) from the read channels of ``rd`` (the
    load unit's port) and the write channels of ``wr`` (the store unit's), wired straight
    through: no cycles, no arbitration (AXI4 read and write channels are independent). The
    unused halves are left alone: ``rd``'s write requests and ``wr``'s read requests are never
    accepted, and no responses are presented on them."""

    def __init__(self, data_bytes: int = 8):
        if data_bytes < 1 or data_bytes & (data_bytes - 1):
            raise ShiftflowError(f"MemJoin data width must be a power of two of bytes, got {data_bytes}")
        super().__init__({"rd": In(mem_signature(data_bytes)), "wr": In(mem_signature(data_bytes)),
                          "mem": Out(mem_signature(data_bytes))})

    def elaborate(self, platform):
        m = Module()
        for name, src in (("rd_req", self.rd), ("rd_resp", self.rd), ("wr_req", self.wr), ("wr_data", self.wr),
                          ("wr_resp", self.wr)):
            ours, theirs = getattr(flipped(src), name), getattr(self.mem, name)
            if name in ("rd_resp", "wr_resp"):
                wiring.connect(m, flipped(theirs), ours)
            else:
                wiring.connect(m, ours, flipped(theirs))
        m.d.comb += [self.rd.wr_req.ready.eq(0), self.rd.wr_data.ready.eq(0), self.rd.wr_resp.valid.eq(0),
                     self.wr.rd_req.ready.eq(0), self.wr.rd_resp.valid.eq(0)]
        return m
