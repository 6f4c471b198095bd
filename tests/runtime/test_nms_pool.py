"""MaxpoolNMS and PSRR-MaxpoolNMS: the kernel rule, agreement with greedy on isolated boxes,
shifted windows removing border duplicates, cross-channel and cross-level suppression,
deterministic ties, integer-exact decisions, empty and NaN inputs."""

import dataclasses

import numpy as np
import pytest

from shiftflow.runtime.decode import DetectionInputError, decode
from shiftflow.runtime.heads import parse_heads
from shiftflow.runtime.nms import greedy_nms
from shiftflow.errors import UsageError
from shiftflow.runtime.nms_pool import anchor_size, kernel_size, maxpool_nms, psrr_nms, run_nms

LOW = -20.0


def spec(levels=((16, 12, [[64, 64]]),), classes=2):
    return parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "x", "height": 192, "width": 192},
                        "classes": [f"c{i}" for i in range(classes)], "decoder": "ssd",
                        "levels": [{"stride": s, "grid": [g, g], "anchors": a,
                                    "scores": {"output": f"cls{s}"}, "boxes": {"output": f"box{s}"}}
                                   for s, g, a in levels]})


def maps(sp):
    """All-low score logits and zero regressions (every box is its anchor)."""
    out = {}
    for lv in sp.levels:
        a, (h, w) = len(lv.anchors), lv.grid
        out[lv.scores.output] = np.full((1, a * sp.num_classes, h, w), LOW, np.float32)
        out[lv.boxes.output] = np.zeros((1, a * 4, h, w), np.float32)
    return out


def test_kernel_rule():
    assert kernel_size(0.5, 64, 16) == 2
    assert kernel_size(0.5, 24, 16) == 1    # 0.75 rounds to 1
    assert kernel_size(1.0, 24, 16) == 2    # 1.5: halves round up
    assert kernel_size(0.5, 128, 8) == 8
    assert kernel_size(0.1, 10, 32) == 1    # never below 1


def test_the_kernel_follows_the_anchor_size_whatever_its_ratio():
    assert anchor_size(32, 32) == 32 and anchor_size(64, 16) == 32 and anchor_size(16, 64) == 32
    # A tall 1:2 anchor of area 32²: by its width (22.6 px at stride 16) alpha 0.75 gives
    # k = 1, no pooling; by its size, k = 2 like its square and wide siblings.
    sp = spec(((16, 12, [[32, 32], [45.25, 22.63], [22.63, 45.25]]),), classes=1)
    out = maps(sp)
    out["cls16"][0, 2, 6, 6] = 2.0
    out["cls16"][0, 2, 6, 7] = 1.0  # the same 2×2 aligned tile of the 1:2 channel
    d = decode(sp, out)
    assert kernel_size(0.75, 22.63, 16) == 1 and kernel_size(0.75, anchor_size(22.63, 45.25), 16) == 2
    for nms in (maxpool_nms, psrr_nms):
        assert nms(d, alpha=0.75).index.tolist() == [(6 * 12 + 6) * 3 + 2]
    assert len(psrr_nms(d, alpha=0.75, kernel_by="width").index) == 2  # the first reading, measured
    with pytest.raises(UsageError, match="kernel_by must be one of"):
        psrr_nms(d, kernel_by="height")


@pytest.mark.parametrize("seed", range(5))
def test_isolated_boxes_give_the_greedy_result(seed):
    rng = np.random.default_rng(seed)
    sp = spec()
    out = maps(sp)
    # Cells 4 apart: 64-pixel boxes that touch but do not overlap, and never share a 2x2
    # tile, aligned or shifted.
    for y in (0, 4, 8):
        for x in (0, 4, 8):
            for c in range(2):
                if rng.random() < 0.6:
                    out["cls16"][0, c, y, x] = rng.normal(0, 2)
    d = decode(sp, out)
    expect = greedy_nms(d, 0.5, 0.05, None)
    assert len(expect.index) > 3
    for nms in (maxpool_nms, psrr_nms):
        got = nms(d, 0.05, alpha=0.5, max_per_class=None)
        np.testing.assert_array_equal(got.index, expect.index)
        np.testing.assert_array_equal(got.rows, expect.rows)


def test_a_duplicate_straddling_a_tile_border_is_removed_once_shifted():
    sp = spec()
    out = maps(sp)
    out["cls16"][0, 0, 5, 1] = 3.0   # aligned 2x2 tiles split columns 1 | 2 ...
    out["cls16"][0, 0, 5, 2] = 2.0   # ... the shifted tiles (start -1) join them
    d = decode(sp, out)
    assert len(maxpool_nms(d, alpha=0.5).index) == 2
    greedy, psrr = greedy_nms(d), psrr_nms(d, alpha=0.5)
    assert psrr.index.tolist() == greedy.index.tolist() == [5 * 12 + 1]
    assert len(psrr_nms(d, alpha=0.5, shifted=False).index) == 2  # aligned tiles only


