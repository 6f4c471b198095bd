"""The runner on hand-built whole programs: host ops + accelerator segments, outputs equal to
the interpreter (L1) and onnxruntime (L0), the report, input validation."""

import io
import json
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.errors import UsageError
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.sim.check import check_simulation
from shiftflow.sim.run import format_report, simulate
from tests.modelgen import conv_layer_model
from tests.sim.handbuilt import conv_program


def _program(tmp_path, cfg, dataflow="channel", **model):
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(**model), path)
    return conv_program(cfg, import_onnx(path), dataflow), path


@pytest.mark.parametrize("cfg", [TINY, ZU3EG], ids=lambda c: c.name)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.fixed_dictionaries({
    "cin": st.integers(1, 6), "cout": st.integers(1, 6), "k": st.sampled_from([1, 3]), "stride": st.integers(1, 2),
    "act": st.sampled_from(["none", "relu", "leaky"]), "per_channel": st.booleans(), "pow2": st.booleans(),
    "wbits": st.integers(2, 8), "abits": st.integers(2, 8), "seed": st.integers(0, 999),
    "dataflow": st.sampled_from(["channel", "pixel", "depthwise"])}))
def test_simulation_equals_interpreter_and_onnxruntime(cfg, case, tmp_path):
    flow = case.pop("dataflow")
    if flow == "depthwise":
        case.update(groups=case["cin"], cout=case["cin"])
    program, path = _program(tmp_path, cfg, "pixel" if flow == "depthwise" else flow, hw=(7, 6), **case)
    result = check_simulation(program, path, seed=case["seed"])
    assert result.bit_exact, result.checks
    assert result.checks["L2_vs_L1"]["max_abs_diff"] == 0.0
    assert result.checks["L1_vs_L0"]["bit_exact"]


def test_report(tmp_path):
    program, _ = _program(tmp_path, TINY, cin=5, cout=7, hw=(8, 8))
    result = simulate(program, seed=3)
    report = result.to_json()
    json.dumps(report)
    assert report["bit_exact"] is None
    assert report["total_cycles"] == sum(layer["cycles"] for layer in report["layers"]) > 0
    (layer,) = report["layers"]
    assert layer["macs"] == 7 * 5 * 9 * 64
    assert layer["utilization"] == pytest.approx(layer["macs"] / (16 * layer["cycles"]))
    assert report["mac_utilization"] == pytest.approx(layer["utilization"])
    assert report["fps"] == pytest.approx(100e6 / report["total_cycles"])
    assert report["dram_bytes"] == layer["dram_bytes"] == result.counters["dram_bytes"] > 0
    table = result.table()
    assert program.graph.ops[1].name in table and f"{result.total_cycles} cycles" in table
    assert report["fps_excludes"] == {"host_ops": 1, "host_macs": 0}  # the input quantization
    assert "fps of the accelerator alone (not counting 1 host op with 0 MACs in host convs)" in format_report(result)
    checked = check_simulation(program, seed=3)  # no model file: the L0 rung is stated as not run
    assert checked.bit_exact is True
    assert checked.checks["L1_vs_L0"] == {"bit_exact": None, "skipped": "no source ONNX model to run onnxruntime on; "
                                                                        "a build keeps it as source.onnx"}
    text = format_report(checked)
    assert table in text and text.endswith("L2 vs L1: bit-exact\nL1 vs L0: not run (no source ONNX model to run "
                                           "onnxruntime on; a build keeps it as source.onnx)")


def test_given_inputs_and_validation(tmp_path):
    program, _ = _program(tmp_path, TINY, cin=2, cout=3, hw=(5, 4))
    name = program.graph.inputs[0]
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 4)).astype(np.float32)
    a = simulate(program, x).outputs
    b = simulate(program, {name: x.astype(np.float64)}).outputs
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(UsageError, match=rf"^input '{name}' must have shape \[1, 2, 5, 4\], got \[1, 2, 4, 4\]$"):
        simulate(program, x[:, :, :4])
    ints = np.arange(40, dtype=np.int64).reshape(1, 2, 5, 4) - 20  # integers are numbers too (ir/feeds.py)
    c = simulate(program, ints).outputs
    assert all(np.array_equal(c[k], simulate(program, ints.astype(np.float32)).outputs[k]) for k in c)
    with pytest.raises(UsageError, match=rf"^input '{name}' must hold float or integer numbers, got dtype bool$"):
        simulate(program, np.zeros((1, 2, 5, 4), bool))
    with pytest.raises(UsageError, match=r"unknown input\(s\) \['y'\]"):
        simulate(program, {name: x, "y": x})
    with pytest.raises(UsageError, match="missing input"):
        simulate(program, {})


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    program, _ = _program(tmp_path, TINY, cin=2, cout=3, hw=(5, 4))
    simulate(program, progress=True)
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    simulate(program, progress=True)
    assert f"simulate:   0%|          | 0/{program.n_instructions}" in terminal.getvalue()
