"""A detector exported with its ONNX ``NonMaxSuppression``: the NMS and what follows it as a
CPU tail.

The compiler's IR carries tensors of static shape, and ``NonMaxSuppression`` returns an int64
tensor whose length depends on the data, so neither it nor anything computed from its
selection can be an IR op. ``split_nms_tail`` cuts the model in two:

- the *tail*: every ``NonMaxSuppression`` node and every node downstream of one (a ``Gather``
  of the selected boxes, a ``Concat`` of scores and classes, ...), as an ONNX model of its
  own whose inputs are the body tensors it reads (the NMS's boxes and scores, and whatever
  else the post-processing gathers from) and whose outputs are the model's outputs it makes,
  plus each NMS's ``selected_indices``;
- the *body*: everything else, whose outputs are the model's other outputs and the tail's
  inputs. ``check``/``compile`` take it as any CNN.

``CpuTail.run`` runs the tail in onnxruntime on the body's outputs, as every other CPU op
runs (``cpu_ops``), so the tail computes exactly what the whole model computes from the same
boxes and scores. An NMS's limits and thresholds must be constants (``NmsTail`` records them:
``detect`` draws the selection itself); a tail node reading a model input is refused.

``shiftflow compile`` keeps the tail beside the program (``TAIL_FILE`` and ``TAIL_MODEL`` in
the build, with the body's output names, whose order is the program's graph outputs);
``simulate``, ``simulate --check``, ``check``, ``detect`` and ``run`` run it after the body.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from ..errors import UnsupportedError, UsageError
from ..ir.graph import Graph
from ..ir.semantics import dequantize
from . import cpu_ops

TAIL_FILE = "nms_tail.json"
TAIL_MODEL = "nms_tail.onnx"
TAIL_FORMAT = "shiftflow.nms_tail.v2"


@dataclass(frozen=True)
class NmsTail:
    """One ``NonMaxSuppression`` node of a tail, with its constant inputs."""
    name: str
    boxes: str
    scores: str
    output: str
    max_output_boxes_per_class: int
    iou_threshold: float
    score_threshold: float | None
    center_point_box: int


@dataclass(eq=False)
class CpuTail:
    """The NMS nodes and everything downstream of them, as an ONNX model (``model``: its
    serialized bytes) reading the body tensors ``inputs`` and making ``outputs`` (the model's
    outputs it produces, in model order, then each NMS's ``selected_indices`` not among them)."""
    nms: tuple[NmsTail, ...]
    model: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    _sessions: dict = field(default_factory=dict, repr=False)

    @property
    def post_ops(self) -> list[str]:
        """Op types of the tail's nodes after its NMS (empty when the model ends in the NMS)."""
        return [n.op_type for n in onnx.ModelProto.FromString(self.model).graph.node
                if n.op_type not in ("NonMaxSuppression", "Constant")]

    @functools.cached_property
    def _dtypes(self) -> dict:
        """The tail's input dtypes (parsed once, not every frame)."""
        graph = onnx.ModelProto.FromString(self.model).graph
        return {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in graph.input}

    def run(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tail output from the body's output ``values`` (by ONNX name, float32 or
        integer codes already in real units), run by onnxruntime."""
        feeds = {name: np.asarray(values[name]).astype(self._dtypes[name]) for name in self.inputs}
        key = tuple(v.shape for v in feeds.values())
        what = f"the NonMaxSuppression tail ({', '.join(t.name for t in self.nms)})"
        if key not in self._sessions:  # one session per input shapes, reused frame after frame
            with cpu_ops.onnxruntime_errors(what):
                self._sessions[key] = cpu_ops.make_session(self.model)
        with cpu_ops.onnxruntime_errors(f"{what} on inputs {[list(s) for s in key]}"):
            return dict(zip(self.outputs, self._sessions[key].run(list(self.outputs), feeds)))


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


def _describe(n, consts) -> NmsTail:
    thr = _scalar(n, consts, 4, "score_threshold", None)
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    return NmsTail(n.name, n.input[0], n.input[1], n.output[0],
                   int(_scalar(n, consts, 2, "max_output_boxes_per_class", 0)),
                   float(_scalar(n, consts, 3, "iou_threshold", 0.0)),
                   None if thr is None else float(thr), int(attrs.get("center_point_box", 0)))


def _is_nms(n) -> bool:
    return n.op_type == "NonMaxSuppression" and n.domain in ("", "ai.onnx")


def split_nms_tail(model: onnx.ModelProto) -> tuple[onnx.ModelProto, CpuTail | None]:
    """(body, tail): the model without its NMS nodes and everything downstream of them, and
    those nodes as a ``CpuTail``. A model without NMS comes back unchanged with ``None``.
    Raises ``UnsupportedError`` for an NMS whose limits or thresholds are computed, or a tail
    node that reads a model input."""
    graph = model.graph
    if not any(_is_nms(n) for n in graph.node):
        return model, None
    consts = _constants(graph)
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
             + list(inferred.graph.output)}
    in_tail, made = set(), set()
    for k, n in enumerate(graph.node):  # ONNX lists nodes in topological order: one pass finds the closure
        if _is_nms(n) or any(i in made for i in n.input if i):
            in_tail.add(k)
            made.update(o for o in n.output if o)
    tail_nodes = [n for k, n in enumerate(graph.node) if k in in_tail]
    body_nodes = [n for k, n in enumerate(graph.node) if k not in in_tail]
    nms = tuple(_describe(n, consts) for n in tail_nodes if _is_nms(n))
    const_nodes = {n.output[0]: n for n in body_nodes if n.op_type == "Constant" and n.output}
    inits = {i.name: i for i in graph.initializer}
    model_inputs = {i.name for i in graph.input} - set(inits)
    read = [i for n in tail_nodes for i in n.input if i and i not in made]
    inputs, tail_consts, tail_inits = [], [], []
    for name in dict.fromkeys(read):
        if name in model_inputs:
            user = next(n.name for n in tail_nodes if name in n.input)
            raise UnsupportedError(f"node {user!r} after the NonMaxSuppression reads the model input {name!r}: "
                                   f"the CPU tail may read only tensors the body computes")
        if name in inits:
            tail_inits.append(inits[name])
        elif name in const_nodes:
            tail_consts.append(const_nodes[name])
        else:
            inputs.append(name)
    outputs = [o.name for o in graph.output if o.name in made]
    outputs += [t.output for t in nms if t.output not in outputs]

    def info(name, fallback_type=TensorProto.FLOAT):
        if name in infos and infos[name].type.tensor_type.elem_type:
            return infos[name]
        return helper.make_tensor_value_info(name, fallback_type, None)

    sel_info = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["K", 3])
    tail_graph = helper.make_graph(
        tail_consts + tail_nodes, f"{graph.name}_tail", [info(i) for i in inputs],
        [sel_info(o) if o in {t.output for t in nms} else info(o) for o in outputs], tail_inits)
    tail_model = helper.make_model(tail_graph, opset_imports=list(model.opset_import))
    tail_model.ir_version = model.ir_version
    tail = CpuTail(nms, tail_model.SerializeToString(), tuple(inputs), tuple(outputs))

    body = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [n for k, n in enumerate(body.graph.node) if k not in in_tail]
    body_read = {i for n in keep if n.op_type != "Constant" for i in n.input}
    body_out = [o for o in body.graph.output if o.name not in made]
    body_out += [info(i) for i in inputs if i not in {o.name for o in body_out}]
    needed = body_read | {o.name for o in body_out}
    keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in needed]
    del body.graph.node[:]
    body.graph.node.extend(keep)
    kept_inits = [i for i in body.graph.initializer if i.name in needed]
    del body.graph.initializer[:]
    body.graph.initializer.extend(kept_inits)
    del body.graph.output[:]
    body.graph.output.extend(body_out)
    return body, tail


@contextlib.contextmanager
def body_file(path: str | os.PathLike):
    """Context: ``(model path, tail, body output names)`` for compiling or checking the
    model at ``path``: the path itself with tail ``None`` when it has no NMS (or onnx cannot
    parse it: ``load_model`` then says what is wrong), else a temporary file of its body."""
    try:
        model = onnx.load(os.fspath(path))
    except Exception:  # noqa: BLE001 - reported by load_model on the normal path
        yield path, None, []
        return
    body, tail = split_nms_tail(model)
    if tail is None:
        yield path, None, []
        return
    with tempfile.TemporaryDirectory() as tmp:
        body_path = os.path.join(tmp, os.path.basename(os.fspath(path)))
        onnx.save(body, body_path)
        yield body_path, tail, [o.name for o in body.graph.output]


def run_on_program_outputs(tail: CpuTail, graph: Graph, outputs: dict[str, np.ndarray],
                           body_outputs: list[str]) -> dict[str, np.ndarray]:
    """``tail.run`` on a program's outputs (``outputs`` by IR name: integer codes or float32),
    ``body_outputs`` naming them in ONNX terms in the order of ``graph.outputs``."""
    if len(body_outputs) != len(graph.outputs):
        raise UsageError(f"the NMS tail file lists {len(body_outputs)} body outputs; the program has "
                         f"{len(graph.outputs)}")
    values = {onnx_name: np.asarray(dequantize(outputs[ir], graph.types[ir]), np.float32)
              for onnx_name, ir in zip(body_outputs, graph.outputs)}
    return tail.run(values)


def save_tail(build: str | os.PathLike, tail: CpuTail, body_outputs: list[str]) -> None:
    """Write ``TAIL_FILE`` (the NMS nodes, the tail's inputs and outputs, the body's ONNX output
    names in the order of the program's graph outputs) and ``TAIL_MODEL`` into ``build``."""
    doc = {"format": TAIL_FORMAT, "body_outputs": list(body_outputs), "model": TAIL_MODEL,
           "inputs": list(tail.inputs), "outputs": list(tail.outputs), "nms": [asdict(t) for t in tail.nms]}
    with open(os.path.join(build, TAIL_MODEL), "wb") as f:
        f.write(tail.model)
    with open(os.path.join(build, TAIL_FILE), "w") as f:
        json.dump(doc, f, indent=1)


def load_tail(build: str | os.PathLike) -> tuple[CpuTail | None, list[str]]:
    """(tail, body output names) of a build; ``(None, [])`` when it has no ``TAIL_FILE``.
    A malformed file is a one-line ``UsageError``."""
    path = os.path.join(build, TAIL_FILE)
    if not os.path.isfile(path):
        return None, []
    try:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") != TAIL_FORMAT:
            raise ValueError(f"format must be {TAIL_FORMAT!r}, found {doc.get('format')!r} (compile the model again)")
        with open(os.path.join(build, TAIL_MODEL), "rb") as f:
            model = f.read()
        graph = onnx.ModelProto.FromString(model).graph
        tail = CpuTail(tuple(NmsTail(**t) for t in doc["nms"]), model, tuple(map(str, doc["inputs"])),
                       tuple(map(str, doc["outputs"])))
        outputs = [str(o) for o in doc["body_outputs"]]
        if [i.name for i in graph.input] != list(tail.inputs) or [o.name for o in graph.output] != list(tail.outputs):
            raise ValueError(f"{TAIL_MODEL}'s inputs and outputs differ from the ones listed")
        for name in tail.inputs:
            if name not in outputs:
                raise ValueError(f"the tail reads {name!r}, which is not a body output")
    except (OSError, ValueError, KeyError, TypeError, DecodeError) as exc:
        raise UsageError(f"{path}: not a valid NMS tail file ({exc})") from None
    return tail, outputs