def test_adjacent_anchor_channels_compete():
    sp = spec(((16, 12, [[64, 64], [72, 72]]),), classes=1)
    out = maps(sp)
    out["cls16"][0, 0, 6, 6] = 1.0   # anchor 0
    out["cls16"][0, 1, 6, 7] = 2.0   # anchor 1, next cell, same 2x2 tile
    d = decode(sp, out)
    assert maxpool_nms(d, alpha=0.5).index.tolist() == [(6 * 12 + 7) * 2 + 1]
    assert len(maxpool_nms(d, alpha=0.5, cross_channel=False).index) == 2


def test_relationship_recovery_moves_a_box_to_the_level_of_its_size():
    sp = spec(((16, 12, [[64, 64]]), (32, 6, [[128, 128]])), classes=1)
    out = maps(sp)
    # A stride-16 box regressed to 128 px (exp size: dw = ln 2) duplicates a stride-32 box.
    out["cls16"][0, 0, 4, 4] = 2.0
    out["box16"][0, 2:4, 4, 4] = np.log(2.0)
    out["box16"][0, 0:2, 4, 4] = 0.125   # centre (72 + 8, 72 + 8): inside stride-32 cell (2, 2)
    out["cls32"][0, 0, 2, 2] = 1.0
    d = decode(sp, out)
    assert len(maxpool_nms(d, alpha=0.5).index) == 2
    assert psrr_nms(d, alpha=0.5).index.tolist() == [4 * 12 + 4]
    assert greedy_nms(d).index.tolist() == [4 * 12 + 4]


def test_all_equal_maps_keep_the_lowest_index_of_each_tile():
    sp = spec(((16, 4, [[64, 64]]),), classes=1)
    out = maps(sp)
    out["cls16"][:] = 1.0
    d = decode(sp, out)
    assert maxpool_nms(d, alpha=0.5).index.tolist() == [0, 2, 8, 10]
    first = psrr_nms(d, alpha=0.5)
    again = psrr_nms(d, alpha=0.5)
    np.testing.assert_array_equal(first.rows, again.rows)
    assert first.index.tolist() == [0]  # the only cell first in its aligned and shifted tiles


def test_integer_codes_decide_exactly_like_their_floats():
    rng = np.random.default_rng(7)
    sp = spec(((16, 12, [[64, 64], [40, 80]]), (32, 6, [[128, 128]])), classes=3)
    codes, exps = {}, {}
    for name, arr in maps(sp).items():
        if name.startswith("cls"):
            codes[name] = rng.integers(-60, 20, size=arr.shape).astype(np.int16)
            exps[name] = -3 if name == "cls16" else -2
        else:
            codes[name] = rng.integers(-20, 20, size=arr.shape).astype(np.int16)
            exps[name] = -4
    d_int = decode(sp, codes, exps)
    d_flt = decode(sp, {k: (v * 2.0 ** exps[k]).astype(np.float32) for k, v in codes.items()})
    for thr in (0.05, 0.3, 0.5):
        a, b = psrr_nms(d_int, thr, max_per_class=None), psrr_nms(d_flt, thr, max_per_class=None)
        assert len(a.index) > 0
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert (a.rows[:, 4] > thr).all()


def test_empty_and_nan():
    sp = spec()
    d = decode(sp, maps(sp))
    for nms in (greedy_nms, maxpool_nms, psrr_nms):
        det = nms(d)
        assert det.rows.shape == (0, 6) and det.index.shape == (0,)
    lm = d.levels[0]
    bad = lm.logits.copy()
    bad[0, 0, 0, 0] = np.nan
    d_nan = dataclasses.replace(d, levels=(dataclasses.replace(lm, logits=bad),))
    for nms in (greedy_nms, maxpool_nms, psrr_nms):
        with pytest.raises(DetectionInputError, match="must not be NaN, found 1 NaN"):
            nms(d_nan)
    with pytest.raises(DetectionInputError, match=r"score_threshold must be in \[0, 1\)"):
        psrr_nms(d, 1.0)


def test_psrr_channels_compete_within_reach():
    # Areas order the channels 1, 2, 0: chain neighbours are (1, 2) and (2, 0); within reach
    # 1.0 of |ln w1/w2| + |ln h1/h2| are (0, 1) (0.70) and (0, 2), not (1, 2) (1.41).
    sp = spec(((16, 12, [[64, 64], [91, 45], [45, 91]]),), classes=1)
    out = maps(sp)
    out["cls16"][0, 0, 6, 6] = 2.0   # anchor 0
    out["cls16"][0, 1, 6, 6] = 1.0   # anchor 1, same cell
    d = decode(sp, out)
    assert psrr_nms(d, alpha=0.5).index.tolist() == [(6 * 12 + 6) * 3]
    assert len(psrr_nms(d, alpha=0.5, reach=None).index) == 2


