"""Hypothesis-generated single-layer QDQ models: the interpreter (L1) equals onnxruntime (L0)."""

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from tests.modelgen import conv_layer_model


@st.composite
def conv_cases(draw):
    k = draw(st.integers(1, 7))
    dilation = draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    h = draw(st.integers(max(1, span - 2), span + 9))
    w = draw(st.integers(max(1, span - 2), span + 9))
    pad = draw(st.tuples(*[st.integers(0, k - 1)] * 4))
    if h + pad[0] + pad[2] < span or w + pad[1] + pad[3] < span:
        pad = (k - 1,) * 4
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    if kind == "dense":
        cin, cout, groups = draw(st.integers(1, 6)), draw(st.integers(1, 6)), 1
    elif kind == "depthwise":
        cin = draw(st.integers(1, 6))
        groups, cout = cin, cin * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(2, 3))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return dict(cin=cin, cout=cout, hw=(h, w), k=k, stride=draw(st.integers(1, 2)), pad=pad, dilation=dilation,
                groups=groups, wbits=draw(st.integers(2, 8)), abits=draw(st.integers(2, 8)),
                in_bits=draw(st.integers(2, 8)), act=draw(st.sampled_from(["none", "relu", "leaky"])),
                per_channel=draw(st.booleans()), pow2=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
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
