"""Reduction blocking: convolutions too deep for one weight bank or one ring.

A conv whose weights for one output block do not fit a weight bank, whose input channels do
not fit the line buffer, or that has more input channels than a CONV's ``inp.chans`` field
holds, is split into *chunks* of input channels (whole ``tn``-channel blocks). Per output
block, strip and band, every chunk is one step: its two LOAD_WGTs (the chunk's weights and
the block's parameters) into alternating banks, its LOAD_ACT (the chunk's channel blocks of
the band's rows) into one of two alternating rings, and one CONV over its channels. The
chunks' sums meet in the partial-sum buffer (docs/isa.md "Partial sums"): the first CONV
writes ``acc + bias`` there (``psum_out``), middle ones add to it (``psum_in`` and
``psum_out``), the last adds it and post-processes into the output buffer (``psum_in``),
and the band's STORE follows.

A band's tile is bounded by the partial-sum buffer (``ir.cost.conv_psum_entries``), the
output buffer and the two rings, which hold one band's rows each: rows are not reused
between bands. Weights are loaded again for every (block, strip, band) — a split layer
trades DRAM traffic for on-chip room, so it is used only where the plain tiling does not
fit (``tiling.tile_shape``). Where even one block per chunk, one row and the narrowest strip
do not fit, ``ResourceError`` names the buffer and by how much.
"""

from __future__ import annotations

from ..errors import ResourceError
from ..ir.config import AcceleratorConfig
from ..ir.cost import DMA_START, ceil_div, conv_cycles, conv_psum_entries, conv_weight_words, dma_box_beats, dma_linear_cycles
from ..ir.isa import PARAM_BYTES, Conv, field_max
from .geometry import LayerShape, bands, kib
from .plan import Layer, Tiling

MAX_CHANS = field_max(Conv, "inp.chans")
RINGS = 2  # a chunk's rows load into one ring while the previous chunk computes from the other
EXTRA_CHUNK_COUNTS = 3  # chunk counts tried beyond the fewest that fit the weight bank


def chunk_blocks(chunks, tn: int) -> int:
    """Channel blocks of the largest chunk: what a ring slot of a split conv holds."""
    return max(ceil_div(c1 - c0, tn) for c0, c1 in chunks)


