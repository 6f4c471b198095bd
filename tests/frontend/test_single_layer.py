"""Hypothesis-generated single-layer QDQ models: the interpreter (L1) equals onnxruntime (L0)."""

import onnx
from hypothesis import HealthCheck, given, settings

from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from tests.modelgen import conv_layer_model
from tests.strategies import conv_layers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_layers())
def test_conv_layer_bit_exact(case, tmp_path):
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(**case), path)
    graph = import_onnx(path)
    assert [op.kind for op in graph.ops] == ["quantize", "conv"], "conv + activation + quantizer fuse into one op"
    report = check_model(path, seed=case["seed"], graph=graph)
    assert report.bit_exact, (case, report.outputs)
    assert report.max_abs_diff == 0.0


def test_pow2_weights_are_detected(tmp_path):
    path = tmp_path / "p.onnx"
    onnx.save(conv_layer_model(pow2=True, wbits=6), path)
    conv = [op for op in import_onnx(path).ops if op.kind == "conv"][0]
    assert conv.attrs["wenc"] == "pow2"
    onnx.save(conv_layer_model(pow2=False, wbits=6), path)
    conv = [op for op in import_onnx(path).ops if op.kind == "conv"][0]
    assert conv.attrs["wenc"] == "int"
