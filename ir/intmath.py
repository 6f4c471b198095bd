"""Exact integer kernels shared by the reference interpreter (and, later, the simulator).

Values are int64 numpy arrays. Convolutions run as float64 matrix products (BLAS) where a
bound on the accumulator proves every partial sum is below 2**53, so the float64 result is
the exact integer; otherwise they fall back to int64 arithmetic.
"""

from __future__ import annotations

import numpy as np

_EXACT_F64 = 1 << 53
_CHUNK_ELEMS = 1 << 23  # im2col chunk size (elements), bounds the interpreter's memory


def round_shift(v: np.ndarray, shift) -> np.ndarray:
    """``v * 2**shift`` rounded half-to-even (``shift`` may be negative, scalar or broadcastable).

    This is the requantization of the numerics contract: an arithmetic right shift that
    rounds to nearest and breaks ties to even, like ONNX ``QuantizeLinear``.
    """
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.left_shift(v, np.maximum(shift, 0))
    s = np.maximum(-shift, 0)
    q = np.right_shift(v, s)  # floor division by 2**s
    rem = v - np.left_shift(q, s)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    right = q + up.astype(np.int64)
    return np.where(shift >= 0, left, right)


def _padded_taps(x: np.ndarray, kh: int, kw: int, strides, pads, dilations, out_hw, pad_value=0):
    """Yield ``((i, j), view)`` for each kernel tap: the input pixels that tap meets, (N,C,Ho,Wo)."""
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    ho, wo = out_hw
    sh, sw = strides
    dh, dw = dilations
    # ceil_mode may need more padding at the end than ``pads`` provides.
    need_h = (ho - 1) * sh + (kh - 1) * dh + 1
    need_w = (wo - 1) * sw + (kw - 1) * dw + 1
    if need_h > xp.shape[2] or need_w > xp.shape[3]:
        xp = np.pad(xp, ((0, 0), (0, 0), (0, max(0, need_h - xp.shape[2])), (0, max(0, need_w - xp.shape[3]))),
                    constant_values=pad_value)
    for i in range(kh):
        for j in range(kw):
            yield (i, j), xp[:, :, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]


def conv2d(x: np.ndarray, w: np.ndarray, strides, pads, dilations, groups: int, out_hw) -> np.ndarray:
    """Exact integer convolution (NCHW × OIHW → N,O,Ho,Wo int64); no bias, no rounding."""
    n, c, _, _ = x.shape
    m, cg, kh, kw = w.shape
    ho, wo = out_hw
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(w).max(initial=0)) * cg * kh * kw
    dtype = np.float64 if bound < _EXACT_F64 else np.int64
    xf, wf = x.astype(dtype), w.astype(dtype)
    out = np.zeros((n, m, ho, wo), dtype=dtype)
    mg = m // groups
    if cg == 1 and groups == c:
        # Depthwise (with channel multiplier mg): one multiply-add per tap over the whole map.
        for (i, j), tap in _padded_taps(xf, kh, kw, strides, pads, dilations, out_hw):
            out += np.repeat(tap, mg, axis=1) * wf[:, 0, i, j][None, :, None, None]
        return out.astype(np.int64)
    rows = max(1, min(ho, _CHUNK_ELEMS // max(1, n * cg * kh * kw * wo)))
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        # Rows r0..r1 of the output need input rows from r0*sh - pt on: slice, then re-pad.
        sub_pads, sub = _row_slice(xf, r0, r1, kh, strides, pads, dilations)
        taps = [t for _, t in _padded_taps(sub, kh, kw, strides, sub_pads, dilations, (r1 - r0, wo))]
        cols = np.stack(taps, axis=2)  # N, C, K, rows, Wo
        for g in range(groups):
            cg_cols = cols[:, g * cg:(g + 1) * cg].reshape(n, cg * kh * kw, (r1 - r0) * wo)
            wg = wf[g * mg:(g + 1) * mg].reshape(mg, cg * kh * kw)
            out[:, g * mg:(g + 1) * mg, r0:r1, :] = np.matmul(wg, cg_cols).reshape(n, mg, r1 - r0, wo)
    return out.astype(np.int64)


def _row_slice(x, r0, r1, kh, strides, pads, dilations):
    """The input rows (and the remaining top/bottom padding) that output rows r0..r1 read."""
    pt, pl, pb, pr = pads
    start = r0 * strides[0] - pt
    stop = (r1 - 1) * strides[0] - pt + (kh - 1) * dilations[0] + 1
    top = max(0, -start)
    bottom = max(0, stop - x.shape[2])
    return (top, pl, bottom, pr), x[:, :, max(0, start):min(x.shape[2], stop)]


def window_reduce(x: np.ndarray, kernel, strides, pads, dilations, out_hw, how: str) -> np.ndarray:
    """Max or sum over pooling windows; padding counts as -inf for max and 0 for sum."""
    if how == "max":
        pad_value = np.iinfo(np.int64).min
        out = None
        for _, tap in _padded_taps(x, kernel[0], kernel[1], strides, pads, dilations, out_hw, pad_value):
            out = tap.copy() if out is None else np.maximum(out, tap)
        return out
    out = np.zeros(x.shape[:2] + tuple(out_hw), dtype=np.int64)
    for _, tap in _padded_taps(x, kernel[0], kernel[1], strides, pads, dilations, out_hw, 0):
        out += tap
    return out
