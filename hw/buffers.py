"""On-chip memories of the compute unit besides the line buffer (``hw/linebuf.py``).

- :class:`WeightBuffer`: two banks of ``weight_bank_words`` PE-array words (``tm*tn`` bytes;
  byte ``i*tn + l`` is row ``i`` lane ``l``), one word read per cycle.
- :class:`ParamBuffer`: two banks of ``param_entries`` entries (``ir.isa.PARAM_ENTRY``: its
  ``PARAM_KEPT`` leading bytes, bias and shift, are kept, the zero bytes not) in rows of ``tm``; one read
  gives one row (``p_addr`` is a multiple of ``tm``).
- :class:`OutputBuffer`: two halves of ``output_half_words`` words of ``tn`` bytes; the
  compute side writes up to ``ppu_lanes/tn`` consecutive words per cycle, the store side reads
  ``dram_bytes_per_cycle/tn`` words at any word stride per cycle.

Write ports from the load unit take one DRAM beat per cycle (``hw.linebuf.beat_write_layout``
with ``bank``) at a byte address that is a multiple of the beat size — the load unit's
LOAD_WGT copies start beat-aligned on chip — and are always ready.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.config import AcceleratorConfig
from ..ir.cost import DMA_START
from ..ir.isa import PARAM_BYTES, PARAM_ENTRY, PARAM_KEPT, Conv, Store, Tile, field_shape
from .linebuf import beat_write_layout, words_to_ints

#: One parameter entry as the PPU takes it: the fields of ``ir.isa.PARAM_ENTRY`` in its
#: first ``PARAM_KEPT`` bytes (the zero bytes stay off chip).
ParamEntry = data.StructLayout({name: fld.shape for name, fld in PARAM_ENTRY if fld.offset < 8 * PARAM_KEPT})
assert ParamEntry.size == 8 * PARAM_KEPT
#: Output-buffer word addresses (``Tile.obuf_addr``).
OBUF_ADDR_BITS = Tile["obuf_addr"].width


def _log2(n: int) -> int:
    return (n - 1).bit_length()


class BeatSlice(wiring.Component):
    """One DRAM beat's worth of bytes of every weight-buffer row: ``depth`` rows of ``beat``
    bytes, a byte-masked write port (``w_en``, ``w_addr``, ``w_data``, ``w_strb``) and a read
    port (``rd_addr``; ``rd_data`` one cycle later). The weight buffer is ``tm*tn/beat`` of
    these side by side: identical modules, which hierarchical synthesis maps once."""

    def __init__(self, depth: int, beat: int):
        self.mem = memory.Memory(shape=unsigned(8 * beat), depth=depth, init=[])
        addr = range(depth)
        super().__init__({"w_en": In(1), "w_addr": In(addr), "w_data": In(8 * beat), "w_strb": In(beat),
                          "rd_addr": In(addr), "rd_data": Out(8 * beat)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        rp = self.mem.read_port(transparent_for=())
        wp = self.mem.write_port(granularity=8)
        m.d.comb += [rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data), wp.addr.eq(self.w_addr),
                     wp.data.eq(self.w_data), wp.en.eq(Mux(self.w_en, self.w_strb, 0))]
        return m


class WeightBuffer(wiring.Component):
    """Both weight banks: row ``bank * weight_bank_words + word``, stored as ``tm*tn/beat``
    :class:`BeatSlice` memories (slice ``s`` holds bytes ``s*beat ..`` of every row, the bytes
    one DRAM beat writes). ``rd_addr`` is sampled every cycle; ``rd_data[i][l]`` (row ``i``
    lane ``l``) follows one cycle later."""

    def __init__(self, cfg: AcceleratorConfig):
        self.tm, self.tn, self.beat = cfg.tm, cfg.tn, cfg.dram_bytes_per_cycle
        self.word_bytes, self.bank_words = cfg.tm * cfg.tn, cfg.weight_bank_words
        self.row_bits = max(1, _log2(2 * self.bank_words))
        super().__init__({
            "w": In(stream.Signature(beat_write_layout(self.beat, banked=True))),
            "rd_addr": In(self.row_bits),
            "rd_data": Out(data.ArrayLayout(data.ArrayLayout(unsigned(8), cfg.tn), cfg.tm)),
        })
        self.slices = [BeatSlice(2 * self.bank_words, self.beat) for _ in range(self.word_bytes // self.beat)]

    def elaborate(self, platform):
        m = Module()
        w = self.w.payload
        m.d.comb += self.w.ready.eq(1)
        group = Signal(range(len(self.slices)))  # which beat-sized slice of the word
        row = Signal(range(2 * self.bank_words))
        m.d.comb += [group.eq((w.addr % self.word_bytes) // self.beat),
                     row.eq(Mux(w.bank, self.bank_words, 0) + w.addr // self.word_bytes)]
        for k, sl in enumerate(self.slices):
            m.submodules[f"slice{k}"] = sl
            m.d.comb += [sl.w_en.eq(self.w.valid & (group == k)), sl.w_addr.eq(row), sl.w_data.eq(w.data),
                         sl.w_strb.eq(w.strb), sl.rd_addr.eq(self.rd_addr)]
        m.d.comb += self.rd_data.eq(Cat(*[sl.rd_data for sl in self.slices]))
        return m

    def sim_load(self, ctx, banks: np.ndarray) -> None:
        """Testbench helper: both banks' bytes (``2 × weight_bank_bytes``) in zero cycles."""
        words = banks[:, :self.bank_words * self.word_bytes].reshape(2 * self.bank_words, len(self.slices), self.beat)
        for k, sl in enumerate(self.slices):
            for row, v in enumerate(words_to_ints(words[:, k])):
                ctx.set(sl.mem.data[row], v)

    def sim_dump(self, ctx) -> np.ndarray:
        """Testbench helper: both banks' rows as ``2 × bank_words*tm*tn`` uint8."""
        rows = [b"".join(int(ctx.get(sl.mem.data[row])).to_bytes(self.beat, "little") for sl in self.slices)
                for row in range(2 * self.bank_words)]
        return np.frombuffer(b"".join(rows), np.uint8).reshape(2, -1)


