"""Weight words and parameter entries of convolution layers (docs/isa.md "LOAD_WGT").

A layer's output blocks are packed group by group: one blob of weight words (``tm*tn`` bytes,
byte ``i*tn + l`` = row ``i``, lane ``l``) per weight group, in the order of the dataflow
(channel-parallel: word ``(ib*kh + y)*kw + x``; pixel-parallel: step ``s`` in word ``s // tn``,
lane ``s % tn``), and one blob of parameter entries (``ir.isa.PARAM_ENTRY``: bias, shift)
per group. ``pow2`` layers are encoded as the ISA's pow2 codes.
"""

from __future__ import annotations

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div
from ..ir.isa import PARAM_DTYPE, POW2_MAX_EXP, POW2_NONZERO, POW2_SIGN
from . import numerics
from .plan import Layer, Plan


def dense_weights(plan: Plan, layer: Layer) -> np.ndarray:
    """OIHW weights with groups expanded to a dense kernel (zeros across groups)."""
    op = layer.op
    w = np.asarray(plan.graph.constants[op.inputs[1]], dtype=np.int64)
    groups = op.attrs["groups"]
    if groups == 1 or layer.depthwise:
        return w
    m, cg = w.shape[:2]
    mg = m // groups
    dense = np.zeros((m, cg * groups) + w.shape[2:], dtype=np.int64)
    for g in range(groups):
        dense[g * mg:(g + 1) * mg, g * cg:(g + 1) * cg] = w[g * mg:(g + 1) * mg]
    return dense


def pow2_codes(w: np.ndarray) -> np.ndarray:
    """The ISA's pow2 weight codes of integer weights: 0 for zero, else sign<<7 | 1<<6 | e for
    ``±2**e``. Only ``0 <= e <= 7`` has a code (bits 5..3 are reserved); the front end's weights
    (at most 8 bits, docs/quantize.md) always fit."""
    mag = np.abs(w)
    exp = np.zeros(mag.shape, np.int64)
    nz = mag > 0
    exp[nz] = np.floor(np.log2(mag[nz]))
    out = nz & ((exp < 0) | (exp > POW2_MAX_EXP))
    if np.any(out):
        raise ValueError(f"pow2 layer holds the weight {w[out].flat[0]}: the ISA's pow2 codes hold ±2**e for "
                         f"0 <= e <= {POW2_MAX_EXP} only (bits 5..3 of a code are reserved)")
    if np.any(nz & (np.left_shift(1, exp) != mag)):
        raise ValueError("pow2 layer holds a weight that is not a power of two")
    return np.where(nz, (w < 0) * POW2_SIGN | POW2_NONZERO | exp, 0).astype(np.uint8)


def uses_pow2(layer: Layer, cfg: AcceleratorConfig) -> bool:
    """Whether the layer's CONVs take pow2 codes. Only pixel-parallel CONVs do (docs/isa.md:
    the PE array decodes a code once per row, where a weight is broadcast); a channel-parallel
    pow2 layer is emitted with its weights as int8, the same values."""
    return (layer.op.attrs.get("wenc", "int") == "pow2" and "pow2" in cfg.weight_encodings
            and layer.dataflow == "pixel")


def int8_bytes(words: np.ndarray) -> np.ndarray:
    """Integer weights as int8 bytes; a weight outside -128..127 is an error, never wrapped."""
    if words.size and (words.min() < -128 or words.max() > 127):
        bad = words[(words < -128) | (words > 127)].flat[0]
        raise ValueError(f"weight {bad} does not fit an int8 weight byte")
    return words.astype(np.int8).view(np.uint8)


def _unit_words(cfg: AcceleratorConfig, layer: Layer, w: np.ndarray) -> np.ndarray:
    """All output blocks' weight words: (units, words, tm, tn) int64."""
    tm, tn = cfg.tm, cfg.tn
    m, c, kh, kw = w.shape
    units = ceil_div(m, tm)
    wp = np.zeros((units * tm,) + w.shape[1:], dtype=np.int64)
    wp[:m] = w
    if layer.dataflow == "pixel":
        steps = wp.reshape(units, tm, -1)  # dense: (c*kh + y)*kw + x; depthwise: y*kw + x
        nw = ceil_div(steps.shape[2], tn)
        padded = np.zeros((units, tm, nw * tn), dtype=np.int64)
        padded[:, :, :steps.shape[2]] = steps
        return padded.reshape(units, tm, nw, tn).transpose(0, 2, 1, 3)
    if layer.depthwise:  # diagonal weights over the block's own tm channels
        diag = np.zeros((units, tm, tm, kh, kw), dtype=np.int64)
        idx = np.arange(tm)
        diag[:, idx, idx] = wp[:, 0].reshape(units, tm, kh, kw)
        nib = tm // tn
        blocks = diag.reshape(units, tm, nib, tn, kh, kw)
    else:
        nib = ceil_div(c, tn)
        full = np.zeros((units, tm, nib * tn, kh, kw), dtype=np.int64)
        full[:, :, :c] = wp.reshape(units, tm, c, kh, kw)
        blocks = full.reshape(units, tm, nib, tn, kh, kw)
    # word (ib*kh + y)*kw + x holds W[m0+i, ib*tn+l, y, x] at row i, lane l
    return blocks.transpose(0, 2, 4, 5, 1, 3).reshape(units, nib * kh * kw, tm, tn)


def pack_conv(plan: Plan, layer: Layer) -> list[tuple[bytes, bytes]]:
    """(weight bytes, parameter bytes) of every weight group of a conv layer; for a layer
    split over input-channel chunks (``Tiling.chunks``), of every (output block, chunk) at
    index ``block * chunks + chunk``, each chunk's words packed as a conv over its channels."""
    cfg = plan.config
    w = dense_weights(plan, layer)
    pow2 = uses_pow2(layer, cfg)
    chunks = layer.tiling.chunks or ((0, w.shape[1]),)
    data = []
    for c0, c1 in chunks:
        words = _unit_words(cfg, layer, w[:, c0:c1])
        data.append(pow2_codes(words) if pow2 else int8_bytes(words))
    bias, shift = numerics.conv_params(plan.graph, layer.op, cfg.acc_bits)
    units = data[0].shape[0]
    params = np.zeros(units * cfg.tm, dtype=PARAM_DTYPE)
    params["bias"][:len(bias)] = bias
    params["shift"][:len(shift)] = shift
    if layer.tiling.chunks:
        return [(data[ci][u].tobytes(), params[u * cfg.tm:(u + 1) * cfg.tm].tobytes())
                for u in range(units) for ci in range(len(chunks))]
    out = []
    for group in layer.tiling.groups:
        a, b = group[0], group[-1] + 1
        out.append((data[0][a:b].tobytes(), params[a * cfg.tm:b * cfg.tm].tobytes()))
    return out
