"""Detection accuracy: mean average precision, VOC-style (IoU 0.5) and COCO-style (mean over
IoU 0.50:0.95, step 0.05).

Inputs per image: detections (K, 6) ``[x0, y0, x1, y1, score, class]`` (any NMS's
``Detections.rows``) and ground truth (M, 5) ``[x0, y0, x1, y1, class]``, in the same
pixel frame. The rules, the same at every IoU threshold ``t``:

- per class, all images' detections are taken by descending score (a stable sort: equal
  scores keep image order, then row order);
- a detection is a true positive when the ground truth box of its class and image with the
  highest IoU has IoU ≥ ``t`` and was not matched before; otherwise (no overlap, too low,
  or that box already matched — a duplicate) it is a false positive (the PASCAL VOC rule);
- AP is the all-point interpolated area: precision made non-increasing from the right,
  summed over the recall steps (VOC 2010+);
- a class without ground truth has no AP (NaN) and does not enter the mean; a class with
  ground truth and no detection has AP 0. IoU uses continuous coordinates (no +1).
"""

from __future__ import annotations

import numpy as np

from .decode import DetectionInputError

COCO_IOUS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes; empty boxes have IoU 0 with everything."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of detections in descending score order (``tp`` 1/0 per
    detection) against ``num_gt`` ground truth boxes; NaN when ``num_gt`` is 0."""
    if num_gt == 0:
        return float("nan")
    tp = np.asarray(tp, np.float64)
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = np.concatenate([[0.0], ctp / num_gt])
    precision = np.concatenate([[0.0], ctp / np.arange(1, tp.size + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _check(dets, gts):
    if len(dets) != len(gts):
        raise DetectionInputError(f"detections and ground truth must cover the same images, found "
                                  f"{len(dets)} and {len(gts)}")
    out_d, out_g = [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        d = np.asarray(d, np.float64).reshape(-1, 6) if np.size(d) else np.zeros((0, 6))
        g = np.asarray(g, np.float64).reshape(-1, 5) if np.size(g) else np.zeros((0, 5))
        if np.isnan(d).any() or np.isnan(g).any():
            raise DetectionInputError(f"image {i}: detections and ground truth must not hold NaN")
        out_d.append(d)
        out_g.append(g)
    return out_d, out_g


def _class_tp(dets, gts, cls: int, thresholds) -> tuple[np.ndarray, int]:
    """(T, K) true-positive flags of class ``cls``'s detections in AP order, and its GT count."""
    rows, ious = [], []
    num_gt = 0
    for d, g in zip(dets, gts):
        dc, gc = d[d[:, 5] == cls], g[g[:, 4] == cls]
        num_gt += len(gc)
        rows.append(dc)
        ious.append(iou_matrix(dc[:, :4], gc[:, :4]))
    flags = np.zeros((len(thresholds), sum(len(r) for r in rows)), np.int8)
    scores = np.concatenate([r[:, 4] for r in rows]) if rows else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    image = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)]).astype(np.int64)
    local = np.concatenate([np.arange(len(r)) for r in rows]).astype(np.int64)
    for t, thr in enumerate(thresholds):
        taken = [np.zeros(iou.shape[1], bool) for iou in ious]
        for rank, k in enumerate(order):
            iou = ious[image[k]][local[k]]
            if iou.size == 0:
                continue
            j = int(np.argmax(iou))
            if iou[j] >= thr and not taken[image[k]][j]:
                taken[image[k]][j] = True
                flags[t, rank] = 1
    return flags, num_gt


def evaluate(detections, ground_truth, num_classes: int, iou_thresholds=COCO_IOUS) -> dict:
    """AP per class and threshold over a dataset (lists, one entry per image). Returns
    ``{"ap": (C, T) array, "iou_thresholds", "voc_map": mAP at 0.5, "coco_map": mean over
    the thresholds of the per-threshold mAP, "ap50": per-class AP at 0.5, "recall50": the
    fraction of all ground truth boxes matched at 0.5 (NaN without any)}``; the 0.5 figures
    need 0.5 among ``iou_thresholds``."""
    dets, gts = _check(detections, ground_truth)
    ths = tuple(float(t) for t in iou_thresholds)
    ap = np.full((num_classes, len(ths)), np.nan)
    i50 = ths.index(0.5) if 0.5 in ths else None
    matched = total = 0
    for c in range(num_classes):
        flags, num_gt = _class_tp(dets, gts, c, ths)
        ap[c] = [average_precision(f, num_gt) for f in flags]
        total += num_gt
        matched += int(flags[i50].sum()) if i50 is not None else 0
    has_gt = ~np.isnan(ap[:, 0])
    per_t = ap[has_gt].mean(axis=0) if has_gt.any() else np.full(len(ths), np.nan)
    return {"ap": ap, "iou_thresholds": ths,
            "voc_map": float(per_t[i50]) if i50 is not None else float("nan"),
            "coco_map": float(per_t.mean()),
            "ap50": ap[:, i50] if i50 is not None else None,
            "recall50": matched / total if i50 is not None and total else float("nan")}


def voc_map(detections, ground_truth, num_classes: int) -> float:
    """mAP at IoU 0.5 (all-point interpolated AP averaged over classes with ground truth)."""
    return evaluate(detections, ground_truth, num_classes, (0.5,))["voc_map"]


def coco_map(detections, ground_truth, num_classes: int) -> float:
    """mAP averaged over IoU 0.50, 0.55, ..., 0.95 (with the same matching and AP rules)."""
    return evaluate(detections, ground_truth, num_classes)["coco_map"]
