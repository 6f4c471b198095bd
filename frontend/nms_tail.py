"""A detector exported with its ONNX ``NonMaxSuppression``: the NMS as a CPU tail.

The compiler's IR carries tensors of static shape, and ``NonMaxSuppression`` returns an int64
tensor whose length depends on the data, so it cannot be an IR op. A *trailing* NMS (its
output is a graph output and feeds nothing else; its limits and thresholds are constants) is
cut off instead: ``split_nms_tail`` returns the *body* — the same model whose outputs are the
NMS's boxes and scores inputs, which ``check``/``compile`` take as any CNN — and the
``NmsTail`` nodes. ``run_nms_tail`` runs them on the body's outputs in onnxruntime, as every
other CPU op runs (``cpu_ops``), so a tail selects exactly what the operator selects.

``shiftflow compile`` keeps the tails beside the program (``TAIL_FILE`` in the build, with
the body's output names, whose order is the program's graph outputs); ``simulate``,
``simulate --check``, ``check``, ``detect`` and ``run`` run them after the body.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UnsupportedError, UsageError
from ..ir.graph import Graph
from ..ir.semantics import dequantize
from . import cpu_ops

TAIL_FILE = "nms_tail.json"
TAIL_FORMAT = "shiftflow.nms_tail.v1"


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
    whose output feeds another node or whose limits or thresholds are computed."""
    graph = model.graph
    nms = [n for n in graph.node if n.op_type == "NonMaxSuppression" and n.domain in ("", "ai.onnx")]
    if not nms:
        return model, ()
    outputs = {o.name for o in graph.output}
    consumers = {i: n for n in graph.node for i in n.input}
    consts = _constants(graph)
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
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
    new_outputs = [o for o in body.graph.output if o.name not in cut]
    for t in tails:
        for name in (t.boxes, t.scores):
            if name not in {o.name for o in new_outputs}:
                new_outputs.append(infos[name] if name in infos else onnx.helper.make_empty_tensor_value_info(name))
    del body.graph.output[:]
    body.graph.output.extend(new_outputs)
    return body, tuple(tails)


@contextlib.contextmanager
def body_file(path: str | os.PathLike):
    """Context: ``(model path, tails, body output names)`` for compiling or checking the
    model at ``path``: the path itself with no tails when it has no NMS (or onnx cannot parse
    it: ``load_model`` then says what is wrong), else a temporary file of its body."""
    try:
        model = onnx.load(os.fspath(path))
    except Exception:  # noqa: BLE001 - reported by load_model on the normal path
        yield path, (), []
        return
    body, tails = split_nms_tail(model)
    if not tails:
        yield path, (), []
        return
    with tempfile.TemporaryDirectory() as tmp:
        body_path = os.path.join(tmp, os.path.basename(os.fspath(path)))
        onnx.save(body, body_path)
        yield body_path, tails, [o.name for o in body.graph.output]


def _tail_model(t: NmsTail, boxes_shape, scores_shape) -> bytes:
    """The one-node model of ``t`` (constants as initializers) for onnxruntime."""
    inits = [numpy_helper.from_array(np.array([t.max_output_boxes_per_class], np.int64), "max_out"),
             numpy_helper.from_array(np.array([t.iou_threshold], np.float32), "iou")]
    names = [t.boxes, t.scores, "max_out", "iou"]
    if t.score_threshold is not None:
        inits.append(numpy_helper.from_array(np.array([t.score_threshold], np.float32), "score"))
        names.append("score")
    node = helper.make_node("NonMaxSuppression", names, [t.output], name=t.name,
                            center_point_box=t.center_point_box)
    graph = helper.make_graph([node], f"tail_{t.name}",
                              [helper.make_tensor_value_info(t.boxes, TensorProto.FLOAT, list(boxes_shape)),
                               helper.make_tensor_value_info(t.scores, TensorProto.FLOAT, list(scores_shape))],
                              [helper.make_tensor_value_info(t.output, TensorProto.INT64, ["K", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", cpu_ops.OPSET)])
    model.ir_version = cpu_ops.IR_VERSION
    return model.SerializeToString()


_SESSIONS: dict[tuple, object] = {}


def run_nms_tail(tails: tuple[NmsTail, ...], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each tail's ``selected_indices`` (K, 3) int64 from the body's float ``outputs`` (by
    ONNX name), run by onnxruntime's ``NonMaxSuppression``."""
    selected = {}
    for t in tails:
        boxes = np.asarray(outputs[t.boxes], np.float32)
        scores = np.asarray(outputs[t.scores], np.float32)
        key = (t, boxes.shape, scores.shape)
        if key not in _SESSIONS:  # one session per tail and shape, reused frame after frame
            with cpu_ops.onnxruntime_errors(f"the NonMaxSuppression tail {t.name!r}"):
                _SESSIONS[key] = cpu_ops.make_session(_tail_model(t, boxes.shape, scores.shape))
        with cpu_ops.onnxruntime_errors(f"the NonMaxSuppression tail {t.name!r} on boxes {boxes.shape} "
                                        f"and scores {scores.shape}"):
            selected[t.output] = _SESSIONS[key].run(None, {t.boxes: boxes, t.scores: scores})[0]
    return selected


def run_on_program_outputs(tails: tuple[NmsTail, ...], graph: Graph, outputs: dict[str, np.ndarray],
                           body_outputs: list[str]) -> dict[str, np.ndarray]:
    """``run_nms_tail`` on a program's outputs (``outputs`` by IR name: integer codes or
    float32), ``body_outputs`` naming them in ONNX terms in the order of ``graph.outputs``."""
    if len(body_outputs) != len(graph.outputs):
        raise UsageError(f"the NMS tail file lists {len(body_outputs)} body outputs; the program has "
                         f"{len(graph.outputs)}")
    values = {onnx_name: np.asarray(dequantize(outputs[ir], graph.types[ir]), np.float32)
              for onnx_name, ir in zip(body_outputs, graph.outputs)}
    return run_nms_tail(tails, values)


def save_tails(build: str | os.PathLike, tails: tuple[NmsTail, ...], body_outputs: list[str]) -> None:
    """Write ``TAIL_FILE`` into ``build``: the tails and the body's ONNX output names in the
    order of the program's graph outputs."""
    doc = {"format": TAIL_FORMAT, "body_outputs": list(body_outputs), "tails": [asdict(t) for t in tails]}
    with open(os.path.join(build, TAIL_FILE), "w") as f:
        json.dump(doc, f, indent=1)


def load_tails(build: str | os.PathLike) -> tuple[tuple[NmsTail, ...], list[str]]:
    """(tails, body output names) of a build; ``((), [])`` when it has no ``TAIL_FILE``.
    A malformed file is a one-line ``UsageError``."""
    path = os.path.join(build, TAIL_FILE)
    if not os.path.isfile(path):
        return (), []
    try:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") != TAIL_FORMAT:
            raise ValueError(f"format must be {TAIL_FORMAT!r}, found {doc.get('format')!r}")
        tails = tuple(NmsTail(**t) for t in doc["tails"])
        outputs = [str(o) for o in doc["body_outputs"]]
        for t in tails:
            for name in (t.boxes, t.scores):
                if name not in outputs:
                    raise ValueError(f"tail {t.name!r} reads {name!r}, which is not a body output")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a valid NMS tail file ({exc})") from None
    return tails, outputs
