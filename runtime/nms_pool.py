"""Max-pooling NMS over score maps: MaxpoolNMS (Cai et al., CVPR 2019) and our reading of
PSRR-MaxpoolNMS (Zhang et al., CVPR 2021). docs/nms.md states both exactly and says why.

Both work on *channels*: one (level, anchor) score map (H, W, C) per anchor shape, with the
flat box index (runtime/decode.py) of each cell. A cell *beats* another when its key is
higher, or equal with a lower box index — the only comparison used, so every decision is a
total order and the result is deterministic. Keys are the score logits (sigmoid is
monotonic), or the integer score codes when the decode kept them: then every decision is
integer-exact and a hardware core can reproduce it bit for bit.

The kernel of an anchor of width ``w`` on a map of stride ``s`` is
``max(1, floor(alpha * w / s + 0.5))`` cells; pooling tiles are kernel × kernel with stride =
kernel (non-overlapping), the first tile starting at cell 0 — or, shifted, at ``-(k // 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import Decoded, DetectionInputError
from .nms import Detections, check_scores, make_detections

NO_BOX = np.iinfo(np.int64).max


def kernel_size(alpha: float, anchor_width: float, stride: int) -> int:
    """MaxpoolNMS's kernel rule: ``max(1, round(alpha * w / s))``, halves rounding up."""
    return max(1, int(np.floor(alpha * anchor_width / stride + 0.5)))


@dataclass
class _Channel:
    """One anchor shape's map: ``key`` (H, W, C), ``idx`` (H, W, C) int64 (NO_BOX: empty)."""
    level: int
    anchor: int
    stride: int
    width: float
    height: float
    key: np.ndarray
    idx: np.ndarray


def _low(dtype) -> float | int:
    return np.iinfo(dtype).min if np.issubdtype(dtype, np.integer) else -np.inf


def _keys(decoded: Decoded, score_threshold: float):
    """Flat (N, C) keys — integer codes if every level has them, else float logits — and the
    key a candidate must exceed for its score to exceed ``score_threshold``."""
    if not 0.0 <= score_threshold < 1.0:
        raise DetectionInputError(f"score_threshold must be in [0, 1), found {score_threshold}")
    logit = -np.inf if score_threshold == 0 else float(np.log(score_threshold / (1.0 - score_threshold)))
    if decoded.integer:
        keys = np.concatenate([lm.codes.reshape(-1, lm.codes.shape[-1]) for lm in decoded.levels])
        e = decoded.levels[0].code_exponent
        # code * 2**e > L  <=>  code > floor(L / 2**e), for integer codes.
        low = np.iinfo(np.int64).min
        thr = low if logit == -np.inf else int(np.floor(logit / 2.0 ** e))
        return keys, thr
    keys = decoded.logits
    check_scores(keys, "score logits")
    return keys, logit


