"""The main job on the bundled default model: quantize → check → inspect.

Quantizes the bundled float digits CNN (``data/digits_cnn.onnx``) to po2 QDQ in two
flavours (int8 weights, and pow2 weights), checks each bit for bit against onnxruntime and
prints the imported IR summary. Later stages (compile, simulate, Verilog) join this job as
they land.
"""

from __future__ import annotations

import os

import onnx

from .frontend.check import check_model
from .frontend.importer import import_onnx
from .frontend.quantize import load_calibration, quantize_model
from .frontend.summary import format_summary, summarize
from .zoo.digits import CALIB_PATH, MODEL_PATH

FLAVOURS = {"w8a8": dict(wbits=8, abits=8), "pow2w4a8": dict(wbits=4, abits=8, weights="pow2", per_channel=True)}


def run_demo(out_dir: str) -> int:
    """Run the job, writing models into ``out_dir``; 0 when every check is bit-exact."""
    os.makedirs(out_dir, exist_ok=True)
    calib = load_calibration(CALIB_PATH)
    images = next(iter(calib.values()))
    ok = True
    for name, kwargs in FLAVOURS.items():
        path = os.path.join(out_dir, f"digits_{name}.onnx")
        onnx.save(quantize_model(MODEL_PATH, calib=calib, **kwargs), path)
        print(f"== shiftflow quantize {MODEL_PATH.name} -> {path} ({kwargs})")
        graph = import_onnx(path)
        reports = [check_model(path, img[None], graph=graph) for img in images[:8]]
        exact = all(r.bit_exact for r in reports)
        worst = max(r.max_abs_diff for r in reports)
        ok &= exact
        print(f"== shiftflow check: {len(reports)} images, max_abs_diff={worst:g} -> "
              f"{'bit-exact' if exact else 'NOT bit-exact'}")
        print("== shiftflow inspect")
        print(format_summary(summarize(graph)))
        print()
    print("demo: all checks bit-exact" if ok else "demo: MISMATCH (see above)")
    return 0 if ok else 1

