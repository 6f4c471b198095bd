"""``shiftflow check``: the integer interpreter (L1) against onnxruntime (L0), bit for bit.

onnxruntime runs the quantized ONNX model with graph optimizations off, i.e. the plain
float Q/DQ arithmetic of the file (QONNX ``Quant`` nodes are first rewritten to standard ops).
Both see the same float input; every graph output is compared as real values (or as integer
codes when the ONNX output is integer). Bit-exact means ``max_abs_diff == 0``.

A model with a ``NonMaxSuppression`` (a detector exported with its NMS, and perhaps
post-processing after it) is checked as it will run: its body — the model up to the NMS's
boxes and scores and whatever else the tail reads — is imported and compared as above, with
those tensors among its outputs; the tail (``nms_tail``: the NMS and everything after it, in
onnxruntime, as compile/simulate/detect run it) runs on L1's values, and each of its outputs
(each NMS's ``selected_indices`` and the model outputs computed from them) must equal, index
for index, what onnxruntime computes running the whole model at L0.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..ir.feeds import graph_feeds
from ..ir.graph import Graph
from . import cpu_ops
from .importer import import_onnx
from ..ir.semantics import dequantize
from .interpreter import Interpreter
from .nms_tail import body_file
from .onnx_load import load_model
from .qonnx_to_qdq import has_qonnx_nodes, qonnx_to_qdq


@dataclass
class CheckReport:
    bit_exact: bool
    max_abs_diff: float
    outputs: list[dict]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"bit_exact": self.bit_exact, "max_abs_diff": self.max_abs_diff, "outputs": self.outputs,
                "seconds": self.seconds}


def reference_session(model: onnx.ModelProto):
    """An onnxruntime session for L0 (QONNX rewritten to QCDQ first)."""
    if has_qonnx_nodes(model):
        model = qonnx_to_qdq(model)
    return cpu_ops.make_session(model.SerializeToString())


def _compare(name: str, ours: np.ndarray, ref: np.ndarray) -> dict:
    """One output row: real values (float64) compared element by element; a shape mismatch
    (an NMS selecting a different number of boxes) is an infinite difference."""
    if ours.shape != ref.shape:
        diff, mismatches = float("inf"), int(max(ours.size, ref.size))
    else:
        diff = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf") if not np.array_equal(ours, ref, equal_nan=True) else 0.0
        mismatches = int(np.count_nonzero(ours != ref))
    return {"name": name, "shape": list(ref.shape), "max_abs_diff": diff, "bit_exact": diff == 0.0,
            "mismatches": mismatches}


def check_model(path: str | os.PathLike, given=None, seed: int = 0, input_shapes=None,
                graph: Graph | None = None) -> CheckReport:
    """Import ``path`` (unless ``graph``, its body's IR, is given), run L1 and L0 on the same
    input, compare. A ``NonMaxSuppression`` and what follows it are split off and checked as the
    module docstring says; the tail's rows (``"nms": true``) follow the body's outputs."""
    with body_file(path) as (body_path, tail, _):
        whole = onnx.load(os.fspath(path)) if tail is not None else None
        return _check(path, body_path, given, seed, input_shapes, graph, tail, whole)


def _check(path, body_path, given, seed, input_shapes, graph, tail, whole=None) -> CheckReport:
    t0 = time.perf_counter()
    graph = graph if graph is not None else import_onnx(body_path, input_shapes)
    t1 = time.perf_counter()
    feeds = graph_feeds(graph, given, seed)
    l1 = Interpreter(graph).run(feeds)
    t2 = time.perf_counter()
    body = load_model(body_path, input_shapes).model
    onnx_outputs = [o.name for o in body.graph.output]
    ref_model = body
    tail_outputs = list(tail.outputs) if tail is not None else []
    if tail is not None:  # L0 runs the whole model, its tail included, with the body's and tail's outputs exposed
        ref_model = onnx.ModelProto.FromString(whole.SerializeToString())
        have = {o.name for o in ref_model.graph.output}
        tail_infos = onnx.ModelProto.FromString(tail.model).graph.output
        ref_model.graph.output.extend(o for o in list(body.graph.output) + list(tail_infos) if o.name not in have)
    names = onnx_outputs + tail_outputs
    with cpu_ops.onnxruntime_errors(f"{os.fspath(path)!r} (L0)"):
        l0 = dict(zip(names, reference_session(ref_model).run(names, feeds)))
    t3 = time.perf_counter()
    outputs, values = [], {}
    for onnx_name, ir_name in zip(onnx_outputs, graph.outputs):
        ref = np.asarray(l0[onnx_name])
        if np.issubdtype(ref.dtype, np.integer):
            ours = np.asarray(l1[ir_name], dtype=np.float64)
        else:
            ours = dequantize(l1[ir_name], graph.types[ir_name])
        values[onnx_name] = ours.astype(ref.dtype)  # what the NMS tail reads (float32: exact when equal)
        outputs.append(_compare(onnx_name, ours, ref.astype(np.float64)))
    if tail is not None:
        computed = tail.run(values)
        for name in tail_outputs:
            row = _compare(name, np.asarray(computed[name], np.float64), np.asarray(l0[name], np.float64))
            outputs.append({**row, "nms": True})
    t4 = time.perf_counter()
    worst = max((o["max_abs_diff"] for o in outputs), default=0.0)
    secs = {"import": t1 - t0, "interpreter": t2 - t1, "onnxruntime": t3 - t2}
    if tail is not None:
        secs["nms_tail"] = t4 - t3
    return CheckReport(worst == 0.0, worst, outputs, {k: round(v, 4) for k, v in secs.items()})
