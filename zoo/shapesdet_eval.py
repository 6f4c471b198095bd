"""Evaluate ``shapesdet`` on the held-out validation split, at every level of the flow.

Raw head outputs of each image (name → array with batch 1) come from:

- ``torch_outputs``: the Brevitas network (QAT forward, or float with quantization off);
- ``onnxruntime_outputs``: L0, onnxruntime on the exported model;
- ``interpreter_outputs``: L1, the frontend's integer interpreter (integer codes);
- ``simulator_outputs``: L2, the simulator running the compiled program (integer codes).

Integer codes come with their po2 exponents (value = code · 2**e), as the decoder takes
them. ``detections`` decodes and suppresses one image (greedy, MaxpoolNMS or PSRR) and
``mean_ap`` scores a list of them against the ground truth (runtime/metrics.py).
"""

from __future__ import annotations

import numpy as np

from ..runtime.decode import decode
from ..runtime.metrics import evaluate
from ..runtime.nms import greedy_nms
from ..runtime.nms_pool import maxpool_nms, psrr_nms
from .shapes_data import CLASSES, make_split
from .shapesdet import OUTPUT_NAMES, TRAIN_HW, preprocess

SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
NMS = ("greedy", "maxpool", "psrr")


def val_set(count: int, hw=TRAIN_HW):
    """The first ``count`` validation images (uint8 NHWC) and their boxes."""
    return make_split("val", count, hw)


def torch_outputs(net, images: np.ndarray, quantized: bool = True, batch: int = 32) -> list[dict]:
    """Per image, the head maps of ``net`` (float32); ``quantized=False`` runs a copy of it
    in float (Brevitas calibration mode switches every quantizer off, and on leaving it
    rewrites the activation scales from what it saw — hence the copy)."""
    import copy
    from contextlib import nullcontext

    from .nets import calibration_mode, quiet, torch

    out = []
    if not quantized:
        net = copy.deepcopy(net)
    with quiet(), torch.no_grad(), (nullcontext() if quantized else calibration_mode(net)):
        for i in range(0, len(images), batch):
            maps = [m.numpy() for m in net(torch.from_numpy(preprocess(images[i:i + batch])))]
            for k in range(len(maps[0])):
                out.append({n: m[k:k + 1] for n, m in zip(OUTPUT_NAMES, maps)})
    return out


def onnxruntime_outputs(model_path, images: np.ndarray) -> list[dict]:
    """L0: onnxruntime on the exported model (QONNX files are rewritten to QCDQ first)."""
    import onnx

    from ..frontend.check import reference_session

    sess = reference_session(onnx.load(str(model_path)))
    x = preprocess(images)
    return [dict(zip(OUTPUT_NAMES, sess.run(OUTPUT_NAMES, {"input": x[i:i + 1]})))
            for i in range(len(images))]


def _exponents(graph) -> dict[str, int]:
    """ONNX output name → po2 exponent of the IR output (graph outputs keep ONNX's order)."""
    return {o: -int(graph.types[t].frac) for o, t in zip(OUTPUT_NAMES, graph.outputs)}


def interpreter_outputs(model_path, images: np.ndarray):
    """L1: the frontend's integer interpreter. Returns (codes per image, exponents)."""
    from ..frontend.importer import import_onnx
    from ..frontend.interpreter import Interpreter
    from ..ir.feeds import graph_feeds

    graph = import_onnx(model_path)
    interp = Interpreter(graph)
    x = preprocess(images)
    out = []
    for i in range(len(images)):
        res = interp.run(graph_feeds(graph, x[i:i + 1]))
        out.append({o: np.asarray(res[t]) for o, t in zip(OUTPUT_NAMES, graph.outputs)})
    return out, _exponents(graph)


def simulator_outputs(program, images: np.ndarray):
    """L2: the simulator on a compiled program. Returns (codes per image, exponents)."""
    from ..sim.run import simulate

    x = preprocess(images)
    out = [{o: np.asarray(simulate(program, x[i:i + 1]).outputs[t])
            for o, t in zip(OUTPUT_NAMES, program.graph.outputs)} for i in range(len(images))]
    return out, _exponents(program.graph)


def dequantized(codes: list[dict], exponents: dict[str, int]) -> list[dict]:
    """Integer codes → float32 values (exact: the head sums fit float32's mantissa)."""
    return [{n: (v.astype(np.float64) * 2.0 ** exponents[n]).astype(np.float32) for n, v in c.items()}
            for c in codes]


def detections(spec, outputs: dict, method: str = "greedy", exponents: dict | None = None,
               score_threshold: float = SCORE_THRESHOLD, **options) -> np.ndarray:
    """(K, 6) ``[x0, y0, x1, y1, score, class]`` of one image by NMS ``method``; ``options``
    go to the pooling NMS (``alpha``, PSRR's ``reach``, ``shifted``, ``kernel_by``)."""
    dec = decode(spec, outputs, exponents)
    if method == "greedy":
        return greedy_nms(dec, IOU_THRESHOLD, score_threshold).rows
    fn = {"maxpool": maxpool_nms, "psrr": psrr_nms}[method]
    return fn(dec, score_threshold, **options).rows


def mean_ap(dets: list[np.ndarray], gts: list[np.ndarray]) -> dict:
    """VOC (IoU 0.5, all-point) and COCO (0.50:0.95) mAP in percent, the recall at IoU 0.5
    in percent, and AP50 per class. Classes without ground truth among the images have AP None."""
    r = evaluate(dets, gts, len(CLASSES))
    return {"voc_map": round(100 * r["voc_map"], 2), "coco_map": round(100 * r["coco_map"], 2),
            "recall50": round(100 * r["recall50"], 2),
            "ap50": {c: None if np.isnan(a) else round(100 * float(a), 2) for c, a in zip(CLASSES, r["ap50"])}}
