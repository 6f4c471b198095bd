"""The NMS unit's DMA pieces (hw/nms_dma.py): the linear reader (the parameter table, the
patch list), the score maps' word walker, the survivor list's writer and a shift-add
multiplier.

The map walker steps through one level's words in stream order — block ``b0`` (``lanes``
channels a step, ``b0 < A·C``), row ``y``, column ``x``, byte plane ``k`` — and gives the
byte address of the block's lanes in that word::

    dram_addr + (k·nblk + b0 // tn)·blk_stride + y·row_stride + x·tn + b0 % tn

(docs/isa.md's activation layout; the plane step ``nblk·blk_stride`` is computed once a level).
The request side walks it with 32-bit addresses; the data side walks the same sequence with
only the address bits below the beat (where the lanes' bytes sit in their beat), so no
offset travels with a request and requests run ahead of the data without bound.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.nms import MAX_BURST, MUL_STEPS
from .dma import BOUNDARY
from .fetch import HeadFifo
from .nms import Y_BITS
from .nms_unit import WRITE


class MapWalker(wiring.Component):
    """One level's map words (module docstring) with ``width``-bit addresses. ``start``
    (one cycle) loads the level's fields; then ``addr`` is the current word's address, valid
    while ``busy``; ``step`` moves to the next word. ``block_end``: the current word is its
    block's last."""

    def __init__(self, width: int, lanes: int, tn: int):
        self.w, self.lanes, self.tn = width, lanes, tn
        super().__init__({
            "start": In(1), "step": In(1), "busy": Out(1), "block_end": Out(1), "addr": Out(width),
            "dram_addr": In(32), "row_stride": In(32), "blk_stride": In(32), "plane_step": In(32),
            "height": In(Y_BITS), "width": In(Y_BITS), "planes_log2": In(2), "nch": In(20),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.w
        blk, row, pos, plane = (Signal(w, name=n) for n in ("blk", "row", "pos", "plane"))
        b0, doff = Signal(20), Signal(range(self.tn))
        k, x, y = Signal(2), Signal(Y_BITS), Signal(Y_BITS)
        # ``addr`` (= pos + plane) is a register of its own, stepped beside them (timing: on
        # the data side it selects the lanes' bytes of a beat in front of the cell former; no
        # adder before that select).
        addr = Signal(w, name="addr")
        m.d.comb += self.addr.eq(addr)
        # ``k``, ``x`` and ``y`` at their last values, in registers stepped with them (timing:
        # no compare with the level's fields between ``step`` and the enables of the address
        # registers: 14.6-16.8 ns into ``blk``'s in tiny's whole design on f69e106).
        last_k, last_x, last_y = Signal(), Signal(), Signal()
        n_k = Signal(3)
        m.d.comb += [n_k.eq(1 << self.planes_log2), self.block_end.eq(last_k & last_x & last_y)]
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), b0.eq(0), doff.eq(0), k.eq(0), x.eq(0), y.eq(0), plane.eq(0),
                         blk.eq(self.dram_addr), row.eq(self.dram_addr), pos.eq(self.dram_addr),
                         addr.eq(self.dram_addr), last_k.eq(n_k == 1), last_x.eq(self.width == 1),
                         last_y.eq(self.height == 1)]
        with m.Elif(self.step & self.busy):
            m.d.sync += [k.eq(k + 1), plane.eq(plane + self.plane_step[:w]), addr.eq(addr + self.plane_step[:w]),
                         last_k.eq(k + 2 == n_k)]
            with m.If(last_k):
                m.d.sync += [k.eq(0), plane.eq(0), x.eq(x + 1), pos.eq(pos + self.tn), addr.eq(pos + self.tn),
                             last_k.eq(n_k == 1), last_x.eq(x + 2 == self.width)]
                with m.If(last_x):
                    m.d.sync += [x.eq(0), y.eq(y + 1), row.eq(row + self.row_stride[:w]),
                                 pos.eq(row + self.row_stride[:w]), addr.eq(row + self.row_stride[:w]),
                                 last_x.eq(self.width == 1), last_y.eq(y + 2 == self.height)]
                    with m.If(last_y):
                        m.d.sync += last_y.eq(self.height == 1)
                        # The next block: ``lanes`` channels on, in the same DRAM word or the next.
                        nblk = Signal(w)
                        wrap = doff == self.tn - self.lanes
                        m.d.comb += nblk.eq(Mux(wrap, blk - doff + self.blk_stride[:w], blk + self.lanes))
                        m.d.sync += [y.eq(0), b0.eq(b0 + self.lanes), doff.eq(Mux(wrap, 0, doff + self.lanes)),
                                     blk.eq(nblk), row.eq(nblk), pos.eq(nblk), addr.eq(nblk)]
                        with m.If(b0 + self.lanes >= self.nch):
                            m.d.sync += self.busy.eq(0)
        return m


