"""Compiled programs (``backend``) simulate bit-exactly: L2 == L1 (and L1 == L0) on zoo models
and hypothesis-generated single layers, on every target and forced dataflow."""

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.ir.config import TARGETS
from shiftflow.ir.program import load_program, save_program
from shiftflow.sim.check import check_simulation
from shiftflow.zoo import zoo_model
from tests.modelgen import conv_layer_model

TARGET_NAMES = sorted(TARGETS)


def _assert_exact(result):
    assert result.bit_exact, {k: v for k, v in result.checks.items() if not v.get("bit_exact", True)}
    assert sum(layer["cycles"] for layer in result.layers) == result.total_cycles > 0


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("net, variant, hw", [("mnist", "w8a8", None), ("resnet", "w4a8", (32, 32)),
                                              ("mobilenet", "pow2", (64, 64)), ("detector", "w8a8", (64, 64))])
def test_zoo_models(net, variant, hw, target, tmp_path):
    path = zoo_model(net, variant, "qcdq", input_hw=hw)
    save_program(compile_model(path, target), tmp_path)
    result = check_simulation(load_program(tmp_path, TARGETS[target]), path, seed=1)
    _assert_exact(result)
    assert {layer["dataflow"] for layer in result.layers if layer["op"] == "conv"} <= {"channel", "pixel"}


@pytest.mark.parametrize("dataflow", ["channel", "pixel"])
def test_detector_64_forced_dataflow(dataflow):
    path = zoo_model("detector", "w8a8", "qcdq", input_hw=(64, 64))
    _assert_exact(check_simulation(compile_model(path, "tiny", dataflow=dataflow), seed=3))


@pytest.mark.parametrize("target", TARGET_NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.fixed_dictionaries({
    "cin": st.integers(1, 40), "cout": st.integers(1, 40), "hw": st.tuples(st.integers(3, 20), st.integers(3, 20)),
    "k": st.sampled_from([1, 3, 5]), "stride": st.integers(1, 2), "dilation": st.integers(1, 2),
    "act": st.sampled_from(["none", "relu", "leaky"]), "per_channel": st.booleans(), "pow2": st.booleans(),
    "wbits": st.integers(2, 8), "abits": st.integers(2, 8), "in_bits": st.integers(2, 8),
    "depthwise": st.booleans(), "dataflow": st.sampled_from(["auto", "channel", "pixel"]),
    "seed": st.integers(0, 9999)}))
def test_single_conv_layers(target, case, tmp_path):
    dataflow = case.pop("dataflow")
    if case.pop("depthwise"):
        case.update(groups=case["cin"], cout=case["cin"])
    span = case["dilation"] * (case["k"] - 1) + 1
    case["hw"] = tuple(max(h, span) for h in case["hw"])
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(pad=case["k"] // 2, **case), path)
    _assert_exact(check_simulation(compile_model(path, target, dataflow=dataflow), path, seed=case["seed"]))
