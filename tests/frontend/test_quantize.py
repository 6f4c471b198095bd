"""Tests for the po2 post-training quantizer (frontend/quantize.py and the float side it uses:
float_model.py, float_rewrites.py, calib_data.py, calibrate.py)."""

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from shiftflow.errors import UsageError
from shiftflow.frontend.calib_data import load_calibration
from shiftflow.frontend.calibrate import fit_frac, float_session
from shiftflow.frontend.check import check_model
from shiftflow.frontend.quantize import int_weights, pow2_levels, pow2_weights, quantize_model

RNG = np.random.default_rng(1234)


def _init(name, *shape, scale=0.3, positive=False):
    a = RNG.standard_normal(shape) * scale
    return numpy_helper.from_array((np.abs(a) + 0.5 if positive else a).astype(np.float32), name)


def _model(nodes, inits, in_shape=(1, 3, 8, 8), out_shape=None, inputs=None, opset=13):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out], inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _conv(name, x, w, b=None, **attrs):
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [name], name=name, **attrs)


def cnn():
    """Conv-BN-Relu-MaxPool-Flatten-Gemm."""
    nodes = [_conv("conv1", "x", "w1", "b1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["conv1", "g", "be", "mu", "var"], ["bn1"],
                              name="bn1"),
             helper.make_node("Relu", ["bn1"], ["relu1"], name="relu1"),
             helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["pool1"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [_init("w1", 8, 3, 3, 3), _init("b1", 8), _init("g", 8, positive=True), _init("be", 8),
             _init("mu", 8), _init("var", 8, positive=True), _init("w2", 10, 128, scale=0.1),
             _init("b2", 10)]
    return _model(nodes, inits, out_shape=[1, 10])


def residual():
    """Conv-Relu, Conv, Add(skip), Relu, GlobalAveragePool, Flatten, MatMul."""
    nodes = [_conv("conv1", "x", "w1", "b1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
             _conv("conv2", "relu1", "w2", "b2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["relu1", "conv2"], ["add"], name="add"),
             helper.make_node("Relu", ["add"], ["relu2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["relu2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "w3"], ["y"], name="fc")]
    inits = [_init("w1", 4, 3, 3, 3), _init("b1", 4), _init("w2", 4, 4, 3, 3), _init("b2", 4),
             _init("w3", 4, 5)]
    return _model(nodes, inits, out_shape=[1, 5])


def branches():
    """Depthwise Conv-LeakyRelu and a 1x1 Conv, concatenated, then a Conv-Clip."""
    nodes = [_conv("dw", "x", "wd", "bd", group=3, pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["dw"], ["lrelu"], name="lrelu", alpha=0.125),
             _conv("pw", "x", "wp", "bp"),
             helper.make_node("Concat", ["lrelu", "pw"], ["cat"], name="cat", axis=1),
             _conv("conv", "cat", "wc", "bc"),
             helper.make_node("Clip", ["conv", "lo", "hi"], ["y"], name="clip")]
    inits = [_init("wd", 3, 1, 3, 3), _init("bd", 3), _init("wp", 5, 3, 1, 1), _init("bp", 5),
             _init("wc", 6, 8, 1, 1), _init("bc", 6),
             numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    return _model(nodes, inits, out_shape=[1, 6, 8, 8])


def torch_cnn():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 10))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, 1, 8, 8), buf, dynamo=False, opset_version=13,
                          input_names=["image"], output_names=["logits"])
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = 10
    return model


def _run(model, x, name="x"):
    return float_session(model).run(None, {name: x})[0]


def _const(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _nodes(model, op):
    return [n for n in model.graph.node if n.op_type == op]


def _producer(model, tensor):
    return next(n for n in model.graph.node if tensor in n.output)


def _readers(model, tensor):
    return [n for n in model.graph.node if tensor in n.input]


def check_contract(q, wbits=8, abits=8, weights="int", per_channel=False):
    """The emitted-pattern contract every quantized model must meet."""
    assert q.ir_version == 10 and q.opset_import[0].version == 21 and q.graph.value_info
    names = [n.name for n in q.graph.node]
    assert all(names) and len(names) == len(set(names))
    for node in _nodes(q, "QuantizeLinear") + _nodes(q, "DequantizeLinear"):
        scale, zero = _const(q, node.input[1]), _const(q, node.input[2])
        assert scale.dtype == np.float32 and np.all(np.exp2(np.round(np.log2(scale))) == scale)
        assert not zero.any()
    for node in _nodes(q, "DequantizeLinear"):
        values = next((numpy_helper.to_array(t) for t in q.graph.initializer
                       if t.name == node.input[0]), None)
        if values is None:
            continue  # an activation
        assert bool(node.attribute) == per_channel and _const(q, node.input[1]).ndim == per_channel
        if values.dtype == np.int32:
            continue  # a bias
        assert values.dtype == np.int8
        if weights == "int":
            assert np.abs(values).max() <= 2 ** (wbits - 1) - 1
        else:
            mags = np.abs(values[values != 0]).astype(int)
            assert np.all(mags & (mags - 1) == 0) and mags.max() < 2 ** pow2_levels(wbits)
    clips = _nodes(q, "Clip")
    act_clips = [c for c in clips if _producer(q, c.input[0]).op_type == "QuantizeLinear"]
    assert len(act_clips) == (len(_nodes(q, "QuantizeLinear")) if abits < 8 else 0)
    for clip in act_clips:
        lo, hi = _const(q, clip.input[1]), _const(q, clip.input[2])
        half = 2 ** (abits - 1)
        expect = (0, 2 * half - 1) if lo.dtype == np.uint8 else (-half, half - 1)
        assert (int(lo), int(hi)) == expect
    assert not _nodes(q, "BatchNormalization")
    onnx.checker.check_model(q, full_check=True)


def _close(f, q, x, name="x", tol=0.06):
    ref, out = _run(f, x, name), _run(q, x, name)
    assert ref.shape == out.shape
    assert np.abs(ref - out).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("kwargs", [
    dict(), dict(per_channel=True), dict(wbits=4), dict(wbits=2, per_channel=True),
    dict(abits=4), dict(abits=6, wbits=5), dict(weights="pow2", wbits=4),
    dict(weights="pow2", wbits=8, per_channel=True), dict(weights="pow2", wbits=3, abits=4),
])
@pytest.mark.parametrize("build", [cnn, residual, branches])
def test_contract(build, kwargs):
    q = quantize_model(build(), calib_random=16, **kwargs)
    check_contract(q, **kwargs)
    _run(q, RNG.standard_normal((1, 3, 8, 8)).astype(np.float32))


@pytest.mark.parametrize("build", [cnn, residual, branches])
@pytest.mark.parametrize("per_channel", [False, True])
def test_w8a8_close_to_float(build, per_channel):
    f = build()
    x = RNG.standard_normal((64, 1, 3, 8, 8)).astype(np.float32)
    q = quantize_model(f, calib=x[:, 0], per_channel=per_channel)
    for sample in x[:4]:
        _close(f, q, sample)


def test_cnn_structure():
    q = quantize_model(cnn(), calib_random=8, abits=4)
    assert q.graph.node[0].op_type == "QuantizeLinear" and q.graph.node[0].input[0] == "x"
    assert [n.name for n in q.graph.node[:3]] == ["x_q", "x_clip", "x_dq"]
    conv = next(n for n in _nodes(q, "Conv"))
    # BN folded into conv1, Relu fused: no Q/DQ between the Conv and its Relu.
    assert conv.name == "conv1" and [n.op_type for n in _readers(q, conv.output[0])] == ["Relu"]
    relu = _nodes(q, "Relu")[0]
    assert [n.name for n in _readers(q, relu.output[0])] == ["relu1_q"]
    # MaxPool and Flatten carry the quantized tensor: nothing inserted after them.
    for op in ("MaxPool", "Flatten"):
        assert [n.op_type for n in _readers(q, _nodes(q, op)[0].output[0])] in (["Flatten"], ["Gemm"])
    # The graph output keeps its name, now on the last DequantizeLinear; after Relu it's uint8.
    assert _producer(q, "y").name == "y_dq"
    assert _const(q, "relu1_zero_point").dtype == np.uint8 and _const(q, "x_zero_point").dtype == np.int8
    assert len(_nodes(q, "Clip")) == 3


def test_residual_add_and_matmul():
    q = quantize_model(residual(), calib_random=8, per_channel=True)
    assert [n.name for n in _readers(q, "add")] == ["add_q"]
    assert [n.name for n in _readers(q, "gap")] == ["gap_q"]
    assert [n.name for n in _readers(q, "relu2")] == ["relu2_q"]
    w3 = _producer(q, _nodes(q, "MatMul")[0].input[1])
    assert w3.op_type == "DequantizeLinear" and helper.get_attribute_value(w3.attribute[0]) == 1
    assert _const(q, w3.input[1]).shape == (5,)


def test_branches_depthwise_concat_leaky_clip():
    q = quantize_model(branches(), calib_random=8, per_channel=True)
    assert [n.name for n in _readers(q, "cat")] == ["cat_q"]
    assert [n.op_type for n in _readers(q, "dw")] == ["LeakyRelu"]
    assert [n.name for n in _readers(q, "lrelu")] == ["lrelu_q"]
    assert _producer(q, "y").op_type == "DequantizeLinear"
    # Depthwise per-channel weights; the bias scale is exactly s_in * s_w per channel.
    dw = next(n for n in _nodes(q, "Conv") if n.name == "dw")
    w_dq, b_dq = _producer(q, dw.input[1]), _producer(q, dw.input[2])
    s_w, s_b, s_in = (_const(q, n.input[1]) for n in (w_dq, b_dq, _producer(q, dw.input[0])))
    assert s_w.shape == (3,) and np.array_equal(s_b, s_in * s_w)
    assert _const(q, b_dq.input[0]).dtype == np.int32


def test_torch_export():
    f = torch_cnn()
    x = RNG.random((32, 1, 1, 8, 8)).astype(np.float32)
    q = quantize_model(f, calib=x[:, 0], wbits=8, abits=8)
    check_contract(q)
    for sample in x[:4]:
        _close(f, q, sample, name="image")
    assert q.graph.output[0].name == "logits"


def test_gemm_normalized_and_bn_folded():
    """Gemm with transB=0 and alpha, then BatchNormalization; a Conv weight from a Constant."""
    nodes = [helper.make_node("Constant", [], ["wc"], name="wc", value=_init("wc", 2, 3, 1, 1)),
             _conv("conv", "x", "wc"),
             helper.make_node("Flatten", ["conv"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["fc"], name="fc", alpha=0.5, beta=2.0),
             helper.make_node("BatchNormalization", ["fc", "g", "be", "mu", "var"], ["y"], name="bn")]
    inits = [_init("w", 128, 10, scale=0.1), _init("b", 10), _init("g", 10, positive=True),
             _init("be", 10), _init("mu", 10), _init("var", 10, positive=True)]
    f = _model(nodes, inits, out_shape=[1, 10])
    x = RNG.standard_normal((32, 1, 3, 8, 8)).astype(np.float32)
    q = quantize_model(f, calib=x[:, 0], per_channel=True)
    check_contract(q, per_channel=True)
    gemm = _nodes(q, "Gemm")[0]
    assert [(a.name, helper.get_attribute_value(a)) for a in gemm.attribute
            if a.name in ("transB", "alpha", "beta")] == [("transB", 1), ("alpha", 1.0), ("beta", 1.0)]
    assert _const(q, _producer(q, gemm.input[1]).input[0]).shape == (10, 128)
    assert _producer(q, _nodes(q, "Conv")[0].input[1]).op_type == "DequantizeLinear"
    for sample in x[:4]:
        _close(f, q, sample)


@pytest.mark.parametrize("build, kwargs", [
    (cnn, dict(abits=4, per_channel=True)), (residual, dict(weights="pow2", wbits=4)),
    (branches, dict(wbits=3, abits=6)), (torch_cnn, dict()),
])
def test_importer_runs_it_bit_exact(tmp_path, build, kwargs):
    """The emitted patterns are what the importer reads: `shiftflow check` is bit-exact."""
    path = tmp_path / "q.onnx"
    onnx.save(quantize_model(build(), calib_random=8, **kwargs), path)
    assert check_model(path).bit_exact


def test_fit_frac_rounds_instead_of_saturating():
    assert fit_frac(0, 0.995, -128, 127) == 7  # 127.36 rounds to 127
    assert fit_frac(0, 0.9961, -128, 127) == 6  # 127.5 would round to 128
    assert fit_frac(0, 1.0, 0, 255) == 7
    assert fit_frac(-1.0, 0.5, -128, 127) == 7
    assert fit_frac(0, 0, 0, 255) == 0
    assert fit_frac(0, 3000.0, -8, 7) == -9


def test_pow2_rule():
    q, frac = pow2_weights(np.array([1.0, 0.74, 0.76, 0.3, 0.01, -0.13, -0.12]), None, 3)
    # 3 bits: sign + zero + 3 exponents; nearest value (cut at 1.5 * 2**k), 0 below 2**-1.
    assert frac.tolist() == [2] and q.tolist() == [4, 2, 4, 1, 0, -1, 0]
    assert [pow2_levels(b) for b in range(2, 9)] == [1, 3, 7, 7, 7, 7, 7]
    w = RNG.standard_normal((4, 3, 3, 3))
    q, frac = pow2_weights(w, 0, 8)
    assert frac.shape == (4,) and set(np.abs(q).ravel()) <= {0, 1, 2, 4, 8, 16, 32, 64}
    err = np.abs(q * 2.0 ** -frac[:, None, None, None] - w)
    assert np.all(err <= np.maximum(np.abs(w) / 3, 2.0 ** -frac[:, None, None, None] / 2) + 1e-12)


def test_int_weights_per_channel():
    w = np.array([[1.0, 0.5], [0.01, -0.02]])
    q, frac = int_weights(w, 0, 8)
    assert frac.tolist() == [6, 12] and q.tolist() == [[64, 32], [41, -82]]
    q, frac = int_weights(w, None, 2)
    assert set(q.ravel()) <= {-1, 0, 1}


def test_calibration_batches():
    f = cnn()
    dyn = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    f.graph.input[0].CopyFrom(dyn)
    f.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10]))
    x = RNG.standard_normal((70, 3, 8, 8)).astype(np.float32)
    q = quantize_model(f, calib=x)
    assert _run(q, x[:5]).shape == (5, 10)
    f.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8]))
    f.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10]))
    check_contract(quantize_model(f, calib=x[:5]))