def _tiles(a: np.ndarray, size: int, shift: int, fill) -> np.ndarray:
    """(Ty, Tx, size*size, C) view of ``a`` (H, W, C) cut into size × size tiles whose grid
    starts ``shift`` cells before cell 0; cells outside ``a`` hold ``fill``."""
    h, w = a.shape[:2]
    ty, tx = -(-(h + shift) // size), -(-(w + shift) // size)
    p = np.full((ty * size, tx * size) + a.shape[2:], fill, a.dtype)
    p[shift:shift + h, shift:shift + w] = a
    return p.reshape(ty, size, tx, size, *a.shape[2:]).swapaxes(1, 2).reshape(ty, tx, size * size, *a.shape[2:])


def _tile_best(key, idx, size: int, shift: int):
    """Per tile, the winner's key and box index (highest key, then lowest index)."""
    kt = _tiles(key, size, shift, _low(key.dtype))
    it = _tiles(idx, size, shift, NO_BOX)
    best = kt.max(axis=2)
    return best, np.where(kt == best[:, :, None], it, NO_BOX).min(axis=2)


def _at_cells(tile_arr: np.ndarray, h: int, w: int, size: int, shift: int, fill) -> np.ndarray:
    """Each cell of an (h, w) map gets the value of its tile (``fill`` past ``tile_arr``)."""
    ty, tx = (np.arange(h) + shift) // size, (np.arange(w) + shift) // size
    pad_y, pad_x = max(0, ty.max() + 1 - tile_arr.shape[0]), max(0, tx.max() + 1 - tile_arr.shape[1])
    if pad_y or pad_x:
        tile_arr = np.pad(tile_arr, ((0, pad_y), (0, pad_x), (0, 0)), constant_values=fill)
    return tile_arr[ty[:, None], tx[None, :]]


def _spatial(ch: _Channel, k: int, shift: int) -> np.ndarray:
    """Mask of the cells that win their k × k tile (tiles shifted by ``shift``)."""
    _, bi = _tile_best(ch.key, ch.idx, k, shift)
    h, w = ch.key.shape[:2]
    return (ch.idx != NO_BOX) & (_at_cells(bi, h, w, k, shift, NO_BOX) == ch.idx)


def _beaten(x: _Channel, y: _Channel, common: int, k: int, shift: int) -> np.ndarray:
    """Mask of x's cells beaten by a cell of y in the same k × k tile of the common
    resolution (stride ``common``; a map of stride s covers common/s of its cells per cell)."""
    rx, ry = common // x.stride, common // y.stride
    bk, bi = _tile_best(y.key, y.idx, ry * k, ry * shift)
    h, w = x.key.shape[:2]
    qk = _at_cells(bk, h, w, rx * k, rx * shift, _low(bk.dtype))
    qi = _at_cells(bi, h, w, rx * k, rx * shift, NO_BOX)
    return (x.idx != NO_BOX) & (qi != NO_BOX) & ((qk > x.key) | ((qk == x.key) & (qi < x.idx)))


def _keep(ch: _Channel, mask: np.ndarray) -> None:
    ch.key = np.where(mask, ch.key, _low(ch.key.dtype))
    ch.idx = np.where(mask, ch.idx, NO_BOX)


def _cross(chans: list[_Channel], alpha: float, shifts: bool) -> None:
    """Suppress, in each channel, the cells beaten by a cell of an adjacent channel (by
    anchor area, then level, then anchor), all decided on the maps as they enter."""
    order = sorted(range(len(chans)), key=lambda j: (chans[j].width * chans[j].height, chans[j].level,
                                                      chans[j].anchor))
    beaten = [np.zeros(c.idx.shape, bool) for c in chans]
    for a, b in zip(order, order[1:]):
        x, y = chans[a], chans[b]
        common = max(x.stride, y.stride)
        if common % x.stride or common % y.stride:
            raise DetectionInputError(f"strides {x.stride} and {y.stride} of adjacent channels must divide "
                                      f"one another to compare them at a common resolution")
        k = kernel_size(alpha, max(x.width, y.width), common)
        for shift in ((0, k // 2) if shifts else (0,)):
            beaten[a] |= _beaten(x, y, common, k, shift)
            beaten[b] |= _beaten(y, x, common, k, shift)
    for c, m in zip(chans, beaten):
        _keep(c, ~m)


def _result(decoded: Decoded, chans: list[_Channel], max_per_class: int | None) -> Detections:
    idx = np.concatenate([c.idx.reshape(-1, c.idx.shape[-1]) for c in chans])
    cls = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)
    live = idx != NO_BOX
    return make_detections(decoded.boxes, decoded.scores, idx[live], cls[live], max_per_class)


def maxpool_nms(decoded: Decoded, score_threshold: float = 0.05, alpha: float = 0.5,
                max_per_class: int | None = 100, cross_channel: bool = True) -> Detections:
    """MaxpoolNMS: per level, per anchor channel and class, keep the winner of each k × k
    tile (stride k, the kernel rule of the channel's anchor width); then, with
    ``cross_channel``, drop a winner beaten by a winner of an adjacent anchor channel of the
    same level in the same tile of kernel max(k_a, k_b). Only boxes whose score exceeds
    ``score_threshold`` take part."""
    keys, thr = _keys(decoded, score_threshold)
    kept: list[_Channel] = []
    for li, lm in enumerate(decoded.levels):
        h, w, na, nc = lm.logits.shape
        level_keys = keys[lm.start:lm.start + lm.level.size].reshape(h, w, na, nc)
        base = lm.start + (np.arange(h)[:, None] * w + np.arange(w)[None, :]) * na
        chans = []
        for a, (aw, ah) in enumerate(lm.level.anchors):
            key = level_keys[:, :, a]
            idx = np.where(key > thr, (base + a)[:, :, None], NO_BOX)
            ch = _Channel(li, a, lm.level.stride, aw, ah, np.where(idx != NO_BOX, key, _low(key.dtype)), idx)
            _keep(ch, _spatial(ch, kernel_size(alpha, aw, lm.level.stride), 0))
            chans.append(ch)
        if cross_channel:
            _cross(chans, alpha, shifts=False)
        kept += chans
    return _result(decoded, kept, max_per_class)


def _recover(decoded: Decoded, keys: np.ndarray, thr) -> list[_Channel]:
    """Relationship Recovery: each candidate (box, class) goes to the channel whose anchor is
    nearest its regressed size (|ln w/aw| + |ln h/ah|, first channel on ties) at the cell
    holding its regressed centre (clipped to the grid); each cell keeps its best candidate."""
    chans = [(li, a, lm.level.stride, lm.level.grid, aw, ah) for li, lm in enumerate(decoded.levels)
             for a, (aw, ah) in enumerate(lm.level.anchors)]
    box_i, cls = np.nonzero(keys > thr)
    boxes = decoded.boxes[box_i].astype(np.float64)
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    aw = np.array([c[4] for c in chans])
    ah = np.array([c[5] for c in chans])
    dist = np.abs(np.log(bw[:, None] / aw)) + np.abs(np.log(bh[:, None] / ah))
    target = dist.argmin(axis=1)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    nc = keys.shape[1]
    out = []
    for j, (li, a, s, (gh, gw), w, h) in enumerate(chans):
        sel = np.flatnonzero(target == j)
        y = np.clip(np.floor(cy[sel] / s), 0, gh - 1).astype(np.int64)
        x = np.clip(np.floor(cx[sel] / s), 0, gw - 1).astype(np.int64)
        flat = (y * gw + x) * nc + cls[sel]
        bi, k = box_i[sel], keys[box_i[sel], cls[sel]]
        # Sorted by cell, then key, then descending box index: the last of each cell wins.
        order = np.lexsort((-bi, k, flat))
        last = np.r_[flat[order][1:] != flat[order][:-1], True] if len(order) else np.zeros(0, bool)
        win = order[last]
        key = np.full(gh * gw * nc, _low(keys.dtype), keys.dtype)
        idx = np.full(gh * gw * nc, NO_BOX, np.int64)
        key[flat[win]], idx[flat[win]] = k[win], bi[win]
        out.append(_Channel(li, a, s, w, h, key.reshape(gh, gw, nc), idx.reshape(gh, gw, nc)))
    return out


def psrr_nms(decoded: Decoded, score_threshold: float = 0.05, alpha: float = 0.5,
             max_per_class: int | None = 100) -> Detections:
    """PSRR-MaxpoolNMS as docs/nms.md specifies it: Relationship Recovery of the candidates
    (score above ``score_threshold``) onto the anchor channels; per channel, keep the cells
    that win their k × k tile both on the aligned grid and on the grid shifted by k // 2;
    then drop the survivors beaten by a survivor of the adjacent channel (by anchor area,
    across levels) in the same tile, aligned or shifted, at the coarser of the two strides.
    On integer score codes every decision is integer-exact."""
    keys, thr = _keys(decoded, score_threshold)
    chans = _recover(decoded, keys, thr)
    for ch in chans:
        k = kernel_size(alpha, ch.width, ch.stride)
        _keep(ch, _spatial(ch, k, 0) & _spatial(ch, k, k // 2))
    _cross(chans, alpha, shifts=True)
    return _result(decoded, chans, max_per_class)
