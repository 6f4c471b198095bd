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
from shiftflow.ir.nms import (
    FLAG_BAD_PATCH,
    FLAG_BAD_TABLE,
    FLAG_LIST_FULL,
    LEVEL_DTYPE,
    NmsError,
    core_of,
    encode_table,
    slot_table,
)
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


def run_unit(cfg, mem, fields, stall=0.0, seed=0, deadline=300_000, stray_before=0):
    """The DRAM after the unit ran the instruction, and its cycles from accept to ``done``.
    ``stray_before``: cycles of read beats nobody asked for (``Dram.stray``) while the unit
    is idle, before the instruction is offered."""
    dut = NmsUnit(cfg)
    dram = Dram(dut.mem, cfg.dram_bytes_per_cycle, latency=cfg.dram_latency, stall=stall, seed=seed)
    dram.write(0, mem.tobytes())
    got = {}

    async def bench(ctx):
        if stray_before:
            dram.stray = True
            await ctx.tick().repeat(stray_before)
            dram.stray = False
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
    if not stall:
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


def test_read_beats_it_did_not_ask_for_are_ignored_while_idle():
    """The top's data-port multiplexer does not gate the NMS unit's read valid (hw/top.py
    ``MemMux``, ``b_gates_reads``): the loads' beats reach the idle unit, which must ignore
    them. Junk beats for 40 cycles before the instruction; then the same bytes and cycles."""
    sc = all_equal_scene()
    mem, fields = setup(sc)
    model = mem.copy()
    res = run_instruction(model, fields, core_of(CFG), CFG)
    after, cycles = run_unit(CFG, mem, fields, stray_before=40)
    np.testing.assert_array_equal(after, model)
    assert cycles == res.cycles


def test_a_full_survivor_list():
    res = check(all_equal_scene(maps="random", seed=11), capacity=2)
    assert res.flags == FLAG_LIST_FULL and res.count > 2


@pytest.mark.parametrize("lanes", [2, 4])
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


ILLEGAL = ["shuffled", "swapped", "duplicate", "past_map", "inactive_lane", "bad_level"]


