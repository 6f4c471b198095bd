# amaranth: UnusedElaboratable=no
"""hw/nms_front.py (``NmsCells``: the front end's cell former) in amaranth.sim against the
functional model: fed each block's plane bytes straight from the DRAM of a hypothesis-drawn
NMS instruction (1-, 2- and 4-byte codes, shifted levels) and the instruction's patch list, it
gives exactly ``sim.nms_core.stream_blocks``' cells (valid, and key and box index of every
valid cell), also with random stalls on every stream."""

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shiftflow.hw.nms_front import NmsCells
from shiftflow.ir.nms import NmsCore
from shiftflow.sim.nms_core import stream_blocks

from tests.hw.streams import get, put, simulate
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
