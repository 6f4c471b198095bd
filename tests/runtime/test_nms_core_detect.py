"""The NMS instruction end to end (docs/nms_core.md): `shiftflow compile --nms psrr` appends it
after the heads of the trained 128×128 shapesdet (zu3eg), `disasm` shows it, `detect --nms
psrr` on that build runs it on the simulator and gives exactly the boxes of software PSRR;
the loader refuses a malformed NMS instruction with one line (exit 2)."""

import json
import shutil

import numpy as np
import pytest

from shiftflow.cli import main
from shiftflow.ir.isa import INSTR_BYTES, Opcode, encode, to_dict
from shiftflow.ir.program import load_program
from shiftflow.runtime.detect import load_detector
from shiftflow.runtime.nms_core import CoreNms
from shiftflow.runtime.nms_pool import psrr_nms
from shiftflow.runtime.decode import decode
from shiftflow.runtime.stages import AcceleratorStage, PreStage
from shiftflow.sim.accelerator import SimAccelerator
from shiftflow.zoo.shapes_data import make_image

from .test_detect_cli import detect_json, shapesdet_build, write_val


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(plain build, build with the NMS core) of the same model."""
    plain = shapesdet_build(tmp_path_factory)
    core = tmp_path_factory.getbasetemp() / "shapesdet128" / "build_nms"
    if not (core / "heads.json").is_file():
        zoo = tmp_path_factory.getbasetemp() / "shapesdet128" / "zoo"
        (model,) = [f for f in zoo.iterdir() if f.name.endswith(".qcdq.onnx")]
        assert main(["compile", str(model), "--target", "zu3eg", "--nms", "psrr", "-o", str(core)]) == 0
    return plain, str(core)


def test_disasm_shows_the_nms_instruction_after_the_heads(builds, capsys):
    _plain, core = builds
    program = load_program(core)
    nms = program.manifest["nms"]
    assert nms["start"] == program.n_instructions - 2 and nms["count"] == 2
    assert main(["disasm", core]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split()[:2] == [str(nms["start"]), "NMS"] and "levels=3 channels=9 classes=5" in lines[-2]
    assert lines[-1].split()[1] == "FINISH"


def test_detect_with_the_core_gives_software_psrr_boxes(builds, tmp_path, capsys):
    plain, core = builds
    write_val(tmp_path / "val", range(6))
    _, soft, err_soft = detect_json(capsys, [plain, str(tmp_path / "val"), "--nms", "psrr", "-o", str(tmp_path / "a")])
    code, hard, err = detect_json(capsys, [core, str(tmp_path / "val"), "--nms", "psrr", "-o", str(tmp_path / "b")])
    assert code == 0 and err == [] == err_soft
    assert hard["images"] == soft["images"]
    assert sum(len(e["boxes"]) for e in hard["images"]) >= 6


def test_core_survivors_equal_psrr_rows_and_cycles_count(builds):
    """One frame through the accel stage and ``CoreNms``: the rows are ``psrr_nms``'s bit for
    bit, the NMS part took cycles, and the core (not the CPU fallback) made them."""
    _plain, core = builds
    program, spec, _tail = load_detector(core, "zu3eg")
    pre, accel = PreStage(spec), AcceleratorStage(program, SimAccelerator())
    nms = CoreNms(program, spec, 0.3)
    for i in (3, 7):
        frame = accel(pre(make_image("val", i, 128)[0]))
        outputs = {t: frame["carry"][t] for t in nms.outputs}
        dets, cycles = nms.run(accel.acc, outputs)
        expect = psrr_nms(decode(spec, outputs, nms.exponents), 0.3, max_per_class=100)
        np.testing.assert_array_equal(dets.rows, expect.rows)
        assert cycles > 0 and nms.fallbacks == 0 and len(dets.rows)


def _rewrite(build, name: str, data: bytes) -> None:
    import hashlib

    (build / name).write_bytes(data)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["checksums"][name] = hashlib.sha256(data).hexdigest()
    (build / "manifest.json").write_text(json.dumps(manifest))


def test_loader_refuses_malformed_nms_with_one_line(builds, tmp_path, capsys):
    _plain, core = builds
    bad = tmp_path / "bad"
    shutil.copytree(core, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    at = manifest["nms"]["start"]
    manifest["nms"]["params"]["kernels"][0] = 17  # larger than level 0's 16×16 map
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert main(["disasm", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: program.bin instruction {at} (NMS): NMS channel 0: kernel 17") and "\n" not in err
    shutil.rmtree(bad)
    shutil.copytree(core, bad)
    code = bytearray((bad / "program.bin").read_bytes())
    fields = to_dict(bytes(code[at * INSTR_BYTES:(at + 1) * INSTR_BYTES]))["nms"]
    code[at * INSTR_BYTES:(at + 1) * INSTR_BYTES] = encode(Opcode.NMS, dict(fields, capacity=4000))
    _rewrite(bad, "program.bin", bytes(code))
    assert main(["disasm", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "capacity 4000 exceeds the core's survivor buffer of 1024" in err and "\n" not in err


def test_score_other_than_compiled_is_refused(builds, tmp_path, capsys):
    _plain, core = builds
    write_val(tmp_path / "val", [3])
    code, _doc, err = detect_json(capsys, [core, str(tmp_path / "val"), "--nms", "psrr", "--score", "0.5",
                                           "-o", str(tmp_path / "o")])
    assert code == 2 and len(err) == 1 and "compiled for score 0.3" in err[0]
