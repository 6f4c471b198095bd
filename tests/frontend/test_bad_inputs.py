"""Every bad input is a one-line error that says what is wrong; messages are pinned here."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.cli import main
from shiftflow.errors import ImportError_, QuantizationError, UnsupportedError, UsageError
from shiftflow.frontend.importer import import_onnx
from tests.modelgen import QDQBuilder, conv_layer_model


def save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _set_init(model, name, value):
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(value, name))


def test_non_po2_scale_names_node_scale_and_fix(tmp_path):
    m = conv_layer_model()
    _set_init(m, "s1", np.asarray(0.1, np.float32))  # the input quantizer's scale
    with pytest.raises(QuantizationError, match=r"node 'Q4': scale 0.100000001 is not a power of two "
                                                r"\(shiftflow needs scales 2\*\*-frac\); re-quantize the float "
                                                r"model with `shiftflow quantize`"):
        import_onnx(save(tmp_path, m))


def test_nonzero_zero_point(tmp_path):
    m = conv_layer_model()
    _set_init(m, "z2", np.asarray(3, np.int8))
    with pytest.raises(QuantizationError, match=r"node 'Q4': zero point \[3\] must be 0"):
        import_onnx(save(tmp_path, m))


def test_truncated_file(tmp_path):
    path = save(tmp_path, conv_layer_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImportError_, match=r"is not a valid ONNX model \(truncated or corrupt\?\)"):
        import_onnx(path)


def test_garbage_and_empty_files(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01not onnx at all" * 10)
    with pytest.raises(ImportError_, match="not a valid ONNX model"):
        import_onnx(path)
    path.write_bytes(b"")
    with pytest.raises(ImportError_, match="is empty, not an ONNX model"):
        import_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read '.*nope.onnx': no such file"):
        import_onnx(tmp_path / "nope.onnx")


def _dynamic_model():
    m = conv_layer_model(hw=(6, 6))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param = "N"
    dims[2].dim_param = "H"
    return m


def test_dynamic_shape_needs_input_shape(tmp_path):
    with pytest.raises(ImportError_, match=r"input 'input' has a dynamic or unknown shape \[\?,3,\?,6\]; give a "
                                           r"static one with --input-shape input=1,3,224,224"):
        import_onnx(save(tmp_path, _dynamic_model()))


def test_dynamic_shape_with_input_shape_imports(tmp_path):
    g = import_onnx(save(tmp_path, _dynamic_model()), {"input": (1, 3, 10, 6)})
    assert g.types["input"].shape == (1, 3, 10, 6)


def test_input_shape_for_unknown_input(tmp_path):
    with pytest.raises(UsageError, match=r"--input-shape names 'x', but the model's inputs are \['input'\]"):
        import_onnx(save(tmp_path, _dynamic_model()), {"x": (1, 3, 6, 6)})


def test_model_without_shape_information(tmp_path):
    b = QDQBuilder((1, 2, 3, 3))
    nz = b.op("NonZero", [b.cur])
    m = b.model(b.cur)
    m.graph.node.append(helper.make_node("Identity", [nz], ["nz_out"], name="after"))
    m.graph.output.append(helper.make_tensor_value_info("nz_out", TensorProto.INT64, None))
    m.graph.output[1].type.tensor_type.shape.SetInParent()
    with pytest.raises(ImportError_, match=r"cannot determine the shape of tensor 'nonzero\d+' \(output of node "
                                           r"'NonZero\d+', NonZero\); the model lacks static shape information"):
        import_onnx(save(tmp_path, m))


def test_unsupported_activation_bit_width(tmp_path):
    b = QDQBuilder((1, 2, 3, 3))
    s = b.init("s", np.asarray(0.25, np.float32))
    z = b.init("z", np.zeros((), np.int16))
    q = b.op("QuantizeLinear", [b.cur, s, z])
    out = b.op("DequantizeLinear", [q, s, z])
    with pytest.raises(UnsupportedError, match=r"node 'QuantizeLinear\d+': activation bit width 16 \(range "
                                               r"\[-32768, 32767\]\) is not supported; shiftflow supports 2..8-bit"):
        import_onnx(save(tmp_path, b.model(out)))


def test_unsupported_weight_bit_width(tmp_path):
    b = QDQBuilder((1, 2, 3, 3))
    w = b.init("w", np.ones((2, 2, 1, 1), np.int16) * 1000)
    s = b.init("s", np.asarray(0.25, np.float32))
    z = b.init("z", np.zeros((), np.int16))
    wdq = b.op("DequantizeLinear", [w, s, z])
    y = b.quant(b.op("Conv", [b.cur, wdq], kernel_shape=[1, 1]), 0)
    with pytest.raises(UnsupportedError, match=r"node 'Conv\d+': weight bit width 16 is not supported; shiftflow "
                                               r"supports 2..8-bit weights"):
        import_onnx(save(tmp_path, b.model(y)))


def test_non_float_input(tmp_path):
    m = conv_layer_model()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT8
    with pytest.raises(UnsupportedError, match=r"input 'input' must be a float32 tensor, got int8"):
        import_onnx(save(tmp_path, m))


@pytest.mark.parametrize("argv_tail, message", [
    (["check", "{missing}"], "error: cannot read '{missing}': no such file"),
    (["check", "{model}", "--input", "{missing}"], "error: cannot read '{missing}': no such file"),
    (["check", "{model}", "--input", "{wrong}"], "error: input 'input' must have shape [1, 3, 9, 7], got [2, 2]"),
    (["check", "{model}", "--seed", "x"], "error: shiftflow check: argument --seed: invalid int value: 'x'"),
    (["inspect", "{model}", "--bogus"], "error: shiftflow: unrecognized arguments: --bogus"),
])
def test_cli_user_errors_are_one_line_exit_2(tmp_path, capsys, argv_tail, message):
    paths = {"missing": str(tmp_path / "missing.onnx"), "model": str(save(tmp_path, conv_layer_model())),
             "wrong": str(tmp_path / "wrong.npy")}
    np.save(paths["wrong"], np.zeros((2, 2), np.float32))
    argv = [a.format(**paths) for a in argv_tail]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == message.format(**paths)
    assert len(err.strip().splitlines()) == 1
