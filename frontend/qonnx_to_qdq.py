"""Rewrite QONNX ``Quant`` nodes as standard ONNX so onnxruntime can run the model (L0).

A ``Quant`` on a runtime tensor becomes ``QuantizeLinear → Clip → DequantizeLinear`` (the
QCDQ form: int8/uint8 codes clipped to the node's narrower range). A ``Quant`` on a constant
is folded here into a float initializer holding ``clip(round(x / s)) * s``, exactly the
value the QONNX op defines (this also covers 32-bit bias quantizers, which QuantizeLinear
cannot express). The rewrite is checked against nothing else: it is the L0 reference for
QONNX models, so it is kept small and literal.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedError
from .onnx_load import QONNX_DOMAINS

_MIN_OPSET = 13  # Clip on int8 codes needs opset >= 12


def has_qonnx_nodes(model: onnx.ModelProto) -> bool:
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def qonnx_to_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every QONNX ``Quant`` replaced by standard ONNX ops."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = dict(inits)
    for n in g.node:
        if n.op_type == "Constant" and not n.input:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    new_nodes, new_inits = [], []
    for n in g.node:
        if n.domain not in QONNX_DOMAINS:
            new_nodes.append(n)
            continue
        if n.op_type != "Quant":
            raise UnsupportedError(f"node {n.name!r}: QONNX op {n.op_type} is not supported")
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        scale, zp, bw = (consts[i] for i in n.input[1:4])
        bits = int(np.asarray(bw).item())
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        lo = -(1 << (bits - 1)) + narrow if signed else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
        if n.input[0] in consts:
            x = consts[n.input[0]].astype(np.float32)
            s = np.asarray(scale, dtype=np.float32)
            q = np.clip(np.rint(x / s), lo, hi)
            value = (q * s).astype(np.float32)
            consts[n.output[0]] = value
            new_inits.append(numpy_helper.from_array(value, n.output[0]))
            continue
        if bits > 8:
            raise UnsupportedError(f"node {n.name!r}: a {bits}-bit Quant on activations is not supported")
        if np.asarray(scale).size != 1:
            raise UnsupportedError(f"node {n.name!r}: per-channel Quant on activations is not supported")
        dtype = np.int8 if signed else np.uint8
        s_name, z_name = f"{n.name}__scale", f"{n.name}__zp"
        new_inits += [numpy_helper.from_array(np.asarray(scale, np.float32).reshape(()), s_name),
                      numpy_helper.from_array(np.zeros((), dtype), z_name)]
        q_out, c_out = f"{n.output[0]}__q", f"{n.output[0]}__c"
        new_nodes.append(helper.make_node("QuantizeLinear", [n.input[0], s_name, z_name], [q_out], name=f"{n.name}__Q"))
        clip_inputs = [q_out]
        if (lo, hi) != (np.iinfo(dtype).min, np.iinfo(dtype).max):
            lo_name, hi_name = f"{n.name}__lo", f"{n.name}__hi"
            new_inits += [numpy_helper.from_array(np.asarray(lo, dtype), lo_name),
                          numpy_helper.from_array(np.asarray(hi, dtype), hi_name)]
            new_nodes.append(helper.make_node("Clip", [q_out, lo_name, hi_name], [c_out], name=f"{n.name}__C"))
            clip_inputs = [c_out]
        new_nodes.append(helper.make_node("DequantizeLinear", [clip_inputs[0], s_name, z_name], [n.output[0]],
                                          name=f"{n.name}__DQ"))
    used = {i for n in new_nodes for i in n.input}
    kept_inits = [i for i in g.initializer if i.name in used] + [i for i in new_inits if i.name in used]
    del g.node[:]
    g.node.extend(new_nodes)
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    init_names = {i.name for i in kept_inits} | set(inits)
    real_inputs = [i for i in g.input if i.name not in init_names]
    del g.input[:]
    g.input.extend(real_inputs)
    del g.value_info[:]
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, _MIN_OPSET)
    kept_domains = [o for o in model.opset_import if o.domain not in QONNX_DOMAINS]
    del model.opset_import[:]
    model.opset_import.extend(kept_domains)
    model.ir_version = min(max(model.ir_version, 10), 10)
    return model
