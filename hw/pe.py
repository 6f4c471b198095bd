"""Multiply-accumulate: one MAC and the ``tm × tn`` MAC array of the PE array (docs/isa.md).

Operands: an activation byte (two's complement when ``a_signed``, else plain unsigned) and a
weight byte that is either an ``int`` two's-complement value or, with ``pow2``, a code:
``0`` = zero, else bit 7 = sign, bit 6 = 1 (nonzero), bits 2..0 = exponent ``e``, value
``±2**e`` (bits 5..3 reserved: the simulator rejects a CONV that reads a code with one set,
the hardware ignores them), decoded into the multiplier operand ``±2**e`` (one DSP datapath
for both encodings; a per-PE barrel shifter costs more LUTs than the DSP saves). A code with
bit 6 clear is zero (as in the simulator). Products are exact; accumulators wrap at
``acc_bits`` like the simulator's post-processing input.

:class:`MACArray` serves both dataflows of the hybrid PE array with the same multipliers and
one rule, ``acc[i][l] += act[i][l] * wgt[i][l]`` (each PE its own accumulator); the operand
router makes the dataflow:

- pixel-parallel: one weight per row broadcast across the ``tn`` pixels, one activation per
  column across the rows — or, depthwise, row ``i`` its own channel;
- channel-parallel: one input word (``tn`` channels of a pixel) broadcast to every row, each
  PE its own weight; the row's ``tn`` sums are added while they drain (``hw/retire.py``), not
  by an adder tree per row here.

Two PEs that share an operand (an activation broadcast across rows, or depthwise a weight
across lanes) share one DSP; the array takes each DSP's three decoded operands, which the
router builds from the memories' read data (see :class:`MACArray`).

Timing (both): beats enter on a stream whose ``ready`` is constantly 1, one per cycle (the
array never stalls; its sequencer runs in lockstep), and results leave on a stream whose
``ready`` is ignored: the consumer (the PPU drain buffer) must take them when valid. (Not
``always_ready`` streams: Amaranth 0.5 cannot make a constant a Verilog port.) A beat with
``first`` starts new sums; when the beat with ``last`` has been accumulated the sums appear on ``o`` (valid for one cycle), ``LATENCY`` = 3
cycles after that beat was presented. ``o.payload`` is its own register (the second
accumulator buffer of the cost model) and holds the sums until the next group's last beat
has been accumulated, so the PPU drains it over several cycles while the next group
accumulates.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import POW2_EXP, POW2_NONZERO, POW2_SIGN

#: Width of one product: a 9-bit (sign-extended) activation times a 9-bit weight operand
#: (int8, or a pow2 code's ±2**7 at most).
PRODUCT_BITS = 18

Mode = data.StructLayout({"a_signed": unsigned(1), "pow2": unsigned(1)})


def product(a: Value, w: Value, a_signed: Value, pow2: Value) -> Value:
    """The exact product of activation byte ``a`` and weight byte ``w`` (signed, 18 bits)."""
    return (act_operand(a, a_signed) * weight_operand(w, pow2)).as_signed()


def _check(what: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ShiftflowError(f"{what} must be in {lo}..{hi}, got {value}")


class MAC(wiring.Component):
    """One multiply-accumulate: ``acc = (first ? 0 : acc) + a * w``.

    ``i`` carries ``a``, ``w`` and ``first`` (ready is constantly 1); ``mode`` is sampled with each
    beat. ``acc`` includes a beat ``LATENCY`` = 2 cycles after it was presented.
    """

    LATENCY = 2

    def __init__(self, acc_bits: int = 32):
        _check("MAC acc_bits", acc_bits, PRODUCT_BITS, 64)
        self.acc_bits = acc_bits
        beat = data.StructLayout({"a": unsigned(8), "w": unsigned(8), "first": unsigned(1)})
        super().__init__({"mode": In(Mode), "i": In(stream.Signature(beat)),
                          "acc": Out(signed(acc_bits))})

    def elaborate(self, platform):
        m = Module()
        prod = Signal(signed(PRODUCT_BITS))
        valid, first = Signal(), Signal()
        p = self.i.payload
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [prod.eq(product(p.a, p.w, self.mode.a_signed, self.mode.pow2)),
                     valid.eq(self.i.valid), first.eq(p.first)]
        with m.If(valid):
            m.d.sync += self.acc.eq(Mux(first, 0, self.acc) + prod)
        return m


def weight_operand(w: Value, pow2: Value) -> Value:
    """Weight byte ``w`` as a 9-bit signed multiplier operand: int8 as itself; a pow2 code as
    ``±2**e`` with ``e`` = bits 2..0 (``-2**e`` as ones from bit ``e`` up, no negation carry
    chain; bits 5..3 are reserved and ignored)."""
    e = w[:POW2_EXP.bit_length()]
    nonzero, negative = w[POW2_NONZERO.bit_length() - 1], w[POW2_SIGN.bit_length() - 1]
    mag = (Const(1, 9) << e)[:9]
    neg = (Const(0x1FF, 9) << e)[:9]
    return Mux(pow2, Mux(nonzero, Mux(negative, neg, mag), 0), w.as_signed())[:9].as_signed()


def act_operand(a: Value, a_signed: Value) -> Value:
    """Activation byte ``a`` as a 9-bit signed operand (int8 or uint8)."""
    return Mux(a_signed, a.as_signed(), a.as_unsigned())[:9].as_signed()


#: Bit offset of the high product in a packed DSP: a 9 x 9-bit product needs 16 bits
#: (|a*w| <= 255 * 128), so the low one fits below it with room for the rounding offset.
PACK_SHIFT = 18
PRODUCT16 = 16


#: One DSP's operands: ``shared * ((hi << 18) + lo)`` (9-bit signed each, decoded).
DspOperands = data.StructLayout({"shared": signed(9), "lo": signed(9), "hi": signed(9)})


def dsp_pairs(q: int, l: int, depthwise: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """The PEs ``(row, lane)`` whose products DSP ``(q, l)`` computes, low then high: dense,
    rows ``2q`` and ``2q+1`` of lane ``l`` (they share the lane's activation); depthwise,
    row ``2q + l % 2``'s lanes ``l - l % 2`` and ``l - l % 2 + 1`` (they share the row's
    weight)."""
    if not depthwise:
        return (2 * q, l), (2 * q + 1, l)
    c, l0 = 2 * q + l % 2, l - l % 2
    return (c, l0), (c, l0 + 1)


class MACArray(wiring.Component):
    """``rows × cols`` MACs (``tm × tn``), every PE accumulating its own products, two MACs
    per DSP multiplier.

    ``i``: stream (ready constantly 1) of ``dsp`` (``rows/2 × cols`` :data:`DspOperands`,
    decoded by the operand router), ``first``, ``last``; ``mode.depthwise`` is sampled with
    each beat. DSP ``(q, l)`` multiplies ``shared`` by ``lo`` and by ``hi``, the products of the
    PEs :func:`dsp_pairs` names: dense, ``shared`` is lane ``l``'s activation and ``lo``/``hi``
    the weights of rows ``2q``/``2q+1``; depthwise, ``shared`` is row ``2q + l % 2``'s weight
    and ``lo``/``hi`` its activations of two neighbouring lanes. The router builds each
    operand with one level of multiplexing from the memories' read data (a weight decoded once
    per row when it is broadcast). ``o``: stream (its ready is ignored) of the ``rows × cols``
    sums ``acc[i][l]``, valid for one cycle per group.

    Packing: DSP ``(q, l)`` computes ``shared * ((hi << 18) + lo)``: the low product is bits
    0..15, the high one bits 18..33 plus bit 17 (the low product's borrow), added as the
    carry-in of the adder that takes it — exact, and no correction logic. ``packed=False``
    (``AcceleratorConfig.split_products``, for ECP5): the two 9 × 9 products in their own
    multipliers, side by side in the same 36 bits (no borrow), since a 27 × 9 product takes
    two ECP5 multiplier blocks and an adder in the fabric anyway. Depthwise, half the
    accumulators take their product from the neighbouring DSP (a mux in front of the
    accumulator's adder).

    Accumulators restart after each group's ``last`` beat (a synchronous clear, no ``first``
    mux in front of the adder), so ``first`` is implied by the previous group's ``last``.
    """

    LATENCY = 3

    def __init__(self, rows: int, cols: int, acc_bits: int = 32, packed: bool = True):
        _check("MACArray rows", rows, 2, 256)
        _check("MACArray cols", cols, 2, 256)
        if rows % 2 or cols % 2:
            raise ShiftflowError(f"MACArray rows ({rows}) and cols ({cols}) must be even (two MACs per DSP)")
        _check("MACArray acc_bits", acc_bits, PRODUCT16 + 1, 64)
        self.rows, self.cols, self.acc_bits, self.packed = rows, cols, acc_bits, packed
        beat = data.StructLayout({
            "dsp": data.ArrayLayout(data.ArrayLayout(DspOperands, cols), rows // 2),
            "first": unsigned(1),
            "last": unsigned(1),
        })
        sums = data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)
        super().__init__({"mode": In(data.StructLayout({"depthwise": unsigned(1)})),
                          "i": In(stream.Signature(beat)), "o": Out(stream.Signature(sums))})

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        rows, cols, half = self.rows, self.cols, self.rows // 2
        m.d.comb += self.i.ready.eq(1)

        # Stage 1: one DSP per PE pair: shared * ((hi << 18) + lo), registered.
        valid1, last1, dw1 = Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(self.i.valid), last1.eq(p.last), dw1.eq(self.mode.depthwise)]
        prod = [[Signal(signed(2 * PACK_SHIFT), name=f"dsp_{q}_{l}") for l in range(cols)] for q in range(half)]
        for q in range(half):
            for l in range(cols):
                op = p.dsp[q][l]
                # The DSP48E2's A port, (hi << 18) + lo: lo's bits, its sign in bits 9..17, and
                # hi - sign above (only a 9-bit decrement, not a 27-bit adder).
                if not self.packed:  # two 9 x 9 products side by side, each its own multiplier
                    m.d.sync += prod[q][l].eq(Cat((op.lo * op.shared)[:PACK_SHIFT], (op.hi * op.shared)[:PACK_SHIFT]))
                    continue
                packed = Signal(signed(27), name=f"a_{q}_{l}")
                sign = op.lo[8]
                m.d.comb += packed.eq(Cat(op.lo.as_unsigned(), sign.replicate(PACK_SHIFT - 9), (op.hi - sign)[:9]))
                m.d.sync += prod[q][l].eq(packed * op.shared)

        # Both products fit 16 bits (|a*w| <= 255 * 128). P = hi_p * 2**18 + lo_p: the low
        # product is P's bits 0..15; the high one is bits 18..33 plus bit 17 (the low product's
        # sign, i.e. its borrow), which the adders take as their carry-in.
        def low(v):
            return v[:PRODUCT16].as_signed(), Const(0, 1)

        def high(v):  # unpacked: no borrow
            return v[PACK_SHIFT:PACK_SHIFT + PRODUCT16].as_signed(), v[PACK_SHIFT - 1] if self.packed else Const(0, 1)

        # Stage 2: products delayed (the DSP's P register, then fabric).
        valid2, last2, dw2 = Signal(), Signal(), Signal()
        m.d.sync += [valid2.eq(valid1), last2.eq(last1), dw2.eq(dw1)]
        prod2 = [[Signal.like(prod[q][l], name=f"dsp2_{q}_{l}") for l in range(cols)] for q in range(half)]
        for q in range(half):
            m.d.sync += [prod2[q][l].eq(prod[q][l]) for l in range(cols)]

        # Stage 3: accumulate (cleared after a group's last beat, which also loads the output).
        # The clear is its own branch, not a mux after the adder: yosys then maps it to the
        # flip-flops' synchronous reset (81 -> 50 LUTs for a 32-bit accumulator).
        clear = Signal()
        m.d.comb += clear.eq(valid2 & last2)
        m.d.sync += self.o.valid.eq(clear)
        # Which DSP product (q, l, low/high) each PE accumulates, dense and depthwise: the
        # inverse of dsp_pairs; where the two differ, a mux on dw2 in front of the adder.
        fields = (low, high)
        source = {dwm: {pe: (q, l, f) for q in range(half) for l in range(cols)
                        for f, pe in enumerate(dsp_pairs(q, l, dwm))} for dwm in (False, True)}
        for i in range(rows):
            for l in range(cols):
                (q, k, f), (dq, dk, df) = source[False][(i, l)], source[True][(i, l)]
                own, own_c = fields[f](prod2[q][k])
                if (dq, dk, df) != (q, k, f):
                    other, other_c = fields[df](prod2[dq][dk])
                    own, own_c = Mux(dw2, other, own), Mux(dw2, other_c, own_c)
                acc = Signal(signed(self.acc_bits), name=f"acc_{i}_{l}")
                nxt = Signal(signed(self.acc_bits), name=f"next_{i}_{l}")
                m.d.comb += nxt.eq(add_carry(acc, own, own_c))
                with m.If(clear):
                    m.d.sync += [acc.eq(0), self.o.payload[i][l].eq(nxt)]
                with m.Elif(valid2):
                    m.d.sync += acc.eq(nxt)
        return m


def add_carry(x: Value, y: Value, carry: Value) -> Value:
    """``x + y + carry`` (``carry`` one bit) as one adder: ``carry`` enters below both LSBs,
    so their sum's bit 0 is dropped and its carry is ``carry`` (a carry chain's carry-in)."""
    return (Cat(carry, x).as_signed() + Cat(carry, y).as_signed())[1:].as_signed()
