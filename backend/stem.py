"""Space-to-depth stem: a 3×3 stride-2 conv over a few-channel input becomes a 2×2 stride-1
conv over the input's 2×2 pixel blocks, rearranged on the host (docs/backend.md, *Stem*).

A network's first conv typically reads a 3-channel image: in the activation layout each
pixel is a whole ``tn``-byte word (3 of 16 bytes used on ``zu3eg``), and its stride-2 steps
take two cycles. Rearranging the image into 2×2 blocks — ``(C, H, W)`` to
``(4C, H/2, W/2)``, channel ``(dy·2 + dx)·C + c`` holding pixel ``(2Y + dy, 2X + dx)`` of
channel ``c`` — makes the same conv a 2×2 stride-1 one with pads (1, 1, 0, 0):

    out[y, x] = Σ W[o, c, ky, kx] · in[2y + ky − 1, 2x + kx − 1]
              = Σ W'[o, (dy·2 + dx)·C + c, KY, KX] · s2d[y + KY − 1, x + KX − 1]

with ``ky = 2·KY + dy − 1`` (and ``kx`` likewise); the tap ``KY = 0, dy = 0`` (``ky = −1``)
has no source and its weight is zero. The rewritten conv keeps the model's weight shape in
its ``model_weight_shape`` attribute, so MAC counts (the manifest's, utilization) stay the
model's, not the zero taps'. The sums are the same integers term for term, so the
result is bit-exact; the accelerator reads a quarter of the words and runs ``16·C``
one-cycle steps a pixel group instead of ``9·C`` two-cycle ones. The rearrangement is a
``reshape → transpose → reshape`` of integer codes, run on the host where the input's
quantization already runs (it moves bytes only).
"""

from __future__ import annotations

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.graph import Graph, Op

__all__ = ["space_to_depth_stem", "stem_candidates"]

def _eligible(graph: Graph, op: Op, producers: dict, consumers: dict, cfg: AcceleratorConfig) -> bool:
    if op.kind != "conv" or op.inputs[1] not in graph.constants:
        return False
    a = op.attrs
    x, w = graph.types[op.inputs[0]].shape, graph.types[op.inputs[1]].shape
    if (tuple(a["strides"]) != (2, 2) or tuple(a["pads"]) != (1, 1, 1, 1) or tuple(a["dilations"]) != (1, 1)
            or a["groups"] != 1 or tuple(w[2:]) != (3, 3) or len(x) != 4 or x[0] != 1):
        return False
    c, h, wd = x[1:]
    # The packed pixel must still be one word: then the layer reads a quarter of the words
    # and runs 16·C steps a group for 18·C cycles (a wider pack reads more words per pixel and
    # the cost model finds it slower, e.g. C = 3 on a tn = 4 array).
    if 4 * c > cfg.tn or h % 2 or wd % 2:
        return False
    src = op.inputs[0]
    # Only where the input is already the host's (a graph input or a host op's output) and
    # read by this conv alone: the rearrangement then joins the host work before the
    # accelerator instead of splitting an accelerator segment.
    prod = producers.get(src)
    host_made = src in graph.inputs or (prod is not None and prod.kind in ("quantize", "cpu"))
    return host_made and len(consumers.get(src, [])) == 1 and src not in graph.outputs


def stem_candidates(graph: Graph, cfg: AcceleratorConfig) -> list[str]:
    """Names of the convs ``space_to_depth_stem`` rewrites."""
    producers, consumers = graph.producer(), graph.consumers()
    return [op.name for op in graph.ops if _eligible(graph, op, producers, consumers, cfg)]


def _rearranged_weights(w: np.ndarray) -> np.ndarray:
    """``W'[o, (dy·2 + dx)·C + c, KY, KX] = W[o, c, 2KY + dy − 1, 2KX + dx − 1]`` (0 outside)."""
    m, c = w.shape[:2]
    out = np.zeros((m, 4 * c, 2, 2), dtype=w.dtype)
    for dy in range(2):
        for dx in range(2):
            for ky2 in range(2):
                for kx2 in range(2):
                    ky, kx = 2 * ky2 + dy - 1, 2 * kx2 + dx - 1
                    if 0 <= ky < 3 and 0 <= kx < 3:
                        out[:, (dy * 2 + dx) * c:(dy * 2 + dx + 1) * c, ky2, kx2] = w[:, :, ky, kx]
    return out


def space_to_depth_stem(graph: Graph, cfg: AcceleratorConfig) -> Graph:
    """``graph`` with every eligible stem conv (``stem_candidates``) rewritten; the same graph
    when there is none. The new tensors are named after the conv (``<conv>/s2d*``)."""
    names = set(stem_candidates(graph, cfg))
    if not names:
        return graph
    types, constants, ops = dict(graph.types), dict(graph.constants), []
    for op in graph.ops:
        if op.name not in names:
            ops.append(op)
            continue
        src, wname = op.inputs[0], op.inputs[1]
        t = types[src]
        _, c, h, w = t.shape
        blocks, moved, packed = (f"{op.name}/s2d_{s}" for s in ("blocks", "moved", "input"))
        types[blocks] = t.with_shape((1, c, h // 2, 2, w // 2, 2))
        types[moved] = t.with_shape((1, 2, 2, c, h // 2, w // 2))
        types[packed] = t.with_shape((1, 4 * c, h // 2, w // 2))
        ops += [Op(f"{op.name}/s2d_reshape", "reshape", (src,), (blocks,), {"shape": types[blocks].shape}),
                Op(f"{op.name}/s2d_transpose", "transpose", (blocks,), (moved,), {"perm": (0, 3, 5, 1, 2, 4)}),
                Op(f"{op.name}/s2d_pack", "reshape", (moved,), (packed,), {"shape": types[packed].shape})]
        wnew = f"{op.name}/s2d_weight"
        constants[wnew] = _rearranged_weights(np.asarray(graph.constants[wname]))
        types[wnew] = types[wname].with_shape(constants[wnew].shape)
        ops.append(Op(op.name, "conv", (packed, wnew) + op.inputs[2:], op.outputs,
                      op.attrs.updated(strides=(1, 1), pads=(1, 1, 0, 0),
                                       model_weight_shape=tuple(types[wname].shape))))
    return graph.with_ops(ops, types=types, constants=constants)
