"""The line buffer: input activations, read as strided groups of words by the compute unit.

``config.line_buffer_words`` words of ``tn`` bytes (docs/isa.md: one pixel's block of ``tn``
channels), stored in ``copies`` identical copies of ``tn`` banks: word ``a`` lives in bank
``a % tn``, row ``a // tn``, of every copy. Every copy has its own read port, and within a
copy the ``tn`` words ``a .. a + tn - 1`` of a read are in ``tn`` distinct banks for any
``a`` — so a copy delivers one word (channel-parallel, vector ops) or ``tn`` pixels at column
stride 1 (pixel-parallel) per cycle without conflicts. At stride 2 a read delivers the
``tn/2`` words ``a, a + 2, ..., a + tn - 2`` (lanes ``l`` and ``l + tn/2`` both get word
``a + 2*(l % (tn/2))``): the sequencer reads a stride-2 step in two cycles, at ``a`` for
the low half of the lanes and at ``a + tn`` for the high half (``ir.cost.conv_inner_steps``).
Bank ``b`` reads row ``a // tn + (b < a % tn)``, whatever the stride: the bank address needs
no multiplier. The banks' words reach the lanes through a log-depth rotator
(:func:`rotate_select`), not a ``tn``:1 mux per lane. (``2*tn`` banks would deliver stride
2 in one cycle, for twice the rotator: on ``zu3eg`` ~10k LUTs more; the layers that use it
are few and mostly bound by DRAM.)

Why copies: reads at unrelated addresses in one cycle (VEC ADD's two operands; the ``tm/tn``
channel blocks of a depthwise pixel group, ``cols`` words apart for any ring width) cannot be
made conflict-free by any banking of the flat address space the ISA defines, so each gets a
copy: ``copies = max(2, tm // tn)`` — or, with ``cfg.lb_copies == 1``, one copy, read twice
for them (the sequencer reads VEC ADD's ``b`` in a second cycle and a depthwise group's second
channel block after its first: ``ir.cost.vec_taps``, ``conv_inner_steps``). On ``zu3eg`` the
second copy is 32 BRAM36 and a rotator of ~6k LUTs (docs/hardware.md "One line-buffer copy").

Ports: ``w`` (stream of :func:`beat_write_layout`, always ready): a DRAM beat of ``beat_bytes``
bytes for word address ``addr // tn`` on (``addr`` a multiple of ``tn``, as the load unit gives
for activations), byte strobes honoured, written to every copy. ``rd_addr[c]`` / ``rd_stride``
are sampled every cycle; ``rd_data[c][l]`` is word ``rd_addr[c] + l`` one cycle later, or with
stride 2 word ``rd_addr[c] + 2*(l % (tn/2))`` (``rd_stride`` 1 or 2; its bit 1 decides, so 0
reads as 1 and 3 as 2 — lane 0, all that channel-parallel and vector reads use, is word
``rd_addr[c]`` whatever the stride).
"""

from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.config import AcceleratorConfig
from .dma import SRAM_ADDR_BITS


def beat_write_layout(beat_bytes: int, banked: bool = False) -> data.StructLayout:
    """One DRAM beat written to on-chip memory: ``data`` bytes with ``strb`` at byte ``addr``
    (and, for the double-buffered weight and parameter memories, of ``bank``)."""
    fields = {"addr": unsigned(SRAM_ADDR_BITS), "data": unsigned(8 * beat_bytes), "strb": unsigned(beat_bytes)}
    if banked:
        fields = {"bank": unsigned(1), **fields}
    return data.StructLayout(fields)


def words_to_ints(words: np.ndarray) -> list[int]:
    """Rows of bytes (``n × width`` uint8) as little-endian integers (memory row values)."""
    return [int.from_bytes(row.tobytes(), "little") for row in np.ascontiguousarray(words, np.uint8)]


