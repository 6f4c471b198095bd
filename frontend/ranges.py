"""Value-range analysis: the exact integer type of an op's result.

When an ONNX op is not followed directly by a quantizer, its IR output type must hold the
exact result (no rounding, no saturation). These functions compute that type from the input
types and, for convolutions, from the actual weights — which is also the proof that the
accumulator never overflows. All output rules are monotone, so mapping the two bounds of the
input range through them gives the output range.
"""

from __future__ import annotations

import numpy as np

from ..ir.types import TensorType, bits_for_range

MAX_EXACT_BITS = 48  # intermediate exact tensors; the interpreter computes in int64


def act_frac(frac: int, act: str, leaky_exp: int | None) -> int:
    """Frac needed to hold ``act(x)`` exactly for ``x`` at ``frac``."""
    return frac + max(0, -leaky_exp) if act == "leaky" else frac


def map_bounds(lo: int, hi: int, frac: int, out_frac: int, act: str = "none", leaky_exp: int | None = None):
    """Bounds of ``round(act(x) * 2**out_frac)`` for integer codes ``x`` in [lo, hi] at ``frac``."""
    out = []
    for v in (lo, hi):
        shift = out_frac - frac
        if act == "relu":
            v = max(v, 0)
        elif act == "leaky" and v < 0:
            shift += leaky_exp
        out.append(_round_shift(int(v), int(shift)))
    return out[0], out[1]


def _round_shift(v: int, shift: int) -> int:
    """``ir.intmath.round_shift`` (half to even) on a Python int: bounds of absurd scales may
    exceed int64, and ``exact_type`` refuses them with a message, not an overflow."""
    if shift >= 0:
        return v << shift
    q, rem = divmod(v, 1 << -shift)
    half = 1 << (-shift - 1)
    return q + int(rem > half or (rem == half and q & 1))


def exact_type(shape, lo: int, hi: int, frac: int, what: str) -> TensorType:
    """Smallest integer type holding codes in [lo, hi] at ``frac``; refuses absurd widths."""
    lo, hi = int(lo), int(hi)
    # The width by bit length first: bits_for_range builds types, which stop at 64 bits.
    bits = 1 + max((-lo - 1).bit_length(), hi.bit_length()) if lo < 0 else max(1, hi.bit_length())
    if bits <= MAX_EXACT_BITS:
        bits, signed = bits_for_range(lo, hi)
    if bits > MAX_EXACT_BITS:
        from ..errors import UnsupportedError

        raise UnsupportedError(f"{what}: the exact result needs {bits} bits (> {MAX_EXACT_BITS}); "
                               f"quantize it (insert a QuantizeLinear) or reduce bit widths")
    return TensorType(tuple(shape), "int", bits, signed, frac)


def _wide(w2: np.ndarray, x: TensorType) -> np.ndarray:
    """Weights in a dtype whose sums of products with ``x`` cannot overflow: int64 when the
    widths allow it (the common case, and fast), Python ints otherwise."""
    w_bits = int(np.abs(w2).max(initial=0)).bit_length() + 1
    if x.bits + w_bits + w2.shape[1].bit_length() < 62:
        return w2.astype(np.int64)
    return w2.astype(object)


def conv_bounds(x: TensorType, w: np.ndarray, w_frac, bias: np.ndarray | None, b_frac) -> tuple[int, int, int]:
    """(lo, hi, frac) of the exact conv result ``x * w + b``, with per-channel fracs aligned to
    their maximum (a left shift of the coarser channels)."""
    m = w.shape[0]
    wf = np.broadcast_to(np.asarray(w_frac, dtype=np.int64), (m,))
    acc_frac = x.frac + wf
    frac_m = acc_frac.copy()
    if bias is not None:
        frac_m = np.maximum(frac_m, np.broadcast_to(np.asarray(b_frac, dtype=np.int64), (m,)))
    w2 = _wide(w.reshape(m, -1), x)
    hi_taps = np.maximum(w2 * x.qmin, w2 * x.qmax)
    lo_taps = np.minimum(w2 * x.qmin, w2 * x.qmax)
    hi_m = [int(h) << int(frac_m[i] - acc_frac[i]) for i, h in enumerate(hi_taps.sum(axis=1))]
    lo_m = [int(v) << int(frac_m[i] - acc_frac[i]) for i, v in enumerate(lo_taps.sum(axis=1))]
    if bias is not None:
        bf = np.broadcast_to(np.asarray(b_frac, dtype=np.int64), (m,))
        for i, b in enumerate(np.broadcast_to(bias, (m,))):
            hi_m[i] += int(b) << int(frac_m[i] - bf[i])
            lo_m[i] += int(b) << int(frac_m[i] - bf[i])
    frac = int(frac_m.max())
    hi = max(h << int(frac - f) for h, f in zip(hi_m, frac_m))
    lo = min(v << int(frac - f) for v, f in zip(lo_m, frac_m))
    return lo, hi, frac


def accumulator_bits(x: TensorType, w: np.ndarray, bias: np.ndarray | None) -> int:
    """Width of the accumulator a conv needs (before any frac alignment), from its weights."""
    w2 = _wide(w.reshape(w.shape[0], -1), x)
    hi = np.maximum(w2 * x.qmin, w2 * x.qmax).sum(axis=1)
    lo = np.minimum(w2 * x.qmin, w2 * x.qmax).sum(axis=1)
    if bias is not None:
        hi = hi + np.abs(bias.astype(object))
        lo = lo - np.abs(bias.astype(object))
    return bits_for_range(int(min(lo)), int(max(hi)), True)[0]


def exact_range(kind: str, attrs, in_types: list[TensorType], consts: list[np.ndarray | None]) -> tuple[int, int, int]:
    """(lo, hi, frac) of a post op's exact result before its activation: the codes it can
    take at the finest frac its inputs need. ``consts`` holds constant inputs (conv weights
    and bias) or None."""
    x = in_types[0]
    if kind == "conv":
        b = consts[2] if len(consts) > 2 else None
        return conv_bounds(x, consts[1], in_types[1].frac, b, in_types[2].frac if b is not None else None)
    if kind in ("add", "concat"):
        f = max(t.frac for t in in_types)
        los = [t.qmin << (f - t.frac) for t in in_types]
        his = [t.qmax << (f - t.frac) for t in in_types]
        return (sum(los), sum(his), f) if kind == "add" else (min(los), max(his), f)
    if kind == "avgpool":
        count = attrs["kernel"][0] * attrs["kernel"][1]
        return x.qmin * count, x.qmax * count, x.frac + count.bit_length() - 1
    return x.qmin, x.qmax, x.frac  # requant, maxpool, resize


def is_exact(kind: str, attrs, in_types, consts, out: TensorType) -> bool:
    """Whether the op's output type holds its result without rounding or saturation."""
    lo, hi, frac = exact_range(kind, attrs, in_types, consts)
    act, exp = attrs.get("act", "none"), attrs.get("leaky_exp")
    if out.frac < act_frac(frac, act, exp):
        return False
    lo, hi = map_bounds(lo, hi, frac, out.frac, act, exp)
    if "clip" in attrs:
        lo, hi = max(lo, attrs["clip"][0]), min(hi, attrs["clip"][1])
    return out.qmin <= lo and hi <= out.qmax
