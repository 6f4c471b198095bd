"""Slow tier: programs with the NMS core on the RTL (``AcceleratorTop`` of tiny, which has the
core, under Verilator) against the simulator, on the trained shapesdet exported at 64×64 and
compiled for tiny with ``--nms psrr``:

- the whole program through ``shiftflow rtlsim`` (the model's segments, then its NMS part:
  the CPU's recovery, NMS + FINISH on the accelerator): outputs and the survivor list
  bit-exact, every segment's cycles equal, the core's result used (no CPU fallback);
- the NMS part alone on the RTL, its DRAM copied from the simulator after the model (a
  model run on the RTL costs a minute): another frame exact; random DRAM stalls bit-exact;
  a patch list longer than the instruction allows, and a parameter table the core cannot
  run, each flagged in the list's header as the model flags it, in the model's cycles.

One Verilator build of tiny serves these and every other tiny RTL test."""

import dataclasses
import json

import numpy as np
import pytest

from shiftflow.cli import main
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.ir.nms import FLAG_BAD_PATCH, FLAG_BAD_TABLE, HEADER_DTYPE, encode_table
from shiftflow.runtime.detect import load_detector
from shiftflow.runtime.nms_core import CoreNms
from shiftflow.runtime.stages import PreStage
from shiftflow.sim.accelerator import SimAccelerator, dram_size
from shiftflow.sim.host import read_tensor
from shiftflow.sim.run import simulate
from shiftflow.zoo.shapes_data import make_image

pytestmark = pytest.mark.slow

HW = 64
FRAMES = (5, 10)  # validation images with boxes at 64×64 (3 and 2)


def tiny_nms_build(tmp_path_factory) -> str:
    """shapesdet exported at 64×64 and compiled for tiny with ``--nms psrr``, once per session."""
    root = tmp_path_factory.getbasetemp() / f"shapesdet{HW}"
    build = root / "build_tiny_nms"
    if not (build / "manifest.json").is_file():
        assert main(["zoo", "--only", "shapesdet", "--variants", "w8a8", "--forms", "qcdq", "--input-hw",
                     f"{HW}x{HW}", "--out", str(root / "zoo")]) == 0
        (model,) = [f for f in (root / "zoo").iterdir() if f.name.endswith(".qcdq.onnx")]
        assert main(["compile", str(model), "--target", "tiny", "--nms", "psrr", "-o", str(build)]) == 0
    return str(build)


def val_image(i: int) -> np.ndarray:
    return make_image("val", i, HW)[0]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    program, spec, _ = load_detector(tiny_nms_build(tmp_path_factory), "tiny")
    return program, spec


@pytest.fixture(scope="module")
def rtl():
    with RtlAccelerator() as acc:
        yield acc


