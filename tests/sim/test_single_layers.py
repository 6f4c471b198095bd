"""Hypothesis-generated single conv layers, compiled and simulated: L2 == L1 == L0.

Covers kernels 1–7 (even ones too), strides 1–2, asymmetric padding, dilation, dense,
depthwise and grouped convs, maps from 1 pixel to several strips wide, channel counts that
are not multiples of tm/tn, both dataflows forced and auto, bit widths 2–8, int and pow2
weights, on both named targets.
"""

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.ir.config import TARGETS
from shiftflow.sim.check import check_simulation
from tests.modelgen import conv_layer_model


@st.composite
def layers(draw):
    k = draw(st.integers(1, 7))
    dilation = draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    pads = draw(st.tuples(*[st.integers(0, k - 1)] * 4))
    # From a single pixel up to maps several strips wide; the padded map must hold one window.
    h = draw(st.integers(max(1, span - pads[0] - pads[2]), 40))
    w = draw(st.integers(max(1, span - pads[1] - pads[3]), 40))
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    if kind == "dense":
        cin, cout, groups = draw(st.integers(1, 37)), draw(st.integers(1, 37)), 1
    elif kind == "depthwise":
        cin = draw(st.integers(1, 37))
        groups, cout = cin, cin
    else:
        groups = draw(st.integers(2, 4))
        cin, cout = groups * draw(st.integers(1, 5)), groups * draw(st.integers(1, 5))
    return dict(cin=cin, cout=cout, hw=(h, w), k=k, stride=draw(st.integers(1, 2)), pad=pads, dilation=dilation,
                groups=groups, wbits=draw(st.integers(2, 8)), abits=draw(st.integers(2, 8)),
                in_bits=draw(st.integers(2, 8)), act=draw(st.sampled_from(["none", "relu", "leaky"])),
                per_channel=draw(st.booleans()), pow2=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=layers(), dataflow=st.sampled_from(["auto", "channel", "pixel"]))
def test_single_layer_simulates_bit_exactly(target, case, dataflow, tmp_path):
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(**case), path)
    program = compile_model(path, target, dataflow=dataflow)
    result = check_simulation(program, path, seed=case["seed"])
    assert result.bit_exact, (case, dataflow, result.checks)
    assert result.total_cycles > 0 and sum(layer["cycles"] for layer in result.layers) == result.total_cycles
