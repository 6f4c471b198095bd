"""The DMA engine: DRAM boxes and linear copies to and from on-chip memories.

One command (:data:`DmaCmd`) describes ``nblk × nrows`` *segments* of ``seg_bytes``
contiguous DRAM bytes each — the row segments of a LOAD_ACT / STORE box (docs/isa.md), or a
single segment for LOAD_WGT. Segment ``(b, r)`` starts at DRAM byte
``dram_addr + b*blk_stride + r*row_stride`` and at on-chip byte
``sram_addr + b*sram_blk_step + ((slot0 + r) mod slots) * sram_row_step`` (the ring of a
LOAD_ACT; a STORE or LOAD_WGT uses ``slots = nrows``, ``slot0 = 0``).

DRAM side (:func:`mem_signature`, the DMA is the initiator): burst read/write requests
``{addr, beats}`` on beat-aligned addresses (``beat_bytes`` per beat, at most
``max_burst`` beats, never crossing a 4 KiB boundary, as AXI4 requires), read data beats in
order, write data beats with byte strobes, one write response per burst. Every channel is a
valid/ready stream, so the memory may stall anywhere and answer with any latency.

On-chip side: loads write ``sram_wr {sel, addr, data, strb}``; stores read with ``sram_rd
{sel, addr, stride}`` and take the data from ``sram_rdata`` (in request order, any latency).
``addr`` is the on-chip byte address of beat byte 0; ``tn``-byte word ``i`` of a beat lives at
``addr + i*stride`` (loads: ``stride = tn``, contiguous). ``sel`` is copied from the command
(it picks line buffer / weight bank / parameter bank / output half). A segment whose DRAM
start is not beat-aligned has leading bytes masked in its first beat and ``addr`` moved back
accordingly, so the on-chip memory needs no realignment logic beyond its word banking.

Timing with a memory that never stalls, accepts a request per cycle and presents the first
beat of a request ``L >= 1`` cycles after accepting it (later beats back to back), with
``B = Σ_segments ceil((dram_addr % beat_bytes + seg_bytes) / beat_bytes)``:

- a load command accepted in cycle 0 issues its first request in that same cycle (the
  command's first segment is decoded combinationally from the incoming payload; one request
  per cycle afterwards), writes its beats on chip in cycles ``L .. L+B-1`` and pulses
  ``done`` in cycle ``L + B``;
- a store command issues its first write request and its first on-chip read in cycle 0; with
  an on-chip read latency of 1 its write beats go out in cycles ``1 .. B``, the memory
  answers the last burst ``L`` cycles after its last beat (cycle ``B + L``) and ``done``
  pulses in cycle ``1 + L + B``;
- an empty command (no segment, or empty segments) pulses ``done`` in cycle 1.

Requests run ahead of data, so the latency is paid once per command. ``ir.cost``'s
``dma_box_cycles`` / ``dma_linear_cycles`` / ``dma_store_cycles`` are these numbers.
"""


from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import DramBox, LoadAct, LoadWgt, field_shape

ADDR_BITS = DramBox["dram_addr"].width
SRAM_ADDR_BITS = LoadWgt["sram_addr"].width
SEL_BITS = 3
BOUNDARY = 4096  # AXI4: a burst never crosses a 4 KiB boundary
MAX_BEAT_BYTES = 128
#: Bits of ``DmaCmd.stride``: a STORE's words of one pixel are ``dst.nblk`` words of at most
#: a beat apart.
STRIDE_BITS = DramBox["nblk"].width + (MAX_BEAT_BYTES - 1).bit_length()

#: The fields a command shares with the ISA's ``DramBox``: all but ``ncols``, whose place
#: ``seg_bytes`` takes (a box row's ``ncols*tn`` bytes, or a LOAD_WGT's ``nbytes``).
BOX_FIELDS = tuple(name for name, _ in DramBox if name != "ncols")

