"""Multiply-accumulate: one MAC and the ``tm × tn`` MAC array of the PE array (docs/isa.md).

Operands: an activation byte (two's complement when ``a_signed``, else plain unsigned) and a
weight byte that is either an ``int`` two's-complement value or, with ``pow2``, a code:
``0`` = zero, else bit 7 = sign, bit 6 = 1 (nonzero), bits 3..0 = exponent ``e``, value
``±2**e``, decoded into the multiplier operand ``±2**e`` (one DSP datapath for both
encodings; a per-PE barrel shifter costs more LUTs than the DSP saves). A code with bit 6
clear is zero (as in the simulator). Products are exact (:class:`MACArray`: for ``e <= 7``,
see its limitation); accumulators wrap at ``acc_bits`` like the simulator's post-processing
input.

:class:`MACArray` serves both dataflows of the hybrid PE array with the same multipliers:

- ``Dataflow.PIXEL``: ``acc[i][l] += act[i][l] * wgt[i][l]`` (each PE its own accumulator; the
  operand router broadcasts one weight per row across the ``tn`` pixels, and one activation
  per column across the rows — or, depthwise, gives row ``i`` its own channel);
- ``Dataflow.CHANNEL``: ``acc[i][0] += Σ_l act[i][l] * wgt[i][l]`` (a row's products reduced by
  an adder tree; columns 1.. are unspecified; the router broadcasts one input word to every
  row).

Every PE has its own activation and weight operand ports; the broadcasts are wiring in the
router, and the array relies on them to pack two MACs into one DSP (see :class:`MACArray`).

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
from ..ir.isa import Dataflow

#: Width of one product: a 9-bit (sign-extended) activation times a 17-bit weight operand
#: (int8, or a pow2 code's ±2**15 at most); the values need 25 bits, the type is 9 + 17.
PRODUCT_BITS = 26

Mode = data.StructLayout({"a_signed": unsigned(1), "pow2": unsigned(1), "dataflow": Dataflow})
#: The MAC array's mode: ``Mode`` and whether the beat is depthwise (decides the DSP pairing).
ArrayMode = data.StructLayout({"a_signed": unsigned(1), "pow2": unsigned(1), "dataflow": Dataflow,
                               "depthwise": unsigned(1)})


def weight_value(w: Value, pow2: Value) -> Value:
    """The signed value of weight byte ``w``: two's complement, or the pow2 code's ``±2**e``
    (signed, 17 bits). Decoding pow2 to a multiplier operand keeps one datapath (a DSP
    multiply) for both encodings instead of a barrel shifter per PE. ``-2**e`` is formed as
    ones from bit ``e`` up, not by negating ``2**e``: no carry chain sits between the weight
    memory and the multiplier (it was the compute unit's critical path)."""
    e = w[0:4]
    mag = (Const(1, 17) << e)[:17]
    neg = (Const((1 << 17) - 1, 17) << e)[:17]
    return Mux(pow2, Mux(w[6], Mux(w[7], neg, mag), 0).as_signed(), w.as_signed())


def product(a: Value, w: Value, a_signed: Value, pow2: Value) -> Value:
    """The exact product of activation byte ``a`` and weight byte ``w`` (signed, 26 bits)."""
    a9 = Mux(a_signed, a.as_signed(), a.as_unsigned())
    return (a9 * weight_value(w, pow2)).as_signed()


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


def weight_operand(w: Value, pow2: Value) -> tuple[Value, Value]:
    """Weight byte ``w`` as a 9-bit signed multiplier operand and a flag: int8 as itself; a
    pow2 code as ``±2**(e % 8)`` (``-2**e`` as ones from bit ``e`` up, no negation carry
    chain), with ``big`` = ``e >= 8``. :class:`MACArray` packs two of these per DSP and does not
    apply ``big`` (see its docstring)."""
    e = w[0:3]
    mag = (Const(1, 9) << e)[:9]
    neg = (Const(0x1FF, 9) << e)[:9]
    value = Mux(pow2, Mux(w[6], Mux(w[7], neg, mag), 0), w.as_signed()).as_signed()
    return value, pow2 & w[6] & w[3]


def act_operand(a: Value, a_signed: Value) -> Value:
    """Activation byte ``a`` as a 9-bit signed operand (int8 or uint8)."""
    return Mux(a_signed, a.as_signed(), a.as_unsigned()).as_signed()


#: Bit offset of the high product in a packed DSP: a 9 x 9-bit product needs 16 bits
#: (|a*w| <= 255 * 128), so the low one fits below it with room for the rounding offset.
PACK_SHIFT = 18
PRODUCT16 = 16


class MACArray(wiring.Component):
    """``rows × cols`` MACs (``tm × tn``) with the channel- and pixel-parallel routings, two
    MACs per DSP multiplier.

    ``i``: stream (ready constantly 1) of ``act`` and ``wgt`` (``rows × cols`` bytes each; PE
    ``(i, l)`` multiplies ``act[i][l]`` by ``wgt[i][l]``; a weight word's byte ``i*cols + l`` is
    row ``i`` lane ``l``), ``first``, ``last``. ``mode`` (``a_signed``, ``pow2``, ``dataflow``,
    ``depthwise``) is sampled with each beat. ``o``: stream (its ready is ignored) of the
    ``rows × cols`` sums, valid for one cycle per group.

    Operand sharing (what the operand router guarantees, and what the packing relies on):
    without ``depthwise`` rows ``2p`` and ``2p+1`` carry the same activations (one activation
    per column, broadcast); with ``depthwise`` (pixel-parallel only) lanes ``2q`` and ``2q+1``
    carry the same weight (one weight per row, broadcast). DSP ``(p, l)`` multiplies the shared
    operand by two packed ones, ``(hi << 18) + lo``: the low product is bits 0..15, the high one
    bits 18..33 plus bit 17 (the low product's borrow), added as the carry-in of the adder
    that takes it — exact, and no correction logic. Dense, DSP ``(p, l)`` computes PEs ``(2p, l)`` and ``(2p+1, l)``;
    depthwise, for even ``l`` row ``2p``'s lanes ``l, l+1`` and for odd ``l`` row ``2p+1``'s
    lanes ``l-1, l``; half the accumulators take their product from the neighbouring DSP then
    (a mux in front of the accumulator's adder). Channel-parallel reduces each row's dense
    products with an adder tree into column 0; the other columns keep accumulating their own
    products, so their sums are unspecified in channel mode (nothing reads them; zeroing them
    cost a mux per accumulator bit).

    Limitation: a pow2 code with ``e >= 8`` (bit 3 set; the compiler's pow2 weights have
    ``e <= 7``, docs/quantize.md) is multiplied as ``±2**(e - 8)``: a 9-bit operand is what
    packs two products into one DSP48E2, and the ×256 would cost a shifter per PE.

    Accumulators restart after each group's ``last`` beat (a synchronous clear, no ``first``
    mux in front of the adder), so ``first`` is implied by the previous group's ``last``.
    """

    LATENCY = 3

    def __init__(self, rows: int, cols: int, acc_bits: int = 32):
        _check("MACArray rows", rows, 2, 256)
        _check("MACArray cols", cols, 2, 256)
        if rows % 2 or cols % 2:
            raise ShiftflowError(f"MACArray rows ({rows}) and cols ({cols}) must be even (two MACs per DSP)")
        _check("MACArray acc_bits", acc_bits, 2 * 9 + (cols - 1).bit_length(), 64)
        self.rows, self.cols, self.acc_bits = rows, cols, acc_bits
        beat = data.StructLayout({
            "act": data.ArrayLayout(data.ArrayLayout(unsigned(8), cols), rows),
            "wgt": data.ArrayLayout(data.ArrayLayout(unsigned(8), cols), rows),
            "first": unsigned(1),
            "last": unsigned(1),
        })
        sums = data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)
        super().__init__({"mode": In(ArrayMode), "i": In(stream.Signature(beat)),
                          "o": Out(stream.Signature(sums))})

    def elaborate(self, platform):
        m = Module()
        p, md = self.i.payload, self.mode
        rows, cols, half = self.rows, self.cols, self.rows // 2
        m.d.comb += self.i.ready.eq(1)
        dw = md.depthwise

        def operand(value, name):
            # A named, kept 9-bit operand: abc then maps each decode once instead of merging
            # it into every mux it feeds (91 -> 69 LUTs for one DSP's operands).
            sig = Signal(signed(9), name=name, attrs={"keep": 1})
            m.d.comb += sig.eq(value)
            return sig

        acts = [[operand(act_operand(p.act[i][l], md.a_signed), f"a9_{i}_{l}") for l in range(cols)]
                for i in range(rows)]
        wgts = [[operand(weight_operand(p.wgt[i][l], md.pow2)[0], f"w9_{i}_{l}") for l in range(cols)]
                for i in range(rows)]

        # Stage 1: one DSP per PE pair: (shared) * ((hi << 18) + lo), registered.
        valid1, last1, chan1, dw1 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(self.i.valid), last1.eq(p.last),
                     chan1.eq(md.dataflow == Dataflow.CHANNEL), dw1.eq(dw)]
        prod = [[Signal(signed(2 * PACK_SHIFT), name=f"dsp_{q}_{l}") for l in range(cols)] for q in range(half)]
        for q in range(half):
            for l in range(cols):
                c = 2 * q + l % 2  # depthwise: the channel (row) this DSP serves
                l0 = l - l % 2
                # Depthwise, a row's weight is the same in every lane: lane 0's decode serves all.
                shared = Mux(dw, wgts[c][0], acts[2 * q][l])
                lo, hi = Mux(dw, acts[c][l0], wgts[2 * q][l]), Mux(dw, acts[c][l0 + 1], wgts[2 * q + 1][l])
                packed = Signal(signed(27), name=f"a_{q}_{l}")  # the DSP48E2's A port
                m.d.comb += packed.eq((hi << PACK_SHIFT) + lo)
                m.d.sync += prod[q][l].eq(packed * shared)

        # Both products fit 16 bits (|a*w| <= 255 * 128). P = hi_p * 2**18 + lo_p: the low
        # product is P's bits 0..15; the high one is bits 18..33 plus bit 17 (the low product's
        # sign, i.e. its borrow), which the adders take as their carry-in.
        def low(v):
            return v[:PRODUCT16].as_signed(), Const(0, 1)

        def high(v):
            return v[PACK_SHIFT:PACK_SHIFT + PRODUCT16].as_signed(), v[PACK_SHIFT - 1]

        # Stage 2: products delayed; channel-parallel row sums of the dense products.
        valid2, last2, chan2, dw2 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [valid2.eq(valid1), last2.eq(last1), chan2.eq(chan1), dw2.eq(dw1)]
        prod2 = [[Signal.like(prod[q][l], name=f"dsp2_{q}_{l}") for l in range(cols)] for q in range(half)]
        row_sum = [Signal(signed(PRODUCT16 + (cols - 1).bit_length()), name=f"row_sum_{i}") for i in range(rows)]
        row_carry = [Signal(name=f"row_carry_{i}") for i in range(rows)]
        for q in range(half):
            m.d.sync += [prod2[q][l].eq(prod[q][l]) for l in range(cols)]
            for i, field in ((2 * q, low), (2 * q + 1, high)):
                total, carry = carry_tree([field(v) for v in prod[q]])
                m.d.sync += [row_sum[i].eq(total), row_carry[i].eq(carry)]

        # Stage 3: accumulate (cleared after a group's last beat, which also loads the output).
        # The clear is its own branch, not a mux after the adder: yosys then maps it to the
        # flip-flops' synchronous reset (81 -> 50 LUTs for a 32-bit accumulator).
        clear = Signal()
        m.d.comb += clear.eq(valid2 & last2)
        m.d.sync += self.o.valid.eq(clear)
        for i in range(rows):
            q = i // 2
            for l in range(cols):
                own, own_c = low(prod2[q][l]) if i % 2 == 0 else high(prod2[q][l])
                if i % 2 == 0 and l % 2 == 1:
                    other, other_c = high(prod2[q][l - 1])
                    own, own_c = Mux(dw2, other, own), Mux(dw2, other_c, own_c)
                elif i % 2 == 1 and l % 2 == 0:
                    other, other_c = low(prod2[q][l + 1])
                    own, own_c = Mux(dw2, other, own), Mux(dw2, other_c, own_c)
                if l == 0:
                    own, own_c = Mux(chan2, row_sum[i], own), Mux(chan2, row_carry[i], own_c)
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


def carry_tree(terms: list[tuple[Value, Value]]) -> tuple[Value, Value]:
    """``Σ value + Σ carry`` of ``(value, one-bit carry)`` terms as a balanced adder tree whose
    adders take one carry each as carry-in; the last carry is returned for the next adder."""
    while len(terms) > 1:
        terms = [(add_carry(terms[k][0], terms[k + 1][0], terms[k][1]), terms[k + 1][1]) if k + 1 < len(terms)
                 else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]
