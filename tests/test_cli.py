"""The CLI end to end: JSON contracts, exit codes, and the main job."""

import json

import numpy as np
import onnx

from shiftflow.cli import main
from shiftflow.demo import run_demo
from tests.modelgen import conv_layer_model


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