def rotate_select(m: Module, words: list, off, double, name: str) -> list:
    """Lane ``l`` of ``n = len(words)`` lanes (a power of two) gets ``words[(off + l) % n]``,
    or with ``double`` ``words[(off + 2*(l % (n/2))) % n]`` (lanes ``l`` and ``l + n/2`` then
    get the same word: a stride-2 read delivers half the lanes a cycle). A log-depth rotator:
    stages of 2:1 muxes on the low bits of ``off`` (abc packs two stages into one LUT6 a bit),
    then one 4:1 mux per lane on the top bit and the stride — about ``n*log4(n)`` word-muxes
    instead of an ``n``:1 mux per lane."""
    n = len(words)
    lg = (n - 1).bit_length()
    cur = list(words)
    for b in range(lg - 1):  # rotate by bit b of off
        nxt = [Signal.like(words[0], name=f"rot_{name}_s{b}_{k}") for k in range(n)]
        m.d.comb += [nxt[k].eq(Mux(off[b], cur[(k + (1 << b)) % n], cur[k])) for k in range(n)]
        cur = nxt
    top = off[lg - 1] if lg else Const(0, 1)
    out = []
    for lane in range(n):
        w = Signal.like(words[0], name=f"rot_{name}_l{lane}")
        c = [cur[(k + h * (n >> 1)) % n] for k in (lane, 2 * (lane % max(1, n >> 1))) for h in (0, 1)]
        m.d.comb += w.eq(Mux(double, Mux(top, c[3], c[2]), Mux(top, c[1], c[0])))
        out.append(w)
    return out


class LineBuffer(wiring.Component):
    """``copies × 2*tn`` banks of ``tn``-byte words (see the module docstring)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.tn, self.words = cfg.tn, cfg.line_buffer_words
        self.banks = cfg.tn
        self.copies = 1 if cfg.lb_copies == 1 else max(2, cfg.tm // cfg.tn)
        self.beat_words = cfg.dram_bytes_per_cycle // cfg.tn
        self.addr_bits = max(1, (self.words - 1).bit_length())
        self.depth = -(-self.words // self.banks)
        word = data.ArrayLayout(unsigned(8), cfg.tn)
        super().__init__({
            "w": In(stream.Signature(beat_write_layout(cfg.dram_bytes_per_cycle))),
            "rd_addr": In(data.ArrayLayout(unsigned(self.addr_bits), self.copies)),
            "rd_stride": In(2),
            "rd_data": Out(data.ArrayLayout(data.ArrayLayout(word, cfg.tn), self.copies)),
        })
        self.mems = [[memory.Memory(shape=unsigned(8 * cfg.tn), depth=self.depth, init=[])
                      for _ in range(self.banks)] for _ in range(self.copies)]

    def elaborate(self, platform):
        m = Module()
        nb, lg = self.banks, (self.banks - 1).bit_length()
        w = self.w.payload
        m.d.comb += self.w.ready.eq(1)
        wa0 = Signal(self.addr_bits)
        m.d.comb += wa0.eq(w.addr >> (self.tn - 1).bit_length())
        beat = w.data
        for c, banks in enumerate(self.mems):
            a = self.rd_addr[c]
            off, off_d, stride_d = Signal(lg), Signal(lg), Signal(2)
            m.d.comb += off.eq(a[:lg])
            m.d.sync += [off_d.eq(off), stride_d.eq(self.rd_stride)]
            outs = []
            for b, mem in enumerate(banks):
                m.submodules[f"c{c}_b{b}"] = mem
                rp = mem.read_port(transparent_for=())
                # (b < off) is constant 0 for the last bank.
                m.d.comb += rp.addr.eq((a >> lg) + (b < off) if b < nb - 1 else a >> lg)
                outs.append(rp.data)
                wp = mem.write_port(granularity=8)
                # The beat word that lands in this bank: k = (b - wa0) mod nb, if k < beat_words.
                k = Signal(lg, name=f"wk_c{c}_b{b}")
                m.d.comb += k.eq(b - wa0[:lg])
                kb = (self.beat_words - 1).bit_length()
                hit = self.w.valid & (k[kb:] == 0) if kb < lg else self.w.valid
                m.d.comb += [wp.addr.eq((wa0 + k) >> lg),
                             wp.data.eq(beat.word_select(k[:kb], 8 * self.tn) if kb else beat),
                             wp.en.eq(Mux(hit, w.strb.word_select(k[:kb], self.tn) if kb else w.strb, 0))]
            lanes = rotate_select(m, outs, off_d, stride_d[1], f"c{c}")
            for lane in range(self.tn):
                m.d.comb += self.rd_data[c][lane].eq(lanes[lane])
        return m

    def sim_load(self, ctx, words: np.ndarray) -> None:
        """Testbench helper: set the whole contents (``words × tn`` uint8) in zero cycles."""
        values = words_to_ints(words)
        for a, v in enumerate(values):
            bank, row = a % self.banks, a // self.banks
            for copy in self.mems:
                ctx.set(copy[bank].data[row], v)
