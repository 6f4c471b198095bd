"""The post-processing unit: bias, activation, round-half-even shift, clamp (docs/isa.md).

Per lane, for one accumulator ``acc`` with its channel's ``bias`` and ``shift``, and the
instruction's ``post`` fields (``ir.isa.Post``):

    v = wrap_acc_bits(acc + bias)          (acc + psum with psum_in)
    relu:  v = max(v, 0)
    s = shift - leaky_exp   if act = leaky and v < 0   else shift
    q = round_half_even(v / 2**s)                      (a left shift when s < 0)
    q = clamp(q, post.lo, post.hi)

Right shifts of ``acc_bits`` or more give 0 for every ``v`` and left shifts of 16 or more
saturate every nonzero ``v`` (``lo``/``hi`` are 16-bit), so the shift is clamped to those
amounts without changing any result; this matches ``ir.intmath.round_shift`` for any shift.

One shifter serves both directions: ``v * 2**-s`` is ``(v << 16) >> t`` with ``t = s + 16``
in ``0 .. acc_bits + 16``, and only an 18-bit window of the floor is computed, with its guard
bit and a sticky bit collected by the shifter's stages; a floor outside the window (its
value's bits from ``t + 1`` up are not all sign bits) is saturated to ``±2**17``, which every
16-bit clamp bound maps to ``lo`` or ``hi`` exactly as the true value.

Timing: an input register, then a three-stage pipeline (add/activation, shift, round/clamp),
``LATENCY`` = 4: a beat accepted in cycle ``t`` is presented on ``o`` in cycle ``t + 4`` when
``o`` never stalls (the input register keeps whatever feeds the PPU — the retire stage's
drain and row sums — off the add/activation stage's path). ``sum`` (the stage-1 value) follows
the beat by 2 cycles.
One beat per cycle. A stall on ``o`` freezes the whole pipeline (``i.ready`` = ``o.ready`` or
``o`` empty), so ``i.ready`` depends combinationally on ``o.ready``. ``post`` is sampled with
each input beat, so it may change between instructions while older beats drain.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import Act, Post

#: Width of the clamp bounds ``post.lo``/``post.hi`` and so of the results.
OUT_BITS = 16
#: The shifted value is computed in a window of this many bits (then saturated): wide enough
#: that a saturated value (±2**17) lies outside every 16-bit clamp bound.
WINDOW_BITS = OUT_BITS + 2


def beat_layout(lanes: int, acc_bits: int) -> data.StructLayout:
    """One input beat: per lane the accumulator, its channel's bias (int32) and shift (int8),
    and a partial sum that replaces the bias when ``psum_in`` is set (docs/isa.md "Partial
    sums"; selected here, next to the adder, where the selection shares the adder's LUTs)."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_bits), lanes),
        "bias": data.ArrayLayout(signed(32), lanes),
        "shift": data.ArrayLayout(signed(8), lanes),
        "psum": data.ArrayLayout(signed(acc_bits), lanes),
        "psum_in": unsigned(1),
    })


