"""The float model ``shiftflow quantize`` starts from: load, check and prepare it.

:func:`load_float_model` refuses a model that is not float32 or is already quantized, and
returns it at opset 21 / IR 10 with its graph rewritten (:mod:`.float_rewrites`) and its
shapes inferred.
"""

from __future__ import annotations

import os

import onnx
from onnx import TensorProto

from shiftflow.errors import UnsupportedError, UsageError

from .float_rewrites import fold_float_graph

OPSET = 21
IR_VERSION = 10
#: Ops and domains that mark a model as already quantized (QDQ, QOperator, QONNX/Brevitas).
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                  "MatMulInteger"}
_QUANTIZED_DOMAINS = {"qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general"}


def load_float_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """A checked, prepared copy of a float32 model (a ``ModelProto`` or a file path).

    Raises ``UsageError`` for a missing or unreadable file, a graph input that is not
    float32, or a model already holding Q/DQ, QOperator or QONNX ``Quant`` nodes;
    ``UnsupportedError`` when the opset conversion to 21 fails. The result has shapes
    inferred and BatchNormalization folded where a Conv/Gemm feeds it alone.
    """
    model = _load(model)
    _check_float(model)
    return _prepare(model)


def _load(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    path = os.fspath(model)
    if os.path.isdir(path):
        raise UsageError(f"model file '{path}' is a directory, not an ONNX file")
    if not os.path.isfile(path):
        raise UsageError(f"model file '{path}' does not exist")
    try:
        return onnx.load(path)
    except Exception as exc:  # protobuf raises several unrelated types for a bad file
        raise UsageError(f"model file '{path}' is not an ONNX model: {exc}") from None


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real inputs (old exporters also list initializers there)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def _check_float(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if (node.op_type in _QUANTIZED_OPS or node.op_type.startswith("QLinear")
                or node.domain in _QUANTIZED_DOMAINS):
            raise UsageError(f"node '{node.name or node.output[0]}' is a {node.op_type}: the model "
                             "is already quantized; quantize takes a float model (import this "
                             "one directly)")
    for vi in graph_inputs(model.graph):
        elem = vi.type.tensor_type.elem_type
        if elem != TensorProto.FLOAT:
            raise UsageError(f"graph input '{vi.name}' must be float32 to quantize; found "
                             f"{TensorProto.DataType.Name(elem)}")


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float model at opset 21 / IR 10 with BN folded and Gemm weights normalized."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version != OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:  # the converter raises RuntimeError or its own C++ errors
            raise UnsupportedError(f"cannot convert the model from opset {version} to "
                                   f"{OPSET}: {exc}") from None
    model.ir_version = IR_VERSION
    graph = model.graph
    inputs = graph_inputs(graph)
    del graph.input[:]
    graph.input.extend(inputs)
    fold_float_graph(graph)
    _check_output_shapes(model)
    return onnx.shape_inference.infer_shapes(model)


def _dims(vi: onnx.ValueInfoProto) -> list[int | None] | None:
    """Declared dims of a value (None where symbolic), or None when it declares no shape."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def _check_output_shapes(model: onnx.ModelProto) -> None:
    """Each graph output's declared shape must be the one the graph computes: the quantized
    model is checked strictly, and a stale declaration would fail there with a traceback."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for out in probe.graph.output:
        out.type.tensor_type.ClearField("shape")
    computed = {vi.name: _dims(vi) for vi in onnx.shape_inference.infer_shapes(probe).graph.output}
    for out in model.graph.output:
        declared, actual = _dims(out), computed.get(out.name)
        if declared is None or actual is None:
            continue
        if len(declared) != len(actual) or any(d is not None and a is not None and d != a
                                               for d, a in zip(declared, actual)):
            raise UsageError(f"graph output '{out.name}' is declared with shape {_show(declared)}, but the graph "
                             f"computes {_show(actual)}: fix or remove the declared shape")


def _show(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