class LinearReader(wiring.Component):
    """Read requests for ``nbytes`` (a multiple of the beat) from ``addr`` (beat-aligned):
    ``start`` loads them, then one request a cycle of at most ``MAX_BURST`` beats, never
    across 4 KiB; ``busy`` while requests are left."""

    def __init__(self, beat_bytes: int):
        self.bw, self.lg = beat_bytes, (beat_bytes - 1).bit_length()
        super().__init__({"start": In(1), "addr": In(32), "nbytes": In(32), "busy": Out(1),
                          "req": Out(stream.Signature(data.StructLayout({"addr": unsigned(32), "beats": unsigned(9)})))})

    def elaborate(self, platform):
        m = Module()
        addr, left = Signal(32), Signal(32)  # left: beats
        to_b = Signal(range(BOUNDARY // self.bw + 1))
        m.d.comb += to_b.eq((BOUNDARY - addr[:12]) >> self.lg)
        beats = Signal(9)
        m.d.comb += beats.eq(Mux((left <= MAX_BURST) & (left <= to_b), left, Mux(to_b < MAX_BURST, to_b, MAX_BURST)))
        m.d.comb += [self.busy.eq(left != 0), self.req.valid.eq(left != 0),
                     self.req.payload.addr.eq(addr), self.req.payload.beats.eq(beats)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.addr), left.eq(self.nbytes >> self.lg)]
        with m.Elif(self.req.valid & self.req.ready):
            m.d.sync += [addr.eq(addr + (beats << self.lg)), left.eq(left - beats)]
        return m


class ListWriter(wiring.Component):
    """The survivor list's writes (``NmsBack.w``: a 16-byte record and its address) as DRAM
    write bursts of ``16 / beat`` beats: a request queue and a data queue, so a request goes
    out the cycle after ``w`` takes it and its beats as the memory accepts them; ``idle`` when
    both queues are empty and every burst has its response."""

    def __init__(self, beat_bytes: int):
        self.bw = beat_bytes
        self.nb = 16 // beat_bytes
        super().__init__({
            "w": In(stream.Signature(WRITE)), "idle": Out(1),
            "wr_req": Out(stream.Signature(data.StructLayout({"addr": unsigned(32), "beats": unsigned(9)}))),
            "wr_data": Out(stream.Signature(data.StructLayout({"data": unsigned(8 * beat_bytes),
                                                                "strb": unsigned(beat_bytes)}))),
            "wr_resp": In(stream.Signature(unsigned(2))),
        })

    def elaborate(self, platform):
        m = Module()
        # SyncFIFO's timing with ``r_rdy`` from a register (HeadFifo, its tag unused), and
        # ``owed == 0`` registered: ``idle`` is three flip-flops, it ends the NMS instruction
        # and the controller's barrier decides from it (zu3eg's deepest path ran from a queue's
        # level through it into dispatch).
        m.submodules.reqs = reqs = HeadFifo(32, 1, 4)
        m.submodules.recs = recs = HeadFifo(128, 1, 4)
        m.d.comb += [self.w.ready.eq(reqs.w_rdy & recs.w_rdy), reqs.w_tag.eq(0), recs.w_tag.eq(0),
                     reqs.w_en.eq(self.w.valid & self.w.ready), reqs.w_data.eq(self.w.payload.addr),
                     recs.w_en.eq(self.w.valid & self.w.ready), recs.w_data.eq(self.w.payload.data)]
        m.d.comb += [self.wr_req.valid.eq(reqs.r_rdy), self.wr_req.payload.addr.eq(reqs.r_data),
                     self.wr_req.payload.beats.eq(self.nb), reqs.r_en.eq(self.wr_req.ready)]
        beat = Signal(range(self.nb))
        m.d.comb += [self.wr_data.valid.eq(recs.r_rdy),
                     self.wr_data.payload.data.eq(recs.r_data.word_select(beat, 8 * self.bw)),
                     self.wr_data.payload.strb.eq((1 << self.bw) - 1)]
        with m.If(self.wr_data.valid & self.wr_data.ready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == self.nb - 1):
                m.d.sync += beat.eq(0)
                m.d.comb += recs.r_en.eq(1)
        owed = Signal(16)  # bursts requested whose response has not come
        m.d.comb += self.wr_resp.ready.eq(1)
        up, down = self.wr_req.valid & self.wr_req.ready, self.wr_resp.valid
        owed_zero = Signal(init=1)
        # ``owed + up - down == 0`` without ``up`` in the sum: a response only answers a burst
        # requested in an earlier cycle, so with ``up`` the count stays above zero, and
        # without it it is zero when ``owed == down``. ``up`` (the data port's handshake, from
        # the controller's select) meets one AND gate (tiny's ECP5 path nms_inflight ->
        # owed_zero ran it through the 16-bit sum).
        m.d.sync += [owed.eq(owed + up - down), owed_zero.eq(~up & (owed == down))]
        m.d.comb += self.idle.eq(~reqs.r_rdy & ~recs.r_rdy & owed_zero)
        return m


class Multiplier(wiring.Component):
    """``a · b`` (``b`` < 2**16) by shift and add: ``start`` loads them, ``p`` holds the
    product ``STEPS`` cycles later (``busy`` until then)."""
    STEPS = MUL_STEPS

    def __init__(self):
        super().__init__({"start": In(1), "a": In(32), "b": In(16), "p": Out(32), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        a, b, n = Signal(32), Signal(16), Signal(range(self.STEPS + 1))
        m.d.comb += self.busy.eq(n != 0)
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.p.eq(0), n.eq(self.STEPS)]
        with m.Elif(self.busy):
            m.d.sync += [a.eq(a << 1), b.eq(b >> 1), n.eq(n - 1)]
            with m.If(b[0]):
                m.d.sync += self.p.eq(self.p + a)
        return m
