"""What an ONNX tensor is while the importer walks the graph.

Each ONNX tensor name maps to one of:

- ``Const``: a folded constant (any dtype);
- ``QConst``: a quantized constant — integers with a po2 scale (per tensor or per axis);
- ``Tensor``: an IR tensor; the ONNX float value equals its dequantized value exactly;
- ``Codes``: the integer output of a ``QuantizeLinear`` (not yet dequantized), carrying the
  source it quantizes and the integer range a following ``Clip`` may narrow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import QuantizationError

FIX_HINT = ("re-quantize the float model with `shiftflow quantize`, or export with fixed-point "
            "quantizers (e.g. Brevitas Int8ActPerTensorFixedPoint)")


@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class QConst:
    ints: np.ndarray  # int64
    frac: int | tuple[int, ...]
    axis: int | None  # axis of a per-channel frac
    lo: int  # declared integer range (dtype, Clip or bit width)
    hi: int

    def dequantized(self) -> np.ndarray:
        f = np.asarray(self.frac, dtype=np.float64)
        if self.axis is not None:
            shape = [1] * self.ints.ndim
            shape[self.axis] = -1
            f = f.reshape(shape)
        return (self.ints * np.exp2(-f)).astype(np.float32)


@dataclass(frozen=True)
class Tensor:
    name: str


@dataclass(frozen=True)
class Codes:
    src: Tensor | QConst  # QConst when the quantized value is a constant
    frac: int | tuple[int, ...]
    axis: int | None
    lo: int
    hi: int
    node: str  # the QuantizeLinear node, for messages

    def narrowed(self, lo: int, hi: int) -> "Codes":
        lo, hi = max(self.lo, lo), min(self.hi, hi)
        src = self.src
        if isinstance(src, QConst):
            src = replace(src, ints=np.clip(src.ints, lo, hi), lo=lo, hi=hi)
        return replace(self, lo=lo, hi=hi, src=src)


Value = Const | QConst | Tensor | Codes

INT_RANGES = {  # ONNX elem type name -> (lo, hi)
    "INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-(1 << 15), (1 << 15) - 1), "UINT16": (0, (1 << 16) - 1),
    "INT4": (-8, 7), "UINT4": (0, 15), "INT32": (-(1 << 31), (1 << 31) - 1), "INT2": (-2, 1), "UINT2": (0, 3),
}


def po2_frac(scale: np.ndarray, node: str, what: str = "scale") -> tuple[int | tuple[int, ...], int | None]:
    """``frac`` for a po2 scale tensor (scalar → int; 1-D or broadcast vector → per-axis tuple).

    Returns ``(frac, axis)``; axis is the non-unit dimension of a per-channel scale (or None).
    Raises ``QuantizationError`` naming the node when a scale is not a power of two.
    """
    s = np.asarray(scale, dtype=np.float64)
    flat = s.reshape(-1)
    fracs = []
    for v in flat:
        if not (np.isfinite(v) and v > 0):
            raise QuantizationError(f"node {node!r}: {what} {v!r} must be a positive power of two; {FIX_HINT}")
        m, e = math.frexp(float(v))
        if m != 0.5:
            raise QuantizationError(f"node {node!r}: {what} {float(v):.9g} is not a power of two "
                                    f"(shiftflow needs scales 2**-frac); {FIX_HINT}")
        fracs.append(1 - e)
    if len(set(fracs)) == 1:
        return fracs[0], None
    non_unit = [i for i, d in enumerate(s.shape) if d != 1]
    return tuple(fracs), (non_unit[0] if len(non_unit) == 1 else 0)


def check_zero_point(zp: np.ndarray | None, node: str) -> None:
    if zp is not None and np.any(np.asarray(zp) != 0):
        raise QuantizationError(f"node {node!r}: zero point {np.asarray(zp).reshape(-1)[:4].tolist()} must be 0 "
                                f"(shiftflow uses symmetric po2 quantization); {FIX_HINT}")


def quantize_const(x: np.ndarray, frac, axis, lo: int, hi: int) -> np.ndarray:
    """What ``QuantizeLinear`` computes on a float32 constant: round half-to-even of
    ``x / scale`` (exact for po2 scales), saturated to [lo, hi]; NaN gives ``lo``."""
    f = np.asarray(frac, dtype=np.float64)
    if axis is not None:
        shape = [1] * np.ndim(x)
        shape[axis] = -1
        f = f.reshape(shape)
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    q = np.rint(np.where(np.isnan(x), -np.inf, x) * np.exp2(f))  # NaN: the low end, as onnxruntime
    return np.clip(q, lo, hi).astype(np.int64)
