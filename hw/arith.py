"""Small arithmetic building blocks shared by the compute pipeline's stages."""

from amaranth import Module, Signal


def csa_sum(m: Module, values: list, bits: int, name: str):
    """``sum(values)`` modulo ``2**bits`` with one carry chain: 3:2 carry-save compressors
    (one LUT level each) reduce the operands to two, which one adder sums. The result is an
    expression at least ``bits`` wide; its low ``bits`` are the sum."""
    ops = list(values)
    level = 0
    while len(ops) > 2:
        a, b, c = ops[:3]
        s, k = Signal(bits, name=f"{name}_s{level}"), Signal(bits, name=f"{name}_c{level}")
        m.d.comb += [s.eq(a ^ b ^ c), k.eq(((a & b) | (a & c) | (b & c)) << 1)]
        ops = ops[3:] + [s, k]
        level += 1
    return ops[0] + ops[1] if len(ops) == 2 else ops[0]
