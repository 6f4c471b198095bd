"""The NMS instruction's tests' host: the score maps written to DRAM as the head's STOREs
leave them and a whole instruction's inputs from a decoded head (``core_setup``), with the
CPU's half from runtime/nms_core.py (kernels and pairs, the recovery's patch list, the
survivors as ``Detections``); small heads and their outputs.
"""

from __future__ import annotations

import numpy as np
from shiftflow.ir.nms import NmsCore, NmsLevel, NmsParams
from shiftflow.runtime.heads import parse_heads
from shiftflow.runtime.nms_core import pool_tables, recovery_patches
from shiftflow.runtime.nms_pool import _channels, _keys

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
    kernels, kshifts, pk, ps = pool_tables(chans, alpha, reach, shifted, kernel_by)
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
    params = NmsParams(tuple(levels), kernels, kshifts, pk, ps, classes, max(int(thr), INT32_MIN - 1), capacity, planes)
    return dram, params, recovery_patches(decoded, chans, keys, thr, lanes or tn), addr


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
