"""Non-maximum suppression: greedy (equal to onnxruntime's ``NonMaxSuppression``), and the
common result type of all three NMS (``nms_pool.py`` has MaxpoolNMS and PSRR-MaxpoolNMS).

Every NMS here returns ``Detections``: ``rows`` (K, 6) float32 ``[x0, y0, x1, y1, score,
class]`` and ``index`` (K,) int64, the flat box index (runtime/decode.py) of each row. Rows
are ordered by score descending, then box index ascending, then class ascending, so equal
inputs give equal outputs. A box is a candidate for class ``c`` when its score is strictly
above ``score_threshold`` (as in onnxruntime). NaN scores are refused.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .decode import Decoded, DetectionInputError

NMS_METHODS = ("greedy", "maxpool", "psrr")


class Detections(NamedTuple):
    rows: np.ndarray   # (K, 6) float32: x0, y0, x1, y1, score, class
    index: np.ndarray  # (K,) int64 flat box index of each row


def empty_detections() -> Detections:
    return Detections(np.zeros((0, 6), np.float32), np.zeros(0, np.int64))


def check_scores(scores: np.ndarray, what: str = "scores") -> None:
    """Refuse NaN scores with a one-line ``DetectionInputError`` (NaN has no order)."""
    bad = np.isnan(scores)
    if bad.any():
        raise DetectionInputError(f"{what} must not be NaN, found {int(bad.sum())} NaN of {bad.size}")


def make_detections(boxes: np.ndarray, scores: np.ndarray, index: np.ndarray, cls: np.ndarray,
                    max_per_class: int | None = None) -> Detections:
    """Rows for kept (box ``index``, class ``cls``) pairs, in the documented order; with
    ``max_per_class``, only each class's first that many (in that order) are kept."""
    index = np.asarray(index, np.int64)
    cls = np.asarray(cls, np.int64)
    score = scores[index, cls].astype(np.float32)
    order = np.lexsort((cls, index, -score.astype(np.float64)))
    index, cls, score = index[order], cls[order], score[order]
    if max_per_class is not None:
        rank = np.zeros(len(cls), np.int64)
        for c in np.unique(cls):
            sel = cls == c
            rank[sel] = np.arange(sel.sum())
        keep = rank < max_per_class
        index, cls, score = index[keep], cls[keep], score[keep]
    rows = np.concatenate([boxes[index].astype(np.float32), score[:, None], cls[:, None].astype(np.float32)], 1)
    return Detections(rows.reshape(-1, 6), index)


def _corners(boxes: np.ndarray, center_point_box: int):
    """(x_min, y_min, x_max, y_max) float32 columns the way onnxruntime forms them."""
    b = boxes.astype(np.float32, copy=False)
    if center_point_box:
        hw, hh = b[:, 2] / np.float32(2), b[:, 3] / np.float32(2)
        return b[:, 0] - hw, b[:, 1] - hh, b[:, 0] + hw, b[:, 1] + hh
    # [y1, x1, y2, x2], any diagonal pair of corners
    return (np.minimum(b[:, 1], b[:, 3]), np.minimum(b[:, 0], b[:, 2]),
            np.maximum(b[:, 1], b[:, 3]), np.maximum(b[:, 0], b[:, 2]))


