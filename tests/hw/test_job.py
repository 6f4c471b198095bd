# amaranth: UnusedElaboratable=no
"""hw/job.py's helpers on their own: ``shift_add`` (the decoder's row steps made of shifted
adds, ``AcceleratorConfig.decode_shift_add``) equals the product for every factor of the
narrow fields it takes and drawn words; ``_taps`` (the same flag's ``kh * kw``) equals
the product for every pair of fields."""

from amaranth import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from shiftflow.hw.job import _taps, shift_add
from shiftflow.ir.isa import Window


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(0, (1 << 20) - 1), min_size=1, max_size=8))
def test_shift_add_equals_the_product(bits, words):
    factor, x = Signal(bits), Signal(20)
    out = Signal(bits + 20)
    m = Module()
    m.d.comb += out.eq(shift_add(factor, x))
    sim = Simulator(m)
    got = []

    async def bench(ctx):
        for w in words:
            for f in range(1 << bits):
                ctx.set(factor, f)
                ctx.set(x, w)
                got.append((f * w, ctx.get(out)))

    sim.add_testbench(bench)
    sim.run()
    assert all(want == have for want, have in got)
    assert len(got) == len(words) << bits


def test_taps_equals_the_product():
    win = Signal(Window)
    out = Signal(8)
    m = Module()
    m.d.comb += out.eq(_taps(win))
    sim = Simulator(m)
    got = []

    async def bench(ctx):
        for kh in range(16):
            for kw in range(16):
                ctx.set(win.kh, kh)
                ctx.set(win.kw, kw)
                got.append((kh * kw, ctx.get(out)))

    sim.add_testbench(bench)
    sim.run()
    assert len(got) == 256 and all(want == have for want, have in got)