def test_load_calibration(tmp_path):
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "named.npz", x=x)
    np.savez(tmp_path / "bare.npz", x)
    assert set(load_calibration(tmp_path / "named.npz")) == {"x"}
    bare = load_calibration(tmp_path / "bare.npz")
    check_contract(quantize_model(cnn(), calib=bare))
    with pytest.raises(UsageError, match="calibration file '.*missing.npz' does not exist"):
        load_calibration(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(UsageError, match="must be a numpy .npz or .npy file"):
        load_calibration(tmp_path / "junk.npz")


X4 = np.zeros((4, 3, 8, 8), np.float32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(calib_random=4, wbits=9), r"--wbits must be an integer in 2\.\.8; found 9"),
    (dict(calib_random=4, wbits=1), r"--wbits must be an integer in 2\.\.8; found 1"),
    (dict(calib_random=4, abits=3), r"--abits must be an integer in 4\.\.8; found 3"),
    (dict(calib_random=4, weights="float"), r"--weights must be 'int' or 'pow2'; found 'float'"),
    (dict(), r"quantize needs exactly one calibration source: --calib DATA\.npz or --calib-random N"),
    (dict(calib=X4, calib_random=4), r"exactly one calibration source"),
    (dict(calib_random=0), r"--calib-random must be a positive sample count; found 0"),
    (dict(calib=X4[:, :2]), r"calibration data for input 'x' must have shape \(N, 3, 8, 8\) "
                            r"with N >= 1 samples; found \(4, 2, 8, 8\)"),
    (dict(calib=X4.astype(str)), r"calibration data for input 'x' must be numeric; found dtype <U"),
    (dict(calib=X4[0]), r"must have shape \(N, 3, 8, 8\) with N >= 1 samples; found \(3, 8, 8\)"),
    (dict(calib={"image": X4}), r"calibration arrays must be named after the graph inputs \['x'\]; "
                                r"found \['image'\]"),
])
def test_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        quantize_model(cnn(), **kwargs)


