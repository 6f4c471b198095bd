"""What the NMS core's CPU half decodes: only the candidates (runtime/nms_core.py).

The recovery needs the regressed boxes of the candidates (score above the threshold), and
the survivors — candidates all — need their boxes and scores for the rows. ``decode_candidates``
computes exactly those, with the arithmetic of ``runtime/decode.py`` (elementwise, in the
same order and types, so each value equals ``decode``'s bit for bit), and returns a
``Decoded`` stand-in whose ``boxes`` and ``scores`` hold them at the candidates' rows (zeros
elsewhere: nothing reads those).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import _centres, _dequant, sigmoid, ssd_boxes
from .heads import HeadSpec, Level


@dataclass(frozen=True)
class LevelView:
    level: Level
    start: int


@dataclass(frozen=True)
class Candidates:
    """The part of a ``Decoded`` the core's CPU half reads: ``levels`` (level, start),
    ``boxes`` (N, 4) and ``scores`` (N, C) filled at the candidates' rows."""
    spec: HeadSpec
    levels: tuple[LevelView, ...]
    boxes: np.ndarray
    scores: np.ndarray


def _maps(arr: np.ndarray, lv: Level) -> np.ndarray:
    """(H, W, A, K) view of an ``nchw`` output (``decode._read``)."""
    h, w = lv.grid
    a = len(lv.anchors)
    return np.asarray(arr).reshape(a, -1, h, w).transpose(2, 3, 0, 1)


def decode_candidates(spec: HeadSpec, outputs: dict, exponents: dict, score_exponent: int, thr: int):
    """(``Candidates``, the flat integer keys (N, C) at ``score_exponent``) of one frame's
    integer outputs; a candidate is a (box, class) whose key exceeds ``thr``."""
    keys, starts = [], []
    start = 0
    for lv in spec.levels:
        codes = _maps(outputs[lv.scores.output], lv)[..., :spec.num_classes].astype(np.int64)
        keys.append((codes << (exponents[lv.scores.output] - score_exponent)).reshape(-1, spec.num_classes))
        starts.append(start)
        start += lv.size
    keys = np.concatenate(keys)
    boxes = np.zeros((len(keys), 4), np.float32)
    scores = np.zeros(keys.shape, np.float32)
    idx, c = np.nonzero(keys > thr)
    for lv, s in zip(spec.levels, starts):
        mine = (idx >= s) & (idx < s + lv.size)
        i, k = idx[mine], c[mine]
        a_n, w = len(lv.anchors), lv.grid[1]
        cell, a = (i - s) // a_n, (i - s) % a_n
        y, x = cell // w, cell % w
        raw = _maps(outputs[lv.scores.output], lv)[y, x, a, k]
        scores[i, k] = sigmoid(_dequant(raw, exponents[lv.scores.output]))
        rows = np.unique(i)
        cell, a = (rows - s) // a_n, (rows - s) % a_n
        y, x = cell // w, cell % w
        d = _dequant(_maps(outputs[lv.boxes.output], lv)[y, x, a, :4], exponents[lv.boxes.output])
        ax, ay, aw, ah = _centres(lv)
        boxes[rows] = ssd_boxes(spec, d, ax[0, x, 0], ay[y, 0, 0], aw[a], ah[a])
    levels = tuple(LevelView(lv, s) for lv, s in zip(spec.levels, starts))
    return Candidates(spec, levels, boxes, scores), keys
