"""``shiftflow check`` on a quantized detector exported with its ONNX ``NonMaxSuppression``:
the body is compared bit for bit, the NMS tail runs on the CPU on L1's boxes and scores and
selects exactly what onnxruntime's operator selects on the whole model (L0); a wrong
selection is reported as a mismatch; what cannot run gives one line and exit 2."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.cli import main
from shiftflow.frontend.check import check_model
from tests.modelgen import QDQBuilder

CLASSES, ANCHORS, HW = 2, 2, 8  # stride-2 head on a 16×16 input: 8·8·2 = 128 boxes


def nms_detector(center_point_box=0, score_threshold=0.3, wide_boxes=True, inner=False, seed=0):
    """conv3×3/2 (8, ReLU, quantized) → two 3×3 heads: ``box`` 4·A channels (no output
    quantizer when ``wide_boxes``: the int accumulator, as a detector's heads) and ``cls``
    C·A logits (quantized) → Sigmoid → boxes (1, N, 4), scores (1, C, N) →
    NonMaxSuppression (≤ 5 a class, IoU 0.4)."""
    b = QDQBuilder((1, 3, 2 * HW, 2 * HW), in_frac=5, seed=seed)
    r = b.rng
    y = b.op("Conv", [b.cur, b.weight(r.integers(-16, 16, (8, 3, 3, 3)), 6)], kernel_shape=[3, 3], pads=[1] * 4,
             strides=[2, 2])
    y = b.quant(b.op("Relu", [y]), 4, signed=False)
    box = b.op("Conv", [y, b.weight(r.integers(-32, 32, (4 * ANCHORS, 8, 3, 3)), 6),
                        b.bias(r.integers(-64, 64, 4 * ANCHORS), 10)], kernel_shape=[3, 3], pads=[1] * 4)
    if not wide_boxes:
        box = b.quant(box, 3, 8)
    cls = b.op("Conv", [y, b.weight(r.integers(-32, 32, (CLASSES * ANCHORS, 8, 3, 3)), 6)], kernel_shape=[3, 3],
               pads=[1] * 4)
    cls = b.quant(cls, 4, 8)
    n = HW * HW * ANCHORS
    boxes = b.op("Reshape", [b.op("Transpose", [box], perm=[0, 2, 3, 1]), b.init("bs", np.array([1, n, 4]))])
    # (1, C·A, H, W) → (1, H, W, A, C) → (1, C, H·W·A): box-major like the boxes.
    logits = b.op("Reshape", [b.op("Transpose", [cls], perm=[0, 2, 3, 1]),
                              b.init("ls", np.array([1, HW, HW, ANCHORS, CLASSES]))])
    scores = b.op("Reshape", [b.op("Transpose", [logits], perm=[0, 4, 1, 2, 3]), b.init("ss", np.array([1, CLASSES, n]))])
    scores = b.op("Sigmoid", [scores])
    b.nodes.append(helper.make_node(
        "NonMaxSuppression", [boxes, scores, b.init("m", np.array([5], np.int64)), b.init("i", np.array([0.4], np.float32)),
                              b.init("t", np.array([score_threshold], np.float32))],
        ["selected"], name="nms", center_point_box=center_point_box))
    out = "selected"
    if inner:
        b.nodes.append(helper.make_node("Cast", ["selected"], ["selected_f"], name="after", to=TensorProto.FLOAT))
        out = "selected_f"
    g = helper.make_graph(b.nodes, "nmsdet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [1, 3, 2 * HW, 2 * HW])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT if inner else TensorProto.INT64,
                                                         ["K", 3])], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "nmsdet.onnx"
    onnx.save(nms_detector(), path)
    return path


@pytest.mark.parametrize("cpb, thr, wide", [(0, 0.3, True), (1, 0.3, False), (0, 0.0, True)])
def test_body_bit_exact_and_selected_indices_equal_onnxruntime(tmp_path, cpb, thr, wide):
    path = tmp_path / "m.onnx"
    onnx.save(nms_detector(cpb, thr, wide), path)
    for seed in range(3):
        report = check_model(path, seed=seed)
        assert report.bit_exact and report.max_abs_diff == 0.0, report.outputs
        body, nms = report.outputs[:-1], report.outputs[-1]
        assert [o["shape"] for o in body] == [[1, HW * HW * ANCHORS, 4], [1, CLASSES, HW * HW * ANCHORS]]
        assert nms["name"] == "selected" and nms["nms"] and nms["shape"][1] == 3
        assert 0 < nms["shape"][0] <= 5 * CLASSES  # it selected something, within the limit
        assert "nms_tail" in report.seconds


def test_a_wrong_selection_is_a_mismatch(model_path, monkeypatch):
    from shiftflow.frontend.nms_tail import CpuTail

    real = CpuTail.run
    monkeypatch.setattr(CpuTail, "run", lambda self, out: {k: v[:-1] for k, v in real(self, out).items()})
    report = check_model(model_path, seed=0)
    assert not report.bit_exact and report.max_abs_diff == float("inf")
    assert [o["bit_exact"] for o in report.outputs] == [True, True, False]


def test_cli_check_prints_the_nms_row_and_json(model_path, capsys):
    assert main(["check", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "selected [" in out and out.rstrip().endswith("L1 interpreter vs L0 onnxruntime: bit-exact")
    assert main(["check", str(model_path), "--json", "--seed", "2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["bit_exact"] and rep["outputs"][-1]["nms"] is True


def test_an_nms_feeding_another_node_checks_and_compiles_with_it_in_the_tail(tmp_path, capsys):
    """What reads the NMS's selection runs in the CPU tail with it: ``check`` compares both
    the selection and the node after it with onnxruntime; ``compile`` names it."""
    path = tmp_path / "inner.onnx"
    onnx.save(nms_detector(inner=True), path)
    assert main(["check", str(path), "--json"]) == 0
    rows = [o for o in json.loads(capsys.readouterr().out)["outputs"] if o.get("nms")]
    assert [o["name"] for o in rows] == ["selected_f", "selected"] and all(o["bit_exact"] for o in rows)
    assert main(["compile", str(path), "--target", "tiny", "-o", str(tmp_path / "build")]) == 0
    assert "NonMaxSuppression nms and 1 op after it on the CPU" in capsys.readouterr().out


def test_import_of_a_model_with_nms_says_what_runs_it(model_path):
    from shiftflow.errors import UnsupportedError
    from shiftflow.frontend.importer import import_onnx

    with pytest.raises(UnsupportedError, match="depends on the data.*CPU tail"):
        import_onnx(model_path)
