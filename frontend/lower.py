"""ONNX → Graph IR: the walk over the nodes, quantizers and constants.

Quantizer nodes (QuantizeLinear [→ Clip] → DequantizeLinear, QONNX ``Quant``) and constant
folding live here; compute ops are lowered by ``lower_ops``. Nodes the accelerator does not
run become ``cpu`` ops. The result is unfused: passes (``passes.py``) fuse it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..errors import ImportError_, QuantizationError, UnsupportedError
from ..ir.graph import Graph, Op
from ..ir.types import TensorType, bits_for_range
from . import cpu_ops
from .onnx_load import QONNX_DOMAINS, LoadedModel, initializer_array
from .values import INT_RANGES, Codes, Const, QConst, Tensor, Value, check_zero_point, po2_frac, quantize_const

ACT_BITS = (2, 8)  # activation widths the accelerator supports
#: Ops whose output size is set by a window sliding over the input
WINDOW_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")


class Lowerer:
    """Builds an unfused ``Graph`` from a ``LoadedModel``; one instance per import."""

    def __init__(self, loaded: LoadedModel, name: str = "model"):
        self.loaded = loaded
        self.name = name
        self.shapes = loaded.shapes
        self.env: dict[str, Value] = {}
        self.ops: list[Op] = []
        self.types: dict[str, TensorType] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._used_names: set[str] = set()
        self._op_names: set[str] = set()
        for init in loaded.model.graph.initializer:
            self.env[init.name] = Const(initializer_array(init))
        for name in loaded.inputs:
            self.env[name] = Tensor(name)
            self.types[name] = TensorType.float32(self.shapes[name][0])
            self._used_names.add(name)

    # -- helpers ---------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._used_names or name in self.env:
            name, i = f"{base}_{i}", i + 1
        self._used_names.add(name)
        return name

    def emit(self, kind: str, node_name: str, inputs, out_name: str, out_type: TensorType, **attrs) -> Tensor:
        out = self.fresh(out_name)
        self.types[out] = out_type
        self.ops.append(Op(self._op_name(node_name), kind, tuple(inputs), (out,), attrs))
        return Tensor(out)

    def _op_name(self, base: str) -> str:
        name, i = base or "op", 1
        while name in self._op_names:
            name, i = f"{base}_{i}", i + 1
        self._op_names.add(name)
        return name

    def add_constant(self, base: str, ints: np.ndarray, t: TensorType) -> str:
        name = self.fresh(base)
        self.types[name] = t
        self.constants[name] = ints.astype(t.storage_dtype())
        return name

    def const(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray | None:
        if idx >= len(node.input) or not node.input[idx]:
            return None
        v = self.env[node.input[idx]]
        if isinstance(v, QConst):
            return v.dequantized()
        if not isinstance(v, Const):
            raise UnsupportedError(f"node {node.name!r} ({node.op_type}): {what} must be a constant")
        return v.value

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> Graph:
        from .lower_ops import lower_compute

        for node in self.loaded.model.graph.node:
            for i in node.input:
                if i and i not in self.env:
                    raise UnsupportedError(f"node {node.name!r} reads {i!r}, which is never defined")
            if not node.name:
                node.name = self.fresh(f"{node.op_type}_{len(self.ops)}")
            self._check_shapes(node)
            if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Quant", "Clip") and self._lower_quant(node):
                continue
            args = [self.env[i] for i in node.input if i]
            if node.op_type == "Shape" and isinstance(args[0], Tensor):
                self._shape(node)
            elif all(isinstance(a, (Const, QConst)) for a in args) and node.op_type not in ("RandomNormal",):
                self._fold(node)
            elif not lower_compute(self, node):
                self.cpu(node, "no accelerator lowering for this op")
        outputs = []
        for out in self.loaded.model.graph.output:
            v = self.env[out.name]
            if isinstance(v, Codes):
                v = self._materialize(v, out.name, v.node)
            if not isinstance(v, Tensor):
                raise UnsupportedError(f"graph output {out.name!r} is a constant; nothing to compute")
            outputs.append(v.name)
        return Graph(self.name, self.loaded.inputs, tuple(outputs), tuple(self.ops), self.types, self.constants)

    def _check_shapes(self, node: onnx.NodeProto) -> None:
        """Refuse a window larger than its padded input and any output with a zero dimension:
        ONNX shape inference gives such a pool one output row (C++ division truncates), the
        levels below disagree on what it holds, and no level computes empty tensors."""
        x = self.shapes.get(node.input[0], ((),))[0] if node.input else ()
        if node.op_type in WINDOW_OPS and len(x) == 4:
            from .lower_ops import attributes, window

            attrs = attributes(node)
            kernel = attrs.get("kernel_shape") or self.shapes[node.input[1]][0][2:]
            _, pads, dil = window(attrs, x, kernel)
            if any((kernel[i] - 1) * dil[i] + 1 > x[2 + i] + pads[i] + pads[i + 2] for i in range(2)):
                raise UnsupportedError(
                    f"node {node.name!r} ({node.op_type}): its {'x'.join(map(str, kernel))} window (dilations "
                    f"{list(dil)}) is larger than its {x[2]}x{x[3]} input padded by {list(pads)}; give the model a "
                    f"larger input")
        for o in node.output:
            shape = self.shapes[o][0] if o in self.shapes else ()
            if 0 in shape:
                raise UnsupportedError(f"node {node.name!r} ({node.op_type}): output {o!r} has shape {list(shape)}, "
                                       f"with no elements; shiftflow needs non-empty tensors")

    # -- quantizers ------------------------------------------------------------------------
    def _lower_quant(self, node: onnx.NodeProto) -> bool:
        """Handle Q, DQ, QONNX Quant and a Clip on integer codes; False when not applicable."""
        op = node.op_type
        x = self.env[node.input[0]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "Clip":
            if not isinstance(x, Codes):
                return False
            lo = self.const(node, 1, "min")
            hi = self.const(node, 2, "max")
            if "min" in attrs or "max" in attrs:  # opset < 11
                lo, hi = attrs.get("min"), attrs.get("max")
            for bound, what in ((lo, "min"), (hi, "max")):
                if bound is not None and np.size(bound) != 1:
                    raise ImportError_(f"node {node.name!r} (Clip): {what} must be a scalar, got shape "
                                       f"{list(np.shape(bound))}")
            lo_i = x.lo if lo is None else int(np.ceil(np.asarray(lo).item()))
            hi_i = x.hi if hi is None else int(np.floor(np.asarray(hi).item()))
            self.env[node.output[0]] = x.narrowed(lo_i, hi_i)
            return True
        if op == "Quant":
            if node.domain not in QONNX_DOMAINS:
                return False
            return self._quant(node, x, attrs)
        scale = self.const(node, 1, "scale")
        zp = self.const(node, 2, "zero point")
        check_zero_point(zp, node.name)
        frac, axis = po2_frac(scale, node.name)
        if axis is not None and np.ndim(scale) == 1:
            axis = attrs.get("axis", 1)
        if "block_size" in attrs and attrs["block_size"]:
            raise UnsupportedError(f"node {node.name!r}: blocked quantization is not supported")
        if op == "QuantizeLinear":
            dtype = self._q_dtype(node, attrs)
            if dtype not in INT_RANGES:
                raise UnsupportedError(f"node {node.name!r}: QuantizeLinear to {dtype} is not supported; shiftflow "
                                       f"quantizes activations to 2..8-bit integers (INT8, UINT8, INT4, ...)")
            lo, hi = INT_RANGES[dtype]
            if isinstance(x, (Const, QConst)):
                value = x.dequantized() if isinstance(x, QConst) else x.value
                src = QConst(quantize_const(value, frac, axis, lo, hi), frac, axis, lo, hi)
            elif isinstance(x, Tensor):
                src = x
            else:
                raise UnsupportedError(f"node {node.name!r}: QuantizeLinear of integer codes is not supported")
            self.env[node.output[0]] = Codes(src, frac, axis, lo, hi, node.name)
            return True
        # DequantizeLinear
        if isinstance(x, Const):
            dtype = helper.tensor_dtype_to_string(helper.np_dtype_to_tensor_dtype(x.value.dtype)).split(".")[-1]
            if dtype not in INT_RANGES:
                raise UnsupportedError(f"node {node.name!r}: DequantizeLinear of {x.value.dtype} is not supported")
            lo, hi = INT_RANGES[dtype]
            self.env[node.output[0]] = QConst(x.value.astype(np.int64), frac, axis, lo, hi)
            return True
        if not isinstance(x, Codes):
            raise UnsupportedError(f"node {node.name!r}: DequantizeLinear input must come from QuantizeLinear "
                                   f"or an integer initializer")
        if x.frac != frac:
            raise QuantizationError(f"node {node.name!r}: DequantizeLinear scale 2**{-np.asarray(frac)} differs from "
                                    f"its QuantizeLinear's ({x.node!r}, 2**{-np.asarray(x.frac)})")
        if isinstance(x.src, QConst):
            self.env[node.output[0]] = x.src
        else:
            self.env[node.output[0]] = self._materialize(x, node.output[0], node.name)
        return True

    def _q_dtype(self, node, attrs) -> str:
        if len(node.input) > 2 and node.input[2]:
            zp = self.env[node.input[2]]
            arr = zp.value if isinstance(zp, Const) else None
            if arr is not None:
                elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
                return helper.tensor_dtype_to_string(elem).split(".")[-1]
        if "output_dtype" in attrs and attrs["output_dtype"]:
            return helper.tensor_dtype_to_string(attrs["output_dtype"]).split(".")[-1]
        return "UINT8"

    def _quant(self, node, x: Value, attrs) -> bool:
        scale = self.const(node, 1, "scale")
        zp = self.const(node, 2, "zero point")
        bw = self.const(node, 3, "bit width")
        check_zero_point(zp, node.name)
        frac, axis = po2_frac(scale, node.name)
        if bw is None or np.size(bw) != 1:
            raise ImportError_(f"node {node.name!r} (Quant): the bit width must be a scalar constant, got "
                               f"{'none' if bw is None else f'shape {list(np.shape(bw))}'}")
        bits = float(np.asarray(bw).item())
        if bits != int(bits) or not 1 <= bits <= 32:
            raise QuantizationError(f"node {node.name!r}: bit width {bits:g} is not supported (need an integer 2..32)")
        bits = int(bits)
        rounding = attrs.get("rounding_mode", b"ROUND")
        try:
            rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
        except UnicodeDecodeError:
            raise ImportError_(f"node {node.name!r} (Quant): attribute 'rounding_mode' is not UTF-8 text "
                               f"(corrupt?)") from None
        if rounding.upper() not in ("ROUND", "HALF_EVEN"):
            raise QuantizationError(f"node {node.name!r}: rounding_mode {rounding!r} is not supported; shiftflow "
                                    f"rounds half-to-even (ROUND)")
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        lo = -(1 << (bits - 1)) + narrow if signed else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
        if isinstance(x, (Const, QConst)):
            value = x.dequantized() if isinstance(x, QConst) else x.value
            self.env[node.output[0]] = QConst(quantize_const(value, frac, axis, lo, hi), frac, axis, lo, hi)
            return True
        if not isinstance(x, Tensor):
            raise UnsupportedError(f"node {node.name!r}: Quant of integer codes is not supported")
        self.env[node.output[0]] = self._materialize(Codes(x, frac, axis, lo, hi, node.name), node.output[0], node.name)
        return True

    def _materialize(self, codes: Codes, out_name: str, node_name: str) -> Tensor:
        """The IR op for quantizing a runtime tensor: ``requant`` (int source) or ``quantize``."""
        if codes.axis is not None:
            raise UnsupportedError(f"node {codes.node!r}: per-channel quantization of activations is not supported")
        bits, signed = bits_for_range(codes.lo, codes.hi)
        if not ACT_BITS[0] <= bits <= ACT_BITS[1]:
            raise UnsupportedError(f"node {codes.node!r}: activation bit width {bits} (range [{codes.lo}, {codes.hi}]) "
                                   f"is not supported; shiftflow supports {ACT_BITS[0]}..{ACT_BITS[1]}-bit activations")
        src = codes.src
        t = TensorType(self.types[src.name].shape, "int", bits, signed, codes.frac)
        attrs = {}
        if (codes.lo, codes.hi) != (t.qmin, t.qmax):
            attrs["clip"] = (codes.lo, codes.hi)
        kind = "requant" if self.types[src.name].is_int else "quantize"
        return self.emit(kind, node_name, [src.name], out_name, t, **attrs)

    # -- constants and CPU ops -------------------------------------------------------------
    def _shape(self, node):
        shape = np.asarray(self.types[self.env[node.input[0]].name].shape, dtype=np.int64)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.env[node.output[0]] = Const(shape[attrs.get("start", 0):attrs.get("end", None)])

    def _fold(self, node):
        consts = {}
        for i in node.input:
            if i:
                v = self.env[i]
                consts[i] = v.dequantized() if isinstance(v, QConst) else v.value
        out_types = {o: self.shapes[o][1] for o in node.output if o in self.shapes}
        try:
            results = cpu_ops.evaluate_node(node, consts, self.loaded.opsets, out_types)
        except Exception as exc:
            raise UnsupportedError(f"node {node.name!r} ({node.op_type}): constant folding failed: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
        for o in node.output:
            if o:
                self.env[o] = Const(np.asarray(results[o]))

    def cpu(self, node: onnx.NodeProto, reason: str) -> None:
        """Keep ``node`` as a CPU op run by onnxruntime; its outputs become float32 IR tensors."""
        inputs, consts, ir_inputs = {}, {}, []
        for i in node.input:
            if not i:
                continue
            v = self.env[i]
            if isinstance(v, Tensor):
                inputs[i] = self.types[v.name].shape
                ir_inputs.append(v.name)
            elif isinstance(v, Codes):
                raise UnsupportedError(f"node {node.name!r} ({node.op_type}) reads integer codes of {v.node!r}; "
                                       f"only the QDQ format (QuantizeLinear→DequantizeLinear) is supported")
            else:
                consts[i] = v.dequantized() if isinstance(v, QConst) else v.value
        # The one-node model names its inputs after the IR tensors it reads.
        rename = {i: self.env[i].name for i in inputs}
        node2 = onnx.NodeProto.FromString(node.SerializeToString())
        for k, name in enumerate(node2.input):
            node2.input[k] = rename.get(name, name)
        outputs = {}
        for o in node.output:
            if not o:
                continue
            shape, elem = self.shapes[o]
            if elem != onnx.TensorProto.FLOAT:
                raise UnsupportedError(f"node {node.name!r} ({node.op_type}) produces a "
                                       f"{helper.tensor_dtype_to_np_dtype(elem)} tensor {o!r}; only float32 "
                                       f"CPU-op outputs are supported")
            outputs[o] = (shape, elem)
        model = cpu_ops.node_model(node2, {rename[i]: s for i, s in inputs.items()}, consts, outputs,
                                   self.loaded.opsets)
        outs = []
        for o, (shape, _) in outputs.items():
            self.types[o] = TensorType.float32(shape)
            self._used_names.add(o)
            outs.append(o)
            self.env[o] = Tensor(o)
        self.ops.append(Op(self._op_name(node.name), "cpu", tuple(ir_inputs), tuple(outs),
                           {"model": model, "reason": f"{node.op_type}: {reason}", "onnx_op": node.op_type}))
