"""Pass ``fusion``: fold a max-pool into the convolution before it.

Conv, bias, requantization and activation are already one IR op. A ``maxpool`` whose window
equals its stride (2..7, no padding, no dilation) and that keeps its input's type runs in the
post-processing unit of the conv that produces its input (the ``pool`` field of CONV), when
nothing else reads the conv's output. The conv then computes only the rows and columns the
pool reads and writes the pooled tensor.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir.cost import ceil_div
from ..ir.isa import Post, field_max
from . import numerics
from .plan import Layer, Plan

MAX_POOL = field_max(Post, "pool")


def _poolable(plan: Plan, pool: Layer) -> int:
    """The pool window when ``pool`` can fuse into its producer's post-processing, else 0."""
    a = pool.op.attrs
    k = a["kernel"]
    if k[0] != k[1] or tuple(a["strides"]) != tuple(k) or any(a["pads"]) or tuple(a["dilations"]) != (1, 1):
        return 0
    if not 2 <= k[0] <= MAX_POOL:
        return 0
    src, out = (plan.graph.types[t] for t in (pool.op.inputs[0], pool.output))
    if (src.bits, src.signed, src.frac) != (out.bits, out.signed, out.frac):
        return 0
    if a.get("act", "none") != "none" and src.signed:
        return 0
    lo, hi = numerics.post_range(pool.op, out)
    if not (lo <= src.qmin and src.qmax <= hi):
        return 0
    if a["ceil_mode"] and (src.shape[2] % k[0] or src.shape[3] % k[1]):
        return 0
    return k[0]


def fuse(plan: Plan) -> Plan:
    """The fusion pass."""
    g = plan.graph
    consumers = g.consumers()
    producer = {x.output: x for x in plan.layers}
    tensors = dict(plan.tensors)
    fused = dict(plan.fused)
    drop: set[str] = set()
    replaced: dict[str, Layer] = {}
    for layer in plan.layers:
        if layer.kind != "maxpool":
            continue
        src = layer.inputs[0]
        conv = replaced.get(getattr(producer.get(src), "name", None), producer.get(src))
        if conv is None or not conv.is_conv or conv.pool or src in g.outputs:
            continue
        if [c.name for c in consumers.get(src, [])] != [layer.name] or tensors[src].buffer != src:
            continue
        p = _poolable(plan, layer)
        out = tensors[layer.output]
        blocks = ceil_div(out.shape[1], plan.config.tm) * (plan.config.tm // plan.config.tn)
        if not p or out.buffer != out.name and blocks > out.blocks:
            continue
        replaced[conv.name] = replace(conv, pool=p, fused=conv.fused + (layer.name,), output=layer.output)
        tensors[layer.output] = replace(out, blocks=max(out.blocks, blocks))
        del tensors[src]
        drop.add(layer.name)
        fused[layer.name] = f"max-pool fused into {conv.name}"
    order = tuple(replaced.get(x.name, x) for x in plan.order if x.name not in drop)
    return replace(plan, order=order, tensors=tensors, fused=fused)
