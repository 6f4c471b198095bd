"""The CLI end to end: JSON contracts, exit codes, and the main job."""

import json
import os

import numpy as np
import onnx
import pytest

from shiftflow.cli import main
from shiftflow.demo import run_demo
from tests.modelgen import QDQBuilder, conv_layer_model


def test_check_json_contract(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(), path)
    assert main(["check", str(path), "--json", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True and out["max_abs_diff"] == 0.0
    assert out["outputs"][0]["shape"] == [1, 4, 9, 7]


def test_check_with_input_file(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(), path)
    np.save(tmp_path / "x.npy", np.linspace(-3, 3, 189, dtype=np.float32).reshape(1, 3, 9, 7))
    assert main(["check", str(path), "--input", str(tmp_path / "x.npy")]) == 0
    assert "bit-exact" in capsys.readouterr().out


def test_inspect_json_and_text(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(k=5, pad=2), path)
    assert main(["inspect", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total_macs"] == 4 * 9 * 7 * 3 * 25 and s["cpu_ops"] == []
    assert main(["inspect", str(path), "--print-after", "import", "--dump-dir", str(tmp_path / "ir")]) == 0
    text = capsys.readouterr().out
    assert "// IR after import" in text and "conv @" in text
    assert sorted(p.name for p in (tmp_path / "ir").iterdir())[0] == "00_import.ir"


def test_quantize_then_check(tmp_path, capsys):
    from shiftflow.zoo.digits import CALIB_PATH, MODEL_PATH

    out = tmp_path / "q.onnx"
    assert main(["quantize", str(MODEL_PATH), "-o", str(out), "--calib", str(CALIB_PATH), "--weights", "pow2",
                 "--wbits", "4"]) == 0
    assert main(["check", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["bit_exact"] is True


def test_quantize_needs_one_calibration_source(tmp_path, capsys):
    from shiftflow.zoo.digits import MODEL_PATH

    assert main(["quantize", str(MODEL_PATH), "-o", str(tmp_path / "q.onnx")]) == 2
    assert capsys.readouterr().err.strip() == "error: give exactly one of --calib DATA.npz or --calib-random N"


def test_main_job(tmp_path, capsys):
    assert run_demo(str(tmp_path)) == 0
    assert "demo: all checks bit-exact" in capsys.readouterr().out


def _compiled(tmp_path, capsys, *extra):
    path = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(cin=5, cout=6, hw=(11, 13)), path)
    build = tmp_path / "build"
    assert main(["compile", str(path), "-o", str(build), "--json", *extra]) == 0
    return build, json.loads(capsys.readouterr().out)


def test_compile_simulate_disasm(tmp_path, capsys):
    build, summary = _compiled(tmp_path, capsys, "--target", "zu3eg")
    assert summary["target"] == "zu3eg" and summary["instructions"] > 0
    assert main(["simulate", str(build), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is None and out["total_cycles"] > 0 and out["clock_mhz"] == 200.0
    assert {"name", "op", "dataflow", "cycles", "macs", "utilization", "dram_bytes", "stall_cycles"} <= set(out["layers"][0])
    assert main(["simulate", str(build), "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True and set(out["checks"]) == {"L2_vs_L1", "L1_vs_L0"}
    assert main(["disasm", str(build)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == summary["instructions"]


def test_simulate_user_errors(tmp_path, capsys):
    build, _ = _compiled(tmp_path, capsys)
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 11, 12), np.float32))
    assert main(["simulate", str(build), "--input", str(tmp_path / "x.npy")]) == 2
    assert capsys.readouterr().err.startswith("error: input 'input' must have shape [1, 5, 11, 13]")
    data = bytearray((build / "program.bin").read_bytes())
    data[3] ^= 0x10
    (build / "program.bin").write_bytes(bytes(data))
    assert main(["simulate", str(build)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: program.bin in ") and "does not match its checksum" in err
    assert len(err.splitlines()) == 1


def test_compile_layer_that_cannot_fit(tmp_path, capsys):
    from shiftflow.ir.config import TINY

    target = tmp_path / "cramped.json"
    cramped = {**TINY.to_json(), "name": "cramped", "weight_bank_bytes": 64}
    target.write_text(json.dumps(cramped))
    path = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(cin=5, cout=6, hw=(11, 13)), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--target", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: layer '") and "weight" in err and len(err.splitlines()) == 1


def _error(capsys) -> str:
    """The one line a user error prints on stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_quantize_output_shape_declared_wrong(tmp_path, capsys):
    from tests.frontend.test_bad_inputs import _float_model

    m = _float_model(10, 21)
    m.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 5, 5]))
    onnx.save(m, tmp_path / "f.onnx")
    assert main(["quantize", str(tmp_path / "f.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib-random", "2"]) == 2
    assert _error(capsys) == ("error: graph output 'y' is declared with shape [1, 4, 5, 5], but the graph computes "
                              "[1, 4, 4, 4]: fix or remove the declared shape")


@pytest.mark.parametrize("patch, message", [
    ({"tn": 0}, "tn must be positive, got 0"),
    ({"clock_mhz": -1.0}, "clock_mhz must be a positive number, got -1.0"),
    ({"tm": "4"}, "tm must be an integer, got '4'"),
])
def test_compile_bad_target_file(tmp_path, capsys, patch, message):
    from shiftflow.ir.config import TINY

    target = tmp_path / "t.json"
    target.write_text(json.dumps({**TINY.to_json(), **patch}))
    onnx.save(conv_layer_model(), tmp_path / "m.onnx")
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "b"), "--target", str(target)]) == 2
    assert _error(capsys) == f"error: target file '{target}': target 'tiny' is invalid: {message}"


def test_output_paths_that_cannot_be_written(tmp_path, capsys):
    from shiftflow.zoo.digits import MODEL_PATH

    model = tmp_path / "m.onnx"
    onnx.save(conv_layer_model(), model)
    m, f = str(model), str(tmp_path / "m.onnx" / "sub")
    cases = [
        (["compile", m, "-o", m], f"error: -o '{m}' is an existing file; give a directory to write into"),
        (["compile", m, "-o", f], f"error: cannot create -o '{f}': '{m}' is a file"),
        (["verilog", "-o", m], f"error: -o '{m}' is an existing file; give a directory to write into"),
        (["inspect", m, "--dump-dir", m], f"error: --dump-dir '{m}' is an existing file; give a directory to write "
                                          f"into"),
        (["quantize", str(MODEL_PATH), "-o", str(tmp_path), "--calib-random", "2"],
         f"error: -o '{tmp_path}' is a directory; give a file name"),
        (["quantize", str(MODEL_PATH), "-o", f, "--calib-random", "2"],
         f"error: cannot write -o '{f}': directory '{m}' does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert _error(capsys) == message


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_directory_nothing_can_be_created_in(tmp_path, capsys):
    """/proc refuses new files even to root, for whom os.access says yes."""
    onnx.save(conv_layer_model(), tmp_path / "m.onnx")
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", "/proc/shiftflow_build"]) == 2
    assert _error(capsys).startswith("error: cannot write -o '/proc/shiftflow_build': '/proc': ")


def test_wrong_kind_of_path_gets_the_right_advice(tmp_path, capsys):
    build, _ = _compiled(tmp_path, capsys)
    model = tmp_path / "m.onnx"
    assert main(["check", str(tmp_path / "build")]) == 2
    assert _error(capsys) == (f"error: '{build}' is a directory, not an ONNX file (a build: run "
                              f"`shiftflow simulate {build}`)")
    assert main(["simulate", str(model)]) == 2
    assert _error(capsys) == (f"error: '{model}' is a file, not a build directory: compile it first, e.g. "
                              f"`shiftflow compile {model} -o build`, then pass `build`")
    assert main(["quantize", str(tmp_path), "-o", str(tmp_path / "q.onnx"), "--calib-random", "2"]) == 2
    assert _error(capsys) == f"error: model file '{tmp_path}' is a directory, not an ONNX file"
    assert main(["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--calib", str(tmp_path)]) == 2
    assert _error(capsys) == f"error: calibration file '{tmp_path}' is a directory, not a .npz/.npy file"
    assert main(["inspect", str(model), "--print-after", "nosuch"]) == 2
    assert _error(capsys).startswith("error: unknown pass 'nosuch' for --print-after; passes: import, ")


def _host_only_model(tmp_path):
    b = QDQBuilder((1, 2, 3, 3))
    onnx.save(b.model(b.quant(b.op("Exp", [b.cur]), 3)), tmp_path / "cpu.onnx")
    return tmp_path / "cpu.onnx"


def test_host_only_build_simulates(tmp_path, capsys):
    """A model without accelerator layers compiles to a program without instructions; it runs
    its host ops with 0 accelerator cycles (the simulator used to refuse its DRAM size 0)."""
    build = tmp_path / "b"
    assert main(["compile", str(_host_only_model(tmp_path)), "-o", str(build), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["instructions"] == 0 and summary["accelerator_layers"] == 0 and summary["host_ops"] == 3
    assert main(["simulate", str(build), "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True and out["total_cycles"] == 0 and out["fps"] is None
    assert out["fps_excludes"] == {"host_ops": 3, "host_macs": 0} and out["checks"]["L1_vs_L0"]["bit_exact"] is True
    assert main(["simulate", str(build)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("no accelerator layers\nno accelerator cycles (the program is 3 host ops with 0 MACs in "
                           "host convs)")
    reasons = json.loads((build / "manifest.json").read_text())["host_reasons"]
    assert sorted(reasons.values()) == ["graph input quantization runs on the host",
                                        "not an integer op (runs in onnxruntime)",
                                        "quantizing a float tensor (a CPU op's output) runs on the host"]


def _model_with_host_head(tmp_path):
    """A conv on the accelerator, then a 1x1 head left unquantized: its 10-bit output keeps
    it on the host."""
    b = QDQBuilder((1, 3, 6, 6))
    y = b.quant(b.op("Conv", [b.cur, b.weight(np.ones((4, 3, 3, 3)), 3)], kernel_shape=[3, 3], pads=[1] * 4), 3)
    # per-channel weight scales: the unquantized sum has no one scale, so the head stays on the host
    onnx.save(b.model(b.op("Conv", [y, b.weight(np.ones((2, 4, 1, 1)), [3, 4])], kernel_shape=[1, 1])),
              tmp_path / "head.onnx")
    return tmp_path / "head.onnx"


def test_inspect_and_compile_agree_on_what_runs_where(tmp_path, capsys):
    model = _model_with_host_head(tmp_path)
    assert main(["inspect", str(model), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["target"] == "tiny" and s["accelerator_ops"] == {}  # the input quantizer runs on the host
    assert [(r["kind"], r["macs"]) for r in s["host_ops"]] == [("quantize", 0), ("conv", 2 * 4 * 36)]
    assert [r["on"] for r in s["layers"]] == ["accelerator", "host"]
    assert s["host_macs"] == 288 and s["accelerator_macs"] == 4 * 27 * 36
    head = s["host_ops"][1]["name"]
    build = tmp_path / "b"
    assert main(["compile", str(model), "-o", str(build)]) == 0
    err = capsys.readouterr().err
    assert err == (f"warning: conv '{head}' (288 MACs) runs on the host: a wide output that is not the exact sum "
                   f"(requant shift is not 0)\n")
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(manifest["host_reasons"]) == {r["name"] for r in s["host_ops"] + s["cpu_ops"]}
    assert main(["simulate", str(build), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fps_excludes"] == {"host_ops": 2, "host_macs": 288}
    assert main(["simulate", str(build)]) == 0
    assert "fps of the accelerator alone (not counting 2 host ops with 288 MACs in host convs)" in \
        capsys.readouterr().out
    assert main(["inspect", str(model), "--summary-only"]) == 0
    text = capsys.readouterr().out
    assert "other accelerator ops" not in text and f"    {head}: conv (288 MACs): a wide output that is not the exact sum" in text


def test_simulate_check_says_when_onnxruntime_did_not_run(tmp_path, capsys):
    build, _ = _compiled(tmp_path, capsys)
    (build / "source.onnx").unlink()
    assert main(["simulate", str(build), "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True and out["checks"]["L1_vs_L0"]["bit_exact"] is None
    assert "no source ONNX model" in out["checks"]["L1_vs_L0"]["skipped"]
    assert main(["simulate", str(build), "--check"]) == 0
    assert capsys.readouterr().out.endswith("L1 vs L0: not run (no source ONNX model to run onnxruntime on; a build "
                                            "keeps it as source.onnx)\n")


def test_check_and_simulate_share_one_input_rule(tmp_path, capsys):
    build, _ = _compiled(tmp_path, capsys)
    ints, flags = tmp_path / "ints.npy", tmp_path / "flags.npy"
    np.save(ints, np.arange(5 * 11 * 13, dtype=np.int16).reshape(1, 5, 11, 13) % 7 - 3)
    np.save(flags, np.zeros((1, 5, 11, 13), bool))
    assert main(["check", str(tmp_path / "m.onnx"), "--input", str(ints)]) == 0
    assert main(["simulate", str(build), "--input", str(ints), "--check"]) == 0
    capsys.readouterr()
    for argv in (["check", str(tmp_path / "m.onnx")], ["simulate", str(build)]):
        assert main(argv + ["--input", str(flags)]) == 2
        assert _error(capsys) == "error: input 'input' must hold float or integer numbers, got dtype bool"


def test_nan_and_infinite_inputs_agree_on_every_level(tmp_path, capsys):
    """The rule (docs/ir.md, "Inputs"): quantizing saturates an infinity and codes NaN as the
    low end of the range, as onnxruntime's QuantizeLinear does; L2 = L1 = L0 on such input."""
    build, _ = _compiled(tmp_path, capsys)
    x = np.random.default_rng(0).standard_normal((1, 5, 11, 13)).astype(np.float32)
    x[0, 0, 0, :4] = [np.inf, -np.inf, np.nan, np.nan]
    x[0, 3, 5, 5:8] = np.nan
    np.save(tmp_path / "x.npy", x)
    assert main(["simulate", str(build), "--check", "--json", "--input", str(tmp_path / "x.npy")]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["L2_vs_L1"]["bit_exact"] and checks["L1_vs_L0"]["bit_exact"]
    from shiftflow.ir.program import load_program
    from shiftflow.sim.run import simulate

    program = load_program(build)
    as_min = np.where(np.isnan(x), -np.inf, x)
    ours, low = simulate(program, x).outputs, simulate(program, as_min).outputs
    assert all(np.array_equal(ours[k], low[k]) for k in ours)
    assert not all(np.array_equal(ours[k], simulate(program, np.nan_to_num(x, nan=0.0)).outputs[k]) for k in ours)
