"""Every bad input is a one-line error that says what is wrong; messages are pinned here."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.cli import main
from shiftflow.errors import ImportError_, QuantizationError, UnsupportedError, UsageError
from shiftflow.frontend import cpu_ops
from shiftflow.frontend.check import check_model
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
    m.graph.input[0].type.tensor_type.elem_type = 33  # found by fuzzing: the message's dtype lookup raised KeyError
    with pytest.raises(UnsupportedError, match=r"input 'input' must be a float32 tensor, got element type 33, which "
                                               r"ONNX does not define$"):
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


def _unchecked_model(b: QDQBuilder, output: str) -> onnx.ModelProto:
    """``b``'s model with a symbolic rank-4 output, without shape inference (which may refuse it)."""
    g = helper.make_graph(b.nodes, "gen", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         list(b.input_shape))],
                          [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", "c", "h", "w"])], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2])
def test_quantize_linear_to_float8(tmp_path, dtype):
    b = QDQBuilder((1, 2, 3, 3))
    s = b.init("s", np.asarray(0.25, np.float32))
    b.inits.append(helper.make_tensor("z8", dtype, [], [0.0]))
    out = b.op("DequantizeLinear", [b.op("QuantizeLinear", [b.cur, s, "z8"]), s, "z8"])
    name = TensorProto.DataType.Name(dtype)
    with pytest.raises(UnsupportedError, match=rf"node 'QuantizeLinear\d+': QuantizeLinear to {name} is not "
                                               r"supported; shiftflow quantizes activations to 2..8-bit integers"):
        import_onnx(save(tmp_path, b.model(out)))


def test_0d_tensor_between_cpu_ops_is_bit_exact(tmp_path):
    """A CPU op's 0-d output, quantized, feeds another CPU op: numpy makes the dequantized
    0-d array a scalar, which onnxruntime refused; now all levels agree."""
    b = QDQBuilder((1, 2, 3, 3))
    peak = b.quant(b.op("ReduceMax", [b.cur], keepdims=0), 4)
    path = save(tmp_path, b.model(b.op("Neg", [peak])))
    report = check_model(path, seed=1)
    assert report.bit_exact and report.outputs[0]["shape"] == []


@pytest.mark.parametrize("op, attrs, hw, message", [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, (1, 8),
     r"node 'MaxPool\d+' \(MaxPool\): its 2x2 window \(dilations \[1, 1\]\) is larger than its 1x8 input padded by "
     r"\[0, 0, 0, 0\]; give the model a larger input"),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0]}, (2, 2),
     r"\(AveragePool\): its 3x3 window \(dilations \[1, 1\]\) is larger than its 2x2 input"),
    ("Conv", {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]}, (2, 9),
     r"\(Conv\): its 3x3 window \(dilations \[2, 2\]\) is larger than its 2x9 input padded by \[1, 1, 1, 1\]"),
])
def test_window_larger_than_its_padded_input(tmp_path, op, attrs, hw, message):
    """ONNX shape inference gives such a pool an output row (C++ division truncates), which
    compile used to refuse with a contradictory line-buffer message and check crashed on."""
    b = QDQBuilder((1, 2) + hw)
    inputs = [b.cur] + ([b.weight(np.ones((2, 2, 3, 3)), 3)] if op == "Conv" else [])
    path = save(tmp_path, _unchecked_model(b, b.quant(b.op(op, inputs, **attrs), 3)))
    with pytest.raises(UnsupportedError, match=message):
        import_onnx(path)


def test_empty_tensor(tmp_path):
    b = QDQBuilder((1, 2, 4, 4))
    ints = [b.init(n, np.asarray([v], np.int64)) for n, v in (("st", 2), ("en", 2), ("ax", 2))]
    path = save(tmp_path, _unchecked_model(b, b.op("Slice", [b.cur, *ints])))
    with pytest.raises(UnsupportedError, match=r"node 'Slice\d+' \(Slice\): output 'slice\d+' has shape "
                                               r"\[1, 2, 0, 4\], with no elements; shiftflow needs non-empty tensors"):
        import_onnx(path)


def test_model_without_outputs(tmp_path):
    m = conv_layer_model()
    del m.graph.output[:]
    with pytest.raises(ImportError_, match=r"'.*m.onnx' has no graph outputs: nothing to compute"):
        import_onnx(save(tmp_path, m))


