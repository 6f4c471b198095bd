"""Benchmark: wall time per frame of greedy NMS, MaxpoolNMS and PSRR-MaxpoolNMS on this CPU.

    python benchmarks/bench_nms.py [--frames 20] [--objects 12]

Raw outputs are synthetic but shaped like a 512×512 SSD head: strides 8/16/32 (64², 32²,
16² cells), 6 anchors a cell (2 sizes × 3 ratios), 5 classes — 32,256 boxes. Each frame
places ``--objects`` boxes; every anchor's class logit rises with its IoU with an object
(plus noise) and its regression points at that object, so candidates cluster as a trained
detector's do. The score logits also go through as int16 codes (exponent −4) to time
PSRR's integer path. The frames' objects are known, so each NMS's mAP on them is reported
too (a sanity check of the defaults, not a detector's accuracy). Prints medians and writes ``benchmarks/results/nms.json``. Checks:
greedy equals onnxruntime's NonMaxSuppression on every frame, and integer PSRR decides
exactly as float PSRR on the dequantized codes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from guard import write_result
from shiftflow.runtime.decode import decode
from shiftflow.runtime.heads import parse_heads
from shiftflow.runtime.metrics import evaluate, iou_matrix
from shiftflow.runtime.nms import greedy_nms
from shiftflow.runtime.nms_pool import ALPHA, maxpool_nms, psrr_nms

SIZE, CLASSES, STRIDES = 512, 5, (8, 16, 32)
SCORE, IOU = 0.3, 0.5
SCORE_EXP, BOX_EXP = -4, -5


def head_spec():
    levels = []
    for s in STRIDES:
        anchors = [[k * s * r ** 0.5, k * s / r ** 0.5] for k in (4, 6) for r in (1, 2, 0.5)]
        levels.append({"stride": s, "grid": [SIZE // s] * 2, "anchors": anchors,
                       "scores": {"output": f"cls_s{s}"}, "boxes": {"output": f"box_s{s}"}})
    return parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "x", "height": SIZE, "width": SIZE},
                        "classes": [f"c{i}" for i in range(CLASSES)], "decoder": "ssd",
                        "box": {"variances": [0.1, 0.1, 0.2, 0.2], "size": "exp"}, "levels": levels})


def frame(spec, rng, objects: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw float outputs (NCHW) for one synthetic frame, and its objects (M, 5) xyxy + class."""
    wh = np.exp(rng.uniform(np.log(24), np.log(200), (objects, 2)))
    xy = rng.uniform(0, SIZE, (objects, 2))
    obj = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    cls = rng.integers(0, CLASSES, objects)
    out = {}
    for lv in spec.levels:
        h, w = lv.grid
        a = np.asarray(lv.anchors)
        cy, cx = np.meshgrid((np.arange(h) + 0.5) * lv.stride, (np.arange(w) + 0.5) * lv.stride, indexing="ij")
        acx, acy = np.repeat(cx[..., None], len(a), -1), np.repeat(cy[..., None], len(a), -1)
        anchor_boxes = np.stack([acx - a[:, 0] / 2, acy - a[:, 1] / 2, acx + a[:, 0] / 2, acy + a[:, 1] / 2], -1)
        iou = iou_matrix(anchor_boxes.reshape(-1, 4), obj).reshape(h, w, len(a), objects)
        best = iou.argmax(-1)
        logits = rng.normal(-7, 1, (h, w, len(a), CLASSES))
        hit = iou.max(-1)
        np.put_along_axis(logits, cls[best][..., None],
                          (-7 + 16 * hit + rng.normal(0, 0.7, hit.shape))[..., None], -1)
        t = obj[best]
        tcx, tcy, tw, th = (t[..., 0] + t[..., 2]) / 2, (t[..., 1] + t[..., 3]) / 2, t[..., 2] - t[..., 0], \
            t[..., 3] - t[..., 1]
        reg = np.stack([(tcx - acx) / (0.1 * a[:, 0]), (tcy - acy) / (0.1 * a[:, 1]),
                        np.log(tw / a[:, 0]) / 0.2, np.log(th / a[:, 1]) / 0.2], -1)
        reg += rng.normal(0, 0.3, reg.shape)
        out[lv.scores.output] = logits.transpose(2, 3, 0, 1).reshape(1, -1, h, w).astype(np.float32)
        out[lv.boxes.output] = reg.transpose(2, 3, 0, 1).reshape(1, -1, h, w).astype(np.float32)
    return out, np.concatenate([obj, cls[:, None]], 1)