def chunk_ranges(cin: int, tn: int, n: int) -> tuple[tuple[int, int], ...]:
    """At most ``n`` balanced input-channel ranges of whole ``tn``-channel blocks."""
    blocks = ceil_div(cin, tn)
    per = ceil_div(blocks, n)
    n = ceil_div(blocks, per)
    bounds = [blocks * k // n for k in range(n + 1)]
    return tuple((a * tn, min(cin, b * tn)) for a, b in zip(bounds, bounds[1:]))


class _Conv:
    """The numbers of a conv layer that the split tiler needs."""

    def __init__(self, layer: Layer, shape: LayerShape, cfg: AcceleratorConfig, cin: int, kh: int, kw: int):
        self.layer, self.shape, self.cfg = layer, shape, cfg
        self.cin, self.kh, self.kw = cin, kh, kw
        self.pixel = layer.dataflow == "pixel"

    def words(self, chans: int) -> int:
        return conv_weight_words(self.cfg, self.pixel, False, chans, self.kh, self.kw)

    def fewest_chunks(self) -> int:
        """Fewest chunks whose weights fit a bank and whose channels fit ``inp.chans``."""
        tn = self.cfg.tn
        if self.words(tn) <= self.cfg.weight_bank_words:  # else not even one block a chunk fits
            for n in range(1, ceil_div(self.cin, tn) + 1):
                chunks = chunk_ranges(self.cin, tn, n)
                if all(c1 - c0 <= MAX_CHANS and self.words(c1 - c0) <= self.cfg.weight_bank_words
                       for c0, c1 in chunks):
                    return len(chunks)
        raise ResourceError(f"layer {self.layer.name!r}: one output block's weights for one input-channel block "
                            f"take {kib(self.words(tn) * self.cfg.tm * tn)}, the weight bank holds "
                            f"{kib(self.cfg.weight_bank_bytes)} (target {self.cfg.name})")

    def deepest_band(self, sc: int, blocks: int) -> int:
        """Most output rows (a multiple of the row alignment) one band of a strip ``sc`` wide
        may have: partial sums, output buffer and both rings must fit; 0 if none."""
        cfg, shape = self.cfg, self.shape
        a, p = shape.align_r, shape.pool or 1
        ub = shape.obuf_blk((0,))  # words a pooled pixel takes, every byte plane

        def fits(br: int) -> bool:
            return (conv_psum_entries(cfg, self.pixel, br, sc) <= cfg.psum_entries
                    and (br // p) * (sc // p) * ub <= cfg.output_half_words
                    and RINGS * shape.geom.window_rows(br) * blocks * shape.geom.span_cols(sc) <= cfg.line_buffer_words)

        best = 0
        br = a
        while br <= max(a, ceil_div(shape.out_h, a) * a) and fits(br):
            best = br
            br += a
        return best

    def estimate(self, t: Tiling) -> dict:
        """Load, compute and store totals of the split steps, overlapped as in
        ``tiling.estimate``; weights load in every step."""
        cfg, shape, g = self.cfg, self.shape, self.shape.geom
        tn, lat, p = cfg.tn, DMA_START + cfg.dram_latency, shape.pool or 1
        in_row, out_row = g.in_w * tn, shape.out_w // p * tn
        in_blk, out_blk = g.in_h * in_row, shape.out_h // p * out_row
        per_unit = {"load": 0, "compute": 0, "store": 0, "instructions": 0}
        wload = sum(dma_linear_cycles(cfg, 0, self.words(c1 - c0) * cfg.tm * tn) for c0, c1 in t.chunks)
        pload = len(t.chunks) * dma_linear_cycles(cfg, 0, cfg.tm * PARAM_BYTES)
        for b in bands(g, shape.out_h, shape.out_w, t.sc, t.br):
            rows, cols = b.r1 - b.r0, b.q1 - b.q0
            for c0, c1 in t.chunks:
                beats = dma_box_beats(cfg, c0 // tn * in_blk + b.ylo * in_row + b.x0 * tn, in_blk, in_row,
                                      ceil_div(c1 - c0, tn), b.yhi - b.ylo + 1, (b.x1 - b.x0) * tn)
                per_unit["load"] += lat + beats
                per_unit["compute"] += conv_cycles(cfg, self.pixel, False, c1 - c0, self.kh, self.kw, rows, cols, g.sw,
                                                   shape.planes)
            per_unit["load"] += wload + pload
            per_unit["store"] += shape.planes * (1 + lat) + dma_box_beats(
                cfg, b.q0 // p * tn, out_blk, out_row, shape.obuf_blk((0,)), rows // p, cols // p * tn)
            per_unit["instructions"] += 4 * len(t.chunks) + shape.planes
        units = len(t.groups)
        load, comp, store, n_instr = (per_unit[k] * units for k in ("load", "compute", "store", "instructions"))
        steps = max(1, units * t.strips * t.bands * len(t.chunks))
        fetch = n_instr * ceil_div(cfg.instr_bytes, cfg.dram_bytes_per_cycle)
        cycles = max(load, comp, store, fetch) + (load + store) // steps
        return {"cycles": cycles, "load": load, "compute": comp, "store": store, "instructions": n_instr}


def split_tiling(layer: Layer, shape: LayerShape, cfg: AcceleratorConfig, cin: int, kh: int, kw: int,
                 strip_widths: list[int]) -> tuple[Tiling, dict]:
    """The cheapest split tiling of a conv layer (see the module docstring), over a few chunk
    counts and every strip width; raises ``ResourceError`` when none fits."""
    conv = _Conv(layer, shape, cfg, cin, kh, kw)
    if layer.depthwise:
        raise ResourceError(f"layer {layer.name!r}: a depthwise conv has no reduction to split")
    fewest = conv.fewest_chunks()
    groups = tuple((u,) for u in range(shape.units))
    candidates = []
    seen = set()
    for n in range(fewest, fewest + EXTRA_CHUNK_COUNTS + 1):
        chunks = chunk_ranges(cin, cfg.tn, n)
        if chunks in seen or len(chunks) < 2:
            continue
        seen.add(chunks)
        blocks = chunk_blocks(chunks, cfg.tn)
        for sc in strip_widths:
            br = conv.deepest_band(sc, blocks)
            if not br:
                continue
            slots = shape.geom.window_rows(br)
            p = shape.pool or 1
            tile = (br // p) * (sc // p) * shape.obuf_blk((0,))
            bufs = 2 * max(1, min(4, cfg.output_half_words // tile))
            t = Tiling(shape.out_h, shape.out_w, sc, br, slots, shape.geom.span_cols(sc), groups, bufs, True, chunks)
            candidates.append((t, conv.estimate(t)))
    if not candidates:
        raise _no_fit(conv, strip_widths[0] if strip_widths else shape.align_c)
    return min(candidates, key=lambda c: (c[1]["cycles"], c[1]["instructions"]))


def _no_fit(conv: _Conv, sc: int) -> ResourceError:
    """Which buffer the smallest split tile (one block a chunk, one band, the narrowest strip)
    overflows, and by how much."""
    cfg, shape, name = conv.cfg, conv.shape, conv.layer.name
    a = shape.align_r
    need = conv_psum_entries(cfg, conv.pixel, a, sc)
    if need > cfg.psum_entries:
        return ResourceError(f"layer {name!r}: one band of the narrowest strip needs {need} partial-sum entries, "
                             f"the buffer holds {cfg.psum_entries} (target {cfg.name})")
    p = shape.pool or 1
    words = (a // p) * (sc // p) * shape.obuf_blk((0,))
    if words > cfg.output_half_words:
        return ResourceError(f"layer {name!r}: one band of the narrowest strip needs {kib(words * cfg.tn)} of output "
                             f"buffer, a half holds {kib(cfg.output_half_words * cfg.tn)} (target {cfg.name})")
    lb = RINGS * shape.geom.window_rows(a) * shape.geom.span_cols(sc) * cfg.tn
    return ResourceError(f"layer {name!r}: two rings of one input-channel block for one band of the narrowest strip "
                         f"({sc} columns) need {kib(lb)} of line buffer, which holds {kib(cfg.line_buffer_bytes)} "
                         f"(target {cfg.name})")