def test_opset_newer_than_onnx(tmp_path):
    m = conv_layer_model()
    m.opset_import[0].version = 99
    with pytest.raises(UnsupportedError, match=r"imports ONNX opset 99; onnx \S+ knows opsets up to (\d+): export "
                                               r"the model at opset \1 or lower"):
        import_onnx(save(tmp_path, m))


def test_onnxruntime_failure_is_one_line(tmp_path):
    """What onnxruntime refuses becomes an UnsupportedError without its status prefix and
    C++ source location (a model newer than onnxruntime's opsets stands in for any)."""
    m = conv_layer_model()
    m.opset_import[0].version = 99
    with pytest.raises(UnsupportedError) as info, cpu_ops.onnxruntime_errors("'m.onnx' (L0)"):
        cpu_ops.make_session(m.SerializeToString())
    text = str(info.value)
    assert text.startswith("onnxruntime cannot run 'm.onnx' (L0): ONNX Runtime only *guarantees* support for")
    assert "onnxruntime_src" not in text and "[ONNXRuntimeError]" not in text and "\n" not in text


def _float_model(ir_version: int, opset: int) -> onnx.ModelProto:
    w = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])]
    if ir_version < 4:  # initializers are graph inputs before IR 4
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]))
    g = helper.make_graph([node], "f", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


@pytest.mark.parametrize("ir_version, opset", [(3, 8), (10, 21)])
def test_float_model_is_not_quantized(tmp_path, ir_version, opset):
    """Also with IR 3, where shape inference used to fail first ("cannot determine the shape")."""
    with pytest.raises(UnsupportedError, match=r"'.*f.onnx' is not quantized \(no QuantizeLinear/Quant nodes\): "
                                               r"quantize it first, e.g. `shiftflow quantize f.onnx -o "
                                               r"quantized.onnx --calib-random 32`"):
        import_onnx(save(tmp_path, _float_model(ir_version, opset), "f.onnx"))


def test_qonnx_float_quant(tmp_path):
    b = QDQBuilder((1, 2, 3, 3))
    params = [b.init(n, np.float32(v)) for n, v in (("s", 1), ("e", 4), ("m", 3), ("b", 7), ("mx", 240))]
    b.nodes.append(helper.make_node("FloatQuant", [b.cur, *params], ["fq"], name="fq0",
                                    domain="qonnx.custom_op.general"))
    m = _unchecked_model(b, "fq")
    m.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    with pytest.raises(UnsupportedError, match=r"^node 'fq0': QONNX FloatQuant is not supported; shiftflow imports "
                                               r"QONNX Quant \(integer quantization, 2..8 bits\) only$"):
        import_onnx(save(tmp_path, m))


def test_directory_instead_of_model(tmp_path):
    with pytest.raises(UsageError, match=r"^'.*' is a directory, not an ONNX file$"):
        import_onnx(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match=r"is a directory, not an ONNX file \(a build: run `shiftflow simulate "):
        import_onnx(tmp_path)


def test_print_after_unknown_pass(tmp_path):
    with pytest.raises(UsageError, match=r"^unknown pass 'nosuch' for --print-after; passes: import, "
                                         r"hoist_requant, .*dead_code \(or all\)$"):
        import_onnx(save(tmp_path, conv_layer_model()), print_after="nosuch")


def test_initializer_raw_data_that_does_not_fill_its_dims(tmp_path):
    """Found by fuzzing (benchmarks/bench_fuzz.py): numpy's reshape error escaped the importer."""
    m = conv_layer_model()
    init = next(i for i in m.graph.initializer if i.name == "z2")
    init.raw_data = b"\x00\x00"
    with pytest.raises(ImportError_, match=r"^initializer 'z2' holds 2 bytes of raw data; dims \[\] of int8 need "
                                           r"1 bytes$"):
        import_onnx(save(tmp_path, m))


def test_name_that_is_not_utf8(tmp_path):
    """Found by fuzzing: the ONNX checker's (or shape inference's) UnicodeDecodeError on a
    corrupted op type escaped: protobuf hands a non-UTF-8 proto2 string over as bytes."""
    data = conv_layer_model().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(b'"\x04Conv', b'"\x04\xe9onv'))  # field 4 (op_type) of the conv node
    with pytest.raises(ImportError_, match=r"is not a valid ONNX model: model.graph.node\[4\].op_type is not UTF-8 "
                                           r"text \(corrupt\?\)$"):
        import_onnx(path)


