"""mAP on hand-made cases with known AP, against scikit-learn where its (uninterpolated) AP
coincides, and against a brute-force all-point AP on random data."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from shiftflow.runtime.decode import DetectionInputError
from shiftflow.runtime.metrics import average_precision, coco_map, evaluate, iou_matrix, voc_map

GT = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]], float)]


def det(*rows):
    return np.array(rows, float).reshape(-1, 6)


def test_perfect_detections_score_one_at_every_threshold():
    d = [det([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0])]
    r = evaluate(d, GT, 1)
    assert r["voc_map"] == 1.0 and r["coco_map"] == 1.0 and len(r["iou_thresholds"]) == 10


def test_a_false_positive_on_top():
    d = [det([50, 50, 60, 60, 0.95, 0], [0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0])]
    # precisions 1/2, 2/3 at recalls 1/2, 1: interpolated 2/3 everywhere
    assert voc_map(d, GT, 1) == pytest.approx(2 / 3)


def test_a_missed_object_and_a_duplicate():
    assert voc_map([det([0, 0, 10, 10, 0.9, 0])], GT, 1) == pytest.approx(0.5)
    d = [det([0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.85, 0], [20, 20, 30, 30, 0.8, 0])]
    # TP, FP (duplicate), TP: precisions 1, 1/2, 2/3 → 0.5 * 1 + 0.5 * 2/3
    assert voc_map(d, GT, 1) == pytest.approx(0.5 + 1 / 3)
    assert evaluate(d, GT, 1)["recall50"] == 1.0  # the duplicate adds nothing
    assert evaluate([det([0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0])], GT, 1)["recall50"] == 0.5
    assert np.isnan(evaluate([det()], [np.zeros((0, 5))], 1)["recall50"])


def test_iou_thresholds_and_classes():
    # IoU of [0,0,10,10] and [0,0,10,8] is 0.8: a TP up to 0.8, an FP above
    d = [det([0, 0, 10, 8, 0.9, 0], [20, 20, 30, 30, 0.8, 0])]
    r = evaluate(d, GT, 2)
    ap = r["ap"][0]
    assert np.isnan(r["ap"][1]).all()          # class 1 has no ground truth: left out of the mean
    np.testing.assert_allclose(ap[:7], 1.0)    # 0.50 .. 0.80
    np.testing.assert_allclose(ap[7:], 0.25)   # 0.85 .. 0.95: FP then TP, precision 1/2 at recall 1/2
    assert r["coco_map"] == pytest.approx((7 + 0.75) / 10)
    assert voc_map([det([0, 0, 10, 10, 0.9, 1])], GT, 2) == 0.0  # right box, wrong class
    assert coco_map([np.zeros((0, 6))], GT, 1) == 0.0


def test_iou_matrix():
    m = iou_matrix([[0, 0, 10, 10], [5, 5, 5, 9]], [[5, 0, 15, 10], [0, 0, 10, 10]])
    np.testing.assert_allclose(m, [[1 / 3, 1.0], [0.0, 0.0]])


def brute_force_ap(tp, num_gt):
    """AP by its definition: for each recall step, the best precision at that recall or beyond."""
    precs, recs, hits = [], [], 0
    for k, t in enumerate(tp, 1):
        hits += t
        precs.append(hits / k)
        recs.append(hits / num_gt)
    total, prev = 0.0, 0.0
    for k in range(len(tp)):
        if tp[k]:
            total += (recs[k] - prev) * max(precs[k:])
            prev = recs[k]
    return total


@pytest.mark.parametrize("seed", range(20))
def test_average_precision_against_brute_force_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    tp = (rng.random(int(rng.integers(1, 30))) < 0.6).astype(int)
    extra = int(rng.integers(0, 3))
    num_gt = int(tp.sum()) + extra
    if num_gt == 0:
        return
    assert average_precision(tp, num_gt) == pytest.approx(brute_force_ap(tp, num_gt))
    # scikit-learn's AP is not interpolated and assumes every positive is ranked; with all
    # true positives ranked before the false positives the two definitions agree.
    ordered = np.sort(tp)[::-1]
    if extra == 0 and 0 < ordered.sum() < len(ordered):
        sk = average_precision_score(ordered, np.arange(len(ordered), 0, -1))
        assert average_precision(ordered, num_gt) == pytest.approx(sk)


def test_dataset_of_jittered_copies_scores_one_and_drops_with_misses():
    rng = np.random.default_rng(5)
    gts, dets = [], []
    for _ in range(6):
        xy = np.array([[x, y] for x in (0, 40) for y in (0, 40)], float) + rng.uniform(0, 5, (4, 2))
        g = np.concatenate([xy, xy + 20], 1)
        gts.append(np.concatenate([g, rng.integers(0, 2, (4, 1))], 1))
        jitter = g + rng.uniform(-0.5, 0.5, g.shape)  # IoU >= (19/21)^2 > 0.8 with its own box
        dets.append(np.concatenate([jitter, rng.random((4, 1)), gts[-1][:, 4:]], 1))
    assert voc_map(dets, gts, 2) == 1.0
    # Drop each image's first detection: recall 3/4 at precision 1 in every class.
    n_gt = np.bincount(np.concatenate([g[:, 4] for g in gts]).astype(int), minlength=2)
    n_kept = np.bincount(np.concatenate([d[1:, 5] for d in dets]).astype(int), minlength=2)
    assert voc_map([d[1:] for d in dets], gts, 2) == pytest.approx(np.mean(n_kept / n_gt))


def test_refused_inputs():
    with pytest.raises(DetectionInputError, match="same images"):
        voc_map([det([0, 0, 1, 1, 0.5, 0])], [], 1)
    with pytest.raises(DetectionInputError, match="must not hold NaN"):
        voc_map([det([0, 0, 1, 1, np.nan, 0])], GT, 1)