def codes(out):
    """The frame as integer codes (scores int16 at 2**SCORE_EXP, boxes at 2**BOX_EXP)."""
    ints, exps = {}, {}
    for name, arr in out.items():
        e = SCORE_EXP if name.startswith("cls") else BOX_EXP
        ints[name] = np.clip(np.round(arr / 2.0 ** e), -32768, 32767).astype(np.int16)
        exps[name] = e
    return ints, exps


def ort_session():
    names = ["boxes", "scores", "max_out", "iou", "score"]
    types = [TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT]
    node = helper.make_node("NonMaxSuppression", names, ["sel"])
    g = helper.make_graph([node], "nms", [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types)],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    r = fn(*args, **kw)
    return r, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--objects", type=int, default=12)
    args = ap.parse_args(argv)
    spec, rng, sess = head_spec(), np.random.default_rng(0), ort_session()
    times = {k: [] for k in ("decode", "greedy", "maxpool", "psrr", "psrr_int", "onnxruntime")}
    counts = {k: [] for k in ("candidates", "greedy", "maxpool", "psrr")}
    rows, truth = {k: [] for k in ("greedy", "maxpool", "psrr")}, []
    same_as_ort, int_exact = True, True
    for _ in range(args.frames):
        out, objects = frame(spec, rng, args.objects)
        truth.append(objects)
        d, t = timed(decode, spec, out)
        times["decode"].append(t)
        counts["candidates"].append(int((d.scores > SCORE).sum()))
        g, t = timed(greedy_nms, d, IOU, SCORE, None)
        times["greedy"].append(t)
        m, t = timed(maxpool_nms, d, SCORE, ALPHA, None)
        times["maxpool"].append(t)
        p, t = timed(psrr_nms, d, SCORE, ALPHA, None)
        times["psrr"].append(t)
        ints, exps = codes(out)
        d_int = decode(spec, ints, exps)
        d_deq = decode(spec, {k: (v * 2.0 ** exps[k]).astype(np.float32) for k, v in ints.items()})
        pi, t = timed(psrr_nms, d_int, SCORE, ALPHA, None)
        times["psrr_int"].append(t)
        int_exact &= np.array_equal(pi.index, psrr_nms(d_deq, SCORE, ALPHA, None).index)
        feeds = {"boxes": d.boxes[None][:, :, [1, 0, 3, 2]].copy(), "scores": d.scores.T[None].copy(),
                 "max_out": np.array([d.boxes.shape[0]], np.int64), "iou": np.array([IOU], np.float32),
                 "score": np.array([SCORE], np.float32)}
        sel, t = timed(sess.run, None, feeds)
        times["onnxruntime"].append(t)
        same_as_ort &= sorted(zip(sel[0][:, 2].tolist(), sel[0][:, 1].tolist())) == \
            sorted(zip(g.index.tolist(), g.rows[:, 5].astype(int).tolist()))
        for k, r in (("greedy", g), ("maxpool", m), ("psrr", p)):
            counts[k].append(len(r.index))
            rows[k].append(r.rows)
    maps = {k: evaluate(v, truth, CLASSES) for k, v in rows.items()}
    result = {"frames": args.frames, "objects_per_frame": args.objects, "boxes": spec.num_boxes,
              "classes": CLASSES, "strides": list(STRIDES), "anchors_per_cell": 6, "score_threshold": SCORE,
              "iou_threshold": IOU, "alpha": ALPHA,
              "median_ms": {k: round(1e3 * statistics.median(v), 3) for k, v in times.items()},
              "median_count": {k: statistics.median(v) for k, v in counts.items()},
              "synthetic_map": {k: {"voc": round(m["voc_map"], 4), "coco": round(m["coco_map"], 4)}
                                for k, m in maps.items()},
              "greedy_equals_onnxruntime": bool(same_as_ort), "psrr_integer_exact": bool(int_exact)}
    for k, v in result["median_ms"].items():
        print(f"{k:12s} {v:9.2f} ms/frame (median of {args.frames})")
    print("median kept boxes:", result["median_count"])
    print("mAP on the synthetic frames (VOC 0.5, COCO 0.5:0.95):", result["synthetic_map"])
    write_result("nms.json", result, {"greedy equals onnxruntime": same_as_ort,
                                      "integer PSRR equals float PSRR": int_exact})
    return result


if __name__ == "__main__":
    main()