def test_absurd_scale_is_refused_by_width_not_overflow(tmp_path):
    """Found by fuzzing: a bias scale of 2**-149 made the conv's bounds overflow int64 (and, on a
    concat, a 65-bit type); the result's width is refused with the usual message."""
    m = conv_layer_model()
    _set_init(m, "bs13", np.asarray(2.0 ** -149, np.float32))
    with pytest.raises(UnsupportedError, match=r"^node 'Conv18': the exact result needs \d+ bits \(> 48\); quantize "
                                               r"it \(insert a QuantizeLinear\) or reduce bit widths$"):
        import_onnx(save(tmp_path, m))


def test_bias_of_the_wrong_length(tmp_path):
    """Found by fuzzing: a bias with more values than output channels escaped as numpy's
    broadcast error."""
    m = conv_layer_model(cout=4)
    _set_init(m, "b12", np.arange(36, dtype=np.int32))
    with pytest.raises(ImportError_, match=r"^node 'Conv18': the bias has 36 values for 4 output channels$"):
        import_onnx(save(tmp_path, m))


def test_clip_bound_that_is_not_a_scalar(tmp_path):
    """Found by fuzzing: a vector Clip bound on integer codes escaped as numpy's ``item`` error."""
    b = QDQBuilder((1, 2, 3, 3))
    q = b.quant(b.cur, 4, bits=4)  # QuantizeLinear -> Clip(lo, hi) -> DequantizeLinear
    m = b.model(q)
    clip = next(n for n in m.graph.node if n.op_type == "Clip")
    _set_init(m, clip.input[1], np.zeros(6, np.int8))
    with pytest.raises(ImportError_, match=rf"^node '{clip.name}' \(Clip\): min must be a scalar, got shape \[6\]$"):
        import_onnx(save(tmp_path, m))


def test_string_attribute_that_is_not_utf8(tmp_path):
    """Found by fuzzing: a corrupted string attribute escaped as UnicodeDecodeError."""
    from tests.backend.models import vec_model

    m = vec_model("resize", c=4, hw=(4, 5))
    resize = next(n for n in m.graph.node if n.op_type == "Resize")
    next(a for a in resize.attribute if a.name == "mode").s = b"\xffnearest"
    with pytest.raises(ImportError_, match=rf"^node '{resize.name}' \(Resize\): attribute 'mode' is not UTF-8 text "
                                           r"\(corrupt\?\)$"):
        import_onnx(save(tmp_path, m))


def test_quant_without_a_scalar_bit_width(tmp_path):
    """Found by fuzzing: a QONNX Quant whose bit width input was missing or a tensor escaped as
    TypeError / ValueError."""
    b = QDQBuilder((1, 2, 3, 3), in_frac=None)
    s, z = b.init("s", np.asarray(0.25, np.float32)), b.init("z", np.asarray(0.0, np.float32))
    bw = b.init("bw", np.full(3, 8.0, np.float32))
    q = helper.make_node("Quant", ["input", s, z, bw], ["q"], name="quant", domain="qonnx.custom_op.general",
                         signed=1, narrow=0, rounding_mode="ROUND")
    b.nodes.append(q)
    g = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 3, 3])], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("qonnx.custom_op.general", 1)])
    m.ir_version = 10
    with pytest.raises(ImportError_, match=r"^node 'quant' \(Quant\): the bit width must be a scalar constant, got "
                                           r"shape \[3\]$"):
        import_onnx(save(tmp_path, m))
    del m.graph.node[0].input[3]
    with pytest.raises(ImportError_, match=r"^node 'quant' \(Quant\): the bit width must be a scalar constant, got "
                                           r"none$"):
        import_onnx(save(tmp_path, m))


def test_nearest_resize_of_a_huge_map_imports_at_once(tmp_path):
    """Found by fuzzing: recognising a nearest Resize as repetition looped over every output
    column (2**41 rows here: a hang); two periods and the last decide."""
    import time

    from tests.backend.models import vec_model

    m = vec_model("resize", c=4, hw=(4, 5))
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**40
    t0 = time.perf_counter()
    g = import_onnx(save(tmp_path, m))
    assert [g.types[op.outputs[0]].shape for op in g.ops if op.kind == "resize"] == [(1, 4, 2**41, 10)]
    assert time.perf_counter() - t0 < 5
