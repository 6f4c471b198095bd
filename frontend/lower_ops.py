"""Lowering of ONNX compute ops on quantized tensors to exact IR ops.

Each handler returns True when it lowered the node; False sends the node to the CPU
(``Lowerer.cpu``). An op not directly followed by a quantizer gets the exact type of its
result (``ranges.py``); the fusion pass later merges it with the quantizer.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from ..errors import ImportError_, UnsupportedError
from ..ir.ops import conv_out_size
from ..ir.types import TensorType, bits_for_range
from . import ranges
from .values import QConst, Tensor

W_BITS = (2, 8)
B_BITS = 32


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes by name (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        try:
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        except UnicodeDecodeError:
            raise ImportError_(f"node {node.name!r} ({node.op_type}): attribute {a.name!r} is not UTF-8 text "
                               f"(corrupt?)") from None
    return out


def _int_tensor(lw, node, idx) -> Tensor | None:
    v = lw.env[node.input[idx]]
    return v if isinstance(v, Tensor) and lw.types[v.name].is_int else None


def window(attrs, x_shape, kernel):
    """(strides, pads t/l/b/r, dilations) with auto_pad resolved."""
    strides = tuple(attrs.get("strides", (1, 1)))
    dil = tuple(attrs.get("dilations", (1, 1)))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_b, pads_e = [], []
        for size, k, s, d in zip(x_shape[2:], kernel, strides, dil):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            pads_b.append(small if auto == "SAME_UPPER" else big)
            pads_e.append(big if auto == "SAME_UPPER" else small)
        pads = (pads_b[0], pads_b[1], pads_e[0], pads_e[1])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        p = tuple(attrs.get("pads", (0, 0, 0, 0)))
        pads = (p[0], p[1], p[2], p[3])
    return strides, pads, dil


def _post_type(lw, shape, lo, hi, frac, act="none", leaky_exp=None, what=""):
    out_frac = ranges.act_frac(frac, act, leaky_exp)
    lo2, hi2 = ranges.map_bounds(lo, hi, frac, out_frac, act, leaky_exp)
    return ranges.exact_type(shape, lo2, hi2, out_frac, what)


def lower_conv(lw, node, x: Tensor, w: QConst, b: QConst | None, attrs, out_name=None) -> Tensor | None:
    xt = lw.types[x.name]
    if len(xt.shape) != 4 or w.ints.ndim != 4:
        return None
    if w.axis not in (None, 0):
        raise UnsupportedError(f"node {node.name!r}: per-channel weight scales must be along the output channel axis")
    wbits, _ = bits_for_range(min(int(w.ints.min()), -1), max(int(w.ints.max()), 0), True)
    declared, _ = bits_for_range(w.lo, w.hi, True)
    wbits = min(wbits, declared)
    if not W_BITS[0] <= declared or wbits > W_BITS[1]:
        raise UnsupportedError(f"node {node.name!r}: weight bit width {declared} is not supported; shiftflow "
                               f"supports {W_BITS[0]}..{W_BITS[1]}-bit weights")
    wt = TensorType(w.ints.shape, "int", max(wbits, W_BITS[0]), True, w.frac)
    w_name = lw.add_constant(node.input[1] if node.op_type == "Conv" else f"{node.name}_w", w.ints, wt)
    inputs = [x.name, w_name]
    b_ints = b_frac = None
    if b is not None:
        if b.ints.size not in (1, w.ints.shape[0]):
            raise ImportError_(f"node {node.name!r}: the bias has {b.ints.size} values for {w.ints.shape[0]} "
                               f"output channels")
        b_ints = np.broadcast_to(b.ints.reshape(-1), (w.ints.shape[0],)).astype(np.int64)
        b_frac = b.frac
        bb, _ = bits_for_range(min(int(b_ints.min()), -1), max(int(b_ints.max()), 0), True)
        if bb > B_BITS:
            raise UnsupportedError(f"node {node.name!r}: bias needs {bb} bits; at most {B_BITS} are supported")
        bt = TensorType((w.ints.shape[0],), "int", bb, True, b.frac)
        inputs.append(lw.add_constant(f"{node.name}_b", b_ints, bt))
    kernel = w.ints.shape[2:]
    strides, pads, dil = window(attrs, xt.shape, kernel)
    group = int(attrs.get("group", 1))
    ho = conv_out_size(xt.shape[2], kernel[0], strides[0], pads[0], pads[2], dil[0])
    wo = conv_out_size(xt.shape[3], kernel[1], strides[1], pads[1], pads[3], dil[1])
    lo, hi, frac = ranges.conv_bounds(xt, w.ints, w.frac, b_ints, b_frac)
    out_t = _post_type(lw, (xt.shape[0], w.ints.shape[0], ho, wo), lo, hi, frac, what=f"node {node.name!r}")
    nz = np.abs(w.ints[w.ints != 0])
    wenc = "pow2" if nz.size and np.all((nz & (nz - 1)) == 0) else "int"
    return lw.emit("conv", node.name, inputs, out_name or node.output[0], out_t, strides=strides, pads=pads,
                   dilations=dil, groups=group, act="none", wenc=wenc)


def _gemm(lw, node, attrs) -> bool:
    x = _int_tensor(lw, node, 0)
    wv = lw.env[node.input[1]]
    if x is None or not isinstance(wv, QConst) or len(lw.types[x.name].shape) != 2:
        return False
    trans_b = attrs.get("transB", 0) if node.op_type == "Gemm" else 0
    if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
        return False
    ints, axis = wv.ints, wv.axis
    if not trans_b:  # (K, M) -> (M, K); a per-output-channel axis 1 becomes axis 0
        ints, axis = ints.T, (None if axis is None else 1 - axis)
    w = QConst(ints.reshape(ints.shape + (1, 1)), wv.frac, axis, wv.lo, wv.hi)
    b = None
    if len(node.input) > 2 and node.input[2]:
        b = lw.env[node.input[2]]
        if not isinstance(b, QConst):
            return False
    n, k = lw.types[x.name].shape
    xt = lw.types[x.name]
    x4 = lw.emit("reshape", f"{node.name}_in", [x.name], f"{node.output[0]}_nchw", xt.with_shape((n, k, 1, 1)),
                 shape=(n, k, 1, 1))
    y4 = lower_conv(lw, node, x4, w, b, {}, out_name=f"{node.output[0]}_nchw")
    yt = lw.types[y4.name]
    lw.env[node.output[0]] = lw.emit("reshape", f"{node.name}_out", [y4.name], node.output[0],
                                     yt.with_shape((n, yt.shape[1])), shape=(n, yt.shape[1]))
    return True


def _act(lw, node, attrs, x: Tensor) -> bool:
    xt = lw.types[x.name]
    op = node.op_type
    act, exp, clip = "none", None, None
    if op == "Relu":
        act = "relu"
    elif op == "LeakyRelu":
        alpha = float(np.float32(attrs.get("alpha", 0.01)))
        m, e = math.frexp(alpha)
        if m != 0.5:
            lw.cpu(node, f"slope {alpha:g} is not a power of two")
            return True
        act, exp = "leaky", e - 1
    elif op == "Clip":
        lo, hi = lw.const(node, 1, "min"), lw.const(node, 2, "max")
        if "min" in attrs or "max" in attrs:
            lo, hi = attrs.get("min"), attrs.get("max")
        scale = 2.0 ** xt.frac
        lo_c = xt.qmin if lo is None else float(np.asarray(lo).item()) * scale
        hi_c = xt.qmax if hi is None else float(np.asarray(hi).item()) * scale
        if lo_c != int(lo_c) or hi_c != int(hi_c):
            lw.cpu(node, "clip bounds are not on the input's fixed-point grid")
            return True
        clip = (int(lo_c), int(hi_c))
    t = _post_type(lw, xt.shape, xt.qmin, xt.qmax, xt.frac, act, exp, f"node {node.name!r}")
    attrs_out = {"act": act}
    if exp is not None:
        attrs_out["leaky_exp"] = exp
    if clip is not None:
        lo, hi = max(clip[0], t.qmin), min(clip[1], t.qmax)
        bits, signed = bits_for_range(min(lo, hi), hi)
        t = TensorType(t.shape, "int", bits, signed, t.frac)
        attrs_out["clip"] = (lo, hi)
    lw.env[node.output[0]] = lw.emit("requant", node.name, [x.name], node.output[0], t, **attrs_out)
    return True


def _pool(lw, node, attrs, x: Tensor) -> bool:
    xt = lw.types[x.name]
    if len(xt.shape) != 4 or len(node.output) > 1 and node.output[1]:
        return False
    op = node.op_type
    glob = op.startswith("Global")
    kernel = tuple(xt.shape[2:]) if glob else tuple(attrs["kernel_shape"])
    strides, pads, dil = ((1, 1), (0, 0, 0, 0), (1, 1)) if glob else window(attrs, xt.shape, kernel)
    ceil = int(attrs.get("ceil_mode", 0))
    out_hw = tuple(conv_out_size(xt.shape[2 + i], kernel[i], strides[i], pads[i], pads[i + 2], dil[i], bool(ceil))
                   for i in range(2))
    shape = xt.shape[:2] + out_hw
    common = dict(kernel=kernel, strides=strides, pads=pads, dilations=dil, ceil_mode=ceil, act="none")
    if "Max" in op:
        lw.env[node.output[0]] = lw.emit("maxpool", node.name, [x.name], node.output[0], xt.with_shape(shape), **common)
        return True
    count = kernel[0] * kernel[1]
    if count & (count - 1):
        lw.cpu(node, f"window of {count} elements is not a power of two (the average is not a shift)")
        return True
    covered = all((out_hw[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 <= xt.shape[2 + i] + pads[i] + pads[i + 2]
                  for i in range(2))
    if (any(pads) and not attrs.get("count_include_pad", 0)) or not covered:
        lw.cpu(node, "windows overlapping the border average fewer elements (not a shift)")
        return True
    shift = count.bit_length() - 1
    t = ranges.exact_type(shape, xt.qmin * count, xt.qmax * count, xt.frac + shift, f"node {node.name!r}")
    lw.env[node.output[0]] = lw.emit("avgpool", node.name, [x.name], node.output[0], t, **common)
    return True


def _add(lw, node, a: Tensor, b: Tensor) -> bool:
    at, bt = lw.types[a.name], lw.types[b.name]
    f = max(at.frac, bt.frac)
    lo = (at.qmin << (f - at.frac)) + (bt.qmin << (f - bt.frac))
    hi = (at.qmax << (f - at.frac)) + (bt.qmax << (f - bt.frac))
    shape = tuple(np.broadcast_shapes(at.shape, bt.shape))
    t = ranges.exact_type(shape, lo, hi, f, f"node {node.name!r}")
    lw.env[node.output[0]] = lw.emit("add", node.name, [a.name, b.name], node.output[0], t, act="none")
    return True


def _concat(lw, node, attrs, xs: list[Tensor]) -> bool:
    ts = [lw.types[x.name] for x in xs]
    f = max(t.frac for t in ts)
    lo = min(t.qmin << (f - t.frac) for t in ts)
    hi = max(t.qmax << (f - t.frac) for t in ts)
    axis = attrs["axis"] % len(ts[0].shape)
    shape = list(ts[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ts)
    t = ranges.exact_type(shape, lo, hi, f, f"node {node.name!r}")
    lw.env[node.output[0]] = lw.emit("concat", node.name, [x.name for x in xs], node.output[0], t, axis=axis, act="none")
    return True


def _resize(lw, node, attrs, x: Tensor) -> bool:
    xt = lw.types[x.name]
    out_shape = lw.shapes[node.output[0]][0]
    if attrs.get("mode", "nearest") != "nearest" or len(xt.shape) != 4 or tuple(out_shape[:2]) != xt.shape[:2]:
        return False
    factors = []
    for i in (2, 3):
        s, n_out = out_shape[i] // xt.shape[i], out_shape[i]
        if s * xt.shape[i] != n_out or not _nearest_is_repeat(attrs, xt.shape[i], n_out):
            return False
        factors.append(s)
    lw.env[node.output[0]] = lw.emit("resize", node.name, [x.name], node.output[0], xt.with_shape(out_shape),
                                     scales=tuple(factors), act="none")
    return True


def _nearest_is_repeat(attrs, n_in: int, n_out: int) -> bool:
    """Whether ONNX nearest resize maps output index i to input i // scale (pure repetition)."""
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    rnd = attrs.get("nearest_mode", "round_prefer_floor")
    s = n_out / n_in
    # With the integer factor s, output i = q*s + r reads q + g(r) (every rounding mode commutes
    # with integer shifts), so the first two periods and the last (where clamping acts) decide:
    # no loop over every column of a huge map.
    period = round(s)
    checked = range(n_out) if n_out <= 3 * period else [*range(2 * period), *range(n_out - period, n_out)]
    for i in checked:
        if mode == "asymmetric":
            x = i / s
        elif mode in ("half_pixel", "pytorch_half_pixel"):
            x = (i + 0.5) / s - 0.5
        elif mode == "tf_half_pixel_for_nn":
            x = (i + 0.5) / s
        else:
            return False
        if rnd == "floor":
            j = math.floor(x)
        elif rnd == "ceil":
            j = math.ceil(x)
        elif rnd == "round_prefer_ceil":
            j = math.floor(x + 0.5)
        else:
            j = math.ceil(x - 0.5)
        if min(max(j, 0), n_in - 1) != i // round(s):
            return False
    return True


