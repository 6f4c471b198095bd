"""The NMS core's spatial stage: shifted max-pooling of ``lanes`` score maps streaming in
raster order, one word (one cell of every lane) a cycle (docs/nms_core.md).

::

    i: word (lanes × valid, key, box index) ─┬─▶ delay line: k rows of W cells a lane
                                             │     (the cell of row y - k, read as row y is written)
                                             ├─▶ aligned tile bests  [band parity][tile column]
                                             └─▶ shifted tile bests  [band parity][tile column]
    decision of cell (y - k, x): its box index is the winner's of both of its tiles
         ─▶ survivor bank (one bit a lane) ─▶ o: one survivor a cycle (lane, y, x, key, index)

Each lane pools with its own kernel ``k`` and shift ``s`` (the tiles of the shifted grid start
at ``-s``). Tiles are non-overlapping, so a tile needs only its running best: while row ``y``
streams, the best of each tile of its band is updated in place (read, compare, write
through, an asynchronous read seeing the previous cycle's write), in the half of the
memory of the band's parity. By the time row ``y + k`` streams both tiles of every cell of
row ``y`` are complete and still held (the next band writes the other half), so the cell is
decided then, from the delay line. Rows ``H .. H + max k - 1`` are a drain with no input.
Survivors leave in the order (``y + k``, x, lane); a position with ``m > 1`` survivors holds
the stream for ``m`` cycles. Cycles: ``ir.nms.spatial_cycles`` exactly (no stalls).

A cell is the winner when its key is the highest, then its box index the lowest; box indices
are unique within a map, so "is the winner" is "has the winner's box index".
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.nms import NmsCore

Y_BITS = 16


def rank(c):
    """``c``'s order as one unsigned value (its key with the sign bit flipped, then its box
    index's complement): a higher key, or an equal key and a lower index, ranks higher — the
    model's ``(key << 32) | (LOW32 - index)`` (timing: one carry chain, not a compare, an
    equality and a second compare)."""
    return Cat(~c.index, c.key.as_unsigned() ^ (1 << (len(c.key) - 1)))


def cell_layout(core: NmsCore) -> data.StructLayout:
    return data.StructLayout({"valid": unsigned(1), "key": signed(core.key_bits), "index": unsigned(core.index_bits)})


class NmsSpatial(wiring.Component):
    """Spatial stage of an ``NmsCore`` (see the module docstring). Set ``height``, ``width``,
    ``kernel`` and ``shift`` (per lane; an unused lane: kernel 1) and raise ``start`` for one
    cycle while not ``busy``; send ``height · width`` words on ``i``; survivors come out on
    ``o``; ``done`` is high for one cycle when the last has left.

    With ``grid_copy``, ``i_s`` must carry the same payload as ``i`` (from a register of its
    own): the shifted grid compares it, the aligned grid and the delay line ``i``'s (timing:
    one register drove all ten key compares of a lane, 11.3 ns of routing to one of them on
    77d956e's fourth seed)."""

    def __init__(self, core: NmsCore, grid_copy: bool = False):
        if core.max_width < 1 or core.max_width & (core.max_width - 1):
            raise ShiftflowError(f"NMS core max_width must be a power of two, found {core.max_width}")
        if core.lanes < 1 or core.max_kernel < 1:
            raise ShiftflowError(f"NMS core needs lanes and max_kernel >= 1, found {core.lanes}, {core.max_kernel}")
        self.core = core
        self.grid_copy = grid_copy
        self.xbits = max(1, (core.max_width - 1).bit_length())
        self.kbits = core.max_kernel.bit_length()
        self.cell = cell_layout(core)
        self.survivor = data.StructLayout({
            "lane": unsigned(max(1, (core.lanes - 1).bit_length())), "y": unsigned(Y_BITS),
            "x": unsigned(self.xbits), "key": signed(core.key_bits), "index": unsigned(core.index_bits)})
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "height": In(Y_BITS), "width": In(self.xbits + 1),
            "kernel": In(data.ArrayLayout(unsigned(self.kbits), core.lanes)),
            "shift": In(data.ArrayLayout(unsigned(self.kbits), core.lanes)),
            "i": In(stream.Signature(data.ArrayLayout(self.cell, core.lanes))),
            "o": Out(stream.Signature(self.survivor)),
            **({"i_s": In(data.ArrayLayout(self.cell, core.lanes))} if grid_copy else {}),
        })

    def _forwarded(self, m, accept, advance, rd, waddr, raddr_next, wdata):
        """``rd``'s data, or ``wdata`` of the position before when it wrote the address read."""
        fwd, last = Signal(), Signal(self.cell)
        with m.If(accept | advance):
            m.d.sync += [fwd.eq(~accept & (raddr_next == waddr)), last.eq(wdata)]
        out = Signal(self.cell)
        m.d.comb += out.eq(Mux(fwd, last, rd.data))
        return out

    @staticmethod
    def _better(a, b):
        """``a`` beats ``b``: a candidate, and ``b`` none, or a higher key, or an equal key
        and a lower box index (:func:`rank`)."""
        return a.valid & (~b.valid | (rank(a) > rank(b)))

    def elaborate(self, platform):
        m = Module()
        lanes = self.core.lanes
        wm = 1 << self.xbits

        height, width = Signal(Y_BITS), Signal(self.xbits + 1)
        kernel = Signal(data.ArrayLayout(unsigned(self.kbits), lanes))
        shift = Signal.like(kernel)
        kmax = Signal(self.kbits)  # the drain's rows: the largest kernel
        drow = Signal(self.kbits)  # drain rows done
        y, x = Signal(Y_BITS + 1), Signal(self.xbits)
        active = Signal()  # from start to done
        streaming = Signal()  # positions left
        pending = Signal(lanes)  # survivors of the last position not yet sent
        bank = Signal(data.ArrayLayout(self.cell, lanes))
        bank_y, bank_x = Signal(Y_BITS + 1), Signal(self.xbits)

        # The next position may be decided when the bank empties this cycle.
        one_left = (pending & (pending - 1)) == 0
        bank_free = (pending == 0) | (one_left & self.o.ready)
        drain = Signal()  # y >= height, kept in a register (timing: it gates ``advance``)
        advance = streaming & bank_free & (drain | self.i.valid)
        # With ``grid_copy`` each grid's registers take ``advance`` from its own copy of it,
        # made from its own copy of ``streaming`` or ``drain`` (timing: the one ``advance``
        # reached every enable of both grids and the delay line, 14.5 of its 16.0 ns routing
        # on b448768's third seed). A copy's initial value differs so that yosys keeps it
        # (see NmsUnit's grid copy); before the first start ``streaming`` is low (grid a's
        # copy is 0) and grid s's copy is at most the input's valid, which is low until the
        # unit starts, and every register a grid's copy enables is loaded at start.
        adv = {"a": advance, "s": advance}
        drains = {"a": drain, "s": drain}
        if self.grid_copy:
            streaming_s, drain_a = Signal(init=1, name="streaming_s"), Signal(init=1, name="drain_a")
            drains["a"] = drain_a
            adv = {"a": streaming & bank_free & (drain_a | self.i.valid),
                   "s": streaming_s & bank_free & (drain | self.i.valid)}
        self.advance_copies = (advance, adv["a"], adv["s"])  # for tests: equal in every cycle
        # ``x == width - 1`` and ``y + 1 >= height`` kept in registers, stepped with x and y
        # (timing: ``row_end`` fans out to every lane's counters, ``advance`` gates both).
        row_end, last_row = Signal(), Signal()
        m.d.comb += [self.busy.eq(active), self.i.ready.eq(streaming & bank_free & ~drain)]

        # A balanced tree from the latched kernels, registered: first needed at the end of
        # the first drain row, two cycles after start at the earliest.
        level = [kernel[lane] for lane in range(lanes)]
        while len(level) > 1:
            level = [Mux(a > b, a, b) for a, b in zip(level[::2], level[1::2])] + level[len(level) & ~1:]
        m.d.sync += kmax.eq(level[0])
        with m.If(self.start & ~self.busy):
            m.d.sync += [height.eq(self.height), width.eq(self.width), kernel.eq(self.kernel),
                         shift.eq(self.shift), y.eq(0), x.eq(0), drow.eq(0), streaming.eq(1), active.eq(1),
                         drain.eq(self.height == 0), row_end.eq(self.width == 1), last_row.eq(self.height <= 1)]
            if self.grid_copy:
                m.d.sync += [streaming_s.eq(1), drain_a.eq(self.height == 0)]
        with m.Elif(advance):
            m.d.sync += [x.eq(Mux(row_end, 0, x + 1)), y.eq(y + row_end),
                         row_end.eq(Mux(row_end, width == 1, x + 2 == width))]
            with m.If(row_end):
                m.d.sync += last_row.eq(y + 2 >= height)
            with m.If(row_end & last_row):
                m.d.sync += drain.eq(1)
                if self.grid_copy:
                    m.d.sync += drain_a.eq(1)
            with m.If(row_end & drain):
                m.d.sync += drow.eq(drow + 1)
                with m.If(drow == kmax - 1):
                    m.d.sync += streaming.eq(0)
                    if self.grid_copy:
                        m.d.sync += streaming_s.eq(0)

        survive = Signal(lanes)
        for lane in range(lanes):
            self._lane(m, lane, wm, kernel[lane], shift[lane], y, x, row_end, drains, advance, adv, survive, bank)
        with m.If(advance):
            m.d.sync += [pending.eq(survive), bank_y.eq(y), bank_x.eq(x)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(pending & (pending - 1))

        # The lowest pending lane leaves first.
        first = Signal(range(max(2, lanes)))  # (one bit at one lane: a zero-width wire fails Verilator's lint)
        for lane in reversed(range(lanes)):
            with m.If(pending[lane]):
                m.d.comb += first.eq(lane)
        sel = bank[first]
        m.d.comb += [
            self.o.valid.eq(pending != 0),
            self.o.payload.lane.eq(first), self.o.payload.y.eq(bank_y - kernel[first]),
            self.o.payload.x.eq(bank_x), self.o.payload.key.eq(sel.key), self.o.payload.index.eq(sel.index),
        ]
        last_sent = (pending == 0) | (one_left & self.o.ready)
        m.d.comb += self.done.eq(active & ~streaming & last_sent)
        with m.If(self.done):
            m.d.sync += active.eq(0)
        return m

    def _lane(self, m, lane, wm, k, s, y, x, row_end, drains, advance, adv, survive, bank):
        """One lane: its counters, delay line and tile-best memories, and its decision.
        ``advance`` steps the delay line, ``adv[grid]`` and ``drains[grid]`` (equal to
        ``advance`` and the drain flag) each grid's registers.

        Every memory is read a position ahead (synchronous, so block RAM or LUT RAM with an
        output register): at the edge a position is taken, the next position's word is read.
        A tile column keeps both band parities in one word: the half being accumulated
        (written alone) and the half of the band being decided."""
        core = self.core
        accept = self.start & ~self.busy
        ox, oy, sox, soy = (Signal(self.kbits, name=f"{n}{lane}") for n in ("ox", "oy", "sox", "soy"))
        tcx, stcx = Signal(self.xbits, name=f"tcx{lane}"), Signal(self.xbits, name=f"stcx{lane}")
        par, spar = Signal(name=f"par{lane}"), Signal(name=f"spar{lane}")
        nxt = {}
        for name, off, col, row_off, parity, first in (("a", ox, tcx, oy, par, 0), ("s", sox, stcx, soy, spar, s)):
            wrap, row_wrap = off + 1 == k, row_off + 1 == k
            nxt[name] = (Mux(row_end, first, Mux(wrap, 0, off + 1)), Mux(row_end, 0, col + wrap),
                         Mux(row_end, Mux(row_wrap, 0, row_off + 1), row_off), parity ^ (row_end & row_wrap))
        with m.If(accept):
            m.d.sync += [ox.eq(0), tcx.eq(0), oy.eq(0), par.eq(0),
                         sox.eq(self.shift[lane]), stcx.eq(0), soy.eq(self.shift[lane]), spar.eq(0)]
        for regs, name in (((ox, tcx, oy, par), "a"), ((sox, stcx, soy, spar), "s")):
            with m.If(~accept & adv[name]):
                m.d.sync += [reg.eq(val) for reg, val in zip(regs, nxt[name])]

        cells = {}
        for name, payload in (("a", self.i.payload), ("s", self.i_s if self.grid_copy else self.i.payload)):
            cells[name] = Signal(self.cell, name=f"cell_{name}{lane}")
            m.d.comb += cells[name].eq(payload[lane])
            with m.If(drains[name]):
                m.d.comb += cells[name].valid.eq(0)
        cell = cells["a"]

        # Memories are read a position ahead, non-transparently: the only write the read can
        # miss is the current position's, to the same address; then the written value is
        # forwarded from a register (cheaper than a transparent port's whole-word bypass).
        delay = Memory(shape=self.cell, depth=core.max_kernel * wm, init=[])
        m.submodules[f"delay{lane}"] = delay
        dw, old_rd = delay.write_port(), delay.read_port()
        next_x, next_oy = Signal(self.xbits), Signal(self.kbits)
        m.d.comb += [next_x.eq(Mux(row_end, 0, x + 1)), next_oy.eq(nxt["a"][2])]
        old = self._forwarded(m, accept, advance, old_rd, Cat(x, oy), Cat(next_x, next_oy), cell)
        m.d.comb += [dw.addr.eq(Cat(x, oy)), dw.data.eq(cell), dw.en.eq(advance),
                     old_rd.addr.eq(Mux(accept, 0, Cat(next_x, next_oy))), old_rd.en.eq(accept | advance)]

        decided = []
        pair = data.ArrayLayout(self.cell, 2)
        # Whether the position is its tile's first (nothing running), in a register each,
        # decided for the next position as it is taken (timing: not a compare of y in front of
        # the best's select). The next x is 0 exactly at a row's end (x < width <= 2**xbits).
        y0 = Signal(name=f"y0_{lane}")  # y == 0
        with m.If(accept):
            m.d.sync += y0.eq(1)
        with m.Elif(advance):
            m.d.sync += y0.eq(y0 & ~row_end)
        firsts = {}  # the shifted grid's first row and column also start its tiles
        for name, row_n0, col_n0 in (("a", 0, 0), ("s", y0 & ~row_end, row_end)):
            off_n, _, roff_n, _ = nxt[name]
            first = Signal(name=f"fresh_{name}{lane}")
            with m.If(accept):
                m.d.sync += first.eq(1)
            with m.Elif(adv[name]):
                m.d.sync += first.eq(((roff_n == 0) | row_n0) & ((off_n == 0) | col_n0))
            firsts[name] = first
        for name, col, p in (("a", tcx, par), ("s", stcx, spar)):
            cell, step = cells[name], adv[name]
            # One word a tile column: the half of the band accumulating (parity p), written
            # alone, and the half of the band being decided.
            mem = Memory(shape=pair, depth=wm, init=[])
            m.submodules[f"acc_{name}{lane}"] = mem
            wr, rd = mem.write_port(granularity=1), mem.read_port()
            running, best = Signal(self.cell), Signal(self.cell)
            fwd, last, last_p = Signal(), Signal(self.cell), Signal()
            raddr = Mux(accept, 0, nxt[name][1])
            with m.If(accept | step):
                m.d.sync += [fwd.eq(~accept & (nxt[name][1] == col)), last_p.eq(p)]
            wins = Signal()
            if self.core.write_reg:
                # The position before's best kept as its two candidates and its verdict, the
                # select made a cycle later (timing: ``last <= best`` put the verdict on all of
                # ``last``'s enables -- yosys folds the kept value into them -- 19.31 ns on
                # f69e106's third seed); the next cell is compared with both candidates.
                l_cell, l_run = Signal(self.cell, name=f"lcell_{name}{lane}"), Signal(self.cell, name=f"lrun_{name}{lane}")
                l_wins = Signal(name=f"lwins_{name}{lane}")
                with m.If(accept | step):
                    m.d.sync += [l_cell.eq(cell), l_run.eq(running), l_wins.eq(wins)]
                m.d.comb += last.eq(Mux(l_wins, l_cell, l_run))
                beats_last = Mux(l_wins, self._better(cell, l_cell), self._better(cell, l_run))
            else:
                with m.If(accept | step):
                    m.d.sync += last.eq(best)
                beats_last = self._better(cell, last)
            # The write this position makes (``wen``: one bit a half), and what the memory
            # holds once it has landed: with ``write_reg`` it lands a cycle later, from a
            # register (timing: the verdict below reached every LUT-RAM cell's write enable,
            # tiny's ECP5 critical path on 3a4cdce, 17.41 ns), so a read issued in that cycle
            # misses it too and takes it from ``held``/``pend`` instead.
            wen = Signal(2, name=f"wen_{name}{lane}")
            words = [rd.data[0], rd.data[1]]
            if self.core.write_reg:
                wq = Signal(data.StructLayout({"en": unsigned(2), "addr": unsigned(self.xbits), "data": self.cell}),
                            name=f"wq_{name}{lane}")
                pend, held = Signal(2, name=f"pend_{name}{lane}"), Signal(self.cell, name=f"held_{name}{lane}")
                m.d.sync += [wq.en.eq(wen), wq.addr.eq(col), wq.data.eq(cell)]
                with m.If(accept | step):
                    m.d.sync += [pend.eq(Mux(~accept & (wq.addr == raddr), wq.en, 0)), held.eq(wq.data)]
                m.d.comb += [wr.addr.eq(wq.addr), wr.data[0].eq(wq.data), wr.data[1].eq(wq.data), wr.en.eq(wq.en)]
                words = [Mux(pend[h], held, rd.data[h]) for h in range(2)]
            else:
                m.d.comb += [wr.addr.eq(col), wr.data[0].eq(cell), wr.data[1].eq(cell), wr.en.eq(wen)]
            m.d.comb += [rd.addr.eq(raddr), rd.en.eq(accept | step),
                         running.eq(Mux(fwd, last, Mux(p, words[1], words[0])))]
            fresh = firsts[name]  # the tile's first cell: nothing running
            with m.If(fresh):
                m.d.comb += running.valid.eq(0)
            # The cell against each source of ``running`` at once, the verdict selected after
            # (timing: no multiplexer in front of the key compare; the same verdict as
            # ``_better(cell, running)``).
            from_mem = Mux(p, self._better(cell, rd.data[1]), self._better(cell, rd.data[0]))
            if self.core.write_reg:
                from_mem = Mux(Mux(p, pend[1], pend[0]), self._better(cell, held), from_mem)
            m.d.comb += wins.eq(Mux(fresh, cell.valid, Mux(fwd, beats_last, from_mem)))
            # The memory is written only when the cell becomes the best (or starts the tile):
            # otherwise it already holds ``running`` (its own word, or ``last``, written at the
            # same address and parity by the position before). A word whose valid is 0 is
            # never compared by its key or index. (Timing: the write data is the cell register,
            # not the best's select, whose verdict fans out to a hundred RAM inputs.)
            m.d.comb += [best.eq(Mux(wins, cell, running)),
                         wen.eq(Mux(step & (wins | fresh), Mux(p, 0b10, 0b01), 0))]
            # The decided half misses a write only at a band's first position in a map one
            # tile column wide; then it is the best just written.
            win = Signal(self.cell)
            m.d.comb += win.eq(Mux(fwd & (last_p != p), last, Mux(p, words[0], words[1])))
            decided.append(win)
        win_a, win_s = decided
        m.d.comb += survive[lane].eq(old.valid & (y >= k) & win_a.valid & win_s.valid
                                     & (old.index == win_a.index) & (old.index == win_s.index))
        with m.If(advance):
            m.d.sync += bank[lane].eq(old)