class PPU(wiring.Component):
    """``lanes`` post-processing lanes (``AcceleratorConfig.ppu_lanes``) on a stream.

    Ports: ``post`` (``ir.isa.Post``, sampled with each input beat), ``i`` (stream of
    :func:`beat_layout`), ``o`` (stream of ``lanes`` signed 16-bit results), ``sum`` (stage 1's
    register: ``v`` after the activation, one cycle after its beat — with ``act = none`` the
    wrapped ``acc + bias`` that the partial-sum buffer keeps, :mod:`hw.retire`).
    """

    LATENCY = 4

    def __init__(self, lanes: int = 8, acc_bits: int = 32, early_shift: bool = False):
        if not 1 <= lanes <= 256:
            raise ShiftflowError(f"PPU lanes must be in 1..256, got {lanes}")
        if not OUT_BITS <= acc_bits <= 48:
            raise ShiftflowError(f"PPU acc_bits must be in {OUT_BITS}..48, got {acc_bits}")
        self.lanes, self.acc_bits, self.early_shift = lanes, acc_bits, early_shift
        super().__init__({
            "post": In(Post),
            "i": In(stream.Signature(beat_layout(lanes, acc_bits))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(OUT_BITS), lanes))),
            "sum": Out(data.ArrayLayout(signed(acc_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        a, g, w = self.acc_bits, OUT_BITS, WINDOW_BITS
        advance = Signal()
        v0, v1, v2 = Signal(), Signal(), Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += [v0.eq(self.i.valid), v1.eq(v0), v2.eq(v1), self.o.valid.eq(v2)]

        # Stage 0: the input register (the beat and post, which travels with the data so that
        # it may change while older beats drain).
        beat, post = Signal.like(self.i.payload), Signal.like(self.post)
        with m.If(advance):
            m.d.sync += [beat.eq(self.i.payload), post.eq(self.post)]
        lo1, hi1, lo2, hi2 = (Signal(signed(OUT_BITS)) for _ in range(4))
        with m.If(advance):
            m.d.sync += [lo1.eq(post.lo), hi1.eq(post.hi), lo2.eq(lo1), hi2.eq(hi1)]

        for lane in range(self.lanes):
            # Stage 1: add, activation; the effective shift s as t = s + 16 clamped to 0..a+16.
            v = Signal(signed(a))
            s = Signal(signed(10))
            m.d.comb += v.eq(beat.acc[lane] + Mux(beat.psum_in, beat.psum[lane], beat.bias[lane]))
            act = post.act
            leaky_neg = (act == Act.LEAKY) & (v < 0)
            val1 = Signal(signed(a))
            t1 = Signal(range(a + g + 1))

            def clamp(x):
                return Mux(x < -g, 0, Mux(x > a, a + g, x + g))
            if self.early_shift:
                # Both clamped shifts computed beside the add, the add's sign only picks one:
                # the carry chain no longer feeds a subtraction and a clamp (ECP5 timing,
                # AcceleratorConfig.ppu_early_shift; one more subtract + clamp a lane in LUTs).
                s_leaky = Signal(signed(10))
                m.d.comb += [s.eq(beat.shift[lane]), s_leaky.eq(beat.shift[lane] - post.leaky_exp)]
                t_plain, t_leaky = Signal.like(t1), Signal.like(t1)
                m.d.comb += [t_plain.eq(clamp(s)), t_leaky.eq(clamp(s_leaky))]
                with m.If(advance):
                    m.d.sync += t1.eq(Mux(leaky_neg, t_leaky, t_plain))
            else:
                m.d.comb += s.eq(beat.shift[lane] - Mux(leaky_neg, post.leaky_exp, 0))
                with m.If(advance):
                    m.d.sync += t1.eq(clamp(s))
            with m.If(advance):
                # ReLU as the register's synchronous reset, not a mux in front of it.
                with m.If((act == Act.RELU) & (v < 0)):
                    m.d.sync += val1.eq(0)
                with m.Else():
                    m.d.sync += val1.eq(v)

            m.d.comb += self.sum[lane].eq(val1)

            # Stage 2: floor(val * 2**(16 - t)) in a w-bit window with guard and sticky bits,
            # saturated to the window's range when it does not fit.
            sign = val1[-1]
            window, guard, sticky = _shift_window(m, Cat(Const(0, 1 + g), val1, sign.replicate(w + 1)), t1, w + 1)
            # The floor fits the window iff val's bits from t + 1 up (t + 1 = t - 16 + w - 1) are
            # all sign bits.
            diff = Signal(a - 1)
            m.d.comb += diff.eq(val1[:a - 1] ^ sign.replicate(a - 1))
            fits = (diff >> (t1 + 1)) == 0
            floor2 = Signal(signed(w))
            up2 = Signal()
            with m.If(advance):
                m.d.sync += [floor2.eq(Mux(fits, window[1:], Mux(sign, -(1 << (w - 1)), (1 << (w - 1)) - 1))),
                             up2.eq(guard & (sticky | window[1]))]

            # Stage 3: round up on a tie-to-odd or past half; clamp (a saturated floor is
            # beyond every 16-bit bound, so the clamp picks lo or hi as for the exact value).
            q = Signal(signed(w + 1))
            m.d.comb += q.eq(floor2 + up2)
            with m.If(advance):
                m.d.sync += self.o.payload[lane].eq(Mux(q < lo2, lo2, Mux(q > hi2, hi2, q)))
        return m


def _shift_window(m: Module, bits, amount, width: int):
    """``(bits >> amount)[:width]``, its bit 0 (the guard bit) and the OR of every bit shifted
    out below it (sticky), as a log shifter that trims each stage to the bits still needed."""
    sticky = Const(0, 1)
    cur = bits
    for k in reversed(range(len(amount))):
        step = 1 << k
        need = width + step - 1  # bits still reachable by the remaining (lower) stages
        dropped = cur[:step].any()
        sticky = sticky | (amount[k] & dropped)
        nxt = Signal(min(len(cur), need), name=f"win_s{k}")
        m.d.comb += nxt.eq(Mux(amount[k], cur[step:], cur))
        cur = nxt
    out = Signal(width)
    m.d.comb += out.eq(cur)
    return out, out[0], sticky
