"""The vector ALU: VEC ADD / MAXPOOL / AVGPOOL / RESIZE / REQUANT on ``tn`` lanes (docs/isa.md).

Per beat (one line-buffer word of operand ``a``, and of ``b`` for ADD, per window tap) each
lane forms a value at ``acc_bits`` (wrapping, like the simulator's ``v``):

- ``a`` (and ``b``) sign- or zero-extended per operand; lanes the sequencer marks as not
  real (past ``chans``, or a tap outside the image) read zero;
- ADD: ``(a << shift_a) + (b << shift_b)``;
- MAXPOOL: a tap outside the image is ``-2**(acc_bits-1)`` on every lane (padding never
  wins; docs/simulator.md), a lane past ``chans`` inside the image is zero;
- AVGPOOL, RESIZE, REQUANT: ``a``.

The beats of one output word (its taps; ``first`` … ``last``) are reduced: sum (AVGPOOL; a
single tap for the others) or max (MAXPOOL). Timing is the MAC array's, so both feed the
retire stage alike: ``LATENCY`` = 3 cycles from the last beat to the word on ``o`` (valid one
cycle; the payload holds until the next word). Stage 1 extends and shifts (a multiply by
``2**shift`` in a DSP, or a shifter with ``shift_luts``), stage 2 combines the operands, stage 3 reduces over taps.

``shift_luts``: the shifts as shifters in the fabric (a few LUT levels from the operand and
shift registers), not multiplier blocks: on ECP5 a multiplier block's delay and its fixed site
put the block's input → output path among the whole design's slowest.

``operand_reg``: a stage 0 registers the extended, masked operands (and the beat's flags), so
the multiplier's input comes straight from flip-flops (``latency`` 4). The compute unit then
feeds the beat one register earlier (it drops its own beat register for the vector ALU), so
the cycles are unchanged: the extension and masks move from in front of the multiplier to in
front of that register.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.isa import Vec, VecOp

Mode = data.StructLayout({"op": VecOp, "a_signed": unsigned(1), "b_signed": unsigned(1),
                          "shift_a": Vec["shift_a"].shape, "shift_b": Vec["shift_b"].shape})


class VecALU(wiring.Component):
    """``lanes`` vector lanes. ``i``: stream (ready constantly 1) of ``a``, ``b`` (bytes),
    ``a_ok``, ``b_ok`` (lane masks), ``tap_ok``, ``first``, ``last``; ``mode`` is constant during
    an instruction; ``o``: stream (ready ignored) of ``lanes`` signed ``acc_bits`` values."""

    LATENCY = 3

    #: ``split``: where the factor is cut in two (below: a product of at most 18 × 18 bits)
    SPLIT = 17

    def __init__(self, lanes: int, acc_bits: int = 32, split: bool = False, operand_reg: bool = False,
                 shift_luts: bool = False):
        self.lanes, self.acc_bits, self.split = lanes, acc_bits, split and acc_bits > self.SPLIT
        self.operand_reg, self.shift_luts = operand_reg, shift_luts
        self.latency = self.LATENCY + operand_reg  # last beat in -> word on ``o``
        beat = data.StructLayout({
            "a": data.ArrayLayout(unsigned(8), lanes), "b": data.ArrayLayout(unsigned(8), lanes),
            "a_ok": unsigned(lanes), "b_ok": unsigned(lanes), "tap_ok": unsigned(1),
            "first": unsigned(1), "last": unsigned(1),
        })
        super().__init__({"mode": In(Mode), "i": In(stream.Signature(beat)),
                          "o": Out(stream.Signature(data.ArrayLayout(signed(acc_bits), lanes)))})

    def elaborate(self, platform):
        m = Module()
        acc_bits, p, md = self.acc_bits, self.i.payload, self.mode
        pad = -(1 << (acc_bits - 1))
        m.d.comb += self.i.ready.eq(1)
        ext = Signal(data.StructLayout({"a": data.ArrayLayout(signed(9), self.lanes),
                                        "b": data.ArrayLayout(signed(9), self.lanes)}))
        for lane in range(self.lanes):
            a = Mux(md.a_signed, p.a[lane].as_signed(), p.a[lane].as_unsigned())
            b = Mux(md.b_signed, p.b[lane].as_signed(), p.b[lane].as_unsigned())
            m.d.comb += [ext.a[lane].eq(Mux(p.a_ok[lane], a, 0)), ext.b[lane].eq(Mux(p.b_ok[lane], b, 0))]
        valid = self.i.valid
        if self.operand_reg:  # stage 0: the multipliers' inputs from flip-flops
            ext, p, valid = self._reg(m, ext, "ext0"), self._reg(m, p, "beat0"), self._reg(m, valid, "valid0")
        v1, v2 = Signal(), Signal()
        first1, last1, first2, last2, tap1 = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(valid), first1.eq(p.first), last1.eq(p.last), tap1.eq(p.tap_ok),
                     v2.eq(v1), first2.eq(first1), last2.eq(last1)]
        m.d.sync += self.o.valid.eq(v2 & last2)
        # The shifts as multiplies by 2**shift (mod 2**acc_bits: 0 from acc_bits on), one DSP
        # per operand and lane instead of two barrel shifters; the factors are per
        # instruction (mode is constant while one runs; the first beat comes two cycles after
        # the unit accepts it), so they are registered.
        # ``shift_luts``: the shift amounts registered instead, and the shifts made in the fabric.
        shape = md.shift_a.shape() if self.shift_luts else acc_bits
        fa, fb = Signal(shape, name="fa"), Signal(shape, name="fb")
        sa = Mux(md.op == VecOp.ADD, md.shift_a, 0)
        if self.shift_luts:
            m.d.sync += [fa.eq(sa), fb.eq(md.shift_b)]
        else:
            m.d.sync += [fa.eq((1 << sa)[:acc_bits]), fb.eq((1 << md.shift_b)[:acc_bits])]

        def shifted(x, f):
            """``x * f`` for a power of two ``f`` (or 0), or ``x << f`` (``shift_luts``: the
            same bits once cut to ``acc_bits``). ``split`` (for ECP5, whose multiplier
            blocks are 18 × 18): the factor's low and high bits as two products, one of them
            zero, so an OR joins them, not the adder a single wide product would need."""
            if self.shift_luts:
                return (x << f)[:acc_bits]
            if not self.split:
                return x * f
            lo, hi = f[:self.SPLIT], f[self.SPLIT:]
            return (x * lo) | ((x * hi) << self.SPLIT)
        for lane in range(self.lanes):
            # Stage 1: masked operands, shifted for ADD.
            a1, b1 = Signal(signed(acc_bits), name=f"a1_{lane}"), Signal(signed(acc_bits), name=f"b1_{lane}")
            m.d.sync += [a1.eq(shifted(ext.a[lane], fa)), b1.eq(shifted(ext.b[lane], fb))]
            # Stage 2: the lane's value for this tap.
            v = Signal(signed(acc_bits), name=f"v2_{lane}")
            with m.Switch(md.op):
                with m.Case(VecOp.ADD):
                    m.d.sync += v.eq(a1 + b1)
                with m.Case(VecOp.MAXPOOL):
                    m.d.sync += v.eq(Mux(tap1, a1, pad))
                with m.Default():
                    m.d.sync += v.eq(a1)
            # Stage 3: reduce over the word's taps; the last tap also loads the output.
            acc = Signal(signed(acc_bits), name=f"acc_{lane}")
            nxt = Signal(signed(acc_bits), name=f"next_{lane}")
            # One select of ``v`` (the first tap, or a larger one for MAXPOOL) in front of the
            # other choice made without it: the comparison's carry chain, one LUT, then a bit's mux.
            take_v = Signal(name=f"take_v{lane}")
            m.d.comb += [take_v.eq(first2 | ((md.op == VecOp.MAXPOOL) & (v > acc))),
                         nxt.eq(Mux(take_v, v, Mux(md.op == VecOp.MAXPOOL, acc, acc + v)))]
            with m.If(v2):
                m.d.sync += acc.eq(nxt)
                with m.If(last2):
                    m.d.sync += self.o.payload[lane].eq(nxt)
        return m

    @staticmethod
    def _reg(m, value, name):
        reg = Signal.like(value, name=name)
        m.d.sync += reg.eq(value)
        return reg