def psrr_by_the_letter(d, thr, alpha, reach):
    """docs/nms.md's PSRR, candidate by candidate in plain Python (a slow reference)."""
    chans = [(lm.level.stride, lm.level.grid, w, h) for lm in d.levels for (w, h) in lm.level.anchors]
    logit = np.log(thr / (1 - thr))
    keys = d.logits
    boxes = d.boxes.astype(np.float64)
    beats = lambda p, q: p[4] > q[4] or (p[4] == q[4] and p[5] < q[5])  # noqa: E731
    cands = []
    for i, c in zip(*np.nonzero(keys > logit)):
        x0, y0, x1, y1 = boxes[i]
        dist = [abs(np.log(max(x1 - x0, 1e-6) / w)) + abs(np.log(max(y1 - y0, 1e-6) / h)) for _, _, w, h in chans]
        j = int(np.argmin(dist))
        s, (gh, gw) = chans[j][0], chans[j][1]
        y = min(max(int(np.floor((y0 + y1) / 2 / s)), 0), gh - 1)
        x = min(max(int(np.floor((x0 + x1) / 2 / s)), 0), gw - 1)
        cands.append((j, y, x, int(c), float(keys[i, c]), int(i)))
    rr = [p for p in cands if not any(q[:4] == p[:4] and beats(q, p) for q in cands)]

    def kernel(w, s):
        return max(1, int(np.floor(alpha * w / s + 0.5)))

    def tile(p, r, k, shift):
        return ((p[1] + r * shift) // (r * k), (p[2] + r * shift) // (r * k))

    spatial = []
    for p in rr:
        k = kernel(np.sqrt(chans[p[0]][2] * chans[p[0]][3]), chans[p[0]][0])
        if not any(q[0] == p[0] and q[3] == p[3] and tile(q, 1, k, sh) == tile(p, 1, k, sh) and beats(q, p)
                   for q in rr for sh in (0, k // 2)):
            spatial.append(p)
    kept = []
    for p in spatial:
        a = p[0]
        lost = False
        for q in spatial:
            b = q[0]
            if b == a or q[3] != p[3]:
                continue
            (sa, _, wa, ha), (sb, _, wb, hb) = chans[a], chans[b]
            if abs(np.log(wa / wb)) + abs(np.log(ha / hb)) > reach + 1e-9:
                continue
            common = max(sa, sb)
            k = kernel(max(np.sqrt(wa * ha), np.sqrt(wb * hb)), common)
            if any(tile(p, common // sa, k, sh) == tile(q, common // sb, k, sh) and beats(q, p)
                   for sh in (0, k // 2)):
                lost = True
        if not lost:
            kept.append(p)
    return sorted((p[5], p[3]) for p in kept)


@pytest.mark.parametrize("seed", range(6))
def test_psrr_equals_its_specification_by_the_letter(seed):
    rng = np.random.default_rng(seed)
    sp = spec(((8, 8, [[24, 24], [34, 17], [17, 34]]), (16, 4, [[48, 48], [68, 34]])), classes=2)
    out = {k: (rng.normal(-2.5, 1.5, v.shape) if k.startswith("cls") else rng.normal(0, 1.5, v.shape))
           .astype(np.float32) for k, v in maps(sp).items()}
    d = decode(sp, out)
    for alpha, reach in ((0.75, 1.0), (1.5, 0.5), (1.0, 2.0)):
        got = psrr_nms(d, 0.1, alpha=alpha, max_per_class=None, reach=reach)
        expect = psrr_by_the_letter(d, 0.1, alpha, reach)
        assert len(expect) >= 2
        assert sorted(zip(got.index.tolist(), got.rows[:, 5].astype(int).tolist())) == expect


def test_run_nms_dispatches_by_name():
    sp = spec()
    out = maps(sp)
    out["cls16"][0, 0, 5, 1], out["cls16"][0, 0, 5, 2] = 3.0, 2.0
    d = decode(sp, out)
    for name, fn in (("greedy", greedy_nms), ("maxpool", maxpool_nms), ("psrr", psrr_nms)):
        np.testing.assert_array_equal(run_nms(name, d).rows, fn(d).rows)
    with pytest.raises(UsageError, match="unknown NMS 'soft'; choose from: greedy, maxpool, psrr"):
        run_nms("soft", d)
