"""Executable semantics of the IR ops (the output rule of ``ir/ops.py``), in numpy integers.

Shared by the reference interpreter (``frontend/interpreter.py``) and the host side of the
simulator, so there is one definition of what every op computes. ``cpu`` ops are not here:
they need onnxruntime and are run by the caller.
"""

from __future__ import annotations

import functools

import numpy as np

from . import intmath
from .graph import Op
from .types import TensorType

Exact = tuple[np.ndarray, np.ndarray]  # (int64 values, frac broadcastable against them)


def dequantize(values: np.ndarray, t: TensorType) -> np.ndarray:
    """Real values (float64) of a tensor of type ``t``."""
    if not t.is_int:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=np.float64) * np.exp2(-t.frac_array(np.ndim(values)).astype(np.float64))


def finish(v: np.ndarray, f, op: Op, out: TensorType) -> np.ndarray:
    """The output rule: act → round half-to-even to ``out.frac`` → saturate → clip."""
    f = np.asarray(f, dtype=np.int64)
    shift = out.frac - f
    act = op.attrs.get("act", "none")
    if act == "relu":
        v = np.maximum(v, 0)
    elif act == "leaky":
        shift = np.where(v < 0, shift + op.attrs["leaky_exp"], shift)
    q = intmath.round_shift(v, shift)
    lo, hi = out.qmin, out.qmax
    if "clip" in op.attrs:
        lo, hi = max(lo, op.attrs["clip"][0]), min(hi, op.attrs["clip"][1])
    return np.clip(q, lo, hi)


def _align(parts: list[Exact]) -> tuple[list[np.ndarray], np.ndarray]:
    """Bring exact values to their common (finest) frac: a left shift, never a rounding."""
    frac = functools.reduce(np.maximum, [np.asarray(f, dtype=np.int64) for _, f in parts])
    return [intmath.round_shift(v, frac - f) for v, f in parts], frac


def execute_op(op: Op, args: list[np.ndarray], in_t: list[TensorType], out_t: TensorType) -> list[np.ndarray]:
    """Outputs of ``op`` (not ``cpu``) on integer-code / float32 ``args`` of types ``in_t``."""
    a = op.attrs
    k = op.kind
    if k == "conv":
        x, w = args[0], args[1]
        acc = intmath.conv2d(x, w, a["strides"], a["pads"], a["dilations"], a["groups"], out_t.shape[2:])
        fw = in_t[1].frac_array(1).reshape(-1)
        f = (in_t[0].frac + fw).reshape(1, -1, 1, 1)
        parts: list[Exact] = [(acc, f)]
        if len(args) == 3:
            parts.append((args[2].reshape(1, -1, 1, 1), in_t[2].frac_array(1).reshape(1, -1, 1, 1)))
        (vs, f) = _align(parts)
        return [finish(sum(vs), f, op, out_t)]
    if k == "requant":
        return [finish(args[0], in_t[0].frac, op, out_t)]
    if k == "add":
        vs, f = _align([(args[0], np.int64(in_t[0].frac)), (args[1], np.int64(in_t[1].frac))])
        return [finish(vs[0] + vs[1], f, op, out_t)]
    if k in ("maxpool", "avgpool"):
        how = "max" if k == "maxpool" else "sum"
        v = intmath.window_reduce(args[0], a["kernel"], a["strides"], a["pads"], a["dilations"],
                                  out_t.shape[2:], how)
        f = in_t[0].frac
        if k == "avgpool":
            count = a["kernel"][0] * a["kernel"][1]
            if count & (count - 1):
                raise ValueError(f"avgpool @{op.name}: window of {count} elements is not a power of two")
            f += count.bit_length() - 1
        return [finish(v, f, op, out_t)]
    if k == "concat":
        vs, f = _align([(v, np.int64(t.frac)) for v, t in zip(args, in_t)])
        return [finish(np.concatenate(vs, axis=a["axis"]), f, op, out_t)]
    if k == "resize":
        sh, sw = a["scales"]
        v = np.repeat(np.repeat(args[0], sh, axis=2), sw, axis=3)
        return [finish(v, in_t[0].frac, op, out_t)]
    if k == "reshape":
        return [args[0].reshape(out_t.shape)]
    if k == "transpose":
        return [np.transpose(args[0], a["perm"])]
    if k == "quantize":
        # NaN codes as the range's low end, as onnxruntime's QuantizeLinear does (ONNX leaves
        # it undefined); infinities saturate (docs/ir.md, "Inputs")
        x = args[0].astype(np.float64)
        q = np.rint(np.where(np.isnan(x), -np.inf, x) * np.exp2(out_t.frac))
        lo, hi = out_t.qmin, out_t.qmax
        if "clip" in a:
            lo, hi = max(lo, a["clip"][0]), min(hi, a["clip"][1])
        return [np.clip(q, lo, hi).astype(np.int64)]
    raise NotImplementedError(f"interpreter has no rule for op kind {k!r} (@{op.name})")
