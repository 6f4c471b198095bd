"""Pass ``tiling``: column-prior tiling of every accelerator layer.

The output region is cut into vertical strips of ``sc`` columns; a strip is swept top to
bottom in bands of ``br`` rows, one compute instruction per band and output block. A strip's
input columns (with the ``K-1`` halo) sit in a ring of row slots in the line buffer; each
band loads only the rows it does not share with the band before, into the slots after
them (modulo the ring), so the next band loads while the current one computes. The ring
needs ``span + max(advance, span)`` slots for that (``span`` rows read by one band,
``advance`` rows between bands), which also covers the jump to the next strip; if that does
not fit, a single-buffered ring of ``span`` slots is used. On-chip memory therefore depends on
``sc``, ``br``, the kernel and the channel count, never on H or W.

Output blocks are grouped so that a group's weights fit one weight bank (the other bank
loads the next group meanwhile); vector ops group channel blocks into chunks. The tiler
enumerates strip widths and group sizes, takes the deepest band that fits, and keeps the
candidate with the fewest estimated cycles (a load/compute/store pipeline bound from
``ir/cost.py``). A layer whose smallest tile does not fit raises ``ResourceError`` naming
the layer and the buffer; a conv that does not fit is first split over input-channel chunks
(``backend/reduction.py``).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ResourceError
from ..ir.config import AcceleratorConfig
from ..ir.cost import DMA_START, ceil_div, dma_box_beats, dma_linear_cycles, store_read_cycles
from ..ir.isa import PARAM_BYTES
from .geometry import LayerShape, kib, layer_shape
from .plan import Layer, Plan, Tiling
from .reduction import MAX_CHANS, RINGS, chunk_blocks, split_tiling

MAX_STRIPS = 64


def split_units(units: int, size: int, splits: tuple[int, ...] = ()) -> tuple[tuple[int, ...], ...]:
    """Consecutive groups of at most ``size`` units, balanced, never crossing a split."""
    bounds = [0, *splits, units]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        n = ceil_div(b - a, size)
        for k in range(n):
            lo, hi = a + (b - a) * k // n, a + (b - a) * (k + 1) // n
            out.append(tuple(range(lo, hi)))
    return tuple(out)


def slots_for(shape: LayerShape, br: int, double: bool) -> int:
    g = shape.geom
    window, span = g.window_rows(br), g.span_rows(br)
    if not double:
        return window
    return max(window, min(span + max(g.advance_rows(br), span), 2 * g.in_h))


def _weight_groups(layer: Layer, shape: LayerShape, cfg: AcceleratorConfig) -> int:
    """Most output blocks one weight bank (and parameter bank) holds; raises if not one."""
    unit_bytes = shape.unit_weight_words * cfg.tm * cfg.tn
    if unit_bytes > cfg.weight_bank_bytes:
        raise ResourceError(f"layer {layer.name!r}: one output block needs {kib(unit_bytes)} of weights, "
                            f"the weight bank holds {kib(cfg.weight_bank_bytes)} (target {cfg.name})")
    if cfg.tm > cfg.param_entries:
        raise ResourceError(f"layer {layer.name!r}: one output block needs {cfg.tm} parameter entries, "
                            f"the parameter bank holds {cfg.param_entries} (target {cfg.name})")
    return min(cfg.weight_bank_words // shape.unit_weight_words, cfg.param_entries // cfg.tm)


def _group_sizes(layer: Layer, shape: LayerShape, cfg: AcceleratorConfig) -> list[int]:
    if shape.unit_weight_words:
        most = min(_weight_groups(layer, shape, cfg), shape.units)
        if shape.dense_in_blocks:
            return [most]
    else:
        most = min(shape.max_group, shape.units)
    sizes, s = [], most
    while s >= 1:
        sizes.append(s)
        s = s // 2 if s > 1 else 0
    return sizes


def _strip_widths(shape: LayerShape) -> list[int]:
    a = shape.align_c
    top = max(shape.out_w, a)
    widths = {min(top, ceil_div(ceil_div(shape.out_w, n), a) * a) for n in range(1, MAX_STRIPS + 1)}
    widths |= {min(top, a << i) for i in range(8)}  # narrow strips for wide maps with deep rings
    return sorted(w for w in widths if w >= a)


def _deepest_band(shape: LayerShape, cfg: AcceleratorConfig, sc: int, ring_blocks: int, obuf_blk: int,
                  double: bool, lb_words: int | None = None, ob_words: int | None = None) -> int:
    """Most output rows per band (a multiple of the row alignment) that fit both buffers
    (``lb_words`` of the line buffer and tiles of ``ob_words``, by default a whole line buffer
    and output-buffer half); 0 if none."""
    a = shape.align_r
    p = shape.pool or 1
    per_row = (sc // p) * obuf_blk
    ob = cfg.output_half_words if ob_words is None else ob_words
    top = min(ceil_div(shape.out_h, a) * a, (ob // max(1, per_row)) * p // a * a)
    slot_words = ring_blocks * shape.geom.span_cols(sc)
    lb = cfg.line_buffer_words if lb_words is None else lb_words

    def fits(br: int) -> bool:
        return shape.rings * slots_for(shape, br, double) * slot_words <= lb

    lo, hi = 0, top // a
    while lo < hi:  # largest k with fits(k * a)
        mid = (lo + hi + 1) // 2
        if fits(mid * a):
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return 0
    n = ceil_div(shape.out_h, lo * a)  # balance the bands: same count, smaller last-band waste
    return ceil_div(ceil_div(shape.out_h, n), a) * a


def estimate(shape: LayerShape, t: Tiling, cfg: AcceleratorConfig) -> dict:
    """Analytic cycle estimate of a tiled layer: the load, compute and store units each run
    their total, overlapped, plus one step to fill the pipeline; fetch bounds it too."""
    g = shape.geom
    bw, lat, tn = cfg.dram_bytes_per_cycle, DMA_START + cfg.dram_latency, cfg.tn
    p = shape.pool or 1
    n_bands = t.bands
    last_br = shape.out_h - (n_bands - 1) * t.br
    lo, hi = g.rows(0, shape.out_h)
    rows = min(g.in_h - 1, hi) - max(0, lo) + 1
    rows -= max(0, g.advance_rows(t.br) - g.span_rows(t.br)) * (n_bands - 1)
    # DRAM boxes as the emitter will address them (buffers are ALIGN-aligned, a multiple of the
    # beat, so offsets inside the tensors decide the beats): input rows from max(0, lo), output
    # tensor of (out_h/p) x (out_w/p) pixels.
    in_row, out_row = g.in_w * tn, shape.out_w // p * tn
    in_blk, out_blk = g.in_h * in_row, shape.out_h // p * out_row
    load = comp = store = n_instr = 0
    for group in t.groups:
        if shape.unit_weight_words:
            load += dma_linear_cycles(cfg, 0, len(group) * shape.unit_weight_words * cfg.tm * cfg.tn)
            load += dma_linear_cycles(cfg, 0, len(group) * cfg.tm * PARAM_BYTES)
            n_instr += 2
        blocks = shape.ring_blocks(group)
        in_b0 = 0 if shape.dense_in_blocks else group[0] * shape.unit_blocks
        obuf_blk = shape.obuf_blk(group)
        per_band = len(group) if shape.unit_weight_words else 1
        for q0 in range(0, shape.out_w, t.sc):
            q1 = min(shape.out_w, q0 + t.sc)
            x0, x1 = g.clip_cols(q0, q1)
            addr = in_b0 * in_blk + max(0, lo) * in_row + x0 * tn
            beats = dma_box_beats(cfg, addr, in_blk, in_row, blocks, rows, (x1 - x0) * tn)
            load += shape.rings * (n_bands * lat + beats)
            cols = q1 - q0
            if shape.unit_weight_words:
                for u in group:
                    comp += (n_bands - 1) * shape.compute(t.br, cols, u) + shape.compute(last_br, cols, u)
            else:
                comp += (n_bands - 1) * shape.compute(t.br, cols, obuf_blk) + shape.compute(last_br, cols, obuf_blk)
            addr = group[0] * shape.unit_blocks * out_blk + q0 // p * tn
            # a STORE pays its on-chip read before its latency (ir.cost.dma_store_cycles)
            store += per_band * shape.planes * n_bands * (store_read_cycles(cfg) + lat) + dma_box_beats(cfg, addr, out_blk, out_row, per_band * obuf_blk,
                                                              shape.out_h // p, cols // p * tn)
            n_instr += n_bands * (shape.rings + (1 + shape.planes) * per_band)
    steps = max(1, len(t.groups) * t.strips * n_bands)
    fetch = n_instr * ceil_div(cfg.instr_bytes, bw)
    # A single-buffered ring loads a band only after the previous band has computed.
    busy = max(load, comp) if t.double else load + comp
    cycles = max(busy, store, fetch) + (load + store) // steps
    return {"cycles": cycles, "load": load, "compute": comp, "store": store, "instructions": n_instr}


def choose_tiling(layer: Layer, plan: Plan) -> tuple[Tiling, dict]:
    """The cheapest tiling of ``layer`` (for its current dataflow) and its estimate. A conv
    that does not fit whole, or has more input channels than one CONV takes, is split over
    input-channel chunks (``backend/reduction.py``)."""
    shape = layer_shape(layer, plan)
    if not layer.is_conv:
        return tile_shape(layer, shape, plan.config)
    x, w = (plan.graph.types[t].shape for t in layer.op.inputs[:2])
    if x[1] <= MAX_CHANS or layer.depthwise:
        try:
            return tile_shape(layer, shape, plan.config)
        except ResourceError:
            if layer.depthwise or x[1] <= plan.config.tn:  # no reduction to split
                raise
    return split_tiling(layer, shape, plan.config, x[1], w[2], w[3], _strip_widths(shape))


def tile_shape(layer: Layer, shape: LayerShape, cfg: AcceleratorConfig, lb_words: int | None = None,
               whole_rows: bool = False) -> tuple[Tiling, dict]:
    """The cheapest tiling of a layer described by ``shape``; raises ``ResourceError``.
    ``lb_words`` limits its rings to that many line-buffer words; ``whole_rows`` asks for one
    strip and (for a depthwise layer) one group, so that the layer sweeps its rows once, top
    to bottom, all channels a band, in tiles of at most a quarter of the output buffer (two
    overlapped layers then rotate through four of them; ``backend/overlap.py``)."""
    candidates = []
    sizes = _group_sizes(layer, shape, cfg)
    for size in sizes[:1] if whole_rows else sizes:
        groups = split_units(shape.units, size, shape.unit_splits)
        if whole_rows and layer.depthwise and len(groups) > 1:
            continue
        ring_blocks = max(shape.ring_blocks(gr) for gr in groups)
        obuf_blk = max(shape.obuf_blk(gr) for gr in groups)
        for sc in _strip_widths(shape)[-1:] if whole_rows else _strip_widths(shape):
            for double in (True, False):
                br = _deepest_band(shape, cfg, sc, ring_blocks, obuf_blk, double, lb_words,
                                   cfg.output_half_words // 2 if whole_rows else None)
                if not br:
                    continue
                p = shape.pool or 1
                tile = (br // p) * (sc // p) * obuf_blk
                bufs = 2 * max(1, min(4, cfg.output_half_words // tile))
                t = Tiling(shape.out_h, shape.out_w, sc, br, slots_for(shape, br, double), shape.geom.span_cols(sc),
                           groups, bufs, double)
                candidates.append((t, estimate(shape, t, cfg)))
                break
    if not candidates:
        raise _no_fit(layer, shape, cfg)
    return min(candidates, key=lambda c: (c[1]["cycles"], c[1]["instructions"]))


def _no_fit(layer: Layer, shape: LayerShape, cfg: AcceleratorConfig) -> ResourceError:
    sc = shape.align_c
    p = shape.pool or 1
    blocks = shape.dense_in_blocks or shape.unit_blocks
    obuf = (sc // p) * shape.obuf_blk((0,)) * shape.align_r // p
    if obuf > cfg.output_half_words:
        return ResourceError(f"layer {layer.name!r}: one band of the narrowest strip needs "
                             f"{kib(obuf * cfg.tn)} of output buffer, a half holds "
                             f"{kib(cfg.output_half_words * cfg.tn)} (target {cfg.name})")
    need = shape.rings * slots_for(shape, shape.align_r, False) * blocks * shape.geom.span_cols(sc) * cfg.tn
    return ResourceError(f"layer {layer.name!r}: one band of the narrowest strip ({sc} columns, {blocks} channel "
                         f"blocks) needs {kib(need)} of line buffer, the line buffer holds "
                         f"{kib(cfg.line_buffer_bytes)} (target {cfg.name})")


def ring_plan(layer: Layer, plan: Plan) -> tuple[int, int]:
    """(rings, words of each) the layer uses in the line buffer: its inputs' rings, or a split
    conv's two alternating rings of its largest chunk."""
    shape = layer_shape(layer, plan)
    t = layer.tiling
    if t.chunks:
        return RINGS, t.slots * chunk_blocks(t.chunks, plan.config.tn) * t.ring_cols
    return shape.rings, t.slots * max(shape.ring_blocks(g) for g in t.groups) * t.ring_cols


def ring_words(layer: Layer, plan: Plan) -> int:
    """Line-buffer words the layer's rings take."""
    rings, words = ring_plan(layer, plan)
    return rings * words


def tile_words(layer: Layer, plan: Plan) -> int:
    """Output-buffer words of one tile (after pooling)."""
    shape = layer_shape(layer, plan)
    t = layer.tiling
    p = layer.pool or 1
    return (t.br // p) * (t.sc // p) * max(shape.obuf_blk(g) for g in t.groups)


def tile_layers(plan: Plan) -> Plan:
    """The tiling pass: a ``Tiling`` for every layer (estimate kept in ``layer.params``)."""
    order = []
    for item in plan.order:
        if isinstance(item, Layer):
            t, est = choose_tiling(item, plan)
            item = replace(item, tiling=t, params={**item.params, "estimate": est})
        order.append(item)
    return replace(plan, order=tuple(order))
