"""The NMS core's front end, its cell former: score-map bytes to the spatial stage's cells,
with the CPU's patches merged (docs/nms_core.md, "What remains" 1).

::

    i: one plane's bytes of a position's lanes (plane 0 first, ``planes`` a position)
         ─▶ reassemble (byte k at bits 8k..), sign-extend from 8·planes bits, shift left by
            the level's ``shift``: the key; box index start + (y·W + x)·A + anchor[lane];
            valid = key > thr, on the block's active lanes
         ─▶ cur: the position's cell (lanes × valid, key, index)
    p: patches (PATCH_DTYPE, stream order) ─▶ each patch of cur's (level, block, y, x) replaces
       its lane's cell (valid = ~empty & key > thr), one a cycle, before cur leaves
         ─▶ o: the cells, for NmsSpatial's (NmsBack's) ``i``

The DMA's read walker (not built yet) gathers each plane word's lanes (channels
``b0 .. b0 + lanes - 1`` of the block, ``tn`` a DRAM word) and feeds ``i``; the parameter
table's walker sets the level's fields. Throughput: a position a plane word, plus one cycle
per patch merged at it (the cycle model does not charge those yet).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.nms import PATCH_DTYPE, NmsCore
from .nms import Y_BITS, cell_layout

#: A patch as its 16 DRAM bytes (PATCH_DTYPE, little-endian; a struct layout is LSB first).
PATCH = data.StructLayout({"level": unsigned(8), "empty": unsigned(8), "channel": unsigned(16),
                           "y": unsigned(16), "x": unsigned(16), "key": signed(32), "index": unsigned(32)})
assert PATCH.size == 8 * PATCH_DTYPE.itemsize


class NmsCells(wiring.Component):
    """The cell former of an ``NmsCore`` (module docstring). Protocol: with the level's
    ``level``, ``planes_log2``, ``shift``, ``start``, ``anchors``, ``thr`` and the block's
    ``width``, ``b0`` (its first channel in the level), ``anchor`` and ``active`` (per lane)
    held, raise ``block_start`` for a cycle before the block's first plane word; ``i`` takes
    ``planes`` words a position in raster order; ``p`` offers the patches in stream order
    (a patch of a later position waits; the caller drops none) and raises ``p_end`` once the
    list has no more (a cell leaves only when ``p`` shows a later patch or ``p_end``).
    After the last block ``bad`` tells the patch list was not a legal one (FLAG_BAD_PATCH)."""

    def __init__(self, core: NmsCore):
        self.core = core
        self.cell = cell_layout(core)
        lanes = core.lanes
        super().__init__({
            "block_start": In(1),
            "level": In(8), "planes_log2": In(2), "shift": In(6), "start": In(core.index_bits),
            "anchors": In(8), "thr": In(signed(33)), "width": In(Y_BITS), "b0": In(16),
            "anchor": In(data.ArrayLayout(unsigned(8), lanes)), "active": In(lanes),
            "i": In(stream.Signature(unsigned(8 * lanes))),
            "p": In(stream.Signature(PATCH)), "p_end": In(1), "bad": Out(1),
            "o": Out(stream.Signature(data.ArrayLayout(self.cell, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        core, lanes = self.core, self.core.lanes

        plane = Signal(2)  # the plane the next word of ``i`` is
        acc = Signal(data.ArrayLayout(unsigned(24), lanes))  # planes 0..2 of the position's codes
        x, y = Signal(Y_BITS), Signal(Y_BITS)  # the position ``i`` is filling
        base = Signal(core.index_bits)  # start + (y·W + x)·A of that position
        cur = Signal(data.ArrayLayout(self.cell, lanes))
        cur_valid = Signal()
        coded = Signal(lanes)  # cur's key is a formed cell's code, not yet shifted
        cy, cx = Signal(Y_BITS), Signal(Y_BITS)  # cur's position

        # Patch merge: a patch of cur's position replaces its lane's cell, one a cycle.
        pp = self.p.payload
        lane_of = Signal(16)
        match = Signal()
        if lanes & (lanes - 1) == 0:
            # Blocks start at multiples of ``lanes``: the block and the lane are the channel's
            # bits, equalities only (timing: no adder before the merge decision).
            lg = (lanes - 1).bit_length()
            m.d.comb += [lane_of.eq(pp.channel[:lg]),
                         match.eq(cur_valid & self.p.valid & (pp.level == self.level)
                                  & (pp.channel[lg:] == self.b0[lg:]) & (pp.y == cy) & (pp.x == cx))]
        else:
            m.d.comb += [lane_of.eq(pp.channel - self.b0),
                         match.eq(cur_valid & self.p.valid & (pp.level == self.level) & (pp.channel >= self.b0)
                                  & (pp.channel < self.b0 + lanes) & (pp.y == cy) & (pp.x == cx))]
        m.d.comb += self.p.ready.eq(match)
        # A legal list is consumed whole, in strictly increasing (position, lane) order, on
        # active lanes (ir/nms.py: FLAG_BAD_PATCH): so a patch on an inactive lane or at a
        # lane not above the previous patch's at the same position, or patches left at the
        # end (``p_end`` low: an out-of-order or out-of-map patch is never matched and blocks
        # the rest), make the result invalid. Cleared by the instruction's first block.
        sticky, merged = Signal(), Signal()
        m.d.comb += self.bad.eq(sticky | ~self.p_end)
        # The previous patch's lane (at one lane every patch is lane 0, so a second one at a
        # position is never above the first: no register, and no constant compare, which
        # Verilator's lint refuses).
        not_above = 1
        if lanes > 1:
            prev = Signal(range(lanes))
            with m.If(match):
                m.d.sync += prev.eq(lane_of)
            not_above = lane_of <= prev
        with m.If(match):
            m.d.sync += merged.eq(1)
            with m.If(~self.active.bit_select(lane_of[:max(1, (lanes - 1).bit_length())], 1)
                      | (merged & not_above)):
                m.d.sync += sticky.eq(1)
            for lane in range(lanes):
                with m.If(lane_of == lane):
                    m.d.sync += [cur[lane].key.eq(pp.key), cur[lane].index.eq(pp.index),
                                 cur[lane].valid.eq(~pp.empty.any()), coded[lane].eq(0)]

        # cur leaves only when the next patch is known to be later (or there is none left): a
        # patch that is late on ``p`` is never passed by.
        # The level's shift and the threshold are applied on the way out (timing: the map
        # word's byte select and sign extension were followed by a shifter and a 33-bit compare
        # before ``cur``): ``cur``'s valid holds whether the lane has a cell at all (an active
        # lane, a patch not empty); its key is the code of a formed cell (``coded``), whose key
        # is code·2**shift and which passes when code > floor(thr / 2**shift) (a table the core
        # runs never overflows the key: ``keys`` in hw/nms_dma.py's check), or a patch's key.
        m.d.comb += self.o.valid.eq(cur_valid & ~match & (self.p.valid | self.p_end))
        thr_s = Signal(signed(33))  # thr >> shift (held inputs)
        m.d.sync += thr_s.eq(self.thr >> self.shift)
        for lane in range(lanes):
            c = cur[lane]
            m.d.comb += [self.o.payload[lane].key.eq(Mux(coded[lane], c.key << self.shift, c.key)),
                         self.o.payload[lane].index.eq(c.index),
                         self.o.payload[lane].valid.eq(c.valid & Mux(coded[lane], c.key > thr_s, c.key > self.thr))]
        leaving = self.o.valid & self.o.ready
        m.d.comb += self.i.ready.eq(~cur_valid | leaving)

        nplanes = Signal(3)
        m.d.comb += nplanes.eq(Mux(self.planes_log2 == 0, 1, Mux(self.planes_log2 == 1, 2, 4)))
        last = plane == nplanes - 1
        with m.If(leaving):
            m.d.sync += cur_valid.eq(0)
        # The position's cells, formed whether or not a word is taken (so the take is only
        # the registers' enable, not an input of the compare: timing).
        byte = lambda lane: self.i.payload[8 * lane:8 * lane + 8]
        formed = []
        for lane in range(lanes):
            code = Signal(signed(32), name=f"code{lane}")
            raw = Signal(32, name=f"raw{lane}")
            m.d.comb += raw.eq(Cat(acc[lane], byte(lane)))  # planes 0..2, then this one's byte
            # The last plane's byte is the top byte; the sign is its top bit.
            with m.Switch(self.planes_log2):
                with m.Case(0):
                    m.d.comb += code.eq(byte(lane).as_signed())
                with m.Case(1):
                    m.d.comb += code.eq(Cat(acc[lane][:8], byte(lane)).as_signed())
                with m.Default():
                    m.d.comb += code.eq(raw.as_signed())
            act = self.active[lane]
            formed.append((Mux(act, code, 0), Mux(act, base + self.anchor[lane], 0), act))
        with m.If(self.i.valid & self.i.ready):
            with m.If(~last):
                for lane in range(lanes):
                    for k in range(3):
                        with m.If(plane == k):
                            m.d.sync += acc[lane][8 * k:8 * k + 8].eq(byte(lane))
                m.d.sync += plane.eq(plane + 1)
            with m.Else():
                for lane, (key, index, valid) in enumerate(formed):
                    m.d.sync += [cur[lane].key.eq(key), cur[lane].index.eq(index), cur[lane].valid.eq(valid),
                                 coded[lane].eq(1)]
                m.d.sync += [cur_valid.eq(1), plane.eq(0), cy.eq(y), cx.eq(x), base.eq(base + self.anchors),
                             merged.eq(0)]
                with m.If(x == self.width - 1):
                    m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
        with m.If(self.block_start):
            m.d.sync += [plane.eq(0), x.eq(0), y.eq(0), base.eq(self.start)]
            with m.If((self.level == 0) & (self.b0 == 0)):
                m.d.sync += sticky.eq(0)
        return m
