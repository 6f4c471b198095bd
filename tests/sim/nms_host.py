"""The CPU's half of the NMS instruction, for the tests (docs/nms_core.md): the parameter
table from a decoded head (the golden model's kernels and pairs), Relationship Recovery as
a patch list, the score maps written to DRAM as the head's STOREs leave them, and the core's
survivors turned into ``Detections``. It belongs in runtime/ once the compiler emits NMS.
"""

from __future__ import annotations

import numpy as np

from shiftflow.ir.nms import PATCH_DTYPE, NmsCore, NmsLevel, NmsParams
from shiftflow.runtime.nms import make_detections
from shiftflow.runtime.nms_pool import _channels, _keys, _kernels, _length, _pairs, _recover, kernel_size

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
    raw = {}
    for i, cls in zip(idx.tolist(), c.tolist()):
        li = int(np.searchsorted([lm.start for lm in decoded.levels], i, side="right") - 1)
        lm = decoded.levels[li]
        na, w = len(lm.level.anchors), lm.level.grid[1]
        local = i - lm.start
        raw[(int(first[li] + local % na), local // na // w, local // na % w, cls)] = (int(keys[i, cls]), i)
    cand = _recover(decoded, chans, keys, thr)
    rec = {(int(j), int(y), int(x), int(cls)): (int(k), int(i))
           for j, y, x, cls, k, i in zip(cand.ch, cand.y, cand.x, cand.c, cand.key, cand.idx)}
    rows = []
    for pos in set(raw) | set(rec):
        if raw.get(pos) != rec.get(pos):
            j, y, x, cls = pos
            li = int(level_of[j])
            key, i = rec.get(pos, (0, 0))
            rows.append((li, pos not in rec, (j - first[li]) * classes + cls, y, x, key, i))
    patches = np.array(rows, PATCH_DTYPE) if rows else np.zeros(0, PATCH_DTYPE)
    ch = patches["channel"].astype(np.int64)
    return patches[np.lexsort((ch % lanes, patches["x"], patches["y"], ch // lanes, patches["level"]))]


def to_detections(decoded, entries: np.ndarray, max_per_class):
    """The core's survivors as the CPU reports them: ``make_detections``' order and limit."""
    return make_detections(decoded.boxes, decoded.scores, entries["index"].astype(np.int64),
                           entries["cls"].astype(np.int64), max_per_class)


def default_core(tn: int, **kw) -> NmsCore:
    return NmsCore(lanes=tn, **kw)