class ParamBuffer(wiring.Component):
    """Both parameter banks as rows of ``tm`` entries in one memory (bank 1's rows after bank
    0's). A CONV reads one whole row: ``p_addr`` is a multiple of ``tm`` (docs/isa.md; the
    simulator rejects other values, the compiler emits ``unit * tm``), so ``rd_entry``'s low
    bits are ignored. ``rd_en`` (with ``rd_bank``, ``rd_entry``) reads; ``rd_data`` follows one
    cycle later."""

    def __init__(self, cfg: AcceleratorConfig):
        self.tm, self.beat, self.entries = cfg.tm, cfg.dram_bytes_per_cycle, cfg.param_entries
        self.rows_per_bank = -(-cfg.param_entries // cfg.tm)
        super().__init__({
            "w": In(stream.Signature(beat_write_layout(self.beat, banked=True))),
            "rd_en": In(1),
            "rd_bank": In(1),
            "rd_entry": In(field_shape(Conv, "p_addr")),
            "rd_data": Out(data.ArrayLayout(ParamEntry, cfg.tm)),
        })
        # Block RAM, not LUT RAM (which yosys picks for 32 rows): at zu3eg 20 BRAM36 instead of
        # 1,442 LUTs and 1,280 FFs (hw_resources.json); a row is read only at a CONV's start.
        self.mem = memory.Memory(shape=unsigned(8 * PARAM_KEPT * cfg.tm), depth=2 * self.rows_per_bank, init=[],
                                 attrs={"ram_style": "block"})

    def elaborate(self, platform):
        m = Module()
        tm, beat, row_bytes = self.tm, self.beat, PARAM_BYTES * self.tm
        w = self.w.payload
        m.d.comb += self.w.ready.eq(1)
        wrow, group = Signal(range(2 * self.rows_per_bank + 1)), Signal(range(row_bytes // beat))
        m.d.comb += [wrow.eq(Mux(w.bank, self.rows_per_bank, 0) + w.addr // row_bytes),
                     group.eq((w.addr % row_bytes) // beat)]
        m.submodules.rows = mem = self.mem
        wp = mem.write_port(granularity=8)
        m.d.comb += [wp.addr.eq(wrow), wp.data.eq(Cat(*[w.data.word_select(z % beat, 8)
                                                       for e in range(tm)
                                                       for z in range(PARAM_BYTES * e, PARAM_BYTES * e + PARAM_KEPT)]))]
        for e in range(tm):
            for f in range(PARAM_KEPT):
                z = PARAM_BYTES * e + f
                m.d.comb += wp.en[e * PARAM_KEPT + f].eq(self.w.valid & (group == z // beat) & w.strb[z % beat])
        rp = mem.read_port(transparent_for=())
        m.d.comb += [rp.addr.eq(Mux(self.rd_bank, self.rows_per_bank, 0) + self.rd_entry // tm), rp.en.eq(self.rd_en)]
        for i in range(tm):
            m.d.comb += self.rd_data[i].eq(rp.data.word_select(i, ParamEntry.size))
        return m

    def sim_load(self, ctx, banks: np.ndarray) -> None:
        """Testbench helper: both banks' DRAM-image bytes (``2 × PARAM_BYTES*param_entries``)."""
        for bank in range(2):
            entries = banks[bank].reshape(self.entries, PARAM_BYTES)[:, :PARAM_KEPT]
            padded = np.zeros((self.rows_per_bank * self.tm, PARAM_KEPT), np.uint8)
            padded[:self.entries] = entries
            for k, v in enumerate(words_to_ints(padded.reshape(self.rows_per_bank, -1))):
                ctx.set(self.mem.data[bank * self.rows_per_bank + k], v)


#: A store-side read: ``beat_bytes/tn`` words at ``addr, addr + stride, ...`` of ``half`` (a
#: STORE's words of one pixel are ``dst.nblk`` apart).
ObufRead = data.StructLayout({"half": field_shape(Store, "half"), "addr": unsigned(OBUF_ADDR_BITS),
                              "stride": field_shape(Store, "dst.nblk")})


def word_write_layout(tn: int) -> data.StructLayout:
    """One word written by the compute side."""
    return data.StructLayout({"en": unsigned(1), "addr": unsigned(OBUF_ADDR_BITS), "data": unsigned(8 * tn)})


class OutputBuffer(wiring.Component):
    """``beat/tn`` identical copies (one per word of a store beat) of ``ppu_lanes/tn`` banks
    (word ``a`` of half ``h`` in bank ``a % banks``, row ``h*half_words/banks + a // banks``).

    ``wr[s]`` (``en``, ``addr``, ``data``) of ``wr_half``: the enabled slots must address
    distinct banks (the retire stage writes consecutive words). ``rd``: stream of
    :data:`ObufRead`; ``rd_data``: stream of the words read (word ``i`` at bytes
    ``i*tn ..``), one cycle after the request, held while not taken. The read port is not
    transparent: a word written in cycle ``t`` is read from cycle ``t + 1`` on, or ``t + 2``
    with ``cfg.obuf_write_reg`` (each copy's writes from registers of its own); a STORE's
    first read comes ``ir.cost.DMA_START`` cycles after its accept, at the earliest in the
    cycle of the CONV's done, in which its last words are offered.
    """

    def __init__(self, cfg: AcceleratorConfig):
        # The compute unit's last words are offered in its done cycle, a STORE may be accepted
        # in it (token bypass), and its reads must find them.
        assert DMA_START >= 1 + cfg.obuf_write_reg, "a STORE would read before the last write lands"
        self.write_reg = cfg.obuf_write_reg
        self.tn, self.half_words = cfg.tn, cfg.output_half_words
        self.banks = cfg.ppu_lanes // cfg.tn
        self.copies = cfg.dram_bytes_per_cycle // cfg.tn
        self.depth = 2 * self.half_words // self.banks
        super().__init__({
            "wr": In(data.ArrayLayout(word_write_layout(cfg.tn), self.banks)),
            "wr_half": In(1),
            "rd": In(stream.Signature(ObufRead)),
            "rd_data": Out(stream.Signature(unsigned(8 * cfg.dram_bytes_per_cycle))),
        })
        self.mems = [[memory.Memory(shape=unsigned(8 * cfg.tn), depth=self.depth, init=[])
                      for _ in range(self.banks)] for _ in range(self.copies)]

    def _row(self, half, addr):
        return Cat(addr[_log2(self.banks):_log2(self.half_words)], half)

    def elaborate(self, platform):
        m = Module()
        nb, lg = self.banks, _log2(self.banks)
        fire = Signal()
        m.d.comb += [self.rd.ready.eq(~self.rd_data.valid | self.rd_data.ready),
                     fire.eq(self.rd.valid & self.rd.ready)]
        with m.If(fire):
            m.d.sync += self.rd_data.valid.eq(1)
        with m.Elif(self.rd_data.ready):
            m.d.sync += self.rd_data.valid.eq(0)
        words = []
        for c, banks in enumerate(self.mems):
            addr = Signal(OBUF_ADDR_BITS, name=f"raddr{c}")
            bank_d = Signal(max(1, lg), name=f"rbank{c}")
            m.d.comb += addr.eq(self.rd.payload.addr + c * self.rd.payload.stride)
            with m.If(fire):
                m.d.sync += bank_d.eq(addr % nb)
            outs = []
            for b, mem in enumerate(banks):
                m.submodules[f"c{c}_b{b}"] = mem
                # Not transparent: a read never meets a write of its own cycle at its row (the
                # class docstring). A transparent port would put an address compare and a data
                # bypass beside every bank's read.
                wp = mem.write_port()
                rp = mem.read_port(transparent_for=())
                m.d.comb += [rp.addr.eq(self._row(self.rd.payload.half, addr)), rp.en.eq(fire)]
                outs.append(rp.data)
                # The one enabled slot whose address falls in this bank (later slots win ties,
                # which never happen), straight or through this copy's write register.
                w_en, w_addr = Signal(name=f"w{c}_{b}_en"), Signal.like(wp.addr, name=f"w{c}_{b}_addr")
                w_data = Signal.like(wp.data, name=f"w{c}_{b}_data")
                for s in range(nb):
                    slot = self.wr[s]
                    with m.If(slot.en & (slot.addr % nb == b)):
                        m.d.comb += [w_en.eq(1), w_addr.eq(self._row(self.wr_half, slot.addr)),
                                     w_data.eq(slot.data)]
                dom = m.d.sync if self.write_reg else m.d.comb
                dom += [wp.en.eq(w_en), wp.addr.eq(w_addr), wp.data.eq(w_data)]
            word = Signal(8 * self.tn, name=f"rword{c}")
            m.d.comb += word.eq(outs[0])
            for b in range(1, nb):
                with m.If(bank_d == b):
                    m.d.comb += word.eq(outs[b])
            words.append(word)
        m.d.comb += self.rd_data.payload.eq(Cat(*words))
        return m

    def sim_load(self, ctx, halves: np.ndarray) -> None:
        """Testbench helper: both halves (``2 × half_words × tn`` uint8) in zero cycles."""
        for h in range(2):
            for a, v in enumerate(words_to_ints(halves[h])):
                row = h * self.half_words // self.banks + a // self.banks
                for banks in self.mems:
                    ctx.set(banks[a % self.banks].data[row], v)

    def sim_dump(self, ctx) -> np.ndarray:
        """Testbench helper: both halves as ``2 × half_words × tn`` uint8 (from copy 0)."""
        out = np.zeros((2, self.half_words, self.tn), np.uint8)
        for h in range(2):
            for a in range(self.half_words):
                row = h * self.half_words // self.banks + a // self.banks
                v = ctx.get(self.mems[0][a % self.banks].data[row])
                out[h, a] = np.frombuffer(int(v).to_bytes(self.tn, "little"), np.uint8)
        return out
