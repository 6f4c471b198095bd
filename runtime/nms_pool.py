"""Max-pooling NMS over score maps: MaxpoolNMS (Cai et al., CVPR 2019) and our reading of
PSRR-MaxpoolNMS (Zhang et al., CVPR 2021). docs/nms.md states both exactly and says why.

Both work on *channels*: one (level, anchor) score map (H, W, C) per anchor shape, with the
flat box index (runtime/decode.py) of each cell. Only candidates (score above the threshold)
take part and an empty cell never wins a tile, so the maps are handled sparsely: a list of
candidates (channel, y, x, class, key, box index), grouped by tile — the decisions of the
dense passes a streaming core makes (docs/nms.md), at the cost of the candidates only. A cell *beats* another when its key is
higher, or equal with a lower box index — the only comparison used, so every decision is a
total order and the result is deterministic. Keys are the score logits (sigmoid is
monotonic), or the integer score codes when the decode kept them: then every decision is
integer-exact and a hardware core can reproduce it bit for bit.

The kernel of an anchor of size ``w`` on a map of stride ``s`` is
``max(1, floor(alpha * w / s + 0.5))`` cells, where the size is ``sqrt(width * height)`` (the
width of a square anchor; docs/nms.md says why not the width of every anchor); pooling tiles
are kernel × kernel with stride = kernel (non-overlapping), the first tile starting at cell
0 — or, shifted, at ``-(k // 2)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .decode import Decoded, DetectionInputError
from .nms import NMS_METHODS, Detections, check_scores, greedy_nms, make_detections

# Defaults, chosen on benchmarks/bench_nms.py's synthetic frames (docs/nms.md): the kernel
# rule's alpha, and PSRR's channel neighbourhood in |ln(w1/w2)| + |ln(h1/h2)|.
ALPHA = 0.75
REACH = 1.0


def kernel_size(alpha: float, size: float, stride: int) -> int:
    """MaxpoolNMS's kernel rule: ``max(1, round(alpha * w / s))`` for an anchor of size ``w``
    (``anchor_size``) at stride ``s``, halves rounding up."""
    return max(1, int(np.floor(alpha * size / stride + 0.5)))


def anchor_size(width: float, height: float) -> float:
    """The length the kernel rule scales: ``sqrt(width * height)``, so the anchors of one area
    share a kernel whatever their aspect ratio (a 1:2 anchor's width alone halves it)."""
    return float(np.sqrt(width * height))


KERNEL_BY = ("size", "width")


def _length(chan, by: str) -> float:
    """The anchor length the kernel rule scales: ``anchor_size`` or (``by="width"``, the
    first reading, kept to measure the choice) the width."""
    if by not in KERNEL_BY:
        raise UsageError(f"kernel_by must be one of {KERNEL_BY}, found {by!r}")
    return anchor_size(chan[4], chan[5]) if by == "size" else chan[4]


def _kernels(chans, alpha: float, by: str = "size") -> np.ndarray:
    return np.array([kernel_size(alpha, _length(ch, by), ch[2]) for ch in chans])


def _channels(decoded: Decoded) -> list[tuple[int, int, int, tuple[int, int], float, float]]:
    """(level, anchor, stride, grid, anchor w, anchor h) of every channel, in box-index order."""
    return [(li, a, lm.level.stride, lm.level.grid, aw, ah) for li, lm in enumerate(decoded.levels)
            for a, (aw, ah) in enumerate(lm.level.anchors)]


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
        thr = np.iinfo(np.int64).min if logit == -np.inf else int(np.floor(logit / 2.0 ** e))
        return keys, thr
    keys = decoded.logits
    check_scores(keys, "score logits")
    return keys, logit


def _group(*cols) -> np.ndarray:
    """One int64 id per row from up to four non-negative columns below 2**15 (channel,
    tile row, tile column, class)."""
    g = np.zeros(len(cols[0]), np.int64)
    for col in cols:
        g = (g << 15) | np.asarray(col, np.int64)
    return g


def _best(group: np.ndarray, key: np.ndarray, idx: np.ndarray):
    """Per group, its winner (highest key, then lowest box index): sorted group ids, the
    winners' keys and box indices, and the mask of winning rows."""
    order = np.lexsort((idx, -key, group))
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
    win = np.zeros(len(group), bool)
    win[order[first]] = True
    return g[first], key[order][first], idx[order][first], win


def _beaten(group, key, idx, table) -> np.ndarray:
    """Mask of rows beaten by the winner, in ``table`` (from ``_best``), of their group."""
    g, bk, bi, _ = table
    if len(g) == 0:
        return np.zeros(len(group), bool)
    pos = np.minimum(np.searchsorted(g, group), len(g) - 1)
    qk, qi = bk[pos], bi[pos]
    return (g[pos] == group) & ((qk > key) | ((qk == key) & (qi < idx)))


class _Candidates:
    """Candidate (channel, y, x, class, key, box index) rows; ``keep`` drops rows."""

    def __init__(self, ch, y, x, c, key, idx):
        self.ch, self.y, self.x, self.c, self.key, self.idx = ch, y, x, c, key, idx

    def keep(self, mask: np.ndarray) -> None:
        for name in ("ch", "y", "x", "c", "key", "idx"):
            setattr(self, name, getattr(self, name)[mask])

    def spatial(self, kernels: np.ndarray, shifted: bool) -> np.ndarray:
        """Mask of rows that win their channel's k × k tile (shifted by k // 2 if asked)."""
        k = kernels[self.ch]
        s = k // 2 if shifted else 0
        return _best(_group(self.ch, (self.y + s) // k, (self.x + s) // k, self.c), self.key, self.idx)[3]

    def tiles(self, rows: np.ndarray, r: int, k: int, shift: int) -> np.ndarray:
        """Group ids of ``rows`` by tile of k common cells (r of the channel's cells each)."""
        return _group((self.y[rows] + r * shift) // (r * k), (self.x[rows] + r * shift) // (r * k), self.c[rows])


def _pairs(chans, members: list[int], reach: float | None) -> list[tuple[int, int]]:
    """Competing channel pairs among ``members``: with ``reach`` None, neighbours in the
    order of anchor area (then level, then anchor); else every pair whose anchors are within
    ``reach`` in ``|ln(w1/w2)| + |ln(h1/h2)|``."""
    if reach is None:
        order = sorted(members, key=lambda j: (chans[j][4] * chans[j][5], chans[j][0], chans[j][1]))
        return list(zip(order, order[1:]))
    dist = lambda a, b: abs(np.log(chans[a][4] / chans[b][4])) + abs(np.log(chans[a][5] / chans[b][5]))  # noqa: E731
    return [(a, b) for i, a in enumerate(members) for b in members[i + 1:] if dist(a, b) <= reach + 1e-9]


def _cross(cand: _Candidates, chans, pairs, alpha: float, shifts: bool, by: str = "size") -> None:
    """Drop the rows beaten by a row of a competing channel in the same tile of kernel
    max(k_a, k_b) at the coarser stride (aligned, and shifted if ``shifts``); all pairs
    decide on the rows as they enter."""
    beaten = np.zeros(len(cand.idx), bool)
    for a, b in pairs:
        sa, sb = chans[a][2], chans[b][2]
        common = max(sa, sb)
        if common % sa or common % sb:
            raise DetectionInputError(f"strides {sa} and {sb} of competing channels must divide one another "
                                      f"to compare them at a common resolution")
        k = kernel_size(alpha, max(_length(chans[a], by), _length(chans[b], by)), common)
        ra, rb = np.flatnonzero(cand.ch == a), np.flatnonzero(cand.ch == b)
        for shift in ((0, k // 2) if shifts else (0,)):
            ga, gb = cand.tiles(ra, common // sa, k, shift), cand.tiles(rb, common // sb, k, shift)
            beaten[ra] |= _beaten(ga, cand.key[ra], cand.idx[ra], _best(gb, cand.key[rb], cand.idx[rb]))
            beaten[rb] |= _beaten(gb, cand.key[rb], cand.idx[rb], _best(ga, cand.key[ra], cand.idx[ra]))
    cand.keep(~beaten)


def _result(decoded: Decoded, cand: _Candidates, max_per_class: int | None) -> Detections:
    return make_detections(decoded.boxes, decoded.scores, cand.idx, cand.c, max_per_class)


def maxpool_nms(decoded: Decoded, score_threshold: float = 0.05, alpha: float = ALPHA,
                max_per_class: int | None = 100, cross_channel: bool = True) -> Detections:
    """MaxpoolNMS: per level, per anchor channel and class, keep the winner of each k × k
    tile (stride k, the kernel rule of the channel's anchor size); then, with
    ``cross_channel``, drop a winner beaten by a winner of an adjacent anchor channel (by
    area) of the same level in the same tile of kernel max(k_a, k_b). Only boxes whose score
    exceeds ``score_threshold`` take part."""
    keys, thr = _keys(decoded, score_threshold)
    chans = _channels(decoded)
    idx, c = np.nonzero(keys > thr)
    # Box index -> (level, y, x, anchor) -> channel: levels are contiguous in the index.
    ch, y, x = (np.zeros(len(idx), np.int64) for _ in range(3))
    first = 0
    for lm in decoded.levels:
        na, w = len(lm.level.anchors), lm.level.grid[1]
        sel = (idx >= lm.start) & (idx < lm.start + lm.level.size)
        local = idx[sel] - lm.start
        ch[sel], y[sel], x[sel] = first + local % na, local // na // w, local // na % w
        first += na
    cand = _Candidates(ch, y, x, c, keys[idx, c], idx)
    kernels = _kernels(chans, alpha)
    cand.keep(cand.spatial(kernels, shifted=False))
    if cross_channel:
        pairs = [p for li in range(len(decoded.levels))
                 for p in _pairs(chans, [j for j, ch_ in enumerate(chans) if ch_[0] == li], None)]
        _cross(cand, chans, pairs, alpha, shifts=False)
    return _result(decoded, cand, max_per_class)


def _recover(decoded: Decoded, chans, keys: np.ndarray, thr) -> _Candidates:
    """Relationship Recovery: each candidate (box, class) goes to the channel whose anchor is
    nearest its regressed size (|ln w/aw| + |ln h/ah|, first channel on ties) at the cell
    holding its regressed centre (clipped to the grid); each cell keeps its best candidate."""
    idx, c = np.nonzero(keys > thr)
    boxes = decoded.boxes[idx].astype(np.float64)
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    aw = np.array([ch[4] for ch in chans])
    ah = np.array([ch[5] for ch in chans])
    ch = (np.abs(np.log(bw[:, None] / aw)) + np.abs(np.log(bh[:, None] / ah))).argmin(axis=1)
    stride = np.array([c_[2] for c_ in chans])[ch]
    gh = np.array([c_[3][0] for c_ in chans])[ch]
    gw = np.array([c_[3][1] for c_ in chans])[ch]
    y = np.clip(np.floor((boxes[:, 1] + boxes[:, 3]) / 2 / stride), 0, gh - 1).astype(np.int64)
    x = np.clip(np.floor((boxes[:, 0] + boxes[:, 2]) / 2 / stride), 0, gw - 1).astype(np.int64)
    cand = _Candidates(ch, y, x, c, keys[idx, c], idx)
    cand.keep(_best(_group(ch, y, x, c), cand.key, cand.idx)[3])
    return cand


def psrr_nms(decoded: Decoded, score_threshold: float = 0.05, alpha: float = ALPHA,
             max_per_class: int | None = 100, reach: float | None = REACH, shifted: bool = True,
             kernel_by: str = "size") -> Detections:
    """PSRR-MaxpoolNMS as docs/nms.md specifies it: Relationship Recovery of the candidates
    (score above ``score_threshold``) onto the anchor channels; per channel, keep the cells
    that win their k × k tile both on the aligned grid and on the grid shifted by k // 2;
    then drop the survivors beaten by a survivor of a competing channel (anchors within
    ``reach``, across levels; None: neighbours by area) in the same tile, aligned or
    shifted, at the coarser of the two strides. On integer codes every decision is exact.
    ``shifted=False`` drops the shifted tiles (aligned only) and ``kernel_by="width"`` scales
    the kernel by the anchor's width: both only to measure those choices (docs/nms.md)."""
    keys, thr = _keys(decoded, score_threshold)
    chans = _channels(decoded)
    cand = _recover(decoded, chans, keys, thr)
    kernels = _kernels(chans, alpha, kernel_by)
    keep = cand.spatial(kernels, False)
    if shifted:
        keep &= cand.spatial(kernels, True)
    cand.keep(keep)
    _cross(cand, chans, _pairs(chans, list(range(len(chans))), reach), alpha, shifted, kernel_by)
    return _result(decoded, cand, max_per_class)


def run_nms(method: str, decoded: Decoded, score_threshold: float = 0.05, iou_threshold: float = 0.5,
            max_per_class: int | None = 100, alpha: float = ALPHA) -> Detections:
    """Run the NMS named ``method`` (one of ``NMS_METHODS``: greedy, maxpool, psrr) with
    one set of arguments; ``iou_threshold`` is greedy's, ``alpha`` the pooling NMS'."""
    if method == "greedy":
        return greedy_nms(decoded, iou_threshold, score_threshold, max_per_class)
    if method == "maxpool":
        return maxpool_nms(decoded, score_threshold, alpha, max_per_class)
    if method == "psrr":
        return psrr_nms(decoded, score_threshold, alpha, max_per_class)
    raise UsageError(f"unknown NMS {method!r}; choose from: {', '.join(NMS_METHODS)}")
