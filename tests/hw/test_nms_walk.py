"""hw/nms_walk.py's ``LinearReader`` in amaranth.sim: its read requests against a model of
the rule (each ``min(beats left, beats to the next 4 KiB boundary, MAX_BURST)``), one a cycle
while the port is ready, under random stalls."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.hw.dma import BOUNDARY
from shiftflow.hw.nms_walk import LinearReader
from shiftflow.ir.nms import MAX_BURST

from tests.hw.streams import simulate


def model(addr: int, nbytes: int, bw: int) -> list[tuple[int, int]]:
    out, left = [], nbytes // bw
    while left:
        beats = min(left, (BOUNDARY - addr % BOUNDARY) // bw, MAX_BURST)
        out.append((addr, beats))
        addr, left = addr + beats * bw, left - beats
    return out


def run(jobs, bw: int, stall: float, seed: int) -> list[list[tuple[int, int]]]:
    dut = LinearReader(bw)
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        for addr, nbytes in jobs:
            ctx.set(dut.addr, addr)
            ctx.set(dut.nbytes, nbytes)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            reqs, idle = [], 0
            while ctx.get(dut.busy):
                ready = rng.random() >= stall
                ctx.set(dut.req.ready, ready)
                _clk, _rst, valid, payload = await ctx.tick().sample(dut.req.valid, dut.req.payload)
                if ready:
                    assert valid, "a ready port waited for a request while requests were left"
                    reqs.append((int(payload.addr), int(payload.beats)))
                idle += 1
                assert idle < 10_000
            ctx.set(dut.req.ready, 0)
            got.append(reqs)

    simulate(dut, bench)
    return got


jobs = st.lists(st.tuples(st.integers(0, (1 << 20) - 1), st.integers(0, 3 * BOUNDARY)), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(jobs, st.sampled_from([8, 16]), st.sampled_from([0.0, 0.4]), st.integers(0, 99))
def test_requests_equal_the_rule(raw, bw, stall, seed):
    aligned = [(a // bw * bw, n // bw * bw) for a, n in raw]
    assert run(aligned, bw, stall, seed) == [model(a, n, bw) for a, n in aligned]


def test_a_read_ending_at_a_boundary_and_one_crossing_it():
    bw = 8
    jobs = [(BOUNDARY - MAX_BURST * bw, MAX_BURST * bw), (BOUNDARY - 3 * bw, 40 * bw), (0, 0)]
    got = run(jobs, bw, 0.0, 0)
    assert got == [model(a, n, bw) for a, n in jobs]
    assert got[1][:2] == [(BOUNDARY - 3 * bw, 3), (BOUNDARY, MAX_BURST)]
