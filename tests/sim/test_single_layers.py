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
from tests.strategies import conv_layers


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_layers(max_hw=40, max_ch=37), dataflow=st.sampled_from(["auto", "channel", "pixel"]))
def test_single_layer_simulates_bit_exactly(target, case, dataflow, tmp_path):
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(**case), path)
    program = compile_model(path, target, dataflow=dataflow)
    result = check_simulation(program, path, seed=case["seed"])
    assert result.bit_exact, (case, dataflow, result.checks)
    assert result.total_cycles > 0 and sum(layer["cycles"] for layer in result.layers) == result.total_cycles
