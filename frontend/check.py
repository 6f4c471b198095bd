"""``shiftflow check``: the integer interpreter (L1) against onnxruntime (L0), bit for bit.

onnxruntime runs the quantized ONNX model with graph optimizations off, i.e. the plain
float Q/DQ arithmetic of the file (QONNX ``Quant`` nodes are first rewritten to standard ops).
Both see the same float input; every graph output is compared as real values (or as integer
codes when the ONNX output is integer). Bit-exact means ``max_abs_diff == 0``.
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


def check_model(path: str | os.PathLike, given=None, seed: int = 0, input_shapes=None,
                graph: Graph | None = None) -> CheckReport:
    """Import ``path`` (unless ``graph`` is given), run L1 and L0 on the same input, compare."""
    t0 = time.perf_counter()
    graph = graph if graph is not None else import_onnx(path, input_shapes)
    t1 = time.perf_counter()
    feeds = graph_feeds(graph, given, seed)
    l1 = Interpreter(graph).run(feeds)
    t2 = time.perf_counter()
    model = load_model(path, input_shapes).model
    onnx_outputs = [o.name for o in model.graph.output]
    with cpu_ops.onnxruntime_errors(f"{os.fspath(path)!r} (L0)"):
        l0 = dict(zip(onnx_outputs, reference_session(model).run(onnx_outputs, feeds)))
    t3 = time.perf_counter()
    outputs, worst, exact = [], 0.0, True
    for onnx_name, ir_name in zip(onnx_outputs, graph.outputs):
        ref = np.asarray(l0[onnx_name])
        t = graph.types[ir_name]
        if np.issubdtype(ref.dtype, np.integer):
            ours, ref_v = np.asarray(l1[ir_name], dtype=np.float64), ref.astype(np.float64)
        else:
            ours, ref_v = dequantize(l1[ir_name], t), ref.astype(np.float64)
        diff = float(np.max(np.abs(ours - ref_v))) if ref.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf") if not np.array_equal(ours, ref_v, equal_nan=True) else 0.0
        outputs.append({"name": onnx_name, "shape": list(ref.shape), "max_abs_diff": diff, "bit_exact": diff == 0.0,
                        "mismatches": int(np.count_nonzero(ours != ref_v))})
        worst = max(worst, diff)
        exact &= diff == 0.0
    secs = {"import": t1 - t0, "interpreter": t2 - t1, "onnxruntime": t3 - t2}
    return CheckReport(exact, worst, outputs, {k: round(v, 4) for k, v in secs.items()})
