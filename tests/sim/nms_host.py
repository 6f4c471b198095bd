"""The CPU's half of the NMS instruction, for the tests (docs/nms_core.md): the parameter
table from a decoded head (the golden model's kernels and pairs), Relationship Recovery as
a patch list, the score maps written to DRAM as the head's STOREs leave them, and the core's
survivors turned into ``Detections``. It belongs in runtime/ once the compiler emits NMS.
"""

from __future__ import annotations

import numpy as np
from shiftflow.ir.nms import PATCH_DTYPE, NmsCore, NmsLevel, NmsParams
from shiftflow.runtime.heads import parse_heads
from shiftflow.runtime.nms import make_detections
from shiftflow.runtime.nms_pool import (
    _channels,
    _kernels,
    _keys,
    _length,
    _pairs,
    _recover,
    kernel_size,
)

INT32_MIN = -(1 << 31)


def write_scores(dram: np.ndarray, addr: int, codes: np.ndarray, planes: int, tn: int) -> tuple[int, int]:
    """Store (H, W, channels) integer codes in the activation layout, ``planes`` byte planes
    (docs/isa.md "Wide outputs"); returns ``row_stride``, ``blk_stride``."""
    h, w, ch = codes.shape
    nblk = -(-ch // tn)
    row_stride, blk_stride = w * tn, h * w * tn
    full = np.zeros((h, w, nblk * tn), np.int64)
    full[:, :, :ch] = codes
    for k in range(planes):
        byte = ((full >> (8 * k)) & 0xFF).astype(np.uint8)
        for b in range(nblk):
            base = addr + (k * nblk + b) * blk_stride
            dram[base:base + blk_stride] = byte[:, :, b * tn:(b + 1) * tn].reshape(-1)
    return row_stride, blk_stride


def core_setup(decoded, shifts, score_threshold, alpha, reach, *, shifted=True, kernel_by="size", planes=1,
               tn=4, lanes=None, capacity=1000, dram_bytes=1 << 20):
    """DRAM with every level's raw codes (``decoded``'s codes shifted back right by the
    level's ``shifts``; words of ``tn`` channels), the ``NmsParams``, the patch list of the
    recovery in the stream order of a core of ``lanes`` (default ``tn``) and the first free
    DRAM address."""
    chans = _channels(decoded)
    kernels = [int(k) for k in _kernels(chans, alpha, kernel_by)]
    n = len(chans)
    pk = [[0] * n for _ in range(n)]
    ps = [[0] * n for _ in range(n)]
    for a, b in _pairs(chans, list(range(n)), reach):
        common = max(chans[a][2], chans[b][2])
        k = kernel_size(alpha, max(_length(chans[a], kernel_by), _length(chans[b], kernel_by)), common)
        pk[a][b] = pk[b][a] = k
        ps[a][b] = ps[b][a] = k // 2 if shifted else 0
    dram = np.zeros(dram_bytes, np.uint8)
    levels, addr = [], 0
    classes = decoded.spec.num_classes
    for lm, shift in zip(decoded.levels, shifts):
        h, w = lm.level.grid
        a = len(lm.level.anchors)
        raw = lm.codes >> shift
        assert (raw << shift == lm.codes).all()
        rs, bs = write_scores(dram, addr, raw.reshape(h, w, a * classes), planes, tn)
        levels.append(NmsLevel(h, w, a, lm.level.stride, shift, lm.start, addr, rs, bs))
        addr += planes * -(-a * classes // tn) * bs
    keys, thr = _keys(decoded, score_threshold)
    params = NmsParams(tuple(levels), tuple(kernels), tuple(k // 2 if shifted else 0 for k in kernels),
                       tuple(map(tuple, pk)), tuple(map(tuple, ps)), classes, max(int(thr), INT32_MIN - 1),
                       capacity, planes)
    return dram, params, recovery_patches(decoded, chans, keys, thr, lanes or tn), addr


def recovery_patches(decoded, chans, keys, thr, lanes: int) -> np.ndarray:
    """The cells where the recovered maps (``_recover``) differ from the thresholded raw
    maps, in the stream order of a core of ``lanes``: a recovered cell's key and box index,
    or empty."""
    first = np.cumsum([0] + [len(lm.level.anchors) for lm in decoded.levels])
    level_of = np.repeat(np.arange(len(decoded.levels)), np.diff(first))
    classes = keys.shape[1]
    idx, c = np.nonzero(keys > thr)
    starts = np.array([lm.start for lm in decoded.levels])
    li = np.searchsorted(starts, idx, side="right") - 1
    na = np.array([len(lm.level.anchors) for lm in decoded.levels])[li]
    w = np.array([lm.level.grid[1] for lm in decoded.levels])[li]
    local = idx - starts[li]
    span = 1 << 15  # above every grid side and channel count (as _group's columns)

    def pos(ch, y, x, cls):
        return ((np.asarray(ch, np.int64) * span + y) * span + x) * classes + cls

    raw_pos = pos(first[li] + local % na, local // na // w, local // na % w, c)
    cand = _recover(decoded, chans, keys, thr)
    rec_pos = pos(cand.ch, cand.y, cand.x, cand.c)
    every = np.union1d(raw_pos, rec_pos)

    def lookup(keys_at, values):
        order = np.argsort(keys_at)
        at = np.minimum(np.searchsorted(keys_at[order], every), max(len(keys_at) - 1, 0))
        has = (keys_at[order][at] == every) if len(keys_at) else np.zeros(len(every), bool)
        return has, [v[order][at] if len(keys_at) else np.zeros(len(every), np.int64) for v in values]

    raw_has, (raw_key, raw_idx) = lookup(raw_pos, (keys[idx, c].astype(np.int64), idx))
    rec_has, (rec_key, rec_idx) = lookup(rec_pos, (cand.key.astype(np.int64), cand.idx))
    differ = (raw_has != rec_has) | (rec_has & ((raw_key != rec_key) | (raw_idx != rec_idx)))
    p, ok = every[differ], rec_has[differ]
    cls, rest = p % classes, p // classes
    x, rest = rest % span, rest // span
    y, ch = rest % span, rest // span
    lv = level_of[ch]
    patches = np.zeros(len(p), PATCH_DTYPE)
    patches["level"], patches["empty"], patches["channel"] = lv, ~ok, (ch - first[lv]) * classes + cls
    patches["y"], patches["x"] = y, x
    patches["key"], patches["index"] = np.where(ok, rec_key[differ], 0), np.where(ok, rec_idx[differ], 0)
    chan = patches["channel"].astype(np.int64)
    return patches[np.lexsort((chan % lanes, patches["x"], patches["y"], chan // lanes, patches["level"]))]


def to_detections(decoded, entries: np.ndarray, max_per_class):
    """The core's survivors as the CPU reports them: ``make_detections``' order and limit."""
    return make_detections(decoded.boxes, decoded.scores, entries["index"].astype(np.int64),
                           entries["cls"].astype(np.int64), max_per_class)


def default_core(tn: int, **kw) -> NmsCore:
    return NmsCore(lanes=tn, **kw)


def head(levels, classes):
    """An ``ssd`` head spec: levels (stride, H, W, anchors), 128 × 128 input."""
    return parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "x", "height": 128, "width": 128},
                        "classes": [f"c{i}" for i in range(classes)], "decoder": "ssd",
                        "levels": [{"stride": s, "grid": [h, w], "anchors": a, "scores": {"output": f"cls{s}"},
                                    "boxes": {"output": f"box{s}"}} for s, h, w, a in levels]})


def outputs(sp, maps: str, planes: int, rng):
    """Integer score and box codes of every level and their po2 exponents."""
    codes, exps = {}, {}
    dtype = np.int8 if planes == 1 else np.int16
    hi = 127 if planes == 1 else 3000
    for lv in sp.levels:
        a, (h, w) = len(lv.anchors), lv.grid
        shape = (1, a * sp.num_classes, h, w)
        if maps == "random":
            s = rng.integers(-hi // 3, hi // 6, size=shape)
        elif maps == "ties":
            s = rng.integers(-2, 3, size=shape) * (hi // 20)
        elif maps == "equal":
            s = np.full(shape, hi // 4)
        else:  # the lowest code: below every threshold drawn
            s = np.full(shape, np.iinfo(dtype).min)
        codes[lv.scores.output] = s.astype(dtype)
        exps[lv.scores.output] = int(rng.integers(-4, -1)) - (7 if planes == 2 else 0)
        codes[lv.boxes.output] = rng.integers(-12, 13, size=(1, a * 4, h, w)).astype(np.int8)
        exps[lv.boxes.output] = -2
    return codes, exps
