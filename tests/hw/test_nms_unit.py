# amaranth: UnusedElaboratable=no
"""hw/nms_unit.py (``NmsBack``: spatial stage, glue, pyramid stage, list writer) in
amaranth.sim against the functional model: fed the model's front-end stream of a whole
hypothesis-drawn NMS instruction (every block of every level, patches applied), it writes
exactly the survivor list ``sim.nms_core.execute`` writes — header and entries, byte for
byte — also with a short list (FLAG_LIST_FULL), an overflowing survivor buffer
(FLAG_SPATIAL_FULL), no survivors, a stalling writer, and an instruction after an
overflowing one."""

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shiftflow.hw.nms_unit import NmsBack
from shiftflow.ir.nms import (
    FLAG_LIST_FULL,
    FLAG_SPATIAL_FULL,
    NmsCore,
    NmsError,
    slot_table,
)
from shiftflow.sim.nms_core import execute, stream_blocks

from tests.hw.streams import simulate
from tests.hw.test_nms_pyramid import load_slots
from tests.sim.test_nms_core import all_equal_scene, run_scene, scenes


def core_for(lanes: int, survivors: int = 64, write_reg: bool = False) -> NmsCore:
    """A small core; ``write_reg`` also gives the spatial stage's shifted grid its own input
    register (``NmsSpatial``'s ``grid_copy``)."""
    return NmsCore(lanes=lanes, max_width=16, survivors=survivors, max_channels=8, partners=5, write_reg=write_reg)


def run_rtl(core: NmsCore, dram, params, patches, tn, out_addr, stall=0.0):
    """The list ``NmsBack`` writes, as {byte address: 16 bytes}, for the instruction's blocks."""
    return run_rtl_jobs(core, [(dram, params, patches, out_addr)], tn, stall)[0]


def run_rtl_jobs(core: NmsCore, jobs, tn, stall=0.0):
    """``run_rtl`` of instructions ``(dram, params, patches, out_addr)`` run one after the other
    on one ``NmsBack``: each one's writes."""
    dut = NmsBack(core)
    rng = random.Random(7)
    out = []

    async def bench(ctx):
        for dram, params, patches, out_addr in jobs:
            writes = {}
            await load_slots(ctx, dut, slot_table(params, core))
            ctx.set(dut.out_addr, out_addr)
            ctx.set(dut.capacity, params.capacity)
            for li, b0, valid, key, index, ks, ss in stream_blocks(dram, params, core.lanes, patches, tn):
                h, w = key.shape[:2]
                first, nch = params.first_channel(li), params.levels[li].anchors * params.classes
                p = [b0 + lane for lane in range(core.lanes)]
                await ctx.tick().until(~dut.block_busy)
                for name, v in (("height", h), ("width", w), ("kernel", ks), ("shift", ss),
                                ("chan", [first + q // params.classes if q < nch else 0 for q in p]),
                                ("cls", [q % params.classes for q in p])):
                    ctx.set(getattr(dut, name), v)
                ctx.set(dut.block_start, 1)
                await ctx.tick()
                ctx.set(dut.block_start, 0)
                for y in range(h):
                    for x in range(w):
                        ctx.set(dut.i.valid, 1)
                        ctx.set(dut.i.payload, [{"valid": int(valid[y, x, lane]), "key": int(key[y, x, lane]),
                                                 "index": int(index[y, x, lane])} for lane in range(core.lanes)])
                        await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
            await finish_and_collect(ctx, dut, writes, rng, stall)
            out.append(writes)

    simulate(dut, bench, deadline=200_000 * len(jobs))
    return out


async def finish_and_collect(ctx, back, writes: dict, rng: random.Random, stall: float) -> None:
    """After the last block: ``finish`` to ``back`` (an ``NmsBack``), then its list's writes
    into ``writes`` ({byte address: 16 bytes}), the writer stalled with probability ``stall``."""
    await ctx.tick().until(~back.block_busy)
    ctx.set(back.finish, 1)
    await ctx.tick()
    ctx.set(back.finish, 0)
    while True:
        ready = rng.random() >= stall
        ctx.set(back.w.ready, ready)
        _, _, valid, payload, done = await ctx.tick().sample(back.w.valid, back.w.payload, back.done)
        if ready and valid:
            writes[int(payload.addr)] = int(payload.data).to_bytes(16, "little")
        if done:
            break


def check(core, dram, params, patches, tn, stall=0.0):
    out = -(-dram.size // 2)  # the list's place, past the maps
    model = dram.copy()
    res = execute(model, params, core, patches, out, tn)
    writes = run_rtl(core, dram, params, patches, tn, out, stall)
    n = 0 if res.flags & FLAG_SPATIAL_FULL else min(res.count, params.capacity)
    want = {out + 16 * k: model[out + 16 * k:out + 16 * (k + 1)].tobytes() for k in range(n + 1)}
    assert writes == want
    return res


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes(), st.booleans())
def test_the_list_equals_the_model(sc, write_reg):
    _, dram, params, patches, _, _ = run_scene(sc, capacity=60)
    core = core_for(sc["lanes"], write_reg=write_reg)
    try:
        slot_table(params, core)
        params.check(core)
    except NmsError:
        assume(False)
    res = check(core, dram, params, patches, sc["tn"])
    assume(res.flags == 0)


@pytest.mark.parametrize("write_reg", [False, True], ids=["write", "write_reg"])
@pytest.mark.parametrize("capacity, survivors, flag", [(3, 64, FLAG_LIST_FULL), (60, 5, FLAG_SPATIAL_FULL)])
def test_flags_and_short_lists(capacity, survivors, flag, write_reg):
    sc = all_equal_scene(maps="random", seed=5)
    _, dram, params, patches, _, _ = run_scene(sc, capacity=capacity)
    res = check(core_for(sc["lanes"], survivors, write_reg), dram, params, patches, sc["tn"], stall=0.3)
    assert res.flags == flag and res.count >= (4 if flag == FLAG_LIST_FULL else 0)


def test_no_survivors_writes_only_the_header():
    sc = all_equal_scene(maps="empty")
    _, dram, params, patches, _, _ = run_scene(sc)
    res = check(core_for(sc["lanes"]), dram, params, patches, sc["tn"])
    assert res.count == 0 and res.flags == 0


def test_a_list_after_an_overflowing_one_equals_the_model():
    """The pyramid's buffer is emptied after an instruction that flagged FLAG_SPATIAL_FULL
    (its survivors buffered but never run): the next instruction's list is the model's."""
    sa, sb = all_equal_scene(maps="equal"), all_equal_scene(maps="random", seed=5)
    _, dram_a, params_a, patches_a, _, res_a = run_scene(sa)
    _, dram_b, params_b, patches_b, _, res_b = run_scene(sb)
    core = core_for(sa["lanes"], len(res_b.spatial))
    assert len(res_a.spatial) > core.survivors >= 1
    jobs, want = [], []
    for dram, params, patches in ((dram_a, params_a, patches_a), (dram_b, params_b, patches_b)):
        out = -(-dram.size // 2)
        model = dram.copy()
        res = execute(model, params, core, patches, out, sa["tn"])
        n = 0 if res.flags & FLAG_SPATIAL_FULL else min(res.count, params.capacity)
        want.append({out + 16 * k: model[out + 16 * k:out + 16 * (k + 1)].tobytes() for k in range(n + 1)})
        jobs.append((dram, params, patches, out))
    assert run_rtl_jobs(core, jobs, sa["tn"]) == want