DmaCmd = data.StructLayout({
    "store": unsigned(1),  # 1: on-chip -> DRAM
    "sel": unsigned(SEL_BITS),  # which on-chip memory (copied to every on-chip request)
    **{name: DramBox[name].shape for name in BOX_FIELDS},
    "seg_bytes": LoadWgt["nbytes"].shape,
    "sram_addr": unsigned(SRAM_ADDR_BITS),
    "sram_row_step": unsigned(SRAM_ADDR_BITS),
    "sram_blk_step": unsigned(SRAM_ADDR_BITS),
    "slots": field_shape(LoadAct, "ring.slots"),
    "slot0": LoadAct["slot0"].shape,
    "stride": unsigned(STRIDE_BITS),  # on-chip bytes between consecutive tn-byte words of a segment
})

MemReq = data.StructLayout({"addr": unsigned(ADDR_BITS), "beats": unsigned(9)})


def sram_write_layout(beat_bytes: int) -> data.StructLayout:
    """Payload of ``sram_wr``: bytes ``data`` (with ``strb``) for on-chip byte ``addr`` on."""
    return data.StructLayout({"sel": unsigned(SEL_BITS), "addr": unsigned(SRAM_ADDR_BITS),
                              "data": unsigned(8 * beat_bytes), "strb": unsigned(beat_bytes)})


#: Payload of ``sram_rd``: word ``i`` of the beat comes from ``addr + i*stride``.
SramRead = data.StructLayout({"sel": unsigned(SEL_BITS), "addr": unsigned(SRAM_ADDR_BITS),
                              "stride": unsigned(STRIDE_BITS)})


def mem_signature(beat_bytes: int) -> wiring.Signature:
    """The DRAM port, seen from the initiator (the DMA)."""
    return wiring.Signature({
        "rd_req": Out(stream.Signature(MemReq)),
        "rd_resp": In(stream.Signature(unsigned(8 * beat_bytes))),
        "wr_req": Out(stream.Signature(MemReq)),
        "wr_data": Out(stream.Signature(data.StructLayout(
            {"data": unsigned(8 * beat_bytes), "strb": unsigned(beat_bytes)}))),
        "wr_resp": In(stream.Signature(unsigned(2))),  # AXI BRESP (0 = OKAY); the DMA ignores it
    })


class _Walker(wiring.Component):
    """Steps through a command's segments. ``start`` loads the command ``cmd`` (the incoming
    one in that cycle); ``dram``/``sram``/``last`` describe the current segment, registered
    from the cycle after ``start`` on. With ``early`` they describe segment ``(0, 0)`` already
    in the ``start`` cycle (combinationally from ``cmd``), so the DMA can act on it in its
    accept cycle, and ``next`` may come then too. ``next`` moves on to the following segment."""
    cmd: In(DmaCmd)
    start: In(1)
    early: In(1)
    next: In(1)
    dram: Out(ADDR_BITS)
    sram: Out(SRAM_ADDR_BITS)
    last: Out(1)

    def elaborate(self, platform):
        m = Module()
        c = self.cmd
        first_off = Signal(SRAM_ADDR_BITS)
        m.d.comb += first_off.eq(c.slot0 * c.sram_row_step)
        # Registered position and the current one (with ``early``, the first segment's in the
        # start cycle; without, the first segment's product slot0*row_step only feeds a register).
        shapes = {"b": c.nblk.shape(), "r": c.nrows.shape(), "slot": c.slots.shape(), "blk_dram": ADDR_BITS,
                  "dram": ADDR_BITS, "blk_sram": SRAM_ADDR_BITS, "row_off": SRAM_ADDR_BITS}
        init = {"b": 0, "r": 0, "slot": c.slot0, "blk_dram": c.dram_addr, "dram": c.dram_addr,
                "blk_sram": c.sram_addr, "row_off": first_off}
        reg = {k: Signal(w, name=k) for k, w in shapes.items()}
        cur = {k: Signal(w, name=f"cur_{k}") for k, w in shapes.items()}
        for k in shapes:
            m.d.comb += cur[k].eq(Mux(self.start & self.early, init[k], reg[k]))
            m.d.sync += reg[k].eq(Mux(self.start, init[k], reg[k]))  # stepping overrides
        m.d.comb += [self.dram.eq(cur["dram"]), self.sram.eq(cur["blk_sram"] + cur["row_off"]),
                     self.last.eq((cur["b"] == c.nblk - 1) & (cur["r"] == c.nrows - 1))]
        with m.If(self.next):
            with m.If(cur["r"] == c.nrows - 1):  # next block: back to the first row and slot
                blk_dram = cur["blk_dram"] + c.blk_stride
                m.d.sync += [reg["b"].eq(cur["b"] + 1), reg["r"].eq(0), reg["slot"].eq(c.slot0),
                             reg["row_off"].eq(first_off), reg["blk_dram"].eq(blk_dram), reg["dram"].eq(blk_dram),
                             reg["blk_sram"].eq(cur["blk_sram"] + c.sram_blk_step)]
            with m.Else():  # next row: the ring wraps after its last slot
                m.d.sync += [reg["r"].eq(cur["r"] + 1), reg["dram"].eq(cur["dram"] + c.row_stride)]
                with m.If(cur["slot"] == c.slots - 1):
                    m.d.sync += [reg["slot"].eq(0), reg["row_off"].eq(0)]
                with m.Else():
                    m.d.sync += [reg["slot"].eq(cur["slot"] + 1),
                                 reg["row_off"].eq(cur["row_off"] + c.sram_row_step)]
        return m


