"""The post stage of a detector exported with its own ``NonMaxSuppression`` (head spec
decoder ``nms``, docs/heads.md): the model's NMS runs as it is, on the CPU.

The build keeps the NMS, and any post-processing after it, as a tail (``frontend.nms_tail``);
its boxes and scores are program outputs. ``ModelNms`` runs the tail in onnxruntime on each
frame's outputs and turns the NMS's ``selected_indices`` ``[batch, class, box]`` into rows ``x0, y0, x1, y1, score, class`` in
model-input pixels, in the operator's order (class, then selection order).
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..frontend.nms_tail import CpuTail
from ..ir.graph import Graph
from .decode import DetectionInputError
from .heads import HeadSpec, HeadSpecError
from .nms import check_scores


def check_tail_matches(spec: HeadSpec, tail: CpuTail, body_outputs: list[str], graph: Graph) -> None:
    """A decoder-``nms`` spec needs a tail with exactly one NMS whose boxes are (1, N, 4) and
    scores (1, classes, N), and a ``box.format`` its ``center_point_box`` agrees with. One-line
    ``HeadSpecError`` otherwise."""
    if len(tail.nms) != 1:
        raise HeadSpecError(f"head spec decoder 'nms' needs a model with one NonMaxSuppression, "
                            f"found {len(tail.nms)}")
    t = tail.nms[0]
    shapes = {o: tuple(graph.types[ir].shape) for o, ir in zip(body_outputs, graph.outputs)}
    boxes, scores = shapes[t.boxes], shapes[t.scores]
    if len(boxes) != 3 or boxes[0] != 1 or boxes[2] != 4 or scores != (1, spec.num_classes, boxes[1]):
        raise HeadSpecError(f"head spec decoder 'nms': NonMaxSuppression {t.name!r} must read boxes (1, N, 4) "
                            f"and scores (1, {spec.num_classes} classes, N), found {list(boxes)} and {list(scores)}")
    if (spec.box_format == "cxcywh") != (t.center_point_box == 1):
        raise HeadSpecError(f"head spec box.format {spec.box_format!r} does not match NonMaxSuppression "
                            f"{t.name!r}'s center_point_box {t.center_point_box} (1 means 'cxcywh')")


def resolve_flags(spec: HeadSpec, nms: str | None, score: float | None, iou: float | None):
    """(nms, score, iou) with the defaults of the spec's decoder: the model's own NMS
    (``model``) for decoder ``nms`` — where ``--iou`` has no meaning (the model has its own) and
    ``--score`` only drops selected boxes not above it — else greedy at score 0.3, IoU 0.5."""
    if spec.decoder == "nms":
        if nms not in (None, "model"):
            raise UsageError(f"--nms {nms}: this detector selects its boxes with its own NonMaxSuppression "
                             f"(head spec decoder 'nms'); greedy, maxpool and psrr need its raw heads")
        if iou is not None:
            raise UsageError("--iou: this detector's own NonMaxSuppression has its IoU threshold built in")
        return "model", (0.0 if score is None else score), None
    if nms == "model":
        raise UsageError("--nms model needs a detector exported with its NonMaxSuppression "
                         "(head spec decoder 'nms', docs/heads.md)")
    return (nms or "greedy"), (0.3 if score is None else score), (0.5 if iou is None else iou)


class ModelNms:
    """The tail's selection on one frame's outputs (by IR name; integer codes with
    ``exponents``, or float32) → (K, 6) rows in model-input pixels."""

    def __init__(self, spec: HeadSpec, tail: CpuTail, body_outputs: list[str], graph: Graph,
                 score: float = 0.0):
        check_tail_matches(spec, tail, body_outputs, graph)
        self.spec, self.cpu_tail, self.tail, self.score = spec, tail, tail.nms[0], score
        self.onnx_name = dict(zip(graph.outputs, body_outputs))

    def __call__(self, outputs: dict[str, np.ndarray], exponents: dict[str, int] | None) -> np.ndarray:
        values = {}
        for ir, value in outputs.items():
            v = np.asarray(value, np.float64) * 2.0 ** exponents[ir] if exponents else value
            values[self.onnx_name[ir]] = np.asarray(v, np.float32)
        t = self.tail
        boxes, scores = values[t.boxes][0], values[t.scores][0]
        check_scores(scores)  # NaN has no order: the frame is rejected, not silently ranked
        if not np.isfinite(boxes).all():
            raise DetectionInputError(f"boxes {t.boxes!r} must be finite, found {int((~np.isfinite(boxes)).sum())} "
                                      f"non-finite values")
        sel = self.cpu_tail.run(values)[t.output]
        cls, idx = sel[:, 1], sel[:, 2]
        b = boxes[idx].astype(np.float64)
        if self.spec.box_format == "cxcywh":
            xy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
        else:
            xy = b[:, [1, 0, 3, 2]] if self.spec.box_format == "yxyx" else b
            # ONNX allows either corner first; a drawn box needs the smaller one first.
            xy = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], 1)
        if self.spec.normalized:
            xy = xy * np.array([self.spec.input.width, self.spec.input.height] * 2, np.float64)
        rows = np.concatenate([xy, scores[cls, idx][:, None].astype(np.float64), cls[:, None].astype(np.float64)], 1)
        return rows[rows[:, 4] > self.score] if self.score > 0 else rows
