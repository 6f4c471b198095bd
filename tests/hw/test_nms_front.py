# amaranth: UnusedElaboratable=no
"""hw/nms_front.py (``NmsCells``: the front end's cell former) in amaranth.sim against the
functional model: fed each block's plane bytes straight from the DRAM of a hypothesis-drawn
NMS instruction (1-, 2- and 4-byte codes, shifted levels) and the instruction's patch list, it
gives exactly ``sim.nms_core.stream_blocks``' cells (valid, and key and box index of every
valid cell), also with random stalls on every stream; feeding ``NmsBack`` (hw/nms_unit.py),
the two write the model's survivor list byte for byte from the DRAM's bytes."""

import random

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shiftflow.hw.nms_front import NmsCells
from shiftflow.hw.nms_unit import NmsBack
from shiftflow.ir.nms import FLAG_BAD_PATCH, FLAG_SPATIAL_FULL, NmsCore, NmsError, slot_table
from shiftflow.sim.nms_core import execute, stream_blocks

from tests.hw.streams import get, put, simulate
from tests.hw.test_nms_pyramid import load_slots
from tests.hw.test_nms_unit import finish_and_collect
from tests.sim.test_nms_core import all_equal_scene, run_scene, scenes


def plane_words(dram, params, li, b0, lanes, tn):
    """The block's ``i`` words: per position, per plane, its lanes' bytes (0 past the map)."""
    lv = params.levels[li]
    nch = lv.anchors * params.classes
    nblk = lv.blocks or -(-nch // tn)
    words = []
    for y in range(lv.height):
        for x in range(lv.width):
            for k in range(params.planes):
                w = 0
                for lane in range(lanes):
                    p = b0 + lane
                    if p < nch:
                        at = lv.dram_addr + (k * nblk + p // tn) * lv.blk_stride + y * lv.row_stride + x * tn + p % tn
                        w |= int(dram[at]) << (8 * lane)
                words.append(w)
    return words


def check(sc, stall, patched=True):
    _, dram, params, patches, _, _ = run_scene(sc)
    if not patched:  # most candidates move on these maps: without patches the raw codes pass
        patches = patches[:0]
    lanes, tn = sc["lanes"], sc["tn"]
    core = NmsCore(lanes=lanes, max_width=16)
    dut = NmsCells(core)
    blocks = list(stream_blocks(dram, params, lanes, patches, tn))
    got = []
    rng = random.Random(3)
    recs = [{n: int(r[n]) for n in patches.dtype.names} for r in patches]

    async def feed(ctx):
        await put(ctx, dut.p, recs, stall=stall, rng=random.Random(5))
        ctx.set(dut.p_end, 1)

    async def bench(ctx):
        for li, b0, valid, key, index, _ks, _ss in blocks:
            lv = params.levels[li]
            nch = lv.anchors * params.classes
            for name, v in (("level", li), ("planes_log2", params.planes.bit_length() - 1), ("shift", lv.shift),
                            ("start", lv.start), ("anchors", lv.anchors), ("thr", params.thr),
                            ("width", lv.width), ("b0", b0),
                            ("anchor", [(b0 + q) // params.classes if b0 + q < nch else 0 for q in range(lanes)]),
                            ("active", sum(1 << q for q in range(lanes) if b0 + q < nch))):
                ctx.set(getattr(dut, name), v)
            ctx.set(dut.block_start, 1)
            await ctx.tick()
            ctx.set(dut.block_start, 0)
            words = plane_words(dram, params, li, b0, lanes, tn)

            n = lv.height * lv.width
            # Send and receive interleaved: one position's words, then its cell.
            out = []
            per = params.planes
            for pos in range(n):
                await put(ctx, dut.i, words[pos * per:(pos + 1) * per], stall=stall, rng=rng)
                out += await get(ctx, dut.o, 1, stall=stall, rng=rng)
            got.append((valid, key, index, out))

    simulate(dut, bench, background=(feed,), deadline=200_000)
    for valid, key, index, out in got:
        h, w = key.shape[:2]
        gv = np.array([[c["valid"] for c in cell] for cell in out]).reshape(h, w, lanes).astype(bool)
        gk = np.array([[c["key"] for c in cell] for cell in out]).reshape(h, w, lanes)
        gi = np.array([[c["index"] for c in cell] for cell in out]).reshape(h, w, lanes)
        np.testing.assert_array_equal(gv, valid)
        np.testing.assert_array_equal(gk[valid], key[valid])
        np.testing.assert_array_equal(gi[valid], index[valid])


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes(), st.sampled_from([0.0, 0.3]), st.booleans())
def test_cells_equal_the_model(sc, stall, patched):
    check(sc, stall, patched)


@pytest.mark.parametrize("planes", [2, 4])
@pytest.mark.parametrize("patched", [True, False])
def test_wide_codes_with_stalls(planes, patched):
    sc = all_equal_scene(maps="random", seed=11, planes=planes)
    check(sc, 0.3, patched)


class _CellsBack(Elaboratable):
    """``NmsCells`` feeding ``NmsBack``: the core from plane words to the survivor list."""

    def __init__(self, core):
        self.cells, self.back = NmsCells(core), NmsBack(core)

    def elaborate(self, platform):
        m = Module()
        m.submodules.cells, m.submodules.back = self.cells, self.back
        wiring.connect(m, self.cells.o, self.back.i)
        m.d.comb += self.back.bad.eq(self.cells.bad)
        return m


def run_pair(core, dram, params, patches, tn, out_addr, stall):
    """The list that ``NmsCells`` + ``NmsBack`` write, as {byte address: 16 bytes}, fed each
    block's plane words straight from DRAM and the patch list."""
    top = _CellsBack(core)
    cells, back = top.cells, top.back
    rng = random.Random(9)
    recs = [{n: int(r[n]) for n in patches.dtype.names} for r in patches]
    writes = {}

    async def feed(ctx):
        # Not ``put``: an illegal list is never consumed whole, so this waits forever (no
        # ``until`` left suspended at the end of the simulation).
        frng = random.Random(5)
        for r in recs:
            while frng.random() < stall:
                await ctx.tick()
            ctx.set(cells.p.valid, 1)
            ctx.set(cells.p.payload, r)
            while not (await ctx.tick().sample(cells.p.ready))[2]:
                pass
            ctx.set(cells.p.valid, 0)
        ctx.set(cells.p_end, 1)

    async def bench(ctx):
        await load_slots(ctx, back, slot_table(params, core))
        ctx.set(back.out_addr, out_addr)
        ctx.set(back.capacity, params.capacity)
        for li, lv in enumerate(params.levels):
            nch = lv.anchors * params.classes
            first = params.first_channel(li)
            for b0 in range(0, nch, core.lanes):
                p = [b0 + q for q in range(core.lanes)]
                chan = [first + q // params.classes if q < nch else -1 for q in p]
                await ctx.tick().until(~back.block_busy)
                for name, v in (("level", li), ("planes_log2", params.planes.bit_length() - 1),
                                ("shift", lv.shift), ("start", lv.start), ("anchors", lv.anchors),
                                ("thr", params.thr), ("width", lv.width), ("b0", b0),
                                ("anchor", [q // params.classes if q < nch else 0 for q in p]),
                                ("active", sum(1 << q for q in range(core.lanes) if p[q] < nch))):
                    ctx.set(getattr(cells, name), v)
                for name, v in (("height", lv.height), ("width", lv.width),
                                ("kernel", [params.kernels[j] if j >= 0 else 1 for j in chan]),
                                ("shift", [params.shifts[j] if j >= 0 else 0 for j in chan]),
                                ("chan", [max(j, 0) for j in chan]), ("cls", [q % params.classes for q in p])):
                    ctx.set(getattr(back, name), v)
                ctx.set(cells.block_start, 1)
                ctx.set(back.block_start, 1)
                await ctx.tick()
                ctx.set(cells.block_start, 0)
                ctx.set(back.block_start, 0)
                await put(ctx, cells.i, plane_words(dram, params, li, b0, core.lanes, tn), stall=stall, rng=rng)
        await finish_and_collect(ctx, back, writes, rng, stall)

    simulate(top, bench, background=(feed,), deadline=400_000)
    return writes


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes(), st.sampled_from([0.0, 0.3]))
def test_cells_and_back_write_the_models_list(sc, stall):
    check_pair(sc, stall)


@pytest.mark.parametrize("planes", [1, 2])
def test_cells_and_back_on_a_crowded_map(planes):
    res, patches = check_pair(all_equal_scene(maps="random", seed=11, planes=planes), 0.3)
    assert res.count > 3 and len(patches) > 3


def check_pair(sc, stall):
    _, dram, params, patches, _, _ = run_scene(sc, capacity=60)
    core = NmsCore(lanes=sc["lanes"], max_width=16, survivors=64, max_channels=8, partners=5)
    try:
        slot_table(params, core)
    except NmsError:
        assume(False)
    out = -(-dram.size // 2)
    model = dram.copy()
    res = execute(model, params, core, patches, out, sc["tn"])
    n = 0 if res.flags & (FLAG_SPATIAL_FULL | FLAG_BAD_PATCH) else min(res.count, params.capacity)
    want = {out + 16 * k: model[out + 16 * k:out + 16 * (k + 1)].tobytes() for k in range(n + 1)}
    assert run_pair(core, dram, params, patches, sc["tn"], out, stall) == want
    return res, patches


def _moved(patches, field, by):
    patches = patches.copy()
    patches[field] += by
    return patches


@pytest.mark.parametrize("bad", ["reversed", "duplicate", "past_map", "past_channels", "past_levels"])
def test_an_illegal_patch_list_is_flagged(bad):
    """Out of order, repeated, or outside the maps: the header says FLAG_BAD_PATCH, count 0,
    and no entry is written (as the model), and the core does not hang."""
    sc = all_equal_scene(maps="random", seed=11)
    _, dram, params, patches, _, _ = run_scene(sc, capacity=60)
    last = patches[-1:]
    lv = params.levels[int(last["level"][0])]
    wrong = {"reversed": patches[::-1], "duplicate": np.concatenate([patches, last]),
             "past_map": np.concatenate([patches, _moved(last, "x", lv.width)]),
             "past_channels": np.concatenate([patches, _moved(last, "channel", lv.anchors * params.classes)]),
             "past_levels": np.concatenate([patches, _moved(last, "level", len(params.levels))])}[bad]
    core = NmsCore(lanes=sc["lanes"], max_width=16, survivors=64, max_channels=8, partners=5)
    out = -(-dram.size // 2)
    model = dram.copy()
    res = execute(model, params, core, wrong, out, sc["tn"])
    assert res.flags == FLAG_BAD_PATCH and res.count == 0
    assert run_pair(core, dram, params, wrong, sc["tn"], out, 0.2) == {out: model[out:out + 16].tobytes()}
