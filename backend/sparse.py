"""Where the compiler emits SPCONV (docs/sparsity.md), and its weight-bank bytes.

A pixel-parallel conv layer's output block (``tm`` output channels, a *unit*) runs as an
SPCONV when some of its dense steps (one input channel at one tap) have all ``tm`` weights
zero — what ``shiftflow prune`` leaves — and the shared cycle model says the kept steps are
faster: the accumulation steps of a pixel group drop from the dense count to the kept one,
which pays only while the dense count is above the retire slots (``conv_drain``), so a
depthwise 3×3 or a shallow stem stays a CONV. The kept weights and the index list go into the
unit's dense slot of the weight bank (so tiling and buffers are those of the dense layer), and
only when they fit it. A layer split over input-channel chunks stays dense. All of it only
when the plan asks for it (``compile_model(..., sparse=True)``): the RTL does not execute
SPCONV yet, and unpruned models have zero steps too (grouped convs, low-bit weights).
"""

from __future__ import annotations

import numpy as np

from ..ir import sparse
from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div, conv_inner_steps, conv_slots, conv_weight_words
from . import weights
from .plan import Layer, Plan


def _step_mask(plan: Plan, layer: Layer) -> np.ndarray:
    """(units, dense steps): whether a unit's step has a nonzero weight, in the pixel-parallel
    step order (``(c*kh + y)*kw + x``; ``y*kw + x`` depthwise)."""
    tm = plan.config.tm
    w = weights.dense_weights(plan, layer)
    units = ceil_div(w.shape[0], tm)
    padded = np.zeros((units * tm,) + w.shape[1:], bool)
    padded[:w.shape[0]] = w != 0
    return padded.reshape(units, tm, -1).any(axis=1)


def kept_steps(plan: Plan, layer: Layer) -> dict[int, np.ndarray]:
    """``{unit: dense step numbers of its kept steps}`` for the units of ``layer`` that run as
    SPCONV; empty for a layer that is not pixel-parallel or gains nothing."""
    if (not plan.sparse or not layer.is_conv or layer.dataflow != "pixel"
            or (layer.tiling is not None and layer.tiling.chunks)):
        return {}
    cfg = plan.config
    g = plan.graph
    w = g.types[layer.op.inputs[1]].shape
    chans = 1 if layer.depthwise else g.types[layer.op.inputs[0]].shape[1]
    kh, kw = w[2], w[3]
    sw = layer.op.attrs["strides"][1]
    dense = chans * kh * kw
    planes = plan.tensors[layer.output].planes if layer.output in plan.tensors else 1
    drain = conv_slots(cfg, True, planes)
    if (sparse.index_span(layer.depthwise, chans, kh, kw) > sparse.INDEX_SPAN
            or conv_inner_steps(cfg, True, layer.depthwise, chans, kh, kw, sw) <= drain):
        return {}
    slot = conv_weight_words(cfg, True, layer.depthwise, chans, kh, kw)
    out = {}
    for u, row in enumerate(_step_mask(plan, layer)):
        index = np.flatnonzero(row)
        kept = max(1, index.size)  # a unit with no weight at all keeps step 0 (kept >= 1)
        if kept < dense and sparse.bank_words(cfg, kept) <= slot:
            out[u] = index if index.size else np.zeros(1, np.int64)
    return out


def pack_conv(plan: Plan, layer: Layer) -> list[tuple[bytes, bytes]]:
    """``weights.pack_conv``'s blobs with the SPCONV units' slots packed by ``pack_units``
    (a weight group's blob is its units' dense slots back to back)."""
    blobs = weights.pack_conv(plan, layer)
    kept = kept_steps(plan, layer)
    if not kept:
        return blobs
    cfg = plan.config
    kh, kw = plan.graph.types[layer.op.inputs[1]].shape[2:4]
    for gi, group in enumerate(layer.tiling.groups):
        wbytes, pbytes = blobs[gi]
        words = np.frombuffer(wbytes, np.uint8).reshape(len(group), -1, cfg.tm, cfg.tn)
        mine = {k: kept[u] for k, u in enumerate(group) if u in kept}
        blobs[gi] = (pack_units(cfg, words, mine, kh, kw).tobytes(), pbytes)
    return blobs


def pack_units(cfg: AcceleratorConfig, words: np.ndarray, kept: dict[int, np.ndarray], kh: int, kw: int) -> np.ndarray:
    """The units' weight-word bytes ``(units, words, tm, tn)`` with each sparse unit's slot
    holding its kept steps' words, then its index list (``ir/sparse.py``; ``kept``: dense step
    numbers of a ``kh×kw`` kernel), then zeros."""
    if not kept:
        return words
    tm, tn = cfg.tm, cfg.tn
    out = words.copy()
    for u, index in kept.items():
        steps = words[u].transpose(0, 2, 1).reshape(-1, tm)[index]
        nw = sparse.weight_words(cfg, len(index))
        packed = np.zeros((nw * tn, tm), np.uint8)
        packed[:len(index)] = steps
        slot = np.zeros(words[u].size, np.uint8)
        slot[:packed.size] = packed.reshape(nw, tn, tm).transpose(0, 2, 1).reshape(-1)
        ix = np.frombuffer(sparse.index_bytes(sparse.pack_index(index, kh, kw)), np.uint8)
        slot[packed.size:packed.size + ix.size] = ix
        out[u] = slot.reshape(words[u].shape)
    return out


def summary(plan: Plan, layer: Layer) -> dict:
    """The manifest's account of a layer's sparsity: SPCONV units, and the kept and dense
    accumulation steps over them (empty for a dense layer)."""
    kept = kept_steps(plan, layer)
    if not kept:
        return {}
    mask = _step_mask(plan, layer)
    return {"spconv_units": len(kept), "units": int(mask.shape[0]),
            "kept_steps": int(sum(len(i) for i in kept.values())), "dense_steps": int(mask.shape[1] * len(kept))}