class DMA(wiring.Component):
    """The DMA engine (see the module docstring for command, ports and timing).

    Ports: ``cmd`` (stream of :data:`DmaCmd`, ready when idle), ``done`` (one-cycle pulse when
    a command has completed: loads after the last on-chip write, stores after the last write
    response), ``mem`` (:func:`mem_signature`), ``sram_wr``, ``sram_rd``, ``sram_rdata``.
    """

    def __init__(self, beat_bytes: int = 8, word_bytes: int = 4, max_burst: int = 16, read_depth: int = 4):
        if beat_bytes < 1 or beat_bytes & (beat_bytes - 1) or beat_bytes > MAX_BEAT_BYTES:
            raise ShiftflowError(f"DMA beat_bytes must be a power of two in 1..{MAX_BEAT_BYTES}, got {beat_bytes}")
        if word_bytes < 1 or beat_bytes % word_bytes:
            raise ShiftflowError(f"DMA beat_bytes ({beat_bytes}) must be a multiple of the word size ({word_bytes})")
        if not 1 <= max_burst <= 256 or max_burst * beat_bytes > BOUNDARY:
            raise ShiftflowError(f"DMA max_burst must be in 1..256 and span at most 4 KiB, got {max_burst}")
        if read_depth < 1:
            raise ShiftflowError(f"DMA read_depth must be positive, got {read_depth}")
        self.beat_bytes, self.word_bytes, self.max_burst, self.read_depth = beat_bytes, word_bytes, max_burst, read_depth
        bb = beat_bytes
        super().__init__({
            "cmd": In(stream.Signature(DmaCmd)),
            "done": Out(1),
            "mem": Out(mem_signature(bb)),
            "sram_wr": Out(stream.Signature(sram_write_layout(bb))),
            "sram_rd": Out(stream.Signature(SramRead)),
            "sram_rdata": In(stream.Signature(unsigned(8 * bb))),
        })

    def elaborate(self, platform):
        m = Module()
        bb, lg = self.beat_bytes, (self.beat_bytes - 1).bit_length()
        cmd_reg, cmd = Signal(DmaCmd), Signal(DmaCmd)
        busy, req_done, data_done = Signal(), Signal(), Signal()
        start, req_left, data_left = Signal(), Signal(), Signal()
        p = self.cmd.payload
        empty = (p.nblk == 0) | (p.nrows == 0) | (p.seg_bytes == 0)
        # The request side acts from the accept cycle on (the first request goes out then), so
        # in that cycle ``cmd`` is the incoming command. So does a store's data side (the first
        # on-chip read, ``dcmd``); a load's data side waits for data, which comes at least a
        # cycle later, and works from the registered command (no path from the incoming
        # command to the on-chip write port).
        early = Signal()
        dcmd = Signal(DmaCmd)
        m.d.comb += [self.cmd.ready.eq(~busy), start.eq(self.cmd.valid & ~busy), early.eq(start & p.store),
                     cmd.eq(Mux(start, p.as_value(), cmd_reg.as_value())),
                     dcmd.eq(Mux(early, p.as_value(), cmd_reg.as_value())),
                     req_left.eq(Mux(busy, ~req_done, start & ~empty)),
                     data_left.eq(Mux(busy, ~data_done, early & ~empty))]
        m.d.sync += self.done.eq(0)
        with m.If(start):
            m.d.sync += [cmd_reg.eq(p), busy.eq(~empty), req_done.eq(0), data_done.eq(0), self.done.eq(empty)]

        walk_req, walk_data = _Walker(), _Walker()
        m.submodules.walk_req, m.submodules.walk_data = walk_req, walk_data
        for w, w_early in ((walk_req, 1), (walk_data, p.store)):
            m.d.comb += [w.cmd.eq(cmd), w.start.eq(start), w.early.eq(w_early)]

        # Request side: one burst request per cycle, split at max_burst and 4 KiB boundaries.
        # ``in_seg``: inside a segment split into several bursts (never at a command's start).
        seg_bits = DmaCmd["seg_bytes"].width
        in_seg_reg, cur_addr, cur_rem = Signal(), Signal(ADDR_BITS), Signal(seg_bits)
        in_seg = Signal()
        m.d.comb += in_seg.eq(in_seg_reg & busy)
        m.d.sync += in_seg_reg.eq(in_seg)
        offset = walk_req.dram[:lg] if lg else 0
        addr = Signal(ADDR_BITS)
        rem = Signal(seg_bits)
        burst = Signal(9)
        to_boundary = Signal(range(BOUNDARY // bb + 1))
        m.d.comb += [
            addr.eq(Mux(in_seg, cur_addr, walk_req.dram - offset)),
            rem.eq(Mux(in_seg, cur_rem, (offset + cmd.seg_bytes + bb - 1) >> lg)),
            to_boundary.eq((BOUNDARY - addr[:12]) >> lg),
            burst.eq(Mux(rem < self.max_burst, rem, self.max_burst)),
        ]
        burst_len = Mux(burst < to_boundary, burst, to_boundary)
        for port, is_store in ((self.mem.rd_req, 0), (self.mem.wr_req, 1)):
            m.d.comb += [port.valid.eq(req_left & (cmd.store == is_store)),
                         port.payload.addr.eq(addr), port.payload.beats.eq(burst_len)]
        req_fire = (self.mem.rd_req.valid & self.mem.rd_req.ready) | (self.mem.wr_req.valid & self.mem.wr_req.ready)
        with m.If(req_fire):
            with m.If(rem == burst_len):
                m.d.sync += in_seg_reg.eq(0)
                m.d.comb += walk_req.next.eq(1)
                with m.If(walk_req.last):
                    m.d.sync += req_done.eq(1)
            with m.Else():
                m.d.sync += [in_seg_reg.eq(1), cur_addr.eq(addr + (burst_len << lg)), cur_rem.eq(rem - burst_len)]

        # Data side: per beat, the on-chip address of byte 0 and the byte strobes.
        d_in_seg_reg, d_sram, d_rem = Signal(), Signal(SRAM_ADDR_BITS), Signal(seg_bits + 1)
        d_in_seg = Signal()
        m.d.comb += d_in_seg.eq(d_in_seg_reg & busy)
        m.d.sync += d_in_seg_reg.eq(d_in_seg)
        d_off = walk_data.dram[:lg] if lg else 0
        words_back = (d_off // self.word_bytes) if lg else 0
        sram = Signal(SRAM_ADDR_BITS)
        rem_bytes = Signal(seg_bits + 1)
        lo = Signal(range(bb + 1))
        strb = Signal(bb)
        ones = (1 << bb) - 1
        m.d.comb += [
            sram.eq(Mux(d_in_seg, d_sram,
                        walk_data.sram - words_back * dcmd.stride - (d_off % self.word_bytes if lg else 0))),
            rem_bytes.eq(Mux(d_in_seg, d_rem, d_off + dcmd.seg_bytes)),
            lo.eq(Mux(d_in_seg, 0, d_off)),
            # Bytes lo .. rem_bytes-1 of the beat: ones from lo up, cut at rem_bytes.
            strb.eq((Const(ones, bb) << lo)[:bb] & Mux(rem_bytes >= bb, ones, (Const(1, bb + 1) << rem_bytes[:lg + 1]) - 1)),
        ]
        beat_fire, last_beat = Signal(), Signal()
        m.d.comb += last_beat.eq(beat_fire & (rem_bytes <= bb) & walk_data.last)
        with m.If(beat_fire):
            with m.If(rem_bytes <= bb):
                m.d.sync += d_in_seg_reg.eq(0)
                m.d.comb += walk_data.next.eq(1)
                with m.If(walk_data.last):
                    m.d.sync += data_done.eq(1)
            with m.Else():
                words_per_beat = bb // self.word_bytes
                m.d.sync += [d_in_seg_reg.eq(1), d_sram.eq(sram + words_per_beat * dcmd.stride), d_rem.eq(rem_bytes - bb)]

        # Loads: response beats go straight to the on-chip write port.
        rd, wr = self.mem.rd_resp, self.sram_wr
        m.d.comb += [
            wr.valid.eq(data_left & ~dcmd.store & rd.valid),
            rd.ready.eq(data_left & ~dcmd.store & wr.ready),
            wr.payload.sel.eq(dcmd.sel), wr.payload.addr.eq(sram),
            wr.payload.data.eq(rd.payload), wr.payload.strb.eq(strb),
        ]
        # Stores: on-chip reads run ahead; their strobes wait in a FIFO for the data.
        m.submodules.strobes = strobes = SyncFIFO(width=bb, depth=self.read_depth)
        srd, sdat, wd = self.sram_rd, self.sram_rdata, self.mem.wr_data
        m.d.comb += [
            srd.valid.eq(data_left & dcmd.store & strobes.w_rdy),
            srd.payload.sel.eq(dcmd.sel), srd.payload.addr.eq(sram), srd.payload.stride.eq(dcmd.stride),
            strobes.w_en.eq(srd.valid & srd.ready), strobes.w_data.eq(strb),
            wd.valid.eq(sdat.valid & strobes.r_rdy),
            wd.payload.data.eq(sdat.payload), wd.payload.strb.eq(strobes.r_data),
            sdat.ready.eq(wd.ready & strobes.r_rdy),
            strobes.r_en.eq(wd.valid & wd.ready),
            beat_fire.eq(Mux(dcmd.store, srd.valid & srd.ready, rd.valid & rd.ready)),
        ]

        # Completion, registered: a load with its last on-chip write; a store with the response
        # to its last burst (responses come in order, each after its burst's last data beat,
        # so that one is the last write of the command to complete).
        pending = Signal(16)
        issued = self.mem.wr_req.valid & self.mem.wr_req.ready
        answered = self.mem.wr_resp.valid & self.mem.wr_resp.ready
        m.d.comb += self.mem.wr_resp.ready.eq(1)
        m.d.sync += pending.eq(pending + issued - answered)
        load_done = ~dcmd.store & last_beat
        store_done = cmd.store & req_done & answered & (pending == 1)
        with m.If(busy & (load_done | store_done)):
            m.d.sync += [busy.eq(0), self.done.eq(1)]
        return m
