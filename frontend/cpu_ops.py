"""CPU ops: ONNX nodes the accelerator does not run, kept as small ONNX models in the IR.

A ``cpu`` op carries a self-contained ONNX model (one node, its constant inputs as
initializers) whose graph inputs are named after the IR tensors it reads (dequantized to
float32) and whose outputs are float32 IR tensors.
"""

from __future__ import annotations

import base64
import contextlib
import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UnsupportedError

OPSET = 21
IR_VERSION = 10


def session_options():
    """onnxruntime options for plain float Q/DQ arithmetic: no graph rewrites (no QLinear fusion)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return opts


def make_session(model_bytes: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, session_options(), providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def onnxruntime_errors(what: str):
    """Turn an onnxruntime failure inside the block into an ``UnsupportedError`` saying
    ``onnxruntime cannot run {what}: ...`` (its status prefix and C++ location removed)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf,
                                                              NotImplemented)

    try:
        yield
    except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NotImplemented) as exc:
        text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc).strip().splitlines()[0])
        text = re.sub(r"\S*onnxruntime_src\S*:\d+ [^(]*\(.*?\) ", "", text)
        raise UnsupportedError(f"onnxruntime cannot run {what}: {text}") from None


def node_model(node: onnx.NodeProto, inputs: dict[str, tuple[int, ...]], consts: dict[str, np.ndarray],
               outputs: dict[str, tuple[tuple[int, ...], int]], opsets: dict[str, int]) -> str:
    """Base64 of a one-node ONNX model.

    ``inputs``: runtime float inputs (name → shape); ``consts``: constant inputs (embedded);
    ``outputs``: name → (shape, ONNX elem type).
    """
    g_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()]
    g_outputs = [helper.make_tensor_value_info(n, et, list(s)) for n, (s, et) in outputs.items()]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    graph = helper.make_graph([node], f"cpu_{node.name}", g_inputs, g_outputs, inits)
    imports = [helper.make_opsetid(dom, ver) for dom, ver in opsets.items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="shiftflow")
    model.ir_version = IR_VERSION
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UnsupportedError(f"node {node.name!r} ({node.op_type}) cannot run as a CPU op: {first}") from None
    return base64.b64encode(model.SerializeToString()).decode()


def evaluate_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], opsets: dict[str, int],
                  out_types: dict[str, int]) -> dict[str, np.ndarray]:
    """Run one node whose inputs are all constants (constant folding) in onnxruntime."""
    g_outputs = [helper.make_tensor_value_info(n, out_types.get(n, TensorProto.UNDEFINED), None)
                 for n in node.output if n]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    graph = helper.make_graph([node], "fold", [], g_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = IR_VERSION
    sess = make_session(model.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {})))
