"""The main job on the bundled default model: quantize → check → inspect → compile → simulate
→ Verilog.

Quantizes the bundled float digits CNN (``data/digits_cnn.onnx``) to po2 QDQ in two
flavours (int8 weights, and pow2 weights), checks each bit for bit against onnxruntime,
prints the imported IR summary, compiles it for every named target and runs the program on
the cycle-level simulator, checking the simulator against the interpreter and onnxruntime;
then generates the accelerator's Verilog for the ``tiny`` target (the programs are data: the
same RTL runs every program compiled for it).
"""

from __future__ import annotations

import os

import onnx

from .backend.compile import compile_graph
from .backend.partition import host_reasons
from .frontend.check import check_model
from .frontend.importer import import_onnx
from .frontend.quantize import load_calibration, quantize_model
from .frontend.summary import format_summary, summarize
from .hw.cli_rtl import write_rtl
from .ir.config import TARGETS
from .ir.program import save_program
from .progress import Phases
from .sim.check import check_simulation
from .zoo.digits import CALIB_PATH, MODEL_PATH

FLAVOURS = {"w8a8": dict(wbits=8, abits=8), "pow2w4a8": dict(wbits=4, abits=8, weights="pow2", per_channel=True)}


def run_demo(out_dir: str) -> int:
    """Run the job, writing models into ``out_dir``; 0 when every check is bit-exact. On a
    terminal, a progress line on stderr names the step running (``progress.Phases``)."""
    with Phases("demo") as phase:
        return _run(out_dir, phase)


def _run(out_dir: str, phase: Phases) -> int:
    os.makedirs(out_dir, exist_ok=True)
    calib = load_calibration(CALIB_PATH)
    images = next(iter(calib.values()))
    ok = True
    for name, kwargs in FLAVOURS.items():
        path = os.path.join(out_dir, f"digits_{name}.onnx")
        phase(f"quantize {name}")
        onnx.save(quantize_model(MODEL_PATH, calib=calib, **kwargs), path)
        phase.echo(f"== shiftflow quantize {MODEL_PATH.name} -> {path} ({kwargs})")
        phase(f"check {name}")
        graph = import_onnx(path)
        reports = [check_model(path, img[None], graph=graph) for img in images[:8]]
        exact = all(r.bit_exact for r in reports)
        worst = max(r.max_abs_diff for r in reports)
        ok &= exact
        phase.echo(f"== shiftflow check: {len(reports)} images, max_abs_diff={worst:g} -> "
                   f"{'bit-exact' if exact else 'NOT bit-exact'}")
        phase.echo("== shiftflow inspect")
        phase.echo(format_summary(summarize(graph, host_reasons(graph, TARGETS["tiny"]), "tiny")))
        for target in TARGETS.values():
            phase(f"compile + simulate {name} on {target.name}")
            program = compile_graph(graph, target)
            build = os.path.join(out_dir, f"build_{name}_{target.name}")
            save_program(program, build)
            result = check_simulation(program, path, images[:1])
            ok &= bool(result.bit_exact)
            phase.echo(f"== shiftflow compile -o {build} --target {target.name}: {program.n_instructions} "
                       f"instructions; simulate --check: {result.total_cycles} cycles, {result.fps:.0f} fps at "
                       f"the nominal {target.clock_mhz:g} MHz, MAC utilization {result.mac_utilization:.2f}, "
                       f"{'bit-exact (L2 = L1 = L0)' if result.bit_exact else 'MISMATCH'}")
        phase.echo()
    rtl = write_rtl("tiny", os.path.join(out_dir, "rtl_tiny"), progress=phase)
    phase.echo(f"== shiftflow verilog --target tiny -o {os.path.dirname(rtl['file_list'])}: {rtl['files'][0]} "
               f"(top {rtl['top']}, sha256 {rtl['sha256'][:12]}…)")
    phase.echo("demo: all checks bit-exact" if ok else "demo: MISMATCH (see above)")
    return 0 if ok else 1

