"""The post-processing unit: bias, activation, round-half-even shift, clamp (docs/isa.md).

Per lane, for one accumulator ``acc`` with its channel's ``bias`` and ``shift``, and the
instruction's ``post`` fields (``ir.isa.Post``):

    v = wrap_acc_bits(acc + bias)
    relu:  v = max(v, 0)
    s = shift - leaky_exp   if act = leaky and v < 0   else shift
    q = round_half_even(v / 2**s)                      (a left shift when s < 0)
    q = clamp(q, post.lo, post.hi)

Right shifts of ``acc_bits`` or more give 0 for every ``v`` and left shifts of 16 or more
saturate every nonzero ``v`` (``lo``/``hi`` are 16-bit), so the shifters are clamped to those
amounts without changing any result; this matches ``ir.intmath.round_shift`` for any shift.

Timing: a three-stage pipeline (add/activation, shift, round/clamp) with ``LATENCY`` = 3: a
beat accepted in cycle ``t`` is presented on ``o`` in cycle ``t + 3`` when ``o`` never stalls.
One beat per cycle. A stall on ``o`` freezes the whole pipeline (``i.ready`` = ``o.ready`` or
``o`` empty), so ``i.ready`` depends combinationally on ``o.ready``. ``post`` is sampled with
each input beat, so it may change between instructions while older beats drain.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import Act, Post

#: Width of the clamp bounds ``post.lo``/``post.hi`` and so of the results.
OUT_BITS = 16


def beat_layout(lanes: int, acc_bits: int) -> data.StructLayout:
    """One input beat: per lane the accumulator, its channel's bias (int32) and shift (int8)."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_bits), lanes),
        "bias": data.ArrayLayout(signed(32), lanes),
        "shift": data.ArrayLayout(signed(8), lanes),
    })


class PPU(wiring.Component):
    """``lanes`` post-processing lanes (``AcceleratorConfig.ppu_lanes``) on a stream.

    Ports: ``post`` (``ir.isa.Post``, sampled with each input beat), ``i`` (stream of
    :func:`beat_layout`), ``o`` (stream of ``lanes`` signed 16-bit results).
    """

    LATENCY = 3

    def __init__(self, lanes: int = 8, acc_bits: int = 32):
        if not 1 <= lanes <= 256:
            raise ShiftflowError(f"PPU lanes must be in 1..256, got {lanes}")
        if not OUT_BITS <= acc_bits <= 48:
            raise ShiftflowError(f"PPU acc_bits must be in {OUT_BITS}..48, got {acc_bits}")
        self.lanes, self.acc_bits = lanes, acc_bits
        super().__init__({
            "post": In(Post),
            "i": In(stream.Signature(beat_layout(lanes, acc_bits))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(OUT_BITS), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        a = self.acc_bits
        advance = Signal()
        v1, v2 = Signal(), Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1), self.o.valid.eq(v2)]

        # lo/hi travel with the data so that post may change while older beats drain.
        lo1, hi1, lo2, hi2 = (Signal(signed(OUT_BITS)) for _ in range(4))
        with m.If(advance):
            m.d.sync += [lo1.eq(self.post.lo), hi1.eq(self.post.hi), lo2.eq(lo1), hi2.eq(hi1)]

        for lane in range(self.lanes):
            # Stage 1: add, activation, effective shift split into a right or a left amount.
            v = Signal(signed(a))
            s = Signal(signed(10))
            m.d.comb += v.eq(self.i.payload.acc[lane] + self.i.payload.bias[lane])
            act = self.post.act
            leaky_neg = (act == Act.LEAKY) & (v < 0)
            m.d.comb += s.eq(self.i.payload.shift[lane] - Mux(leaky_neg, self.post.leaky_exp, 0))
            val1 = Signal(signed(a))
            left1 = Signal()
            amt1 = Signal(unsigned(6))
            # 6 bits hold both clamps: acc_bits <= 48 and OUT_BITS = 16.
            with m.If(advance):
                m.d.sync += [
                    val1.eq(Mux((act == Act.RELU) & (v < 0), 0, v)),
                    left1.eq(s < 0),
                    amt1.eq(Mux(s < 0, Mux(-s > OUT_BITS, OUT_BITS, -s), Mux(s > a, a, s))),
                ]

            # Stage 2: floor shift right (arithmetic) with guard/sticky bits, or shift left.
            half = Signal(unsigned(a + 1))
            m.d.comb += half.eq((Const(1, a + 1) << amt1) >> 1)  # 2**(s-1), 0 when s = 0
            bits = val1.as_unsigned()
            floor2 = Signal(signed(a))
            up2 = Signal()
            wide2 = Signal(signed(a + OUT_BITS))
            left2 = Signal()
            with m.If(advance):
                floor = val1 >> amt1
                guard = (bits & half) != 0
                sticky = (bits & (half - 1)) != 0
                m.d.sync += [
                    floor2.eq(floor),
                    up2.eq(guard & (sticky | floor[0])),
                    wide2.eq(val1 << amt1),
                    left2.eq(left1),
                ]

            # Stage 3: round up on a tie-to-odd or past half; clamp.
            q = Signal(signed(a + OUT_BITS + 1))
            m.d.comb += q.eq(Mux(left2, wide2, floor2 + up2))
            with m.If(advance):
                m.d.sync += self.o.payload[lane].eq(Mux(q < lo2, lo2, Mux(q > hi2, hi2, q)))
        return m
