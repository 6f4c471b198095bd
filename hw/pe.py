"""Multiply-accumulate: one MAC and the ``tm × tn`` MAC array of the PE array (docs/isa.md).

Operands: an activation byte (two's complement when ``a_signed``, else plain unsigned) and a
weight byte that is either an ``int`` two's-complement value or, with ``pow2``, a code:
``0`` = zero, else bit 7 = sign, bit 6 = 1 (nonzero), bits 3..0 = exponent ``e``, value
``±2**e``, decoded into the multiplier operand ``±2**e`` (one DSP datapath for both
encodings; a per-PE barrel shifter costs more LUTs than the DSP saves). A code with bit 6
clear is zero (as in the simulator). Products are exact; accumulators wrap at ``acc_bits`` like the
simulator's post-processing input.

:class:`MACArray` serves both dataflows of the hybrid PE array with the same multipliers:

- ``Dataflow.PIXEL``: ``acc[i][l] += act[i][l] * wgt[i][l]`` (each PE its own accumulator; the
  operand router broadcasts one weight per row across the ``tn`` pixels, and one activation
  per column across the rows — or, depthwise, gives row ``i`` its own channel);
- ``Dataflow.CHANNEL``: ``acc[i][0] += Σ_l act[i][l] * wgt[i][l]`` (a row's products reduced by
  an adder tree; columns 1.. stay zero; the router broadcasts one input word to every row).

Every PE has its own activation operand: the broadcast is wiring in the router, and depthwise
pixel-parallel (row ``i`` reads ring channel ``i``) needs no other datapath.

Timing (both): beats enter on a stream whose ``ready`` is constantly 1, one per cycle (the
array never stalls; its sequencer runs in lockstep), and results leave on a stream whose
``ready`` is ignored: the consumer (the PPU drain buffer) must take them when valid. (Not
``always_ready`` streams: Amaranth 0.5 cannot make a constant a Verilog port.) A beat with ``first`` starts new sums; when the beat with
``last`` has been accumulated the sums appear on ``o`` (valid for one cycle), ``LATENCY`` = 3
cycles after that beat was presented. ``o.payload`` is its own register (the second
accumulator buffer of the cost model) and holds the sums until the next group's last beat
has been accumulated, so the PPU drains it over several cycles while the next group
accumulates.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import Dataflow

#: Width of one product: a 9-bit (sign-extended) activation times a 17-bit weight operand
#: (int8, or a pow2 code's ±2**15 at most); the values need 25 bits, the type is 9 + 17.
PRODUCT_BITS = 26

Mode = data.StructLayout({"a_signed": unsigned(1), "pow2": unsigned(1), "dataflow": Dataflow})


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


def tree_sum(values: list[Value]) -> Value:
    """Sum as a balanced adder tree (depth log2 n instead of an n-long carry chain)."""
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


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


class MACArray(wiring.Component):
    """``rows × cols`` MACs (``tm × tn``) with the channel- and pixel-parallel routings.

    ``i``: stream (ready constantly 1) of ``act`` and ``wgt`` (``rows × cols`` bytes each; PE
    ``(i, l)`` multiplies ``act[i][l]`` by ``wgt[i][l]``; a weight word's byte ``i*cols + l`` is
    row ``i`` lane ``l``), ``first``, ``last``. ``mode``
    (``a_signed``, ``pow2``, ``dataflow``) is sampled with each beat. ``o``: stream (its ready
    is ignored) of the ``rows × cols`` sums, valid for one cycle per group.
    """

    LATENCY = 3

    def __init__(self, rows: int, cols: int, acc_bits: int = 32):
        _check("MACArray rows", rows, 1, 256)
        _check("MACArray cols", cols, 1, 256)
        _check("MACArray acc_bits", acc_bits, PRODUCT_BITS + (cols - 1).bit_length(), 64)
        self.rows, self.cols, self.acc_bits = rows, cols, acc_bits
        beat = data.StructLayout({
            "act": data.ArrayLayout(data.ArrayLayout(unsigned(8), cols), rows),
            "wgt": data.ArrayLayout(data.ArrayLayout(unsigned(8), cols), rows),
            "first": unsigned(1),
            "last": unsigned(1),
        })
        sums = data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)
        super().__init__({"mode": In(Mode), "i": In(stream.Signature(beat)), "o": Out(stream.Signature(sums))})

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        m.d.comb += self.i.ready.eq(1)
        # Stage 1: products, and the beat's flags and dataflow travelling alongside.
        prod = [[Signal(signed(PRODUCT_BITS), name=f"prod_{i}_{l}") for l in range(self.cols)]
                for i in range(self.rows)]
        valid1, first1, last1, chan1 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(self.i.valid), first1.eq(p.first), last1.eq(p.last),
                     chan1.eq(self.mode.dataflow == Dataflow.CHANNEL)]
        for i in range(self.rows):
            for l in range(self.cols):
                m.d.sync += prod[i][l].eq(product(p.act[i][l], p.wgt[i][l], self.mode.a_signed, self.mode.pow2))

        # Stage 2: the term each accumulator adds — its own product, or (channel) the row sum.
        term_bits = PRODUCT_BITS + (self.cols - 1).bit_length()
        term = [[Signal(signed(term_bits), name=f"term_{i}_{l}") for l in range(self.cols)]
                for i in range(self.rows)]
        valid2, first2, last2 = Signal(), Signal(), Signal()
        m.d.sync += [valid2.eq(valid1), first2.eq(first1), last2.eq(last1)]
        for i in range(self.rows):
            row_sum = tree_sum(prod[i])
            m.d.sync += term[i][0].eq(Mux(chan1, row_sum, prod[i][0]))
            for l in range(1, self.cols):
                m.d.sync += term[i][l].eq(Mux(chan1, 0, prod[i][l]))

        # Stage 3: accumulate; a group's last beat also loads the output buffer.
        m.d.sync += self.o.valid.eq(valid2 & last2)
        for i in range(self.rows):
            for l in range(self.cols):
                acc = Signal(signed(self.acc_bits), name=f"acc_{i}_{l}")
                nxt = Signal(signed(self.acc_bits), name=f"next_{i}_{l}")
                m.d.comb += nxt.eq(Mux(first2, 0, acc) + term[i][l])
                with m.If(valid2):
                    m.d.sync += acc.eq(nxt)
                    with m.If(last2):
                        m.d.sync += self.o.payload[i][l].eq(nxt)
        return m
