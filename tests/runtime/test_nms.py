"""Greedy NMS equals onnxruntime's NonMaxSuppression, ties included (equal scores,
identical boxes), for both box formats, thresholds and per-class limits."""

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from shiftflow.runtime.decode import DetectionInputError
from shiftflow.runtime.nms import greedy_boxes, onnx_nms

_SESSIONS = {}


def ort_nms(boxes, scores, max_out, iou, score_thr, cpb):
    """onnxruntime running a one-node NonMaxSuppression model (cached per attribute/inputs)."""
    key = (cpb, score_thr is None)
    if key not in _SESSIONS:
        names = ["boxes", "scores", "max_out", "iou"] + ([] if score_thr is None else ["score_thr"])
        types = [TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT]
        ins = [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types)]
        node = helper.make_node("NonMaxSuppression", names, ["sel"], center_point_box=cpb)
        g = helper.make_graph([node], "nms", ins, [helper.make_tensor_value_info("sel", TensorProto.INT64, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
        m.ir_version = 10
        _SESSIONS[key] = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"boxes": boxes, "scores": scores, "max_out": np.array([max_out], np.int64),
             "iou": np.array([iou], np.float32)}
    if score_thr is not None:
        feeds["score_thr"] = np.array([score_thr], np.float32)
    return _SESSIONS[key].run(None, feeds)[0]


@st.composite
def nms_cases(draw):
    b, c, n = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(0, 24))
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    # Coordinates on a coarse grid and scores from a few levels: many exact ties, identical
    # boxes, touching edges and zero-area boxes.
    boxes = rng.integers(0, 6, size=(b, n, 4)).astype(np.float32) * draw(st.sampled_from([1.0, 0.5, 0.1]))
    if n >= 3 and draw(st.booleans()):
        boxes[:, 1] = boxes[:, 0]
        boxes[:, 2] = boxes[:, 0]
    scores = (rng.integers(0, 5, size=(b, c, n)) / 4).astype(np.float32)
    max_out = draw(st.integers(0, 6))
    iou = draw(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]))
    score_thr = draw(st.sampled_from([None, 0.0, 0.25, 0.5]))
    cpb = draw(st.integers(0, 1))
    return boxes, scores, max_out, iou, score_thr, cpb


@settings(max_examples=300, deadline=None)
@given(nms_cases())
def test_onnx_nms_equals_onnxruntime(case):
    expect = ort_nms(*case)
    got = onnx_nms(*case)
    assert got.dtype == np.int64 and got.shape == expect.shape
    np.testing.assert_array_equal(got, expect)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 60))
def test_greedy_on_float_boxes_equals_onnxruntime(seed, n):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, size=(n, 2)).astype(np.float32)
    scores[rng.random(n) < 0.3, 0] = 0.5  # ties
    det = greedy_boxes(boxes, scores, 0.45, 0.2, max_per_class=5)
    sel = ort_nms(boxes[None][:, :, [1, 0, 3, 2]], scores.T[None].copy(), 5, 0.45, 0.2, 0)
    assert sorted(zip(det.index.tolist(), det.rows[:, 5].astype(int).tolist())) == \
        sorted(zip(sel[:, 2].tolist(), sel[:, 1].tolist()))
    np.testing.assert_array_equal(det.rows[:, :4], boxes[det.index])
    np.testing.assert_array_equal(det.rows[:, 4], scores[det.index, det.rows[:, 5].astype(int)])


def test_rows_are_ordered_by_score_then_index_then_class():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    scores = np.array([[0.5, 0.9], [0.9, 0.5], [0.5, 0.5]], np.float32)
    det = greedy_boxes(boxes, scores, 0.5, 0.1)
    assert det.index.tolist() == [0, 1, 0, 1, 2, 2]
    assert det.rows[:, 5].tolist() == [1, 0, 0, 1, 0, 1]
    assert det.rows.dtype == np.float32 and det.rows.shape == (6, 6)


def test_empty_and_refused_inputs():
    det = greedy_boxes(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32))
    assert det.rows.shape == (0, 6) and det.index.shape == (0,)
    assert greedy_boxes(np.zeros((1, 4), np.float32), np.ones((1, 1), np.float32), max_per_class=0).rows.shape == (0, 6)
    with pytest.raises(DetectionInputError, match="scores must not be NaN, found 1 NaN"):
        greedy_boxes(np.zeros((2, 4), np.float32), np.array([[0.5], [np.nan]], np.float32))
    with pytest.raises(DetectionInputError, match=r"iou_threshold must be in \[0, 1\]"):
        onnx_nms(np.zeros((1, 2, 4)), np.zeros((1, 1, 2)), 3, 1.5)
    with pytest.raises(DetectionInputError, match=r"boxes \(B, N, 4\) and scores \(B, C, N\)"):
        onnx_nms(np.zeros((1, 2, 4)), np.zeros((1, 1, 3)), 3)