def _layout(lw, node, attrs, x: Tensor) -> bool:
    xt = lw.types[x.name]
    out_shape = tuple(lw.shapes[node.output[0]][0])
    if node.op_type == "Transpose":
        perm = tuple(attrs.get("perm", tuple(reversed(range(len(xt.shape))))))
        lw.env[node.output[0]] = lw.emit("transpose", node.name, [x.name], node.output[0], xt.with_shape(out_shape),
                                         perm=perm)
    elif out_shape == xt.shape and node.op_type == "Identity":
        lw.env[node.output[0]] = x
    else:
        lw.env[node.output[0]] = lw.emit("reshape", node.name, [x.name], node.output[0], xt.with_shape(out_shape),
                                         shape=out_shape)
    return True


def lower_compute(lw, node: onnx.NodeProto) -> bool:
    """Lower one compute node on quantized tensors; False → the caller makes it a CPU op."""
    op = node.op_type
    attrs = attributes(node)
    if node.domain not in ("", "ai.onnx"):
        return False
    if op == "Conv":
        x = _int_tensor(lw, node, 0)
        w = lw.env[node.input[1]]
        b = lw.env[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        if x is None or not isinstance(w, QConst) or (b is not None and not isinstance(b, QConst)):
            return False
        y = lower_conv(lw, node, x, w, b, attrs)
        if y is None:
            return False
        lw.env[node.output[0]] = y
        return True
    if op in ("Gemm", "MatMul"):
        return _gemm(lw, node, attrs)
    x = _int_tensor(lw, node, 0) if node.input else None
    if x is None:
        return False
    if op in ("Relu", "LeakyRelu", "Clip"):
        return _act(lw, node, attrs, x)
    if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        return _pool(lw, node, attrs, x)
    if op == "Add":
        b = _int_tensor(lw, node, 1)
        return b is not None and _add(lw, node, x, b)
    if op == "Concat":
        xs = [_int_tensor(lw, node, i) for i in range(len(node.input))]
        return all(v is not None for v in xs) and _concat(lw, node, attrs, xs)
    if op in ("Resize", "Upsample"):
        return _resize(lw, node, attrs, x)
    if op in ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"):
        return _layout(lw, node, attrs, x)
    return False
