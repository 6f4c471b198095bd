# amaranth: UnusedElaboratable=no
"""hw/nms_dma.py (``NmsUnit``: the NMS instruction's executor, its DMA front end around
``NmsCells`` + ``NmsBack``) in amaranth.sim against the simulator: an NMS instruction word
on ``instr``, the parameter table, patch list and score maps in a DRAM model behind ``mem``
(tests/hw/memmodel.py, the target's latency). The DRAM after ``done`` equals the functional
model's (``sim.nms_core.run_instruction``) byte for byte, and ``done`` comes exactly
``ir.nms.nms_cycles`` after the instruction was taken; with random stalls on every channel,
the same bytes and no hang. Hypothesis-drawn instructions, all-equal, empty and crowded maps,
full survivor lists, a patch count over the instruction's ``patches`` and illegal patch lists."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shiftflow.hw.nms_dma import NmsUnit
from shiftflow.ir.config import TINY
from shiftflow.ir.isa import Opcode
from shiftflow.ir.nms import FLAG_BAD_PATCH, FLAG_LIST_FULL, NmsError, core_of, encode_table, slot_table
from shiftflow.sim.nms_core import run_instruction, write_patches

from tests.hw.memmodel import Dram
from tests.hw.streams import simulate
from tests.sim.test_nms_core import all_equal_scene, run_scene, scenes

CFG = TINY


def setup(sc, cfg=CFG, capacity=60, patched=None):
    """DRAM (uint8) with the scene's maps, parameter table and patch list (``patched``
    replaces the list), and the instruction's fields."""
    core = core_of(cfg)
    _, dram, params, patches, end, _ = run_scene(dict(sc, tn=cfg.tn, lanes=core.lanes), capacity=capacity, core=core)
    try:
        slot_table(params, core)
    except NmsError:
        assume(False)  # more partners than the core's slots: the loader refuses it
    if patched is not None:
        patches = patched(patches, params)
    if len(patches) > core.patches:
        assume(False)
    table = encode_table(params)
    at = -(-end // 64) * 64
    pat = at + -(-len(table) // 64) * 64
    out = pat + 16 * (1 + len(patches)) + 64
    size = out + 16 * (1 + capacity) + 64
    mem = np.zeros(size, np.uint8)
    mem[:end] = dram[:end]
    mem[at:at + len(table)] = np.frombuffer(table, np.uint8)
    write_patches(mem, pat, patches)
    fields = {"table_addr": at, "levels": len(params.levels), "channels": params.channels,
              "classes": params.classes, "planes": params.planes.bit_length() - 1, "thr": params.thr,
              "patch_addr": pat, "patches": len(patches), "out_addr": out, "capacity": capacity}
    return mem, fields


def run_unit(cfg, mem, fields, stall=0.0, seed=0, deadline=300_000):
    """The DRAM after the unit ran the instruction, and its cycles from accept to ``done``."""
    dut = NmsUnit(cfg)
    dram = Dram(dut.mem, cfg.dram_bytes_per_cycle, latency=cfg.dram_latency, stall=stall, seed=seed)
    dram.write(0, mem.tobytes())
    got = {}

    async def bench(ctx):
        ctx.set(dut.instr.valid, 1)
        ctx.set(dut.instr.payload, {"header": {"opcode": Opcode.NMS}, "body": {"nms": fields}})
        cycle, start = 0, None
        while True:
            _, _, ready, done = await ctx.tick().sample(dut.instr.ready, dut.done)
            if start is None and ready:
                start = cycle
                ctx.set(dut.instr.valid, 0)
            elif start is not None and done:
                got["cycles"] = cycle - start
                break
            cycle += 1

    simulate(dut, bench, background=(dram.run,), deadline=deadline)
    return np.frombuffer(dram.read(0, mem.size), np.uint8), got["cycles"]


def check(sc, cfg=CFG, stall=0.0, capacity=60, patched=None, fields_of=None):
    mem, fields = setup(sc, cfg, capacity, patched)
    if fields_of:
        fields = fields_of(fields)
    model = mem.copy()
    res = run_instruction(model, fields, core_of(cfg), cfg)
    after, cycles = run_unit(cfg, mem, fields, stall)
    np.testing.assert_array_equal(after, model)
    if not stall and not res.flags & FLAG_BAD_PATCH:
        assert cycles == res.cycles
    return res


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes())
def test_the_unit_equals_the_model(sc):
    check(sc)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenes(), st.integers(0, 2**16))
def test_random_stalls_on_every_channel(sc, seed):
    mem, fields = setup(sc)
    model = mem.copy()
    run_instruction(model, fields, core_of(CFG), CFG)
    np.testing.assert_array_equal(run_unit(CFG, mem, fields, stall=0.3, seed=seed)[0], model)


@pytest.mark.parametrize(("maps", "planes"), [("equal", 1), ("empty", 2), ("random", 2)])
def test_all_equal_empty_and_crowded_maps(maps, planes):
    check(all_equal_scene(maps=maps, planes=planes, seed=5))


def test_a_full_survivor_list():
    res = check(all_equal_scene(maps="random", seed=11), capacity=2)
    assert res.flags == FLAG_LIST_FULL and res.count > 2


@pytest.mark.parametrize("lanes", [1, 4])
def test_other_lane_counts(lanes):
    check(all_equal_scene(maps="random", seed=11, planes=2), dataclasses.replace(CFG, nms_lanes=lanes))


def test_a_patch_count_over_the_instruction_is_flagged():
    res = check(all_equal_scene(maps="random", seed=11), fields_of=lambda f: dict(f, patches=f["patches"] - 1))
    assert res.flags == FLAG_BAD_PATCH and res.count == 0


@pytest.mark.parametrize("bad", ["reversed", "past_map"])
def test_an_illegal_patch_list_is_flagged_without_a_hang(bad):
    def wrong(patches, params):
        last = patches[-1:].copy()
        if bad == "past_map":
            last["x"] += params.levels[int(last["level"][0])].width
        return {"reversed": patches[::-1], "duplicate": np.concatenate([patches, patches[-1:]]),
                "past_map": np.concatenate([patches, last])}[bad]
    res = check(all_equal_scene(maps="random", seed=11), patched=wrong)
    assert res.flags == FLAG_BAD_PATCH
