"""Pass ``overlap``: run a depthwise conv and the conv reading its output at the same time,
so the depthwise layer's DRAM traffic runs under the pointwise layer's compute.

A depthwise layer on a wide array is bound by DRAM: it reads (and writes) one byte per pixel
and channel for a few MACs, while the pointwise layer after it computes for hundreds of
cycles per byte and leaves the read and write channels mostly idle. The machine's three
units already run independently; what keeps them from overlapping two layers is program
order (each unit runs its instructions in order) and tiling (column strips and channel
groups make the consumer's first band wait for the producer's last).

``choose_overlaps`` re-tiles such a pair *whole-row* (one strip; the depthwise layer in one
channel group) with the line buffer split between their rings, keeps it when the tiler's
estimate of the two overlapped beats theirs apart by ``MIN_GAIN``, and marks the consumer
(``params["overlap"]``). The buffers pass then puts the consumer's rings next to the
producer's and the dram pass keeps buffers alive to the end of the pair. ``interleave``
reorders the segment's *steps* (``emit.Step``: one band's loads, computes and stores) so that
each consumer step follows, by ``LAG`` producer steps, the producer step whose stores it
reads: while the consumer computes band ``j``, the producer loads and stores band
``j + LAG``.

Only tiling, placement and order change, no instruction or hardware: dependencies and
tokens are derived from the regions every instruction touches (``schedule.py``), so any
order is correct by construction; the pass only decides which one is fast.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ResourceError
from .emit import Step
from .geometry import layer_shape
from .plan import Layer, Plan
from .tiling import tile_shape

#: least estimated gain (fraction of the two layers' own estimates) for which a pair is
#: overlapped: its whole-row tiles are smaller, so it has more instructions (fetch, and the
#: simulator's time) and more fixed compute cycles than the estimate's margin of error; on the
#: detector, pairs promising ~1 % (512-channel 32x32 layers) gained nothing in the cycle model
MIN_GAIN = 0.03

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
    key = [0.0] * len(steps)  # steps run in key order; ties keep layer order
    for i, st in enumerate(steps):
        r = rank[st.layer]
        if r == 0:
            key[i] = float(i)
            continue
        prev = layers[r - 1]
        lo = key[i - 1] if i > first[st.layer] else key[first[prev]]
        if st.layer not in overlapped:
            lo = max(lo, key[last[prev]])
        elif need[i] >= 0:
            lo = max(lo, key[min(need[i] + lag, last[steps[need[i]].layer])])
        key[i] = lo + 1e-6
    order = sorted(range(len(steps)), key=lambda i: (key[i], rank[steps[i].layer], i))
    return [steps[i] for i in order]


def _run_cost(ests: list[dict]) -> int:
    """Estimated cycles of layers run overlapped: each unit runs all their work, plus the
    first layer's pipeline fill."""
    busy = max(sum(e[k] for e in ests) for k in ("load", "compute", "store"))
    return busy + ests[0]["cycles"] - max(ests[0]["load"], ests[0]["compute"], ests[0]["store"])


def _retile(plan: Plan, layers: list[Layer], parts: int = 8):
    """The cheapest ``(estimate, layers)`` with the pair tiled whole-row within one line
    buffer (the producer's rings in ``k/parts`` of it, the consumer's in the rest, every ``k``
    tried) and the consumer marked for ``interleave``, or None when no split fits."""
    cfg = plan.config
    shapes = [layer_shape(x, plan) for x in layers]
    best = None
    for k in range(1, parts):
        try:
            tiled = [tile_shape(x, sh, cfg, cfg.line_buffer_words * share // parts, whole_rows=True)
                     for x, sh, share in zip(layers, shapes, (k, parts - k))]
        except ResourceError:
            continue
        cost = _run_cost([e for _, e in tiled])
        if best is None or cost < best[0]:
            run = [replace(x, tiling=t, params={**x.params, "estimate": e}) for x, (t, e) in zip(layers, tiled)]
            run[1:] = [replace(x, params={**x.params, "overlap": p.name}) for p, x in zip(layers, run[1:])]
            best = (cost, run)
    return best


def _conv(x) -> bool:
    return isinstance(x, Layer) and x.is_conv and not x.tiling.chunks


def _feeds(plan: Plan, prod, cons) -> bool:
    """Whether ``cons`` reads ``prod``'s output (and the output is not a graph output)."""
    return _conv(prod) and _conv(cons) and prod.output in cons.inputs and prod.output not in plan.graph.outputs


def _alone(*layers: Layer) -> int:
    return sum(x.params["estimate"]["cycles"] for x in layers)


def choose_overlaps(plan: Plan) -> Plan:
    """The overlap pass: a depthwise conv and the conv reading its output that run faster
    overlapped, by the tiler's estimates, are re-tiled whole-row sharing the line buffer
    (weights alternate banks anyway), and the consumer is marked (``params["overlap"]`` =
    the producer) for ``interleave``. (Runs of three — the conv feeding the depthwise one
    too — were tried on the detector and came out slower than pairs: the in-order units
    couple three layers' steps too tightly.)"""
    if not plan.overlap:
        return plan
    order = list(plan.order)
    k = 0
    while k + 1 < len(order):
        dw, cons = order[k], order[k + 1]
        if not (_feeds(plan, dw, cons) and dw.depthwise and not cons.depthwise):
            k += 1
            continue
        best = _retile(plan, [dw, cons])
        if best is not None and best[0] < (1 - MIN_GAIN) * _alone(dw, cons):
            order[k:k + 2] = best[1]
            k += 2
        else:
            k += 1
    return replace(plan, order=tuple(order))
