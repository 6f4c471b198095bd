# amaranth: UnusedElaboratable=no
"""hw/nms_pyramid.py in amaranth.sim against the functional model's pyramid step
(``sim.nms_core._pyramid``) on the spatial survivors of hypothesis-drawn NMS instructions:
the same survivors kept, in order, in exactly ``ir.nms.pyramid_cycles`` (output always
ready); with a stalling output the same survivors."""

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shiftflow.errors import ShiftflowError
from shiftflow.hw.nms_pyramid import NmsPyramid
from shiftflow.ir.nms import (
    SURVIVOR_DTYPE,
    NmsCore,
    NmsError,
    NmsLevel,
    NmsParams,
    pyramid_cycles,
    slot_table,
)
from shiftflow.sim.nms_core import _pyramid

from tests.hw.streams import simulate
from tests.sim.test_nms_core import run_scene, scenes

CORE = NmsCore(lanes=3, survivors=64, max_channels=8, partners=5)
#: the same core reading its entries' channels a cycle ahead (``nms_scan_ahead``)
CORE_AHEAD = dataclasses.replace(CORE, scan_ahead=True)
BOTH = pytest.mark.parametrize("core", [CORE, CORE_AHEAD], ids=["plain", "scan_ahead"])


async def load_slots(ctx, dut, slots) -> None:
    """Write the slot table through ``dut``'s ``slot_*`` port, one entry a cycle."""
    for addr, slot in enumerate(slots):
        ctx.set(dut.slot_we, 1)
        ctx.set(dut.slot_addr, addr)
        ctx.set(dut.slot_data, slot)
        await ctx.tick()
    ctx.set(dut.slot_we, 0)


def run(slots, entries, stall=0.0, seed=0, core=CORE):
    """Load the slot table and the survivors, run; the kept buffer addresses and the cycles
    from ``start`` to ``done``."""
    dut = NmsPyramid(core)
    rng = random.Random(seed)
    out = {}

    async def bench(ctx):
        await load_slots(ctx, dut, slots)
        for e in entries:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {k: int(e[k]) for k in ("channel", "cls", "y", "x", "key", "index")})
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycles, kept = 1, []
        while True:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                kept.append(int(ctx.get(dut.o.payload)))
            done = ctx.get(dut.done)
            await ctx.tick()
            cycles += 1
            if done:
                break
        out["kept"], out["cycles"] = kept, cycles

    simulate(dut, bench, deadline=len(slots) + len(entries) + 4 * pyramid_cycles(len(entries), CORE) + 100)
    return out["kept"], out["cycles"]


def case(sc):
    _, _, params, _, _, res = run_scene(sc)
    assume(0 < len(res.spatial) <= 40)
    try:
        slots = slot_table(params, CORE)
    except NmsError:
        assume(False)
    return slots, res.spatial, np.flatnonzero(~_pyramid(params, res.spatial)).tolist()


@BOTH
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes())
def test_kept_survivors_and_cycles_equal_the_model(core, sc):
    slots, spatial, want = case(sc)
    kept, cycles = run(slots, spatial, core=core)
    assert kept == want
    assert cycles == pyramid_cycles(len(spatial), CORE)


@BOTH
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes())
def test_a_stalling_output_keeps_the_same_survivors(core, sc):
    slots, spatial, want = case(sc)
    assert run(slots, spatial, stall=0.4, seed=len(spatial), core=core)[0] == want


@st.composite
def crowds(draw):
    """Survivors packed into a few cells of three channels (strides 8, 8, 16) whose pairs
    compete with kernels 1..4, shifted or not: most pairs share a tile, aligned or shifted."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n = draw(st.integers(1, 30))
    k = [[0, draw(st.integers(1, 4)), draw(st.integers(1, 4))], [0, 0, draw(st.integers(1, 4))], [0, 0, 0]]
    shifted = draw(st.booleans())
    pk = [[k[min(a, b)][max(a, b)] if a != b else 0 for b in range(3)] for a in range(3)]
    ps = [[v // 2 if shifted else 0 for v in row] for row in pk]
    levels = (NmsLevel(12, 12, 2, 8, 0, 0), NmsLevel(6, 6, 1, 16, 0, 288))
    params = NmsParams(levels, (1, 1, 1), (0, 0, 0), tuple(map(tuple, pk)), tuple(map(tuple, ps)), 2, 0, 100)
    sv = np.zeros(n, SURVIVOR_DTYPE)
    sv["channel"] = rng.integers(0, 3, n)
    sv["cls"] = rng.integers(0, 2, n)
    sv["y"] = np.where(sv["channel"] == 2, rng.integers(0, 4, n), rng.integers(0, 8, n))
    sv["x"] = np.where(sv["channel"] == 2, rng.integers(0, 4, n), rng.integers(0, 8, n))
    sv["key"] = rng.integers(-2, 2, n)
    sv["index"] = rng.permutation(1000)[:n]
    return params, sv


@BOTH
@settings(max_examples=25, deadline=None)
@given(crowds())
def test_crowded_survivors_equal_the_model(core, crowd):
    params, sv = crowd
    want = np.flatnonzero(~_pyramid(params, sv)).tolist()
    kept, cycles = run(slot_table(params, CORE), sv, core=core)
    assert kept == want
    assert cycles == pyramid_cycles(len(sv), CORE)


def test_no_survivors_takes_four_cycles():
    assert run([], []) == ([], pyramid_cycles(0, CORE)) == ([], 4)


def test_refuses_a_core_without_partners():
    with pytest.raises(ShiftflowError, match="partners and survivors >= 1"):
        NmsPyramid(NmsCore(lanes=2, partners=0))
