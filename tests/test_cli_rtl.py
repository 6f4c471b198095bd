"""``shiftflow rtlsim`` and ``shiftflow verilog``: JSON contracts, exit codes, determinism,
lint. The RTL runs are in the slow tier (Verilator)."""

import json

import numpy as np
import onnx
import pytest

from shiftflow.cli import main
from shiftflow.hw.verilog import VerilogDesign, lint
from tests.modelgen import conv_layer_model


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtlcli")
    onnx.save(conv_layer_model(cin=4, cout=6, hw=(8, 9), act="relu"), d / "m.onnx")
    assert main(["compile", str(d / "m.onnx"), "-o", str(d / "build"), "--dataflow", "pixel"]) == 0
    return d


@pytest.mark.slow
def test_rtlsim_json_exact(build, capsys):
    capsys.readouterr()
    np.save(build / "x.npy", np.linspace(-2, 2, 4 * 8 * 9, dtype=np.float32).reshape(1, 4, 8, 9))
    assert main(["rtlsim", str(build / "build"), "--json", "--input", str(build / "x.npy")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True and out["passed"] is True and out["max_abs_diff"] == 0
    assert out["rtl_cycles"] == out["sim_cycles"] > 0 and out["cycles_equal"] is True
    assert [s["rtl_cycles"] for s in out["segments"]] == [s["sim_cycles"] for s in out["segments"]]
    assert out["seconds"]["rtl"] > 0 and out["seconds"]["sim"] >= 0


@pytest.mark.slow
def test_rtlsim_with_stalls_text(build, capsys):
    capsys.readouterr()
    assert main(["rtlsim", str(build / "build"), "--stalls", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert "outputs: bit-exact" in text and "not compared (random stalls)" in text and "PASS" in text


def test_rtlsim_bad_build_is_one_line_error(tmp_path, capsys):
    assert main(["rtlsim", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_verilog_bad_target_is_one_line_error(tmp_path, capsys):
    assert main(["verilog", "--target", "nosuch", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert main(["verilog", "-o", str(tmp_path), "--synth", "gowin"]) == 2
    capsys.readouterr()
    # --fmax places and routes on its own (benchmarks/bench_hw_resources.py measures it);
    # without it, -o is needed.
    for argv in (["verilog", "--fmax", "ecp5", "--synth", "xilinx"], ["verilog", "--target", "tiny"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.slow
def test_verilog_deterministic_and_lint_clean(tmp_path, capsys):
    texts = []
    for run in ("a", "b"):
        assert main(["verilog", "--target", "tiny", "-o", str(tmp_path / run), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["top"] == "shiftflow_tiny" and len(out["files"]) == 1
        assert (tmp_path / run / "shiftflow_tiny.f").read_text().strip() == out["files"][0]
        texts.append((tmp_path / run / "shiftflow_tiny.v").read_bytes())
    assert texts[0] == texts[1] and b"module shiftflow_tiny" in texts[0]
    for port in (b"axi__araddr", b"ifetch__araddr", b"csr__wdata", b"csr__rdata"):
        assert port in texts[0]
    lint(VerilogDesign("shiftflow_tiny", (tmp_path / "a" / "shiftflow_tiny.v",)))


def test_rtlsim_host_only_build_runs_nothing_on_the_rtl(tmp_path, capsys):
    """A build without accelerator instructions: no RTL is started (no Verilator here), the
    report says why and passes."""
    from tests.test_cli import _host_only_model

    assert main(["compile", str(_host_only_model(tmp_path)), "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["rtlsim", str(tmp_path / "b"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True and out["rtl_cycles"] == out["sim_cycles"] == 0 and out["segments"] == []
    assert out["bit_exact"] is None and out["cycles_equal"] is None
    assert main(["rtlsim", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.startswith("the build has no accelerator instructions (host ops only): nothing "
                                              "runs on the RTL; simulator ")