def _suppressed_by(c, i: int, rest: np.ndarray, thr: np.float32) -> np.ndarray:
    """Whether box ``i`` suppresses each box of ``rest``: onnxruntime's float32 IoU test
    (no overlap, an empty box or an empty union never suppresses; IoU > threshold)."""
    x0, y0, x1, y1 = c
    ix0, ix1 = np.maximum(x0[i], x0[rest]), np.minimum(x1[i], x1[rest])
    iy0, iy1 = np.maximum(y0[i], y0[rest]), np.minimum(y1[i], y1[rest])
    inter = (ix1 - ix0) * (iy1 - iy0)
    area_i = (x1[i] - x0[i]) * (y1[i] - y0[i])
    area_r = (x1[rest] - x0[rest]) * (y1[rest] - y0[rest])
    union = area_i + area_r - inter
    ok = (ix1 > ix0) & (iy1 > iy0) & (inter > 0) & (area_i > 0) & (area_r > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return ok & (iou > thr)


def _greedy_one(c, scores: np.ndarray, cand: np.ndarray, max_out: int, thr: np.float32) -> list[int]:
    """Greedy selection for one class over candidate box ids ``cand``: highest score first,
    lower box index first among equal scores; a box is dropped when a selected box's IoU
    with it exceeds ``thr``; at most ``max_out`` (0: no limit) are selected."""
    order = cand[np.lexsort((cand, -scores[cand].astype(np.float64)))]
    alive = np.ones(len(order), bool)
    selected: list[int] = []
    for j in range(len(order)):
        if not alive[j]:
            continue
        if max_out and len(selected) >= max_out:
            break
        selected.append(int(order[j]))
        rest = j + 1 + np.flatnonzero(alive[j + 1:])
        if len(rest):
            alive[rest[_suppressed_by(c, order[j], order[rest], thr)]] = False
    return selected


def onnx_nms(boxes: np.ndarray, scores: np.ndarray, max_output_boxes_per_class: int = 0,
             iou_threshold: float = 0.0, score_threshold: float | None = None,
             center_point_box: int = 0) -> np.ndarray:
    """ONNX ``NonMaxSuppression`` with onnxruntime's exact results: ``boxes`` (B, N, 4),
    ``scores`` (B, C, N); returns ``selected_indices`` (K, 3) int64 ``[batch, class, box]``
    ordered by batch, class, then selection order. ``max_output_boxes_per_class`` ≤ 0 selects
    nothing (the operator's default 0); without ``score_threshold`` every box is a candidate."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
            or scores.shape[2] != boxes.shape[1]:
        raise DetectionInputError(f"NonMaxSuppression needs boxes (B, N, 4) and scores (B, C, N), found "
                                  f"{boxes.shape} and {scores.shape}")
    if center_point_box not in (0, 1):
        raise DetectionInputError(f"center_point_box must be 0 or 1, found {center_point_box}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise DetectionInputError(f"iou_threshold must be in [0, 1], found {iou_threshold}")
    check_scores(scores)
    out: list[tuple[int, int, int]] = []
    if max_output_boxes_per_class <= 0:
        return np.zeros((0, 3), np.int64)
    thr = np.float32(iou_threshold)
    for b in range(boxes.shape[0]):
        c = _corners(boxes[b], center_point_box)
        for k in range(scores.shape[1]):
            s = scores[b, k]
            cand = np.arange(len(s)) if score_threshold is None else np.flatnonzero(s > np.float32(score_threshold))
            out.extend((b, k, i) for i in _greedy_one(c, s, cand, max_output_boxes_per_class, thr))
    return np.asarray(out, np.int64).reshape(-1, 3)


def greedy_nms(decoded: Decoded, iou_threshold: float = 0.5, score_threshold: float = 0.05,
               max_per_class: int | None = 100) -> Detections:
    """Per-class greedy NMS on decoded boxes (xyxy), selecting exactly what onnxruntime's
    ``NonMaxSuppression`` selects for the same boxes in ``[y1, x1, y2, x2]`` form, scores,
    ``iou_threshold``, ``score_threshold`` and ``max_per_class`` (None: no limit)."""
    return greedy_boxes(decoded.boxes, decoded.scores, iou_threshold, score_threshold, max_per_class)


def greedy_boxes(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5,
                 score_threshold: float = 0.05, max_per_class: int | None = 100) -> Detections:
    """``greedy_nms`` on plain arrays: ``boxes`` (N, 4) xyxy, ``scores`` (N, C);
    ``max_per_class`` 0 selects nothing, as in ONNX."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    check_scores(scores)
    if not 0.0 <= iou_threshold <= 1.0:
        raise DetectionInputError(f"iou_threshold must be in [0, 1], found {iou_threshold}")
    c = _corners(boxes[:, [1, 0, 3, 2]], 0)
    thr = np.float32(iou_threshold)
    keep_i, keep_c = [], []
    if max_per_class is not None and max_per_class <= 0:
        return empty_detections()
    for k in range(scores.shape[1]):
        cand = np.flatnonzero(scores[:, k] > np.float32(score_threshold))
        sel = _greedy_one(c, scores[:, k], cand, max_per_class or 0, thr)
        keep_i += sel
        keep_c += [k] * len(sel)
    return make_detections(boxes, scores, np.asarray(keep_i, np.int64), np.asarray(keep_c, np.int64))
