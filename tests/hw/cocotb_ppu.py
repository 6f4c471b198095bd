"""cocotb bench for hw/ppu.py on Verilator (run by tests/hw/test_rtl.py): random beats with
random stalls on both sides, checked against the same reference as the amaranth.sim tests."""

import os
import random

import cocotb
from amaranth import signed
from amaranth.lib import data
from cocotb.clock import Clock

from shiftflow.hw.ppu import OUT_BITS, beat_layout
from shiftflow.hw.tb.streams import recv, send
from shiftflow.ir.isa import Act, Post
from tests.hw.test_ppu import reference


@cocotb.test()
async def random_beats_with_stalls(dut):
    lanes = int(os.environ["PPU_LANES"])
    rng = random.Random(5)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    post = {"act": Act.LEAKY, "leaky_exp": 2, "lo": -128, "hi": 127, "pool": 0}
    dut.post.value = Post.const(post).as_bits()
    beats = [[(rng.randint(-(1 << 20), 1 << 20), rng.randint(-999, 999), rng.randint(-4, 20)) for _ in range(lanes)]
             for _ in range(200)]
    layout = beat_layout(lanes, 32)
    words = [layout.const({"acc": [a for a, _, _ in b], "bias": [c for _, c, _ in b],
                           "shift": [s for _, _, s in b]}).as_bits() for b in beats]
    sender = cocotb.start_soon(send(dut, "i", words, stall=0.3, rng=rng))
    got = await recv(dut, "o", len(beats), stall=0.3, rng=random.Random(6))
    await sender
    out = data.ArrayLayout(signed(OUT_BITS), lanes)
    for k, (word, beat) in enumerate(zip(got, beats)):
        have = [int(x) for x in out.from_bits(word)]
        want = [reference(a, b, s, "leaky", 2, -128, 127) for a, b, s in beat]
        assert have == want, f"beat {k}: {have} != {want}"
