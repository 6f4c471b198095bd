# amaranth: UnusedElaboratable=no
"""hw/nms.py's spatial stage in amaranth.sim against the functional model's
(``sim.nms_core.spatial_block``): the same survivors in the same order, and, with no stalls,
exactly ``ir.nms.spatial_cycles`` — over hypothesis-drawn map sizes, per-lane kernels and
shifts, ties, all-equal and empty maps, several maps one after another, and every block of
a whole instruction; with random stalls on both streams the same survivors. With
``write_reg`` the stage is built as NmsUnit builds it (``grid_copy``), and each grid's copy of
``advance`` must equal it in every cycle."""

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shiftflow.errors import ShiftflowError
from shiftflow.hw.nms import NmsSpatial
from shiftflow.ir.nms import NmsCore, spatial_cycles
from shiftflow.runtime.decode import decode
from shiftflow.sim.nms_core import execute, spatial_block, stream_blocks

from tests.hw.streams import simulate
from tests.sim.nms_host import core_setup, head, outputs

CORE = NmsCore(lanes=3, max_width=8, max_kernel=4, index_bits=12)
#: the same core writing its tile-best memories from a register (``nms_write_reg``)
CORE_WREG = dataclasses.replace(CORE, write_reg=True)


def draw_block(rng, h, w, lanes, kind, kernels=None):
    """valid, key, index (H, W, lanes) maps of one block: box indices unique per lane."""
    if kind == "equal":
        key = np.full((h, w, lanes), 7)
    elif kind == "ties":
        key = rng.integers(-2, 2, size=(h, w, lanes))
    else:
        key = rng.integers(-(1 << 31), 1 << 31, size=(h, w, lanes))
    valid = rng.random((h, w, lanes)) < {"empty": 0.0, "equal": 1.0}.get(kind, 0.6)
    index = np.stack([rng.permutation(1 << CORE.index_bits)[:h * w].reshape(h, w) for _ in range(lanes)], 2)
    return valid, key, index


def run(blocks, stall=0.0, seed=0, core=CORE):
    """Run the blocks (valid, key, index, kernels, shifts) one after another; per block the
    survivors (lane, y, x, key, index) and the cycles from ``start`` to ``done``."""
    dut = NmsSpatial(core, grid_copy=core.write_reg)  # as NmsUnit builds it
    rng = random.Random(seed)
    results = []
    copies_differ = []

    async def bench(ctx):
        for valid, key, index, kernels, shifts in blocks:
            h, w, lanes = key.shape
            ctx.set(dut.height, h)
            ctx.set(dut.width, w)
            for lane in range(lanes):
                ctx.set(dut.kernel[lane], kernels[lane])
                ctx.set(dut.shift[lane], shifts[lane])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles, sent, got = 1, 0, []
            while True:
                offer = sent < h * w and rng.random() >= stall
                ctx.set(dut.i.valid, offer)
                if offer:
                    yy, xx = divmod(sent, w)
                    cells = [{"valid": int(valid[yy, xx, ln]), "key": int(key[yy, xx, ln]),
                              "index": int(index[yy, xx, ln])} for ln in range(lanes)]
                    ctx.set(dut.i.payload, cells)
                    if dut.grid_copy:
                        ctx.set(dut.i_s, cells)
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                if offer and ctx.get(dut.i.ready):
                    sent += 1
                if ready and ctx.get(dut.o.valid):
                    p = ctx.get(dut.o.payload)
                    got.append((int(p.lane), int(p.y), int(p.x), int(p.key), int(p.index)))
                done = ctx.get(dut.done)
                if dut.grid_copy and len({ctx.get(a) for a in dut.advance_copies}) > 1:
                    copies_differ.append(cycles)
                await ctx.tick()
                cycles += 1
                if done:
                    break
            ctx.set(dut.i.valid, 0)
            results.append((got, cycles))

    simulate(dut, bench, deadline=sum(4 * (b[0].shape[0] + 4) * b[0].shape[1] * 4 + 50 for b in blocks))
    # grid_copy: each grid's copy of ``advance`` equals it (a copy left stepping after the end
    # would not change the survivors: every register it enables is loaded at start).
    assert not copies_differ, f"advance copies differ at cycles {copies_differ[:5]}"
    return results


def expected(valid, key, index, kernels, shifts):
    y, x, lane, decided = spatial_block(valid, key, index, kernels, shifts)
    return [(int(ln), int(yy), int(xx), int(key[yy, xx, ln]), int(index[yy, xx, ln]))
            for yy, xx, ln in zip(y, x, lane)], spatial_cycles(decided)


