"""Layer overlap: interleave the steps of consecutive layers so a DRAM-bound layer's traffic
runs under its neighbour's compute.

A depthwise layer on a wide array is bound by DRAM: it reads (and writes) one byte per pixel
and channel for a few MACs, while the pointwise layer after it computes for hundreds of
cycles per byte and leaves the read and write channels mostly idle. The machine's three
units already run independently; what keeps them from overlapping two layers is program
order, because each unit runs its instructions in order. This pass reorders the *steps*
(``emit.Step``: one band's loads, computes and stores) of a segment so that step ``j`` of a
layer follows, by ``LAG`` steps of its producer, the producer step whose stores it reads:
while the consumer computes band ``j``, the producer loads and stores band ``j + LAG``.

Only the order changes: dependencies and tokens are derived from the regions every
instruction touches afterwards (``schedule.py``), so any order the pass returns is correct
by construction; the pass only decides which one is fast. A layer's steps keep their order,
and never move before the last step of the layer two places earlier (so on-chip buffers,
which the ``buffers`` pass alternates between consecutive layers, are shared by at most two
layers at a time).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ResourceError
from .emit import Step
from .geometry import layer_shape
from .plan import HostOp, Layer, Plan
from .tiling import tile_shape

#: shares of the line buffer tried for the producer's rings (the consumer gets the rest)
SHARES = (0.25, 0.375, 0.5, 0.625, 0.75)

#: producer steps that run ahead of the consumer step reading them: the consumer's loads are
#: then issued after the producer's stores of those rows have completed, not behind them
LAG = 3


def interleave(steps: list[Step], need: list[int], overlapped: set[int], lag: int = LAG) -> list[Step]:
    """``steps`` (a segment's steps, layer after layer) reordered as described above;
    ``need[i]`` is the last earlier step whose stores step ``i`` loads (``schedule.step_needs``
    on the layer-after-layer order), -1 for none. Only the layers in ``overlapped`` (indices
    in the segment) interleave with the layer before; every other layer follows it whole."""
    if not steps:
        return []
    layers = sorted({st.layer for st in steps})
    rank = {li: k for k, li in enumerate(layers)}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, st in enumerate(steps):
        first.setdefault(st.layer, i)
        last[st.layer] = i
    key = [0.0] * len(steps)
    for i, st in enumerate(steps):
        r = rank[st.layer]
        lo = key[i - 1] if i > first[st.layer] else -1.0
        if r >= 2:
            lo = max(lo, key[last[layers[r - 2]]])
        if r >= 1 and st.layer not in overlapped:
            lo = max(lo, key[last[layers[r - 1]]])
        elif r >= 1 and i == first[st.layer]:
            lo = max(lo, key[first[layers[r - 1]]])
        n = need[i]
        if n >= 0:
            anchor = min(n + lag, last[steps[n].layer])
            lo = max(lo, key[anchor])
        key[i] = lo + 1e-6 if r or i > 0 else 0.0
        if r == 0:
            key[i] = float(i)
    order = sorted(range(len(steps)), key=lambda i: (key[i], rank[steps[i].layer], i))
    return [steps[i] for i in order]


def _pair_cost(ep: dict, ec: dict) -> int:
    """Estimated cycles of two overlapped layers: each unit runs both layers' work."""
    busy = max(ep["load"] + ec["load"], ep["compute"] + ec["compute"], ep["store"] + ec["store"])
    return busy + ep["cycles"] - max(ep["load"], ep["compute"], ep["store"])


def _retile(plan: Plan, prod: Layer, cons: Layer):
    """The cheapest (estimate, producer, consumer) with both tiled whole-row within one line
    buffer, or None when no split of the line buffer fits both."""
    cfg = plan.config
    sp, sc = layer_shape(prod, plan), layer_shape(cons, plan)
    best = None
    for share in SHARES:
        lb = int(cfg.line_buffer_words * share)
        try:
            tp, ep = tile_shape(prod, sp, cfg, lb, whole_rows=True)
            tc, ec = tile_shape(cons, sc, cfg, cfg.line_buffer_words - lb, whole_rows=True)
        except ResourceError:
            continue
        cost = _pair_cost(ep, ec)
        if best is None or cost < best[0]:
            best = (cost, replace(prod, tiling=tp, params={**prod.params, "estimate": ep}),
                    replace(cons, tiling=tc, params={**cons.params, "estimate": ec, "overlap": prod.name}))
    return best


def _candidate(plan: Plan, prod, cons) -> bool:
    if not (isinstance(prod, Layer) and isinstance(cons, Layer) and prod.is_conv and cons.is_conv):
        return False
    if not prod.depthwise or cons.depthwise or prod.tiling.chunks or cons.tiling.chunks:
        return False
    return prod.output in cons.inputs and prod.output not in plan.graph.outputs


def choose_overlaps(plan: Plan) -> Plan:
    """The overlap pass: pairs (depthwise conv, the conv reading its output) that run
    faster overlapped, by the tiler's estimates, are re-tiled whole-row within one line
    buffer and the consumer is marked (``params["overlap"]`` = producer) for ``interleave``."""
    if not plan.overlap:
        return plan
    order = list(plan.order)
    k = 0
    while k + 1 < len(order):
        prod, cons = order[k], order[k + 1]
        if _candidate(plan, prod, cons) and "overlap" not in prod.params:
            alone = prod.params["estimate"]["cycles"] + cons.params["estimate"]["cycles"]
            best = _retile(plan, prod, cons)
            if best is not None and best[0] < alone:
                order[k], order[k + 1] = best[1], best[2]
                k += 2
                continue
        k += 1
    return replace(plan, order=tuple(order))
