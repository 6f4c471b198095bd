# amaranth: UnusedElaboratable=no
"""hw/ppu.py against ir.intmath.round_shift: random and tie values, every shift, stalls."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.errors import ShiftflowError
from shiftflow.hw.ppu import PPU
from shiftflow.ir.intmath import round_shift
from shiftflow.ir.isa import Act
from tests.hw.streams import get, put, simulate

ACTS = {"none": Act.NONE, "relu": Act.RELU, "leaky": Act.LEAKY}


def reference(acc, bias, shift, act, leaky_exp, lo, hi, acc_bits=32):
    """docs/isa.md post-processing of one value, with round_shift as the rounding reference."""
    half = 1 << (acc_bits - 1)
    v = ((acc + bias + half) % (2 * half)) - half
    if act == "relu":
        v = max(v, 0)
    s = shift - leaky_exp if act == "leaky" and v < 0 else shift
    # Shifts beyond these give the same clamped result (0, or saturation) and keep int64 exact.
    q = int(round_shift(np.int64(v), -min(max(s, -32), 48)))
    return min(max(q, lo), hi)


def run_ppu(lanes, beats, post, *, stall=0.0, seed=0, early_shift=False):
    """Push ``beats`` (lists of (acc, bias, shift) per lane) through a PPU; the results."""
    dut = PPU(lanes=lanes, early_shift=early_shift)
    rng = random.Random(seed)
    got = []

    async def source(ctx):
        ctx.set(dut.post, post)
        payloads = [{"acc": [a for a, _, _ in b], "bias": [c for _, c, _ in b], "shift": [s for _, _, s in b]}
                    for b in beats]
        await put(ctx, dut.i, payloads, stall=stall, rng=rng)

    async def sink(ctx):
        for p in await get(ctx, dut.o, len(beats), stall=stall, rng=random.Random(seed + 1)):
            got.append([int(x) for x in p])

    simulate(dut, source, sink)
    return got


def check(lanes, beats, act, leaky_exp, lo, hi, **kw):
    post = {"act": ACTS[act], "leaky_exp": leaky_exp, "lo": lo, "hi": hi, "pool": 0}
    got = run_ppu(lanes, beats, post, **kw)
    want = [[reference(a, b, s, act, leaky_exp, lo, hi) for a, b, s in beat] for beat in beats]
    assert got == want


@st.composite
def lane_values(draw):
    shift = draw(st.one_of(st.integers(0, 31), st.integers(-40, 40), st.integers(-128, 127)))
    bias = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    if shift > 0 and draw(st.booleans()):
        # An exact tie: acc + bias = odd * 2**(shift-1), positive or negative.
        odd = 2 * draw(st.integers(-(1 << max(0, 31 - shift)), (1 << max(0, 31 - shift)) - 1)) + 1
        v = odd << (shift - 1)
        acc = max(-(1 << 31), min((1 << 31) - 1, v - bias))
    else:
        acc = draw(st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-300, 300)))
    return acc, bias, shift


@settings(max_examples=60, deadline=None)
@given(beats=st.lists(st.lists(lane_values(), min_size=2, max_size=2), min_size=1, max_size=12),
       act=st.sampled_from(sorted(ACTS)), leaky_exp=st.integers(-32, 31),
       bounds=st.sampled_from([(-128, 127), (0, 255), (0, 6), (-32768, 32767), (-1, 1)]))
def test_matches_round_shift(beats, act, leaky_exp, bounds):
    check(2, beats, act, leaky_exp, *bounds)


def test_ties_and_every_shift():
    """Every shift in -20..40 on values around ties (v = k * 2**(s-1) + d), negative too."""
    beats = []
    for s in range(-20, 41):
        for k in (-3, -2, -1, 1, 2, 3, 5):
            base = k << max(s - 1, 0)
            beats.append([(base + d, 0, s) for d in (-1, 0, 1, 2)])
    check(4, beats, "none", 0, -32768, 32767)


def test_leaky_and_stalls():
    rng = random.Random(7)
    beats = [[(rng.randint(-5000, 5000), rng.randint(-100, 100), rng.randint(-2, 8)) for _ in range(8)]
             for _ in range(40)]
    check(8, beats, "leaky", 3, -128, 127, stall=0.4, seed=3)


def test_early_shift_same_results():
    """The timing variant (both clamped shifts beside the add, tiny's) computes the same."""
    rng = random.Random(7)
    beats = [[(rng.randrange(-1 << 31, 1 << 31), rng.randrange(-1 << 20, 1 << 20), rng.randrange(-40, 60))
              for _ in range(4)] for _ in range(60)]
    for act, leaky_exp in (("leaky", 3), ("leaky", 0), ("relu", 0), ("none", 0)):
        post = {"act": ACTS[act], "leaky_exp": leaky_exp, "lo": -128, "hi": 127, "pool": 0}
        want = [[reference(a, b, s, act, leaky_exp, -128, 127) for a, b, s in beat] for beat in beats]
        assert run_ppu(4, beats, post, stall=0.3, seed=5, early_shift=True) == want


def test_latency_is_three_cycles():
    dut = PPU(lanes=1)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.post, {"act": Act.NONE, "leaky_exp": 0, "lo": -128, "hi": 127, "pool": 0})
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, {"acc": [5], "bias": [0], "shift": [1]})
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 6):
            if ctx.get(dut.o.valid) and "at" not in seen:
                seen["at"] = cycle
                seen["q"] = int(ctx.get(dut.o.payload)[0])
            await ctx.tick()

    simulate(dut, tb)
    assert seen == {"at": PPU.LATENCY, "q": 2}  # 5/2 = 2.5 rounds to even


@pytest.mark.parametrize("kw", [{"lanes": 0}, {"acc_bits": 64}])
def test_bad_parameters(kw):
    with pytest.raises(ShiftflowError, match="PPU"):
        PPU(**kw)