@st.composite
def blocks(draw):
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, CORE.max_width))
    kernels = [draw(st.integers(1, min(CORE.max_kernel, h, w))) for _ in range(CORE.lanes)]
    shifts = [draw(st.sampled_from([k // 2, 0, k - 1])) for k in kernels]
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return draw_block(rng, h, w, CORE.lanes, draw(st.sampled_from(["random", "ties", "equal", "empty"]))) + (
        kernels, shifts)


@settings(max_examples=30, deadline=None)
@given(st.lists(blocks(), min_size=1, max_size=3), st.sampled_from([CORE, CORE_WREG]))
def test_survivors_and_cycles_equal_the_model(bs, core):
    for (got, cycles), b in zip(run(bs, core=core), bs):
        want, want_cycles = expected(*b)
        assert got == want
        assert cycles == want_cycles


@settings(max_examples=15, deadline=None)
@given(st.lists(blocks(), min_size=1, max_size=2), st.integers(0, 1000), st.sampled_from([CORE, CORE_WREG]))
def test_random_stalls_keep_the_survivors(bs, seed, core):
    for (got, _), b in zip(run(bs, stall=0.3, seed=seed, core=core), bs):
        assert got == expected(*b)[0]


@pytest.mark.parametrize("core", [CORE, CORE_WREG], ids=["write", "write_reg"])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_a_tile_column_two_positions_back_sees_its_write(core, stall):
    """Kernel 1 on a map two columns wide: tile columns 0, 1, 0, 1, ... so a position's column
    was last written two positions before (with ``write_reg``, a write still in flight when
    the position's read was issued, back to back)."""
    rng = np.random.default_rng(7)
    for kind in ("random", "ties", "equal"):
        b = draw_block(rng, 5, 2, 3, kind) + ([1, 1, 2], [0, 0, 1])
        (got, cycles), = run([b], stall=stall, seed=3, core=core)
        want, want_cycles = expected(*b)
        assert got == want
        assert stall or cycles == want_cycles


def test_all_equal_map_keeps_the_lowest_index_of_each_tile_pair():
    rng = np.random.default_rng(1)
    valid, key, _ = draw_block(rng, 4, 4, 3, "equal")
    index = np.broadcast_to(np.arange(16).reshape(4, 4, 1), (4, 4, 3)).copy()
    b = (valid, key, index, [2, 2, 1], [1, 0, 0])
    (got, _cycles), = run([b])
    assert got == expected(*b)[0]
    # k 2 with shifted tiles: only cell 0 wins both grids; aligned only: one a tile; k 1: all.
    assert sorted((ln, i) for ln, _, _, _, i in got) == [(0, 0), (1, 0), (1, 2), (1, 8), (1, 10)] + [
        (2, i) for i in range(16)]


def test_a_whole_instructions_spatial_stage_equals_the_model():
    """Every block of one NMS instruction (two levels, three classes, recovery patches
    applied) through the RTL: the model's spatial survivors in its order, each block in
    ``spatial_cycles``."""
    rng = np.random.default_rng(4)
    sp = head([(8, 7, 8, [[16, 16], [24, 12]]), (16, 4, 4, [[32, 32]])], 3)
    codes, exps = outputs(sp, "random", 1, rng)
    d = decode(sp, codes, exps)
    low = min(exps[lv.scores.output] for lv in sp.levels)
    dram, params, patches, end = core_setup(d, [exps[lv.scores.output] - low for lv in sp.levels], 0.05, 1.0,
                                            1.0, tn=4, lanes=CORE.lanes)
    params.check(CORE)
    assert len(patches) > 0
    res = execute(dram.copy(), params, CORE, patches, end, tn=4)
    blocks = list(stream_blocks(dram, params, CORE.lanes, patches, 4))
    got = []
    for (survivors, cycles), (li, b0, *_), decided in zip(run([b[2:] for b in blocks]), blocks, res.decided):
        assert cycles == spatial_cycles(decided)
        for lane, y, x, key, index in survivors:
            p = b0 + lane
            got.append((index, key, p % params.classes, params.first_channel(li) + p // params.classes, y, x))
    assert len(got) > 10
    assert got == [tuple(int(v) for v in r) for r in res.spatial]


def test_refuses_a_width_that_is_not_a_power_of_two():
    with pytest.raises(ShiftflowError, match="max_width must be a power of two"):
        NmsSpatial(NmsCore(lanes=2, max_width=12))
