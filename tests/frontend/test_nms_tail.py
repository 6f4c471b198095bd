"""A tiny QDQ detector with ONNX NonMaxSuppression (at its end, or followed by
post-processing): the body passes ``check`` bit for bit, and the split-off tail computes
exactly what onnxruntime computes on the whole model."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.errors import UnsupportedError
from shiftflow.frontend.check import check_model
from shiftflow.frontend.cpu_ops import make_session
from shiftflow.frontend.nms_tail import split_nms_tail
from tests.modelgen import QDQBuilder


def detector_with_nms(cpb=0, thr=0.0, consumer=False, post=False, reads_input=False):
    """conv 3→5 on 8×8; channels 0-3 are 64 boxes, channel 4 their scores; then NMS.
    ``consumer``: an Identity of the selection is the output; ``post``: the selected boxes and
    scores are gathered (outputs ``dets`` (K, 5) and the class column); ``reads_input``: a
    node after the NMS reads the model input."""
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
    if post:  # Gather the selected boxes and scores, as exporters of torchvision-style detectors do
        col = lambda k, name: b.op("Gather", [sel, b.init(f"c{k}", np.array(k, np.int64))], axis=1)
        idx, cls = col(2, "idx"), col(1, "cls")
        flat_boxes = b.op("Reshape", [boxes, b.init("sh4", np.array([64, 4], np.int64))])
        flat_scores = b.op("Reshape", [scores, b.init("sh1", np.array([64, 1], np.int64))])
        picked = b.op("Gather", [flat_boxes, idx], axis=0)
        picked_scores = b.op("Gather", [flat_scores, idx], axis=0)
        b.nodes.append(helper.make_node("Concat", [picked, picked_scores], ["dets"], name="dets", axis=1))
        outs = [helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["K", 5]),
                helper.make_tensor_value_info(cls, TensorProto.INT64, ["K"])]
    if reads_input:  # the input's channels picked by the selected classes
        cls = b.op("Gather", [sel, b.init("c1", np.array(1, np.int64))], axis=1)
        b.nodes.append(helper.make_node("Gather", ["input", cls], ["odd"], name="odd", axis=1))
        outs = [helper.make_tensor_value_info("odd", TensorProto.FLOAT, None)]
    g = helper.make_graph(b.nodes, "det", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          outs, b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("cpb, thr", [(0, 0.0), (1, -0.5)])
def test_body_checks_bit_exact_and_the_tail_equals_onnxruntime(tmp_path, cpb, thr):
    model = detector_with_nms(cpb, thr)
    body, tail = split_nms_tail(model)
    assert [t.name for t in tail.nms] == ["nms"] and tail.nms[0].center_point_box == cpb
    assert tail.nms[0].max_output_boxes_per_class == 10 and tail.nms[0].score_threshold == pytest.approx(thr)
    assert tail.post_ops == []
    onnx.save(body, tmp_path / "body.onnx")
    report = check_model(tmp_path / "body.onnx", seed=0)
    assert report.bit_exact
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    # Graph optimizations off (as for L0): onnxruntime's QDQ propagation breaks on this graph.
    full = make_session(model.SerializeToString())
    expect = full.run(None, {"input": x})[0]
    part = make_session(body.SerializeToString())
    names = [o.name for o in part.get_outputs()]
    got = tail.run(dict(zip(names, part.run(names, {"input": x}))))["selected"]
    assert len(expect) > 0
    np.testing.assert_array_equal(got, expect)


def test_a_model_without_nms_is_unchanged_and_a_tail_reading_the_input_is_refused():
    body, _ = split_nms_tail(detector_with_nms())
    assert split_nms_tail(body) == (body, None)
    with pytest.raises(UnsupportedError, match="node .* after the NonMaxSuppression reads the model input 'input'"):
        split_nms_tail(detector_with_nms(reads_input=True))


@pytest.mark.parametrize("post", [False, True])
def test_post_processing_after_the_nms_runs_in_the_tail(tmp_path, post):
    """Nodes after the NMS (an Identity; Gathers of the selected boxes and scores and a Concat)
    go into the tail; the body keeps the conv, its outputs are what the tail reads, and
    ``check`` on the whole model compares every tail output with onnxruntime's bit for bit."""
    model = detector_with_nms(consumer=not post, post=post)
    body, tail = split_nms_tail(model)
    assert tail.post_ops == (["Gather"] * 4 + ["Concat"] if post else ["Identity"])
    assert "Conv" in {n.op_type for n in body.graph.node}
    assert not {"NonMaxSuppression", "Gather", "Concat"} & {n.op_type for n in body.graph.node}
    assert set(tail.inputs) <= {o.name for o in body.graph.output}
    want = {"dets", "selected"} if post else {"again", "selected"}
    assert want <= set(tail.outputs)
    onnx.save(model, tmp_path / "whole.onnx")
    report = check_model(tmp_path / "whole.onnx", seed=0)
    rows = {r["name"]: r for r in report.outputs if r.get("nms")}
    assert want <= set(rows) and report.bit_exact
    assert all(r["shape"][0] > 0 for r in rows.values())
