"""The NMS instruction's functional model (sim/nms_core.py) against the software
PSRR-MaxpoolNMS on integer codes (runtime/nms_pool.py): the same survivors in the same order
once the CPU orders them, over hypothesis-drawn maps, kernels, ties, all-equal and empty maps,
wide codes, full survivor lists; the activation-layout reader; the refusals and flags."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.isa import Opcode, encode, to_dict
from shiftflow.ir.nms import (
    FLAG_BAD_PATCH,
    FLAG_BAD_TABLE,
    FLAG_LIST_FULL,
    FLAG_SPATIAL_FULL,
    NmsCore,
    NmsError,
    decode_table,
    encode_table,
    fault_cycles,
    field_rules,
    nms_cycles,
    pyramid_cycles,
    spatial_cycles,
)
from shiftflow.runtime.decode import decode
from shiftflow.runtime.nms_core import to_detections
from shiftflow.runtime.nms_pool import psrr_nms
from shiftflow.sim.nms_core import (
    execute,
    read_list,
    read_scores,
    run_instruction,
    write_patches,
)

from .nms_host import core_setup, head, outputs, write_scores

SIZES = (1.0, 1.5, 2.0, 3.0)


@st.composite
def scenes(draw):
    levels = []
    for li in range(draw(st.integers(1, 2))):
        stride = 8 << li
        anchors = [[stride * draw(st.sampled_from(SIZES)), stride * draw(st.sampled_from(SIZES))]
                   for _ in range(draw(st.integers(1, 3)))]
        levels.append((stride, draw(st.integers(2, 7)), draw(st.integers(2, 7)), anchors))
    return dict(levels=levels, classes=draw(st.integers(1, 3)), tn=draw(st.sampled_from([2, 4, 8])),
                lanes=draw(st.sampled_from([1, 2, 4, 8])),
                alpha=draw(st.sampled_from([0.5, 0.75, 1.0])), reach=draw(st.sampled_from([1.0, 0.5, 2.0, None])),
                shifted=draw(st.booleans()), planes=draw(st.sampled_from([1, 2])),
                maps=draw(st.sampled_from(["random", "ties", "equal", "empty"])),
                threshold=draw(st.sampled_from([0.05, 0.3, 0.6])), seed=draw(st.integers(0, 2**31)))


def run_scene(sc, capacity=4000, core=None):
    rng = np.random.default_rng(sc["seed"])
    sp = head(sc["levels"], sc["classes"])
    codes, exps = outputs(sp, sc["maps"], sc["planes"], rng)
    d = decode(sp, codes, exps)
    low = min(exps[lv.scores.output] for lv in sp.levels)
    shifts = [exps[lv.scores.output] - low for lv in sp.levels]
    dram, params, patches, end = core_setup(d, shifts, sc["threshold"], sc["alpha"], sc["reach"],
                                            shifted=sc["shifted"], planes=sc["planes"], tn=sc["tn"],
                                            lanes=sc["lanes"], capacity=capacity)
    core = core or NmsCore(lanes=sc["lanes"], max_width=16)
    try:
        params.check(core)
    except NmsError:
        assume(False)  # a kernel larger than its map: the program loader refuses it
    res = execute(dram, params, core, patches, end, tn=sc["tn"])
    return d, dram, params, patches, end, res


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(scenes())
def test_the_core_equals_software_psrr(sc):
    d, dram, params, _patches, end, res = run_scene(sc)
    count, flags, entries = read_list(dram, end, params.capacity)
    assert flags == 0 and count == len(entries)
    for limit in (None, 2):
        got = to_detections(d, entries, limit)
        expect = psrr_nms(d, sc["threshold"], alpha=sc["alpha"], max_per_class=limit, reach=sc["reach"],
                          shifted=sc["shifted"])
        np.testing.assert_array_equal(got.index, expect.index)
        np.testing.assert_array_equal(got.rows, expect.rows)
    if sc["maps"] == "empty":
        assert count == 0 and len(res.spatial) == 0
    blocks = sum(-(-lv.anchors * params.classes // sc["lanes"]) for lv in params.levels)
    assert len(res.decided) == blocks and sum(int(b.sum()) for b in res.decided) == len(res.spatial)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(scenes().filter(lambda sc: sc["maps"] != "empty"))
def test_a_full_list_keeps_its_first_entries_and_says_so(sc):
    _, dram, params, _patches, end, _res = run_scene(sc)
    _, _, full = read_list(dram, end, params.capacity)
    assume(len(full) >= 1)
    cap = len(full) // 2
    _, dram2, _params2, _, _, _ = run_scene(sc, capacity=cap)
    count, flags, entries = read_list(dram2, end, cap)
    assert count == len(full) and flags == FLAG_LIST_FULL
    assert entries.tobytes() == full[:cap].tobytes()


def all_equal_scene(**kw):
    return dict(dict(levels=[(8, 6, 5, [[16, 16], [24, 12]])], classes=2, tn=4, lanes=4, alpha=1.0, reach=1.0,
                     shifted=True, planes=1, maps="equal", threshold=0.05, seed=3), **kw)


def test_all_equal_maps_keep_the_lowest_index_of_each_tile():
    d, dram, params, _, end, _ = run_scene(all_equal_scene())
    _, flags, entries = read_list(dram, end, params.capacity)
    expect = psrr_nms(d, 0.05, alpha=1.0, max_per_class=None)
    assert flags == 0 and len(entries) > 0
    np.testing.assert_array_equal(to_detections(d, entries, None).index, expect.index)


def test_spatial_buffer_overflow_is_flagged_and_writes_nothing():
    _, dram, params, patches, end, res = run_scene(all_equal_scene(maps="random", threshold=0.05))
    n = len(res.spatial)
    assert n > 2
    small = NmsCore(lanes=4, max_width=16, survivors=n - 1)
    again = execute(dram, params, small, patches, end)
    count, flags, entries = read_list(dram, end, params.capacity)
    assert again.flags == flags == FLAG_SPATIAL_FULL and len(entries) == 0 and count == 0


def test_patches_out_of_order_are_flagged():
    _, dram, params, patches, end, _ = run_scene(all_equal_scene(maps="random", seed=11))
    assert len(patches) >= 2
    res = execute(dram, params, NmsCore(lanes=4, max_width=16), patches[::-1], end)
    assert res.flags == FLAG_BAD_PATCH and len(read_list(dram, end, params.capacity)[2]) == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 9), st.sampled_from([1, 2, 4]), st.sampled_from([2, 4]),
       st.integers(0, 2**31))
def test_read_scores_reassembles_wide_codes(h, w, ch, planes, tn, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (8 * planes - 1)), (1 << (8 * planes - 1)) - 1
    codes = rng.integers(lo, hi, size=(h, w, ch), endpoint=True)
    dram = np.zeros(planes * -(-ch // tn) * h * w * tn + 32, np.uint8)
    rs, bs = write_scores(dram, 32, codes, planes, tn)
    np.testing.assert_array_equal(read_scores(dram, 32, rs, bs, h, w, ch, planes, tn), codes)


def test_refuses_kernels_larger_than_the_map_or_the_core():
    sc = all_equal_scene()
    rng = np.random.default_rng(0)
    sp = head(sc["levels"], 2)
    codes, exps = outputs(sp, "random", 1, rng)
    d = decode(sp, codes, exps)
    _, params, _, _ = core_setup(d, [0], 0.05, 4.0, 1.0, tn=4)  # alpha 4: k = 8 > the 6x5 map
    with pytest.raises(NmsError, match="kernel 8 .* must be in 1..min"):
        params.check(NmsCore(lanes=4))
    _, params, _, _ = core_setup(d, [0], 0.05, 1.0, 1.0, tn=4)
    with pytest.raises(NmsError, match="map width 5 exceeds the core's 4"):
        params.check(NmsCore(lanes=4, max_width=4))
    with pytest.raises(NmsError, match="8-bit codes shifted by 0 do not fit the core's 6-bit keys"):
        params.check(NmsCore(lanes=4, key_bits=6))
    with pytest.raises(NmsError, match="box indices must fit the core's 5 bits, found 60 boxes"):
        params.check(NmsCore(lanes=4, index_bits=5))


def test_cycle_model_counts_positions_and_survivors():
    assert spatial_cycles(np.zeros((5, 3), int)) == 15 + 2
    assert spatial_cycles(np.array([[0, 3, 1], [2, 0, 0]])) == 1 + 3 + 1 + 2 + 1 + 1 + 2
    _d, _dram, params, patches, _end, res = run_scene(all_equal_scene(maps="random"))
    n = len(res.spatial)
    base = nms_cycles(TINY, params, NmsCore(lanes=4), res.decided, patches, n, res.count)
    more = nms_cycles(TINY, params, NmsCore(lanes=4), res.decided, patches, n + 4, res.count)
    assert more - base == pyramid_cycles(n + 4, NmsCore(lanes=4)) - pyramid_cycles(n, NmsCore(lanes=4))
    # A patch merged at a position costs the cell former a cycle there (when it is the bound).
    fewer = nms_cycles(TINY, params, NmsCore(lanes=4), res.decided, patches[:0], n, res.count, count=0)
    assert fewer < base


def test_an_encoded_instruction_runs_from_dram_like_its_parameters():
    sc = all_equal_scene(maps="random", seed=5)
    _d, dram, params, patches, end, res = run_scene(sc)
    table, at = encode_table(params), -(-end // 64) * 64
    assert decode_table(table, len(params.levels), params.channels, params.classes, params.thr,
                        params.capacity, params.planes) == params
    dram[at:at + len(table)] = np.frombuffer(table, np.uint8)
    pat = at + len(table)
    write_patches(dram, pat, patches)
    out = pat + 16 * (1 + len(patches)) + 64
    body = {"table_addr": at, "levels": len(params.levels), "channels": params.channels,
            "classes": params.classes, "planes": 0, "thr": params.thr, "patch_addr": pat,
            "patches": len(patches), "out_addr": out, "capacity": params.capacity}
    fields = to_dict(encode(Opcode.NMS, body))["nms"]
    core = NmsCore(lanes=4, max_width=16, survivors=4096)
    got = run_instruction(dram, fields, core, TINY)
    assert TINY.tn == 4 and got.count == res.count > 0 and got.entries.tobytes() == res.entries.tobytes()
    assert read_list(dram, out, params.capacity)[2].tobytes() == res.entries.tobytes()
    assert got.cycles == nms_cycles(TINY, params, core, res.decided, patches, len(res.spatial), res.count,
                                    table_addr=at)
    # A table the core cannot run (kernels over its max_kernel), past the loader: flagged as
    # NmsUnit flags it, header alone, in fault_cycles.
    small = NmsCore(lanes=4, max_width=16, max_kernel=1, survivors=4096)
    before = read_list(dram, out, params.capacity)
    bad = run_instruction(dram, fields, small, TINY)
    assert bad.flags == FLAG_BAD_TABLE and bad.count == 0 and "kernel" in bad.fault
    assert read_list(dram, out, params.capacity)[:2] == (0, FLAG_BAD_TABLE) != before[:2]
    assert bad.cycles == fault_cycles(TINY, small, fields, params.pair_k, len(patches))
    # A patch list longer than the instruction allows: flagged, nothing pooled from it.
    over = run_instruction(dram, dict(fields, patches=len(patches) - 1), core, TINY)
    assert over.flags == FLAG_BAD_PATCH and len(read_list(dram, out, params.capacity)[2]) == 0


def test_field_rules_refuse_malformed_instructions():
    good = {"table_addr": 64, "patch_addr": 128, "out_addr": 256, "planes": 1, "levels": 2, "channels": 3,
            "classes": 2, "patches": 10, "capacity": 100}
    bad = {"table_addr": 72, "planes": 3, "levels": 0, "classes": 0, "patches": 5000, "capacity": 5000}
    for field, _rule, ok, message in field_rules():
        cols = {k: np.array([v]) for k, v in good.items()}
        assert ok(cols, ZU3EG).all(), field
        if field in bad:
            f = dict(good, **{field: bad[field]})
            assert not ok({k: np.array([v]) for k, v in f.items()}, ZU3EG).any(), field
            assert "\n" not in message(f, ZU3EG) and str(bad[field]) in message(f, ZU3EG)
    assert [m(dict(good, capacity=5000), ZU3EG) for fl, _, _, m in field_rules() if fl == "capacity"] == [
        "capacity 5000 exceeds the core's survivor buffer of 1024"]