def test_two_inputs_and_seeded_random_calibration():
    xs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("x", "z")]
    nodes = [helper.make_node("Add", ["x", "z"], ["sum"], name="add"), _conv("y", "sum", "w", "b")]
    f = _model(nodes, [_init("w", 2, 3, 1, 1), _init("b", 2)], out_shape=[1, 2, 8, 8], inputs=xs)
    with pytest.raises(UsageError,
                       match=r"must be named after the graph inputs \['x', 'z'\]; found \['arr_0'\]"):
        quantize_model(f, calib=X4)
    with pytest.raises(UsageError,
                       match=r"must hold the same number of samples; found \{'x': 4, 'z': 2\}"):
        quantize_model(f, calib={"x": X4, "z": X4[:2]})
    check_contract(quantize_model(f, calib={"x": X4, "z": X4 + 1}))
    assert [n.name for n in _readers(quantize_model(f, calib_random=4), "sum")] == ["sum_q"]
    one, two = (quantize_model(f, calib_random=8, seed=3) for _ in range(2))
    assert one.SerializeToString() == two.SerializeToString()


def test_refuses_quantized_or_non_float_models(tmp_path):
    q = quantize_model(cnn(), calib_random=4)
    with pytest.raises(UsageError,
                       match="node 'x_q' is a QuantizeLinear: the model is already quantized"):
        quantize_model(q, calib_random=4)
    f = cnn()
    f.graph.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    with pytest.raises(UsageError, match="graph input 'x' must be float32 to quantize; found UINT8"):
        quantize_model(f, calib_random=4)
    with pytest.raises(UsageError, match="model file '.*nope.onnx' does not exist"):
        quantize_model(tmp_path / "nope.onnx", calib_random=4)


