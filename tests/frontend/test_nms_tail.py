"""A tiny QDQ detector ending in ONNX NonMaxSuppression: the body passes ``check`` bit for
bit, and the split-off NMS selects exactly what onnxruntime selects on the whole model."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.errors import UnsupportedError
from shiftflow.frontend.check import check_model
from shiftflow.frontend.cpu_ops import make_session
from shiftflow.frontend.nms_tail import run_nms_tail, split_nms_tail
from tests.modelgen import QDQBuilder


def detector_with_nms(cpb=0, thr=0.0, consumer=False):
    """conv 3→5 on 8×8; channels 0-3 are 64 boxes, channel 4 their scores; then NMS."""
    b = QDQBuilder((1, 3, 8, 8), in_frac=5, seed=0)
    y = b.op("Conv", [b.cur, b.weight(b.rng.integers(-8, 8, (5, 3, 3, 3)), 5)], kernel_shape=[3, 3], pads=[1] * 4)
    y = b.quant(y, 4)

    def cut(lo, hi, shape):
        s = b.op("Slice", [y, b.init("st", np.array([lo], np.int64)), b.init("en", np.array([hi], np.int64)),
                           b.init("ax", np.array([1], np.int64))])
        return b.op("Reshape", [s, b.init("sh", np.array(shape, np.int64))])

    boxes = b.op("Transpose", [cut(0, 4, [1, 4, 64])], perm=[0, 2, 1])
    scores = cut(4, 5, [1, 1, 64])
    sel = "selected"
    b.nodes.append(helper.make_node(
        "NonMaxSuppression", [boxes, scores, b.init("m", np.array([10], np.int64)),
                              b.init("i", np.array([0.3], np.float32)), b.init("t", np.array([thr], np.float32))],
        [sel], name="nms", center_point_box=cpb))
    outs = [helper.make_tensor_value_info(sel, TensorProto.INT64, ["K", 3])]
    if consumer:
        b.nodes.append(helper.make_node("Identity", [sel], ["again"], name="after"))
        outs = [helper.make_tensor_value_info("again", TensorProto.INT64, ["K", 3])]
    g = helper.make_graph(b.nodes, "det", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          outs, b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("cpb, thr", [(0, 0.0), (1, -0.5)])
def test_body_checks_bit_exact_and_the_tail_equals_onnxruntime(tmp_path, cpb, thr):
    model = detector_with_nms(cpb, thr)
    body, tails = split_nms_tail(model)
    assert [t.name for t in tails] == ["nms"] and tails[0].center_point_box == cpb
    assert tails[0].max_output_boxes_per_class == 10 and tails[0].score_threshold == pytest.approx(thr)
    onnx.save(body, tmp_path / "body.onnx")
    report = check_model(tmp_path / "body.onnx", seed=0)
    assert report.bit_exact
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    # Graph optimizations off (as for L0): onnxruntime's QDQ propagation breaks on this graph.
    full = make_session(model.SerializeToString())
    expect = full.run(None, {"input": x})[0]
    part = make_session(body.SerializeToString())
    names = [o.name for o in part.get_outputs()]
    got = run_nms_tail(tails, dict(zip(names, part.run(names, {"input": x}))))["selected"]
    assert len(expect) > 0
    np.testing.assert_array_equal(got, expect)


def test_a_model_without_nms_is_unchanged_and_an_inner_nms_is_refused():
    body, _ = split_nms_tail(detector_with_nms())
    assert split_nms_tail(body) == (body, ())
    with pytest.raises(UnsupportedError, match="must end the model .*feeds 'after'"):
        split_nms_tail(detector_with_nms(consumer=True))
