# amaranth: UnusedElaboratable=no
"""hw/job.py's helpers on their own: ``shift_add`` (the decoder's row steps made of shifted
adds, ``AcceleratorConfig.decode_shift_add``) equals the product for every factor of the
narrow fields it takes and drawn words."""

from amaranth import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from shiftflow.hw.job import shift_add


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
