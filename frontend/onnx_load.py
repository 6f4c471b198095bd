"""Reading an ONNX file: validation, static input shapes, shape inference.

Every problem with the file itself (missing, truncated, malformed, dynamic shapes without
``--input-shape``, shapes that cannot be inferred) becomes a one-line ``ShiftflowError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ImportError_, UnsupportedError, UsageError
from ..ir.ops import conv_out_size

# Domains of QONNX quantizers, which ONNX shape inference does not know (they keep shape).
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")


@dataclass(frozen=True)
class LoadedModel:
    """A validated model: ``model`` has static input shapes; ``shapes`` maps every tensor
    name to ``(shape, onnx elem type)``; ``inputs`` lists the real (non-initializer) inputs."""

    model: onnx.ModelProto
    shapes: dict[str, tuple[tuple[int, ...], int]]
    inputs: tuple[str, ...]
    opsets: dict[str, int]


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``--input-shape`` values: ``name=1,3,224,224`` or ``1,3,224,224`` (single input)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"bad --input-shape {spec!r}: expected NAME=D0,D1,... with positive integers") from None
        if not shape or min(shape) <= 0:
            raise UsageError(f"bad --input-shape {spec!r}: dimensions must be positive integers")
        shapes[name] = shape
    return shapes


def load_model(path: str | os.PathLike, input_shapes: dict[str, tuple[int, ...]] | None = None) -> LoadedModel:
    """Read, check and shape-infer the ONNX model at ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        build = os.path.isfile(os.path.join(path, "manifest.json"))
        raise UsageError(f"{path!r} is a directory, not an ONNX file" +
                         (f" (a build: run `shiftflow simulate {path}`)" if build else ""))
    if not os.path.isfile(path):
        raise UsageError(f"cannot read {path!r}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ImportError_(f"{path!r} is empty, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish variants, ...
        raise ImportError_(f"{path!r} is not a valid ONNX model (truncated or corrupt?): "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not model.graph.node:
        raise ImportError_(f"{path!r} is not a valid ONNX model: its graph has no nodes (truncated or corrupt?)")
    bad = _not_utf8(model, "model")
    if bad:
        raise ImportError_(f"{path!r} is not a valid ONNX model: {bad} is not UTF-8 text (corrupt?)")
    return prepare_model(model, input_shapes, source=path)


def prepare_model(model: onnx.ModelProto, input_shapes=None, source: str = "model") -> LoadedModel:
    """Validate ``model`` (already parsed), fix its input shapes and infer all shapes."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's copy
    check_graph(model, source)
    g = model.graph
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    given = dict(input_shapes or {})
    if "" in given:
        if len(real_inputs) != 1:
            raise UsageError(f"--input-shape without a name needs a single-input model; inputs are "
                             f"{[i.name for i in real_inputs]}")
        given[real_inputs[0].name] = given.pop("")
    for name in given:
        if name not in {i.name for i in real_inputs}:
            raise UsageError(f"--input-shape names {name!r}, but the model's inputs are {[i.name for i in real_inputs]}")
    for inp in real_inputs:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or tt.elem_type != TensorProto.FLOAT:
            raise UnsupportedError(f"input {inp.name!r} must be a float32 tensor, got {_type_name(tt.elem_type)}")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if inp.name in given:
            shape = given[inp.name]
            if tt.HasField("shape") and len(shape) != len(dims):
                raise UsageError(f"--input-shape for {inp.name!r} has rank {len(shape)}, the model's input has rank {len(dims)}")
            tt.shape.Clear()
            for d in shape:
                tt.shape.dim.add().dim_value = d
        elif not tt.HasField("shape") or None in dims:
            shown = "[" + ",".join("?" if d is None else str(d) for d in dims) + "]" if tt.HasField("shape") else "unknown"
            raise ImportError_(f"input {inp.name!r} has a dynamic or unknown shape {shown}; give a static one with "
                               f"--input-shape {inp.name}=1,3,224,224 (your sizes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ImportError_(f"{source!r} is not a valid ONNX model: {str(exc).strip().splitlines()[0]}") from None

    opsets = {o.domain or "": o.version for o in model.opset_import}
    shapes = _infer_shapes(model, real_inputs, source)
    return LoadedModel(model, shapes, tuple(i.name for i in real_inputs), opsets)


def check_graph(model: onnx.ModelProto, source: str) -> None:
    """What must hold before shape inference can say anything useful: graph outputs, a known
    opset, quantizers (a float model goes through ``shiftflow quantize`` first), and no QONNX
    op other than ``Quant``."""
    if not model.graph.output:
        raise ImportError_(f"{source!r} has no graph outputs: nothing to compute")
    newest = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > newest:
            raise UnsupportedError(f"{source!r} imports ONNX opset {o.version}; onnx {onnx.__version__} knows opsets "
                                   f"up to {newest}: export the model at opset {newest} or lower")
    quantizers = {"QuantizeLinear", "Quant"}
    for n in model.graph.node:
        if n.domain in QONNX_DOMAINS and n.op_type != "Quant":
            raise UnsupportedError(f"node {n.name!r}: QONNX {n.op_type} is not supported; shiftflow imports "
                                   f"QONNX Quant (integer quantization, 2..8 bits) only")
    if not any(n.op_type in quantizers for n in model.graph.node):
        name = os.path.basename(source)
        raise UnsupportedError(f"{source!r} is not quantized (no QuantizeLinear/Quant nodes): quantize it first, "
                               f"e.g. `shiftflow quantize {name} -o quantized.onnx --calib-random 32`")


def _infer_shapes(model: onnx.ModelProto, real_inputs, source: str) -> dict[str, tuple[tuple[int, ...], int]]:
    # Shape inference does not know QONNX quantizers: infer on a copy where each is an Identity.
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = []
    for n in probe.graph.node:
        if n.domain in QONNX_DOMAINS and n.op_type == "Quant":
            n = helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
        nodes.append(n)
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    if probe.ir_version >= 4:  # before IR 4 every initializer must also be a graph input
        init_names = {i.name for i in probe.graph.initializer}
        kept = [i for i in probe.graph.input if i.name not in init_names]
        del probe.graph.input[:]
        probe.graph.input.extend(kept)
    del probe.graph.value_info[:]
    for out in probe.graph.output:  # declared output shapes may predate an --input-shape override
        out.type.tensor_type.ClearField("shape")
    # A ceil-mode pool whose last window would start past its input: onnxruntime (and the
    # interpreter, ir.ops.conv_out_size) drop that window, onnx's shape inference keeps it, and
    # everything downstream would be typed one row or column too large. Each such pool is
    # replaced in the probe by the floor-mode pool of the same output size, then inferred again.
    for _ in range(1 + sum(n.op_type in _POOLS for n in probe.graph.node)):
        shapes = _inferred_shapes(probe, source)
        if not any(_fix_ceil_pool(n, shapes) for n in probe.graph.node if n.op_type in _POOLS):
            break
    for init in model.graph.initializer:
        shapes[init.name] = (tuple(init.dims), init.data_type)
    for n in model.graph.node:
        for out in n.output:
            if out and out not in shapes:
                if n.op_type in _DATA_DEPENDENT:
                    raise UnsupportedError(
                        f"node {n.name!r} ({n.op_type}): its output's length depends on the data, so the "
                        f"graph cannot be imported with it (shiftflow check, compile and detect split a "
                        f"NonMaxSuppression and what follows it off as a CPU tail, docs/nms.md)")
                raise ImportError_(f"cannot determine the shape of tensor {out!r} (output of node {n.name!r}, "
                                   f"{n.op_type}); the model lacks static shape information")
    return shapes


_POOLS = ("MaxPool", "AveragePool")
#: Ops a detector ends in whose output length is data (no static shape).
_DATA_DEPENDENT = ("NonMaxSuppression",)


def _inferred_shapes(probe: onnx.ModelProto, source: str) -> dict[str, tuple[tuple[int, ...], int]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ImportError_(f"shape inference failed on {source!r}: {str(exc).strip().splitlines()[0]}") from None
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = (tuple(d.dim_value for d in tt.shape.dim), tt.elem_type)
    return shapes


def _fix_ceil_pool(node: onnx.NodeProto, shapes: dict) -> bool:
    """Rewrite a ceil-mode pool of the shape-inference probe whose inferred output keeps a
    window onnxruntime drops: floor mode with the end padding that gives onnxruntime's size.
    Returns whether it changed the node."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if not attrs.get("ceil_mode") or node.input[0] not in shapes or node.output[0] not in shapes:
        return False
    x, y = shapes[node.input[0]][0], shapes[node.output[0]][0]
    kernel, rank = list(attrs.get("kernel_shape", [])), len(x) - 2
    if len(kernel) != rank or len(y) != len(x) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    strides = list(attrs.get("strides", [1] * rank))
    dil = list(attrs.get("dilations", [1] * rank))
    pads = list(attrs.get("pads", [0] * 2 * rank))
    want = [conv_out_size(x[2 + i], kernel[i], strides[i], pads[i], pads[rank + i], dil[i], True) for i in range(rank)]
    if list(y[2:]) == want:
        return False
    for i in range(rank):  # floor((x + p0 + p1' - span) / s) + 1 == want
        pads[rank + i] = max(0, (want[i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - x[2 + i] - pads[i])
    keep = [a for a in node.attribute if a.name not in ("ceil_mode", "pads")]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute("ceil_mode", 0), helper.make_attribute("pads", pads)])
    return True


def initializer_array(init: onnx.TensorProto) -> np.ndarray:
    """The value of initializer ``init``; ``ImportError_`` when its data does not fill its dims
    (raw bytes or typed values of another count, an unknown data type)."""
    dims = list(init.dims)
    try:
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
    except (KeyError, ValueError):
        raise ImportError_(f"initializer {init.name!r} has data type {init.data_type}, which ONNX does not "
                           f"define") from None
    try:
        return numpy_helper.to_array(init)
    except Exception as exc:  # numpy's reshape ValueError, onnx's own checks, ...
        n = int(np.prod(dims, dtype=object)) if all(d >= 0 for d in dims) else None
        held = (f"{len(init.raw_data)} bytes of raw data" if init.HasField("raw_data")
                else f"data that does not decode ({str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__})")
        need = f"; dims {dims} of {dtype.name} need {n * dtype.itemsize} bytes" if n is not None else f"; dims {dims}"
        raise ImportError_(f"initializer {init.name!r} holds {held}{need}") from None


def _type_name(code: int) -> str:
    """An ONNX element type for messages: its numpy name, or the code ONNX does not define."""
    if not code:
        return "no type"
    try:
        return str(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, ValueError):
        return f"element type {code}, which ONNX does not define"


def _not_utf8(msg, path: str) -> str | None:
    """The first string field of ``msg`` (recursively) that is not UTF-8, as a dotted path.
    protobuf does not check proto2 strings: it hands such a field over as bytes, and the
    checker, shape inference or a message would fail on it later."""
    for fd, value in msg.ListFields():
        items = list(value) if fd.is_repeated else [value]
        for k, item in enumerate(items):
            where = f"{path}.{fd.name}" + (f"[{k}]" if fd.is_repeated else "")
            if fd.type == fd.TYPE_STRING and isinstance(item, bytes):
                return where
            if fd.type == fd.TYPE_MESSAGE and (found := _not_utf8(item, where)):
                return found
    return None