def test_whole_program_with_nms_exact(tmp_path_factory, tmp_path, detector, capsys):
    """`shiftflow rtlsim` on the build: the model and the NMS part, bit- and cycle-exact."""
    _program, spec = detector
    np.save(tmp_path / "x.npy", PreStage(spec)(val_image(FRAMES[0]))["x"])
    capsys.readouterr()
    assert main(["rtlsim", tiny_nms_build(tmp_path_factory), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["passed"] and r["bit_exact"] and r["max_abs_diff"] == 0 and r["cycles_equal"]
    nms = r["nms"]
    assert nms["ran"] and nms["cpu_fallbacks"] == 0 and nms["flags"] == 0 and nms["survivors"] > 0, nms
    assert nms["list_equal"] and nms["rows_equal"] and nms["rtl_cycles"] == nms["sim_cycles"] > 0
    *_model, part = r["segments"]  # the NMS part ran as its own segment, counted by the bench too
    assert part["count"] == 2 and part["rtl_cycles"] == part["sim_cycles"] == part["bench_cycles"] == nms["rtl_cycles"]
    assert r["rtl_cycles"] == r["sim_cycles"] == sum(s["sim_cycles"] for s in r["segments"])


def nms_part(program, spec, i: int, acc, patch_count: int | None = None, table: bytes | None = None) -> dict:
    """The model on the simulator for frame ``i``; then ``acc`` (the simulator itself, or the
    RTL given the simulator's DRAM) runs the NMS part (``CoreNms``; with ``patch_count``, the
    patch list's header says that many instead, and ``table`` replaces the parameter table).
    The survivor list's bytes, the rows, the NMS part's cycles."""
    sim = SimAccelerator()
    simulate(program, PreStage(spec)(val_image(i))["x"], accelerator=sim)
    if acc is not sim:
        acc.load_program(program)
        acc.write_dram(0, sim.read_dram(0, dram_size(program)))
    nms, tensors = program.manifest["nms"], program.manifest["tensors"]
    core = CoreNms(program, spec, nms["score"])
    outputs = {t: read_tensor(sim, t, tensors[t], program.config.tn) for t in core.outputs}
    if patch_count is None:
        dets, cycles = core.run(acc, outputs)
        assert core.fallbacks == 0
    else:
        header = np.zeros(1, HEADER_DTYPE)
        header["count"] = patch_count
        acc.write_dram(nms["table_addr"], core.table if table is None else table)
        acc.write_dram(nms["patch_addr"], header.tobytes())
        dets, cycles = None, acc.run_segment(nms["start"], nms["count"])
    return {"list": acc.read_dram(nms["out_addr"], 16 * (1 + core.params.capacity)), "cycles": cycles,
            "rows": None if dets is None else dets.rows}


def test_nms_part_exact_and_with_stalls_bit_exact(rtl, detector):
    program, spec = detector
    want = nms_part(program, spec, FRAMES[1], SimAccelerator())
    assert np.frombuffer(want["list"][:16], HEADER_DTYPE)[0]["count"] > 0 and len(want["rows"])
    for stall in (0.0, 0.3):
        rtl.stall, rtl.seed = stall, 7
        try:
            got = nms_part(program, spec, FRAMES[1], rtl)
        finally:
            rtl.stall = 0.0
        assert got["list"] == want["list"] and np.array_equal(got["rows"], want["rows"])
        if not stall:
            assert got["cycles"] == want["cycles"] > 0
        else:
            assert got["cycles"] > want["cycles"]


def test_bad_patch_list_is_flagged_not_hung(rtl, detector):
    """A patch list whose count exceeds the instruction's ``patches``: the RTL writes the
    header the model writes (count 0, FLAG_BAD_PATCH), in the model's cycles."""
    program, spec = detector
    over = program.manifest["nms"]["patch_capacity"] + 1
    want = nms_part(program, spec, FRAMES[0], SimAccelerator(), patch_count=over)
    got = nms_part(program, spec, FRAMES[0], rtl, patch_count=over)
    head = np.frombuffer(got["list"][:16], HEADER_DTYPE)[0]
    assert head["flags"] & FLAG_BAD_PATCH and head["count"] == 0
    assert got["list"] == want["list"] and got["cycles"] == want["cycles"] > 0


def test_a_table_the_core_cannot_run_is_flagged_not_hung(rtl, detector):
    """Kernels over the core's ``max_kernel`` and larger than every map, written past the
    loader (which refuses them, tests/runtime/test_nms_core_detect.py): the RTL writes the
    header the model writes (count 0, FLAG_BAD_TABLE, no entry), in the model's cycles."""
    program, spec = detector
    params = CoreNms(program, spec, program.manifest["nms"]["score"]).params
    n = params.channels
    table = encode_table(dataclasses.replace(params, kernels=(7,) * n, shifts=(3,) * n))
    want = nms_part(program, spec, FRAMES[0], SimAccelerator(), patch_count=0, table=table)
    got = nms_part(program, spec, FRAMES[0], rtl, patch_count=0, table=table)
    head = np.frombuffer(got["list"][:16], HEADER_DTYPE)[0]
    assert head["flags"] == FLAG_BAD_TABLE and head["count"] == 0
    assert got["list"] == want["list"] and got["cycles"] == want["cycles"] > 0
