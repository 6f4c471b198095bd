"""A detector exported with its ONNX ``NonMaxSuppression``: split the NMS off the model.

The compiler's IR carries float32 tensors of static shape, and ``NonMaxSuppression`` returns
an int64 tensor whose length depends on the data, so it cannot be an IR op. A trailing NMS
(its output is a graph output and feeds nothing else) is therefore cut off:
``split_nms_tail`` returns the body — the same model whose outputs are the NMS's boxes and
scores inputs, which ``shiftflow check``/``compile`` take as any CNN — and the ``NmsTail``
nodes, which ``run_nms_tail`` runs on the body's outputs with ``runtime.nms.onnx_nms``,
index for index what onnxruntime's operator selects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import UnsupportedError
from .nms import onnx_nms


@dataclass(frozen=True)
class NmsTail:
    """One ``NonMaxSuppression`` node cut off a model, with its constant inputs."""
    name: str
    boxes: str
    scores: str
    output: str
    max_output_boxes_per_class: int
    iou_threshold: float
    score_threshold: float | None
    center_point_box: int


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            value = next((a for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = numpy_helper.to_array(value.t)
    return consts


def _scalar(node, consts, k: int, what: str, default):
    if len(node.input) <= k or not node.input[k]:
        return default
    name = node.input[k]
    if name not in consts:
        raise UnsupportedError(f"node {node.name!r} (NonMaxSuppression): input {what} {name!r} must be a "
                               f"constant to run as a CPU tail, found a computed tensor")
    return np.asarray(consts[name]).reshape(-1)[0].item()


def split_nms_tail(model: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[NmsTail, ...]]:
    """The model without its trailing ``NonMaxSuppression`` nodes, and those nodes. A model
    without NMS comes back unchanged with no tails. Raises ``UnsupportedError`` for an NMS
    whose output feeds another node or whose thresholds are computed."""
    graph = model.graph
    nms = [n for n in graph.node if n.op_type == "NonMaxSuppression" and n.domain in ("", "ai.onnx")]
    if not nms:
        return model, ()
    outputs = {o.name for o in graph.output}
    consumers = {i: n for n in graph.node for i in n.input}
    consts = _constants(graph)
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    tails = []
    for n in nms:
        out = n.output[0]
        if out not in outputs or out in consumers:
            user = consumers[out].name if out in consumers else "nothing"
            raise UnsupportedError(f"node {n.name!r} (NonMaxSuppression) must end the model to run as a CPU "
                                   f"tail: its output {out!r} must be a graph output feeding no node "
                                   f"(feeds {user!r})")
        thr = _scalar(n, consts, 4, "score_threshold", None)
        tails.append(NmsTail(n.name, n.input[0], n.input[1], out,
                             int(_scalar(n, consts, 2, "max_output_boxes_per_class", 0)),
                             float(_scalar(n, consts, 3, "iou_threshold", 0.0)),
                             None if thr is None else float(thr), int(attrs(n).get("center_point_box", 0))))
    body = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(body)
    infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             + list(inferred.graph.input)}
    cut = {t.output for t in tails}
    kept_nodes = [n for n in body.graph.node if not (n.op_type == "NonMaxSuppression" and n.output[0] in cut)]
    # Constants only the NMS read go with it.
    read = {i for n in kept_nodes for i in n.input}
    kept_nodes = [n for n in kept_nodes if n.op_type != "Constant" or n.output[0] in read]
    del body.graph.node[:]
    body.graph.node.extend(kept_nodes)
    used = {i for n in kept_nodes for i in n.input}
    kept_inits = [i for i in body.graph.initializer if i.name in used]
    del body.graph.initializer[:]
    body.graph.initializer.extend(kept_inits)
    new_outputs = [o for o in body.graph.output if o.name not in {t.output for t in tails}]
    for t in tails:
        for name in (t.boxes, t.scores):
            if name not in {o.name for o in new_outputs}:
                new_outputs.append(infos[name] if name in infos else onnx.helper.make_empty_tensor_value_info(name))
    del body.graph.output[:]
    body.graph.output.extend(new_outputs)
    return body, tuple(tails)


def run_nms_tail(tails: tuple[NmsTail, ...], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each tail's ``selected_indices`` (K, 3) int64 from the body's float ``outputs``."""
    return {t.output: onnx_nms(outputs[t.boxes], outputs[t.scores], t.max_output_boxes_per_class,
                               t.iou_threshold, t.score_threshold, t.center_point_box) for t in tails}
