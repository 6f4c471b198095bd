"""Mutations of an ONNX file: bytes (flips, truncation, splices) and the parsed ModelProto
(dims, dtypes, attributes, opsets, IR version, initializer data and raw_data lengths, tensor
names, nodes deleted / duplicated / reordered / retyped, scales that are not po2, zero
points, graph inputs and outputs), re-serialized.

``mutate_model(data, rng)`` returns ``(kind, bytes)``: one mutation of one kind (a kind that
does not apply to the seed, e.g. a zero point in a model without one, falls through to the
next), chosen by ``rng`` alone so that a case is reproducible from its seed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

INTS = (0, 1, -1, 2, 3, 4, 7, 8, 9, 15, 16, 255, 256, 4096, 65535, 2**31 - 1, -2**31, 2**40, 2**63 - 1)
FLOATS = (0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 3.0, 0.5, 2.0**-7, 2.0**-40, 2.0**-149, 2.0**40, 3.4e38, -0.25,
          math.nan, math.inf, -math.inf)
OP_TYPES = ("Conv", "Relu", "LeakyRelu", "Add", "Mul", "Sub", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Resize", "Concat", "QuantizeLinear", "DequantizeLinear", "Clip", "Identity", "Gemm", "MatMul",
            "Reshape", "Flatten", "Transpose", "Sigmoid", "Quant", "ConvTranspose", "Split", "Pad", "Softmax",
            "BatchNormalization", "Upsample", "NoSuchOp")
DOMAINS = ("", "ai.onnx", "qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general", "com.microsoft",
           "bogus.domain")


def _choice(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _int(rng, current: int | None = None) -> int:
    r = rng.random()
    if current is not None and r < 0.3:
        return int(current + _choice(rng, (-2, -1, 1, 2))) if r < 0.15 else int(current * 2)
    return int(_choice(rng, INTS)) if r < 0.7 else int(rng.integers(-64, 65))


def _float(rng) -> float:
    return float(_choice(rng, FLOATS)) if rng.random() < 0.7 else float(rng.normal() * 2.0 ** rng.integers(-20, 20))


# -- byte level -----------------------------------------------------------------------------------
def byte_flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        bit = int(rng.integers(len(out) * 8))
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def truncate(data: bytes, rng) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def splice(data: bytes, rng) -> bytes:
    a = int(rng.integers(len(data)))
    b = min(len(data), a + int(rng.integers(1, 64)))
    r = rng.random()
    if r < 0.4:
        return data[:a] + data[b:]
    if r < 0.7:
        return data[:b] + data[a:b] + data[b:]
    return data[:a] + rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes() + data[a:]


# -- ModelProto level (each returns False when it does not apply) -------------------------------------
def _tensor_types(m):
    vis = list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)
    return [vi.type.tensor_type for vi in vis if vi.type.HasField("tensor_type")]


def _i64(v: int) -> int:
    return max(-2**63, min(2**63 - 1, v))


def dims(m, rng) -> bool:
    """A dim of a graph input / output / value_info, or of an initializer: changed, removed,
    added, or made symbolic."""
    shapes = [t.shape.dim for t in _tensor_types(m) if t.HasField("shape")]
    r = rng.random()
    if shapes and rng.random() < 0.5:
        d = _choice(rng, shapes)
        if r < 0.15 or not len(d):
            d.add().dim_value = abs(_int(rng))
            return True
        k = int(rng.integers(len(d)))
        if r < 0.3:
            del d[k]
        elif r < 0.4:
            d[k].dim_param = "N"
        else:
            d[k].dim_value = _i64(_int(rng, d[k].dim_value))
        return True
    if not m.graph.initializer:
        return False
    d = _choice(rng, m.graph.initializer).dims
    if r < 0.15 or not len(d):
        d.append(abs(_int(rng)))
    elif r < 0.3:
        del d[int(rng.integers(len(d)))]
    else:
        k = int(rng.integers(len(d)))
        d[k] = _i64(_int(rng, d[k]))
    return True


def dtype(m, rng) -> bool:
    r = rng.random()
    code = int(rng.integers(0, 26))
    if r < 0.5 and m.graph.initializer:
        _choice(rng, m.graph.initializer).data_type = code
    else:
        _choice(rng, _tensor_types(m)).elem_type = code
    return True


def attribute(m, rng) -> bool:
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes or rng.random() < 0.15:
        n = _choice(rng, m.graph.node)
        a = n.attribute.add()
        a.name = _choice(rng, ("axis", "kernel_shape", "strides", "pads", "group", "alpha", "mode", "bogus"))
        a.type, a.i = AttributeProto.INT, _int(rng)
        return True
    n = _choice(rng, nodes)
    k = int(rng.integers(len(n.attribute)))
    a = n.attribute[k]
    r = rng.random()
    if r < 0.1:
        del n.attribute[k]
    elif r < 0.15:
        a.type = int(_choice(rng, (0, 1, 2, 3, 4, 5, 6, 7, 8, 11)))
    elif a.type == AttributeProto.INT:
        a.i = _i64(_int(rng, a.i))
    elif a.type == AttributeProto.INTS:
        vals = list(a.ints)
        if vals and rng.random() < 0.6:
            vals[int(rng.integers(len(vals)))] = _int(rng)
        elif vals and rng.random() < 0.5:
            vals.pop()
        else:
            vals.append(_int(rng))
        del a.ints[:]
        a.ints.extend(_i64(v) for v in vals)
    elif a.type == AttributeProto.FLOAT:
        a.f = _float(rng)
    elif a.type == AttributeProto.STRING:
        a.s = _choice(rng, (b"", b"nearest", b"linear", b"floor", b"ROUND", b"half_pixel", b"NOTSET", b"\xff\xfe"))
    else:
        del n.attribute[k]
    return True


def opset(m, rng) -> bool:
    r = rng.random()
    if r < 0.2 or not m.opset_import:
        o = m.opset_import.add()
        o.domain, o.version = _choice(rng, DOMAINS), int(rng.integers(0, 30))
        return True
    o = _choice(rng, m.opset_import)
    if r < 0.35:
        m.opset_import.remove(o)
    elif r < 0.5:
        o.domain = _choice(rng, DOMAINS)
    else:
        o.version = int(rng.integers(-1, 32)) if rng.random() < 0.9 else _int(rng)
    return True


def ir_version(m, rng) -> bool:
    m.ir_version = int(rng.integers(0, 16)) if rng.random() < 0.9 else abs(_int(rng)) % 2**63
    return True


def _array(init) -> np.ndarray | None:
    try:
        return numpy_helper.to_array(init)
    except Exception:  # an initializer an earlier mutation left undecodable
        return None


def _set(init, values: np.ndarray) -> None:
    init.CopyFrom(numpy_helper.from_array(values, init.name))


def init_data(m, rng) -> bool:
    inits = [i for i in m.graph.initializer if _array(i) is not None and _array(i).size]
    if not inits:
        return False
    init = _choice(rng, inits)
    a = _array(init).copy()
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        if rng.random() < 0.5:
            flat[int(rng.integers(flat.size))] = _float(rng)
        else:
            flat[:] = rng.normal(size=flat.size) * 2.0 ** int(rng.integers(-8, 8))
    elif a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        if rng.random() < 0.5:
            flat[int(rng.integers(flat.size))] = _choice(rng, (info.min, info.max, 0, 1, -1 if info.min < 0 else 2))
        else:
            flat[:] = rng.integers(info.min, int(info.max) + 1, size=flat.size, dtype=np.int64)
    else:
        return False
    _set(init, a)
    return True


def raw_length(m, rng) -> bool:
    inits = list(m.graph.initializer)
    if not inits:
        return False
    init = _choice(rng, inits)
    if init.raw_data:
        raw = init.raw_data
        r = rng.random()
        init.raw_data = raw[:int(rng.integers(len(raw)))] if r < 0.45 else (
            raw + bytes(int(rng.integers(1, 9))) if r < 0.9 else b"")
        return True
    for fld in ("float_data", "int32_data", "int64_data", "double_data"):
        vals = getattr(init, fld)
        if len(vals):
            if rng.random() < 0.5:
                vals.pop()
            else:
                vals.append(vals[0])
            return True
    return False


def _names(m) -> list[str]:
    names = {i.name for i in m.graph.initializer} | {i.name for i in m.graph.input}
    for n in m.graph.node:
        names.update(n.input)
        names.update(n.output)
    return sorted(names)


def names(m, rng) -> bool:
    n = _choice(rng, m.graph.node)
    slots = [(n.input, k) for k in range(len(n.input))] + [(n.output, k) for k in range(len(n.output))]
    r = rng.random()
    new = "" if r < 0.2 else "fuzz_tensor" if r < 0.35 else _choice(rng, _names(m))
    if r > 0.9:
        io = _choice(rng, list(m.graph.input) + list(m.graph.output))
        io.name = new
        return True
    if not slots or r > 0.8:
        n.input.append(new)
        return True
    seq, k = _choice(rng, slots)
    seq[k] = new
    return True


def delete_node(m, rng) -> bool:
    del m.graph.node[int(rng.integers(len(m.graph.node)))]
    return True


def duplicate_node(m, rng) -> bool:
    nodes = list(m.graph.node)
    n = onnx.NodeProto()
    n.CopyFrom(_choice(rng, nodes))
    if rng.random() < 0.5:
        for k in range(len(n.output)):
            n.output[k] = n.output[k] + "_dup"
    nodes.insert(int(rng.integers(len(nodes) + 1)), n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return True


def reorder_nodes(m, rng) -> bool:
    nodes = list(m.graph.node)
    if len(nodes) < 2:
        return False
    if rng.random() < 0.7:
        a, b = rng.choice(len(nodes), 2, replace=False)
        nodes[a], nodes[b] = nodes[b], nodes[a]
    else:
        nodes = [nodes[i] for i in rng.permutation(len(nodes))]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return True


def op_type(m, rng) -> bool:
    n = _choice(rng, m.graph.node)
    if rng.random() < 0.8:
        n.op_type = _choice(rng, OP_TYPES)
    else:
        n.domain = _choice(rng, DOMAINS)
    return True


def _quant_inputs(m, slot: int) -> list:
    """Initializers feeding input ``slot`` of the Q/DQ/Quant nodes."""
    inits = {i.name: i for i in m.graph.initializer}
    return [inits[n.input[slot]] for n in m.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Quant") and len(n.input) > slot
            and n.input[slot] in inits]


def scale(m, rng) -> bool:
    inits = _quant_inputs(m, 1)
    if not inits:
        return False
    init = _choice(rng, inits)
    a = _array(init)
    if a is None:
        return False
    r = rng.random()
    if r < 0.6:
        a = np.full(a.shape, _float(rng), a.dtype if a.dtype.kind == "f" else np.float32)
    elif r < 0.8:
        a = np.full(int(rng.integers(1, 9)), 2.0 ** -int(rng.integers(0, 9)), np.float32)  # per-channel, any length
    else:
        a = a.astype(_choice(rng, (np.float16, np.float64, np.int8, np.int32)))
    _set(init, a)
    return True


def zero_point(m, rng) -> bool:
    users = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Quant")]
    inits = _quant_inputs(m, 2)
    if not users:
        return False
    r = rng.random()
    if r < 0.15 or not inits:
        n = _choice(rng, users)
        if len(n.input) > 2 and rng.random() < 0.5:
            del n.input[2:]
        else:
            n.input.append(_choice(rng, _names(m)))
        return True
    init = _choice(rng, inits)
    a = _array(init)
    if a is None:
        return False
    if r < 0.6:
        dt = a.dtype if a.dtype.kind in "iu" else np.dtype(np.int8)
        info = np.iinfo(dt)
        a = np.full(a.shape, _choice(rng, (1, 3, info.max, info.min, -1 if info.min < 0 else 2)), dt)
    elif r < 0.8:
        a = a.astype(_choice(rng, (np.uint8, np.int8, np.int16, np.int32, np.float32, np.uint16)))
    else:
        a = np.zeros(int(rng.integers(1, 9)), a.dtype)
    _set(init, a)
    return True


def graph_io(m, rng) -> bool:
    g = m.graph
    r = rng.random()
    if r < 0.25 and g.output:
        del g.output[int(rng.integers(len(g.output)))]
    elif r < 0.55:
        out = g.output.add()
        out.name = _choice(rng, _names(m))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
    elif r < 0.75 and g.input:
        del g.input[int(rng.integers(len(g.input)))]
    elif g.input:
        g.input.add().CopyFrom(_choice(rng, g.input))
    else:
        return False
    return True


BYTE_KINDS = {"byte_flip": byte_flip, "truncate": truncate, "splice": splice}
PROTO_KINDS = {"dims": dims, "dtype": dtype, "attribute": attribute, "opset": opset, "ir_version": ir_version,
               "init_data": init_data, "raw_length": raw_length, "names": names, "delete_node": delete_node,
               "duplicate_node": duplicate_node, "reorder_nodes": reorder_nodes, "op_type": op_type,
               "scale": scale, "zero_point": zero_point, "graph_io": graph_io}
KINDS = tuple(BYTE_KINDS) + tuple(PROTO_KINDS)


def mutate_model(data: bytes, rng) -> tuple[str, bytes]:
    """One mutation of the serialized model ``data``: ``(kind, mutated bytes)``."""
    start = int(rng.integers(len(KINDS)))
    for k in range(len(KINDS)):
        kind = KINDS[(start + k) % len(KINDS)]
        if kind in BYTE_KINDS:
            return kind, BYTE_KINDS[kind](data, rng)
        m = onnx.ModelProto.FromString(data)
        if PROTO_KINDS[kind](m, rng):
            return kind, m.SerializeToString()
    raise AssertionError("ir_version always applies")
