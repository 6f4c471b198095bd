"""Benchmark: mAP of the trained ``shapesdet`` at every level of the flow, and by NMS.

    python benchmarks/bench_detection_map.py [--images 100] [--variants w8a8 pow2]

On the first ``--images`` images of the held-out validation split (128×128, the train
resolution), for each variant, mAP (VOC: IoU 0.5 all-point; COCO: 0.50:0.95) with greedy NMS
(IoU 0.5, score > 0.05, ≤ 100 a class) at:

- torch float (Brevitas quantizers off) and torch QAT (the trained network as it trains);
- L0 onnxruntime on the QCDQ export, L1 the shiftflow interpreter, L2 the simulator on the
  program compiled for ``tiny``. L1 and L2 give integer codes, decoded with their po2
  exponents. Checks: L0, dequantized L1 and dequantized L2 raw outputs equal for every image
  and every output, their detections equal row for row, so their mAPs are identical.

Then greedy NMS vs MaxpoolNMS vs PSRR-MaxpoolNMS (docs/nms.md defaults, same score
threshold) on the same raw outputs (the L2 integer codes), and what moves PSRR's gap to
greedy: a sweep of PSRR's choices (kernel by anchor size or width, shifted tiles, alpha,
reach) and of the score threshold on those codes; then the defaults against the first
reading on ``--confirm`` further validation images (indices ``images`` onwards, L0 outputs:
images the choices were not made on). Prints a table and writes
``benchmarks/results/detection_map.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from guard import write_result
from shiftflow.backend.compile import compile_model
from shiftflow.runtime.heads import load_heads
from shiftflow.zoo.build import build_zoo
from shiftflow.zoo.shapesdet_eval import (
    NMS, dequantized, detections, interpreter_outputs, mean_ap, onnxruntime_outputs, simulator_outputs,
    torch_outputs, val_set)
from shiftflow.zoo.shapesdet_export import load_trained


CHUNK = 10  # images per progress line
# PSRR settings measured against the defaults (docs/nms.md): name -> psrr_nms options.
SWEEP = {"defaults": {}, "kernel_by_width": {"kernel_by": "width"}, "no_shifted_tiles": {"shifted": False},
         "alpha_0_5": {"alpha": 0.5}, "alpha_1_0": {"alpha": 1.0}, "alpha_1_25": {"alpha": 1.25},
         "reach_none": {"reach": None}, "reach_1_5": {"reach": 1.5}}
THRESHOLDS = (0.05, 0.1, 0.2)


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _per_chunk(label: str, fn, first, images):
    """``fn(first, images[i:i + CHUNK])`` over the images, a progress line on stderr after
    each chunk; lists (or (codes, exponents) pairs) joined; seconds in total."""
    t, out, exps = time.perf_counter(), [], None
    for i in range(0, len(images), CHUNK):
        part = fn(first, images[i:i + CHUNK])
        if isinstance(part, tuple):
            part, exps = part
        out += part
        print(f"  {label}: {min(i + CHUNK, len(images))}/{len(images)} images, "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return (out if exps is None else (out, exps)), time.perf_counter() - t


def _max_diff(a: list[dict], b: list[dict]) -> float:
    """Largest |a - b| over every image and output (float64: codes are exact there)."""
    return max(float(np.max(np.abs(x[n].astype(np.float64) - y[n].astype(np.float64))))
               for x, y in zip(a, b) for n in x)


def bench_variant(variant: str, images, gts, workdir: str, log, confirm_images: int = 0) -> tuple[dict, dict]:
    (model,) = build_zoo(workdir, names=["shapesdet"], variants=[variant], forms=["qcdq"], log=lambda s: None)
    held_out = confirm(variant, model, len(images), confirm_images, log) if confirm_images else None
    spec = load_heads(model)
    net = load_trained(variant)
    n = len(images)
    raw, secs = {}, {}
    raw["torch_float"], secs["torch_float"] = _per_chunk(
        f"{variant} torch float", lambda n_, x: torch_outputs(n_, x, False), net, images)
    raw["torch_qat"], secs["torch_qat"] = _per_chunk(f"{variant} torch QAT", torch_outputs, net, images)
    raw["L0"], secs["L0"] = _per_chunk(f"{variant} L0 onnxruntime", onnxruntime_outputs, model, images)
    (l1, e1), secs["L1"] = _per_chunk(f"{variant} L1 interpreter", interpreter_outputs, model, images)
    program = compile_model(model, "tiny")
    (l2, e2), secs["L2"] = _per_chunk(f"{variant} L2 simulator", simulator_outputs, program, images)
    raw["L1"], raw["L2"] = dequantized(l1, e1), dequantized(l2, e2)
    dets = {k: [detections(spec, o) for o in v] for k, v in raw.items() if k not in ("L1", "L2")}
    dets["L1"] = [detections(spec, c, "greedy", e1) for c in l1]
    dets["L2"] = [detections(spec, c, "greedy", e2) for c in l2]
    levels = {k: {**mean_ap(d, gts), "seconds_per_image": round(secs[k] / n, 4)} for k, d in dets.items()}
    for k, r in levels.items():
        log(f"{variant:5s} {k:12s} mAP@0.5 {r['voc_map']:6.2f}  mAP@0.5:0.95 {r['coco_map']:6.2f}  "
            f"{r['seconds_per_image'] * 1e3:8.1f} ms/image")
    nms = {}
    for method in NMS:
        d, s = _timed(lambda: [detections(spec, c, method, e2) for c in l2])
        nms[method] = {**mean_ap(d, gts), "mean_detections": round(float(np.mean([len(x) for x in d])), 2),
                       "ms_per_image": round(1e3 * s / n, 2)}
        log(f"{variant:5s} NMS {method:8s} mAP@0.5 {nms[method]['voc_map']:6.2f}  "
            f"mAP@0.5:0.95 {nms[method]['coco_map']:6.2f}  recall@0.5 {nms[method]['recall50']:6.2f}  "
            f"{nms[method]['mean_detections']:6.1f} dets/image")
    nms["psrr_minus_greedy_voc"] = round(nms["psrr"]["voc_map"] - nms["greedy"]["voc_map"], 2)
    nms["psrr_minus_greedy_coco"] = round(nms["psrr"]["coco_map"] - nms["greedy"]["coco_map"], 2)
    sweep = psrr_sweep(spec, l2, e2, gts, nms["greedy"]["voc_map"])
    for name, r in sweep["settings"].items():
        log(f"{variant:5s} PSRR {name:16s} mAP@0.5 {r['voc_map']:6.2f} ({r['minus_greedy_voc']:+.2f} vs greedy)  "
            f"{r['mean_detections']:6.1f} dets/image")
    for r in sweep["score_thresholds"].values():
        log(f"{variant:5s} score > {r['score_threshold']}: greedy {r['greedy_voc']:6.2f}  PSRR {r['psrr_voc']:6.2f}  "
            f"({r['psrr_minus_greedy_voc']:+.2f})")
    diffs = {"L1_vs_L0": _max_diff(raw["L1"], raw["L0"]), "L2_vs_L0": _max_diff(raw["L2"], raw["L0"]),
             "L2_vs_L1_codes": _max_diff(l2, l1)}
    log(f"{variant:5s} max |diff| of raw outputs: " + ", ".join(f"{k} {v:g}" for k, v in diffs.items()))
    checks = {
        f"{variant}: L1 raw outputs equal L0 (max |diff| 0)": diffs["L1_vs_L0"] == 0,
        f"{variant}: L2 raw outputs equal L0 (max |diff| 0)": diffs["L2_vs_L0"] == 0,
        f"{variant}: L2 codes equal L1 codes (max |diff| 0)": diffs["L2_vs_L1_codes"] == 0,
        f"{variant}: L0/L1/L2 detections equal": all(
            np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(dets["L0"], dets["L1"], dets["L2"])),
    }
    ident = levels["L0"]["voc_map"] == levels["L1"]["voc_map"] == levels["L2"]["voc_map"]
    # Not a check: torch sums in float32, which may round a large accumulator.
    qat_exact = sum(_max_diff([a], [b]) == 0 for a, b in zip(raw["torch_qat"], raw["L0"]))
    checks[f"{variant}: L0/L1/L2 mAP identical"] = ident
    return {"levels": levels, "levels_identical": ident, "max_abs_diff_raw": diffs,
            "torch_qat_max_abs_diff_vs_L0": _max_diff(raw["torch_qat"], raw["L0"]),
            "torch_qat_equals_L0_images": int(qat_exact), "nms": nms, "psrr_sweep": sweep,
            "held_out": held_out}, checks


def _voc(spec, codes, exps, gts, method, **options) -> dict:
    d = [detections(spec, c, method, exps, **options) for c in codes]
    r = mean_ap(d, gts)
    return {"voc_map": r["voc_map"], "coco_map": r["coco_map"], "recall50": r["recall50"],
            "mean_detections": round(float(np.mean([len(x) for x in d])), 2)}


def psrr_sweep(spec, codes, exps, gts, greedy_voc: float) -> dict:
    """PSRR's mAP under each ``SWEEP`` setting, and greedy's and PSRR's at each score
    threshold (keyed ``t0_05``: docs quote figures by dotted paths), on the same codes."""
    settings = {}
    for name, options in SWEEP.items():
        r = _voc(spec, codes, exps, gts, "psrr", **options)
        settings[name] = {**r, "options": dict(options),
                          "minus_greedy_voc": round(r["voc_map"] - greedy_voc, 2)}
    thresholds = {}
    for t in THRESHOLDS:
        g = _voc(spec, codes, exps, gts, "greedy", score_threshold=t)["voc_map"]
        p = _voc(spec, codes, exps, gts, "psrr", score_threshold=t)["voc_map"]
        thresholds[f"t{t:g}".replace(".", "_")] = {"score_threshold": t, "greedy_voc": g, "psrr_voc": p,
                                                   "psrr_minus_greedy_voc": round(p - g, 2)}
    return {"settings": settings, "score_thresholds": thresholds}


def confirm(variant: str, model, first: int, count: int, log) -> dict:
    """Greedy, PSRR (defaults) and PSRR with the kernel by width on validation images
    ``first .. first + count - 1`` (L0 float outputs: PSRR decides on their logits exactly
    as on the codes)."""
    images, gts = val_set(first + count)
    images, gts = images[first:], gts[first:]
    spec = load_heads(model)
    raw = onnxruntime_outputs(model, images)
    out = {"images": f"val {first}..{first + count - 1}", "objects": int(sum(len(g) for g in gts))}
    for name, method, options in (("greedy", "greedy", {}), ("psrr", "psrr", {}),
                                  ("psrr_kernel_by_width", "psrr", {"kernel_by": "width"})):
        out[name] = _voc(spec, raw, None, gts, method, **options)
    out["psrr_minus_greedy_voc"] = round(out["psrr"]["voc_map"] - out["greedy"]["voc_map"], 2)
    out["kernel_by_size_gain_voc"] = round(out["psrr"]["voc_map"] - out["psrr_kernel_by_width"]["voc_map"], 2)
    log(f"{variant:5s} held-out {out['images']}: greedy {out['greedy']['voc_map']:6.2f}  PSRR "
        f"{out['psrr']['voc_map']:6.2f}  PSRR kernel by width {out['psrr_kernel_by_width']['voc_map']:6.2f}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--variants", nargs="+", default=["w8a8", "pow2"])
    p.add_argument("--confirm", type=int, default=200, help="further validation images for the held-out check "
                   "of the PSRR defaults (0: none)")
    args = p.parse_args()
    images, gts = val_set(args.images)
    result = {"images": args.images, "split": "val (indices 0..images-1)", "input_hw": list(images.shape[1:3]),
              "target": "tiny", "score_threshold": 0.05, "greedy_iou": 0.5,
              "objects": int(sum(len(g) for g in gts)), "variants": {}}
    checks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            result["variants"][v], c = bench_variant(v, images, gts, tmp, print, args.confirm)
            checks.update(c)
    path = write_result("detection_map.json", result, checks)
    print(f"L0 = L1 = L2 on every image and output: {all(checks.values())}; wrote {path}")


if __name__ == "__main__":
    main()
