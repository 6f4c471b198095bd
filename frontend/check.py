"""``shiftflow check``: the integer interpreter (L1) against onnxruntime (L0), bit for bit.

onnxruntime runs the quantized ONNX model with graph optimizations off, i.e. the plain
float Q/DQ arithmetic of the file (QONNX ``Quant`` nodes are first rewritten to standard ops).
Both see the same float input; every graph output is compared as real values (or as integer
codes when the ONNX output is integer). Bit-exact means ``max_abs_diff == 0``.

A model ending in ``NonMaxSuppression`` (a detector exported with its NMS) is checked as it
will run: its body — the model up to the NMS's boxes and scores — is imported and compared
as above, with those boxes and scores among its outputs; the NMS tail runs on the CPU
(``nms_tail``, in onnxruntime, as compile/simulate/detect run it) on L1's boxes and scores, and its
``selected_indices`` must equal, index for index, what onnxruntime's own operator selects
running the whole model at L0.
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
from .nms_tail import body_file, run_nms_tail
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
    input, compare. A trailing ``NonMaxSuppression`` is split off and checked as the module
    docstring says; its rows (``"nms": true``) follow the body's outputs in the report."""
    with body_file(path) as (body_path, tails, _):
        whole = onnx.load(os.fspath(path)) if tails else None
        return _check(path, body_path, given, seed, input_shapes, graph, tails, whole)


def _check(path, body_path, given, seed, input_shapes, graph, tails, whole=None) -> CheckReport:
    t0 = time.perf_counter()
    graph = graph if graph is not None else import_onnx(body_path, input_shapes)
    t1 = time.perf_counter()
    feeds = graph_feeds(graph, given, seed)
    l1 = Interpreter(graph).run(feeds)
    t2 = time.perf_counter()
    body = load_model(body_path, input_shapes).model
    onnx_outputs = [o.name for o in body.graph.output]
    ref_model = body
    if tails:  # L0 runs the whole model, its NMS included, with the body's outputs exposed
        ref_model = onnx.ModelProto.FromString(whole.SerializeToString())
        have = {o.name for o in ref_model.graph.output}
        ref_model.graph.output.extend(o for o in body.graph.output if o.name not in have)
    names = onnx_outputs + [t.output for t in tails]
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
    if tails:
        selected = run_nms_tail(tails, values)
        for t in tails:
            row = _compare(t.output, selected[t.output].astype(np.float64), np.asarray(l0[t.output], np.float64))
            outputs.append({**row, "nms": True})
    t4 = time.perf_counter()
    worst = max((o["max_abs_diff"] for o in outputs), default=0.0)
    secs = {"import": t1 - t0, "interpreter": t2 - t1, "onnxruntime": t3 - t2}
    if tails:
        secs["nms_tail"] = t4 - t3
    return CheckReport(worst == 0.0, worst, outputs, {k: round(v, 4) for k, v in secs.items()})