def test_wide_heads_leaves_the_output_conv_unquantized_and_refuses_a_model_without_one():
    """cnn() ends in Gemm (not a conv): refused with one line; a conv-ended model's output is
    the conv's exact sum (no QuantizeLinear after it), per tensor even with --per-channel, and
    it checks bit-exact."""
    with pytest.raises(UsageError, match="--wide-heads: no conv feeds a graph output"):
        quantize_model(cnn(), calib_random=4, wide_heads=True)
    nodes = [_conv("conv1", "x", "w1", "b1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
             _conv("y", "relu1", "w2", "b2", pads=[1, 1, 1, 1])]  # the head conv: output y
    float_model = _model(nodes, [_init("w1", 4, 3, 3, 3), _init("b1", 4), _init("w2", 6, 4, 3, 3), _init("b2", 6)],
                         out_shape=[1, 6, 8, 8])
    q = quantize_model(float_model, calib_random=4, per_channel=True, wide_heads=True)
    head = next(n for n in q.graph.node if n.op_type == "Conv" and n.name == "y")
    assert head.output[0] == q.graph.output[0].name
    w_dq = _producer(q, head.input[1])
    assert np.asarray(_const(q, w_dq.input[1])).size == 1  # one scale: per tensor
    first = next(n for n in q.graph.node if n.op_type == "Conv" and n.name == "conv1")
    assert np.asarray(_const(q, _producer(q, first.input[1]).input[1])).size == 4  # the body per channel
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        onnx.save(q, f"{d}/q.onnx")
        assert check_model(f"{d}/q.onnx").bit_exact
