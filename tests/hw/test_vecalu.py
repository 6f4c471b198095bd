# amaranth: UnusedElaboratable=no
"""hw/vecalu.py's ADD shifts against integers, the whole shift range, with and without
``split`` (the shift factor in two ECP5-sized products, AcceleratorConfig.split_products), and
with ``operand_reg`` (the operands registered in front of the multipliers; one cycle more),
and with ``shift_luts`` (the shifts in the fabric, AcceleratorConfig.vec_shift_luts)."""

import numpy as np
import pytest

from shiftflow.hw.vecalu import VecALU
from shiftflow.ir.isa import VecOp
from tests.hw.streams import simulate


def wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@pytest.mark.parametrize("split,acc_bits,operand_reg,shift_luts", [
    (False, 32, False, False), (True, 32, False, False), (False, 24, False, False), (True, 24, False, False),
    (True, 32, True, False), (False, 24, True, False), (True, 32, True, True), (False, 24, False, True)])
def test_add_shifts(split, acc_bits, operand_reg, shift_luts):
    """Every shift 0..31 of both operands, signed and unsigned bytes, one tap a word: each
    lane gives ``(a << shift_a) + (b << shift_b)`` wrapped to ``acc_bits``."""
    lanes, rng = 4, np.random.default_rng(acc_bits + split)
    cases = [(sa, sb, bool(rng.integers(2)), bool(rng.integers(2)), rng.integers(0, 256, lanes), rng.integers(0, 256, lanes))
             for sa in range(32) for sb in (rng.integers(32), 31 - sa)]
    cases += [(sa, sa, True, True, np.array([0x80, 0x7F, 0xFF, 0x01]), np.array([0x80, 0x80, 0x7F, 0xFF]))
              for sa in (0, 7, 16, 17, 18, 23, 24, 31)]
    dut = VecALU(lanes, acc_bits, split, operand_reg, shift_luts)
    got = []

    async def drive(ctx):
        for sa, sb, a_s, b_s, a, b in cases:
            ctx.set(dut.mode, {"op": VecOp.ADD, "a_signed": a_s, "b_signed": b_s, "shift_a": sa, "shift_b": sb})
            ctx.set(dut.i.valid, 0)
            await ctx.tick().repeat(2)  # the factors are registered from the mode
            ctx.set(dut.i.payload, {"a": [int(x) for x in a], "b": [int(x) for x in b], "a_ok": (1 << lanes) - 1,
                                    "b_ok": 0b1011, "tap_ok": 1, "first": 1, "last": 1})
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            await ctx.tick().repeat(dut.latency)

    async def collect(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append([int(x) for x in payload])

    simulate(dut, drive, background=[collect])

    def byte(v, signed):
        return int(v) - 256 if signed and v >= 128 else int(v)

    want = [[wrap((byte(a[k], a_s) << sa) + ((byte(b[k], b_s) << sb) if (0b1011 >> k) & 1 else 0), acc_bits)
             for k in range(lanes)] for sa, sb, a_s, b_s, a, b in cases]
    assert got == want
