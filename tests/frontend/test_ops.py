"""Every lowered op kind, and the CPU-op fallback, is bit-exact against onnxruntime."""

import numpy as np
import onnx
import pytest

from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from tests.modelgen import QDQBuilder


def _conv(b, x, cin, cout, k=3, pad=1, stride=1, group=1, frac_out=3, relu=True):
    w = b.weight(b.rng.integers(-60, 60, size=(cout, cin // group, k, k)), 7)
    y = b.op("Conv", [x, w], kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2, group=group)
    if relu:
        y = b.op("Relu", [y])
    return b.quant(y, frac_out, 8, signed=not relu)


def _run(tmp_path, b, out, seed=0):
    path = tmp_path / "m.onnx"
    onnx.save(b.model(out), path)
    graph = import_onnx(path)
    report = check_model(path, seed=seed, graph=graph)
    assert report.bit_exact, report.outputs
    return graph


def kinds(graph):
    return [op.kind for op in graph.ops]


@pytest.mark.parametrize("ceil_mode, pads, k, s", [(0, 0, 2, 2), (1, 0, 3, 2), (0, 1, 3, 2), (1, 1, 3, 3)])
def test_maxpool(tmp_path, ceil_mode, pads, k, s):
    b = QDQBuilder((1, 3, 11, 9))
    y = _conv(b, b.cur, 3, 4)
    y = b.op("MaxPool", [y], kernel_shape=[k, k], strides=[s, s], pads=[pads] * 4, ceil_mode=ceil_mode)
    g = _run(tmp_path, b, y)
    assert kinds(g) == ["quantize", "conv", "maxpool"]


def test_maxpool_then_requant_fuses(tmp_path):
    b = QDQBuilder((1, 3, 8, 8))
    y = _conv(b, b.cur, 3, 4)
    y = b.quant(b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2]), 2, 8, signed=False)
    assert kinds(_run(tmp_path, b, y)) == ["quantize", "conv", "maxpool"]


@pytest.mark.parametrize("op, attrs, expect", [
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, "avgpool"),
    ("AveragePool", {"kernel_shape": [4, 2], "strides": [1, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}, "avgpool"),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [1, 1]}, "cpu"),
    ("AveragePool", {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, "cpu"),
    ("GlobalAveragePool", {}, "avgpool"),
])
def test_average_pools(tmp_path, op, attrs, expect):
    b = QDQBuilder((1, 3, 8, 8))
    y = _conv(b, b.cur, 3, 4)
    y = b.quant(b.op(op, [y], **attrs), 4, 8, signed=False)
    g = _run(tmp_path, b, y)
    assert expect in kinds(g)


def test_residual_add_and_relu(tmp_path):
    b = QDQBuilder((1, 4, 7, 7))
    a = _conv(b, b.cur, 4, 4, frac_out=3)
    c = _conv(b, a, 4, 4, frac_out=4, relu=False)
    y = b.quant(b.op("Relu", [b.op("Add", [a, c])]), 3, 8, signed=False)
    g = _run(tmp_path, b, y)
    assert kinds(g) == ["quantize", "conv", "conv", "add"]
    assert [op.attrs["act"] for op in g.ops if op.kind == "add"] == ["relu"]


def test_concat_and_resize(tmp_path):
    b = QDQBuilder((1, 3, 8, 8))
    a = _conv(b, b.cur, 3, 4, frac_out=3)
    small = _conv(b, a, 4, 2, stride=2, frac_out=4)
    up = b.op("Resize", [small, "", b.init("sc", np.asarray([1, 1, 2, 2], np.float32))], mode="nearest")
    y = b.quant(b.op("Concat", [a, up], axis=1), 3, 8, signed=False)
    g = _run(tmp_path, b, y)
    assert "resize" in kinds(g) and "concat" in kinds(g)


@pytest.mark.parametrize("relu", [False, True])
def test_gemm_after_flatten(tmp_path, relu):
    b = QDQBuilder((1, 2, 4, 4))
    y = _conv(b, b.cur, 2, 3)
    flat = b.op("Flatten", [y])
    w = b.weight(b.rng.integers(-100, 100, size=(5, 48)), 8)
    bias = b.bias(b.rng.integers(-500, 500, size=5), 11)
    y = b.op("Gemm", [flat, w, bias], transB=1)
    out = b.quant(b.op("Relu", [y]) if relu else y, 2, 8, signed=not relu)
    g = _run(tmp_path, b, out)
    # Gemm + Relu + quantizer become one conv: the requants move in front of the reshape.
    assert kinds(g) == ["quantize", "conv", "reshape", "conv", "reshape"]


def test_leaky_relu_po2_is_lowered_and_other_slopes_go_to_cpu(tmp_path):
    for alpha, expect in ((0.25, "requant"), (0.1, "cpu")):
        b = QDQBuilder((1, 2, 5, 5))
        y = _conv(b, b.cur, 2, 3, relu=False)
        y = b.quant(b.op("LeakyRelu", [y], alpha=alpha), 4, 8)
        g = _run(tmp_path, b, y)
        assert expect in kinds(g) or (expect == "requant" and kinds(g) == ["quantize", "conv", "requant"])


def test_unknown_op_runs_on_cpu(tmp_path):
    b = QDQBuilder((1, 2, 5, 5))
    y = _conv(b, b.cur, 2, 3, relu=False)
    y = b.quant(b.op("Sigmoid", [y]), 7, 8, signed=False)
    g = _run(tmp_path, b, y)
    assert kinds(g) == ["quantize", "conv", "cpu", "quantize"]
    cpu = [op for op in g.ops if op.kind == "cpu"][0]
    assert "Sigmoid" in cpu.attrs["reason"]


def test_batchnorm_between_quantized_tensors_stays_on_cpu(tmp_path):
    b = QDQBuilder((1, 2, 5, 5))
    y = _conv(b, b.cur, 2, 3, relu=False)
    bn = [b.init(n, v) for n, v in (("g", np.full(3, 1.3, np.float32)), ("be", np.full(3, 0.1, np.float32)),
                                     ("m", np.zeros(3, np.float32)), ("v", np.ones(3, np.float32)))]
    y = b.quant(b.op("BatchNormalization", [y] + bn), 3, 8)
    g = _run(tmp_path, b, y)
    assert "cpu" in kinds(g)