@pytest.mark.parametrize("kind", ILLEGAL)
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(sc=scenes(), rnd=st.randoms(use_true_random=False))
def test_an_illegal_patch_list_in_the_models_bytes_and_cycles(kind, sc, rnd):
    """An illegal patch list (hypothesis: shuffled, two swapped, a duplicate, a patch outside
    its map, on an inactive lane or of a level past the last): the model's flag and bytes,
    and its cycles (the cell former merges the list up to its first patch that cannot merge:
    ``sim.nms_core.merged_patches``)."""
    def wrong(patches, params):
        assume(len(patches) >= 2)
        p, i, j = patches.copy(), rnd.randrange(len(patches)), rnd.randrange(len(patches))
        lv = params.levels[int(p["level"][i])]
        if kind == "shuffled":
            rnd.shuffle(p)
        elif kind == "swapped":
            p[i], p[j] = patches[j], patches[i]
        elif kind == "duplicate":
            p = np.insert(p, i, p[i])
        elif kind == "past_map":
            p["x"][i] += lv.width
        elif kind == "inactive_lane":  # (on two lanes: one lane has none inactive)
            lanes, nch = core_of(cfg).lanes, lv.anchors * params.classes
            assume(nch % lanes)
            p["channel"][i] = -(-nch // lanes) * lanes - 1
        else:
            p["level"][i] = len(params.levels) + rnd.randrange(3)
        return p
    cfg = dataclasses.replace(CFG, nms_lanes=2) if kind == "inactive_lane" else CFG
    res = check(sc, cfg, patched=wrong)
    assert kind in ("shuffled", "swapped") or res.flags == FLAG_BAD_PATCH


# --- fields and parameter tables the core cannot run, written past the loader ----------

def _level_at(fields, i, name):
    """The DRAM byte offset of level ``i``'s field ``name`` in the table, and its size."""
    return fields["table_addr"] + 32 * i + LEVEL_DTYPE.fields[name][1], LEVEL_DTYPE[name].itemsize


def _poke(mem, at, size, value):
    mem[at:at + size] = np.frombuffer(int(value).to_bytes(size, "little"), np.uint8)


def _malformed(mem, fields, kind, pick, core):
    """Apply a malformation ``kind`` to the instruction (``fields``, returned) or its table in
    ``mem`` (in place); ``pick(k)`` draws an int below ``k`` (which level, channel...)."""
    levels, n = fields["levels"], fields["channels"]
    ch_at = fields["table_addr"] + 32 * levels
    pair_at = ch_at + -(-2 * n // 16) * 16
    lv, c, a, b = pick(levels), pick(n), pick(n), pick(n)
    entry = lambda i, name: int.from_bytes(mem[slice(*(lambda at, k: (at, at + k))(*_level_at(fields, i, name)))],
                                           "little")
    poke_level = lambda name, v, i=lv: _poke(mem, *_level_at(fields, i, name), v)
    first = [sum(entry(i, "anchors") for i in range(j)) for j in range(levels + 1)]
    if kind in ("levels", "channels", "classes", "planes", "patches", "capacity"):
        return dict(fields, **{kind: {"levels": 0, "channels": core.max_channels + 1, "classes": 0, "planes": 3,
                                      "patches": core.patches + 1, "capacity": core.survivors + 1}[kind]})
    if kind == "kernel_over_core":
        mem[ch_at + 2 * c] = core.max_kernel + 1 + pick(200)
    elif kind == "kernel_over_map":  # every kernel 2 (shift 0), one level's map one row high
        mem[ch_at:ch_at + 2 * n] = np.tile(np.array([2, 0], np.uint8), n)
        poke_level("height", 1)
    elif kind == "kernel_zero":
        mem[ch_at + 2 * c] = 0
    elif kind == "shift_over_kernel":
        mem[ch_at + 2 * c + 1] = mem[ch_at + 2 * c] + pick(3)
    elif kind == "wide_map":
        poke_level("width", core.max_width + 1 + pick(100))
    elif kind == "no_anchor":
        poke_level("anchors", 0)
    elif kind == "anchors_sum":
        poke_level("anchors", entry(lv, "anchors") + 1 + pick(3))
    elif kind == "no_stride":
        poke_level("stride", 0)
    elif kind == "key_edge":  # whole codes shifted to fill the keys exactly: runs
        poke_level("shift", core.key_bits - 8 * (1 << fields["planes"]))
        poke_level("bits", 0)
    elif kind == "key_bits":
        poke_level("shift", core.key_bits - 7 + pick(40))
        poke_level("bits", 8 + pick(30))
    elif kind in ("index_bits", "index_edge"):  # start + H·W·A just over 2**index_bits, or exactly it
        boxes = entry(lv, "height") * entry(lv, "width") * entry(lv, "anchors")
        poke_level("start", (1 << core.index_bits) - boxes + (1 + pick(3) if kind == "index_bits" else 0))
    elif kind == "index_start":  # a start past 2**index_bits
        poke_level("start", (1 << (core.index_bits + pick(16))) + pick(1000))
    elif kind == "pair_asymmetric":  # one direction of a pair only (the loader's rule): runs as the model
        assume(a != b)
        mem[pair_at + 2 * (a * n + b)], mem[pair_at + 2 * (a * n + b) + 1] = 1 + pick(3), 0
    elif kind == "pair_diagonal":
        mem[pair_at + 2 * (a * n + a)] = 1 + pick(3)
    elif kind == "pair_kernel":
        mem[pair_at + 2 * (a * n + b)] = 16 + pick(240)
    elif kind == "pair_shift":
        mem[pair_at + 2 * (a * n + b)], mem[pair_at + 2 * (a * n + b) + 1] = 2, 2 + pick(10)
    elif kind == "pair_stride":  # channels of levels 0 and 1 compete at a ratio 3 or >= 256
        assume(levels >= 2)
        a, b = first[0] + pick(first[1]), first[1] + pick(first[2] - first[1])
        mem[pair_at + 2 * (a * n + b)] = mem[pair_at + 2 * (b * n + a)] = 2
        poke_level("stride", entry(0, "stride") * (3 if pick(2) else 256 << pick(4)), 1)
    elif kind == "partners":  # (run on a core with one partner slot)
        assume(n >= 3)
        for j in range(n):
            mem[pair_at + 2 * (a * n + j)] = 0 if j == a else 1 + pick(4)
    elif kind == "byte":
        mem[fields["table_addr"] + pick(pair_at + 2 * n * n - fields["table_addr"])] = pick(256)
    return fields


MALFORMED = ["levels", "channels", "classes", "planes", "patches", "capacity", "kernel_over_core",
             "kernel_over_map", "kernel_zero", "shift_over_kernel", "wide_map", "no_anchor", "anchors_sum",
             "no_stride", "key_bits", "index_bits", "index_start", "pair_diagonal", "pair_kernel", "pair_shift",
             "pair_stride", "partners", "index_edge", "key_edge", "pair_asymmetric", "byte"]


@pytest.mark.parametrize("kind", MALFORMED)
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(sc=scenes(), rnd=st.randoms(use_true_random=False))
def test_a_malformed_table_is_flagged_in_the_models_bytes_and_cycles(kind, sc, rnd):
    """Fields or a parameter table the core cannot run (each of what ``field_fault`` and
    ``NmsParams.fault`` refuse, or a random byte), written past the loader: the unit writes
    the model's header (count 0, FLAG_BAD_TABLE; or, for a random byte or a one-way pair that
    leave a table it can run, and at the limits of the box indices and keys, the model's
    list), ``done`` in exactly the model's cycles, no hang."""
    cfg = dataclasses.replace(CFG, nms_partners=1) if kind == "partners" else CFG
    core = core_of(cfg)
    mem, fields = setup(sc)
    fields = _malformed(mem, fields, kind, lambda k: rnd.randrange(max(k, 1)), core)
    model = mem.copy()
    try:
        res = run_instruction(model, fields, core, cfg)
    except NmsError:
        assume(False)  # a random byte moved a map outside the DRAM
    if kind not in ("byte", "index_edge", "key_edge", "pair_asymmetric"):
        assert res.flags == FLAG_BAD_TABLE and res.count == 0 and res.fault, kind
    elif kind in ("index_edge", "key_edge"):
        assert not res.flags & FLAG_BAD_TABLE, res.fault
    after, cycles = run_unit(cfg, mem, fields)
    np.testing.assert_array_equal(after, model)
    if not res.flags & FLAG_BAD_PATCH:
        assert cycles == res.cycles
