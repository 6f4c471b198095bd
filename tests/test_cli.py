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
