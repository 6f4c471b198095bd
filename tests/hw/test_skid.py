# amaranth: UnusedElaboratable=no
"""hw/skid.py: a skid buffer passes every transfer once and in order under random valid and
ready, adds no cycle when the receiver is always ready, and its ``i.ready`` does not follow
``o.ready`` within a cycle; a register slice does the same with exactly one cycle, one
transfer a cycle, and ``o`` from registers."""

import random

from amaranth import unsigned
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.hw.skid import RegisterSlice, SkidBuffer
from tests.hw.streams import simulate


def run(items, p_valid, p_ready, seed, stage=SkidBuffer):
    """Send ``items`` with random gaps through ``stage`` into a receiver that is ready with
    ``p_ready``; returns what arrived and, per item, the cycle it was sent and the cycle it
    arrived."""
    dut = stage(unsigned(16))
    rng = random.Random(seed)
    got, sent_at, got_at = [], [], []

    async def bench(ctx):
        cycle, k = 0, 0
        while len(got) < len(items):
            offer = k < len(items) and rng.random() < p_valid
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, items[k])
            ready = rng.random() < p_ready
            ctx.set(dut.o.ready, ready)
            if offer and ctx.get(dut.i.ready):
                sent_at.append(cycle)
                k += 1
            if ready and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                got_at.append(cycle)
            await ctx.tick()
            cycle += 1

    simulate(dut, bench, deadline=20 * len(items) + 50)
    return got, sent_at, got_at


@settings(max_examples=20, deadline=None)
@given(items=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40), p_valid=st.floats(0.2, 1.0),
       p_ready=st.floats(0.1, 1.0), seed=st.integers(0, 1 << 16), stage=st.sampled_from([SkidBuffer, RegisterSlice]))
def test_every_transfer_once_in_order(items, p_valid, p_ready, seed, stage):
    got, _, _ = run(items, p_valid, p_ready, seed, stage)
    assert got == items


def test_no_cycle_when_always_ready():
    items = list(range(30))
    got, sent_at, got_at = run(items, 0.7, 1.0, 3)
    assert got == items and sent_at == got_at


def test_ready_is_registered():
    dut = SkidBuffer(unsigned(8))

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.i.ready)  # nothing held yet: the refused transfer is taken
        await ctx.tick()
        ctx.set(dut.i.payload, 6)
        for o_ready in (1, 0, 1):  # held: i.ready stays low whatever o.ready does this cycle
            ctx.set(dut.o.ready, o_ready)
            assert not ctx.get(dut.i.ready)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        await ctx.tick()
        assert ctx.get(dut.i.ready) and ctx.get(dut.o.payload) == 6

    simulate(dut, bench, deadline=10)


def test_register_slice_one_cycle_and_full_rate():
    items = list(range(30))
    got, sent_at, got_at = run(items, 1.0, 1.0, 3, RegisterSlice)
    assert got == items and got_at == [c + 1 for c in sent_at] and sent_at == list(range(30))
    got, sent_at, got_at = run(items, 0.6, 1.0, 4, RegisterSlice)
    assert got == items and got_at == [c + 1 for c in sent_at]


def test_register_slice_outputs_and_ready_are_registered():
    dut = RegisterSlice(unsigned(8))

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        assert not ctx.get(dut.o.valid)  # nothing reaches o in the cycle it is sent
        await ctx.tick()
        ctx.set(dut.i.payload, 6)
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        assert ctx.get(dut.i.ready)  # the skid is empty: 6 is taken though o is refused
        await ctx.tick()
        ctx.set(dut.i.payload, 7)
        for o_ready in (1, 0, 1):  # 6 held: i.ready stays low whatever o.ready does this cycle
            ctx.set(dut.o.ready, o_ready)
            assert not ctx.get(dut.i.ready)
            assert ctx.get(dut.o.payload) == 5
        await ctx.tick()  # 5 taken, 6 moves from the skid to the output
        assert ctx.get(dut.o.payload) == 6 and ctx.get(dut.i.ready)
        await ctx.tick()
        assert ctx.get(dut.o.payload) == 7

    simulate(dut, bench, deadline=10)
