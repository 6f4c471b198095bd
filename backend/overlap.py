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
    key = [0.0] * len(steps)
    for i, st in enumerate(steps):
        r = rank[st.layer]
        lo = key[i - 1] if i > first[st.layer] else -1.0
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


def _run_cost(ests: list[dict]) -> int:
    """Estimated cycles of layers run overlapped: each unit runs all their work, plus the
    first layer's pipeline fill."""
    busy = max(sum(e[k] for e in ests) for k in ("load", "compute", "store"))
    return busy + ests[0]["cycles"] - max(ests[0]["load"], ests[0]["compute"], ests[0]["store"])


def _shares(n: int, parts: int = 8):
    """Splits of the line buffer into ``n`` shares, in ``1/parts`` steps, each at least one."""
    if n == 1:
        yield (parts,)
        return
    for first in range(1, parts - n + 2):
        for rest in _shares(n - 1, parts - first):
            yield (first,) + rest


def _retile(plan: Plan, layers: list[Layer]):
    """The cheapest ``(estimate, layers)`` with the run's layers tiled whole-row within one
    line buffer (every split of it tried) and marked for ``interleave``, or None when none
    fits."""
    cfg = plan.config
    shapes = [layer_shape(x, plan) for x in layers]
    best = None
    for shares in _shares(len(layers)):
        try:
            tiled = [tile_shape(x, sh, cfg, cfg.line_buffer_words * k // 8, whole_rows=True)
                     for x, sh, k in zip(layers, shapes, shares)]
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
