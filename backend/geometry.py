"""What one layer looks like to the tiler: its window geometry, work units and costs.

``layer_shape`` reduces every accelerator layer to the same description: an output region
computed in tiles, the input rows/columns a tile reads (``Geom``), the output *units*
(``tm``-channel blocks for a conv, ``tn``-channel blocks for vector ops), how many input
channel blocks a ring needs for a group of units, and the cycle cost of one compute
instruction from the shared cost model (``ir/cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div, conv_cycles, conv_weight_words, vec_cycles, vec_taps
from .sparse import kept_steps
from .plan import Layer, Plan


def kib(nbytes: int) -> str:
    """A buffer size for messages."""
    return f"{nbytes / 1024:.3g} KiB"


@dataclass(frozen=True)
class Geom:
    """Input window of an output region: rows/cols needed, unclipped (padding is negative or
    past the end). ``resize``: output (r, q) reads input (r // kh, q // kw)."""

    in_h: int
    in_w: int
    kh: int = 1
    kw: int = 1
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pl: int = 0
    resize: bool = False

    def rows(self, r0: int, r1: int) -> tuple[int, int]:
        """First and last input row read by output rows ``r0 .. r1-1``."""
        if self.resize:
            return r0 // self.kh, (r1 - 1) // self.kh
        return r0 * self.sh - self.pt, (r1 - 1) * self.sh - self.pt + (self.kh - 1) * self.dh

    def cols(self, q0: int, q1: int) -> tuple[int, int]:
        if self.resize:
            return q0 // self.kw, (q1 - 1) // self.kw
        return q0 * self.sw - self.pl, (q1 - 1) * self.sw - self.pl + (self.kw - 1) * self.dw

    def window_rows(self, br: int) -> int:
        """Input rows one band of ``br`` output rows spans, padding included: every row it reads
        lies less than this many rows below its first (the slot offsets a CONV/VEC uses)."""
        if self.resize:
            return ceil_div(br, self.kh)
        return (br - 1) * self.sh + (self.kh - 1) * self.dh + 1

    def span_rows(self, br: int) -> int:
        """Most input rows one band of ``br`` output rows reads (never more than the image)."""
        return min(self.window_rows(br), self.in_h)

    def advance_rows(self, br: int) -> int:
        return br // self.kh if self.resize else br * self.sh

    def span_cols(self, sc: int) -> int:
        if self.resize:
            return min(ceil_div(sc, self.kw), self.in_w)
        return min((sc - 1) * self.sw + (self.kw - 1) * self.dw + 1, self.in_w)

    def clip_cols(self, q0: int, q1: int) -> tuple[int, int]:
        """In-image input columns [x0, x1) that output columns q0..q1-1 read."""
        lo, hi = self.cols(q0, q1)
        return max(lo, 0), min(hi, self.in_w - 1) + 1


@dataclass(frozen=True)
class Band:
    """One band of one strip: output rows ``r0..r1-1`` x columns ``q0..q1-1``; the input
    columns ``[x0, x1)`` it reads, its first input row ``lo`` (padding when negative) and the
    in-image input rows ``ylo..yhi`` (none when ``ylo > yhi``)."""

    q0: int
    q1: int
    x0: int
    x1: int
    r0: int
    r1: int
    lo: int
    ylo: int
    yhi: int


def bands(geom: Geom, out_h: int, out_w: int, sc: int, br: int):
    """Every band of a tiling with strips ``sc`` wide and bands ``br`` deep, strip by strip."""
    for q0 in range(0, out_w, sc):
        q1 = min(out_w, q0 + sc)
        x0, x1 = geom.clip_cols(q0, q1)
        for r0 in range(0, out_h, br):
            r1 = min(out_h, r0 + br)
            lo, hi = geom.rows(r0, r1)
            yield Band(q0, q1, x0, x1, r0, r1, lo, max(lo, 0), min(hi, geom.in_h - 1))


@dataclass(frozen=True)
class LayerShape:
    """The tiler's view of a layer (see module docstring)."""

    geom: Geom
    out_h: int
    out_w: int
    pool: int
    align_c: int
    align_r: int
    rings: int
    units: int
    unit_blocks: int  # DRAM blocks (tn channels) per unit
    unit_weight_words: int  # conv: weight words per output block; 0 for vector ops
    dense_in_blocks: int  # conv dense: channel blocks every ring holds; 0: the group's own
    #: cycles of one compute instruction over a rows x cols tile: conv (rows, cols, unit index),
    #: vector ops (rows, cols, channel blocks)
    compute: Callable[[int, int, int], int]
    max_group: int  # most units one instruction group may take (vector: obuf_blk field)
    unit_splits: tuple[int, ...] = ()  # unit indices where groups must break (concat copies)
    planes: int = 1  # conv: byte planes of the output (docs/isa.md "Wide outputs")

    def ring_blocks(self, group: tuple[int, ...]) -> int:
        return self.dense_in_blocks or len(group) * self.unit_blocks

    def obuf_blk(self, group: tuple[int, ...]) -> int:
        """Output-buffer words a pooled output pixel of one instruction takes (every byte
        plane of a wide conv output)."""
        return self.unit_blocks * self.planes if self.unit_weight_words else len(group) * self.unit_blocks


def conv_geom(layer: Layer, plan: Plan) -> Geom:
    op = layer.op
    g = plan.graph
    x, w = g.types[op.inputs[0]].shape, g.types[op.inputs[1]].shape
    (sh, sw), (dh, dw), p = op.attrs["strides"], op.attrs["dilations"], op.attrs["pads"]
    return Geom(x[2], x[3], w[2], w[3], sh, sw, dh, dw, p[0], p[1])


def vec_geom(layer: Layer, plan: Plan) -> Geom:
    op = layer.op
    x = plan.graph.types[layer.inputs[0]].shape
    if layer.kind in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw), (dh, dw), p = (op.attrs["kernel"], op.attrs["strides"], op.attrs["dilations"],
                                           op.attrs["pads"])
        return Geom(x[2], x[3], kh, kw, sh, sw, dh, dw, p[0], p[1])
    if layer.kind == "resize":
        fh, fw = op.attrs["scales"]
        return Geom(x[2], x[3], fh, fw, resize=True)
    return Geom(x[2], x[3])


def layer_shape(layer: Layer, plan: Plan) -> LayerShape:
    cfg = plan.config
    if layer.is_conv:
        return _conv_shape(layer, plan, cfg)
    geom = vec_geom(layer, plan)
    out = plan.graph.types[layer.output if layer.kind != "copy" else layer.op.outputs[0]].shape
    taps = vec_taps(cfg, layer.kind in ("maxpool", "avgpool"), layer.kind == "add", geom.kh, geom.kw)
    if layer.kind == "copy":
        units, splits = 0, []
        for src, _ in layer.copies:
            units += ceil_div(plan.graph.types[src].shape[1], cfg.tn)
            splits.append(units)
        splits = tuple(splits[:-1])
    else:
        units, splits = ceil_div(out[1], cfg.tn), ()
    align = geom.kh if geom.resize else 1
    align_c = geom.kw if geom.resize else 1
    return LayerShape(geom, out[2], out[3], 0, align_c, align, 2 if layer.kind == "add" else 1, units, 1, 0, 0,
                      lambda rows, cols, nblk: vec_cycles(cfg, taps, nblk, rows, cols), 15, splits)


def _conv_shape(layer: Layer, plan: Plan, cfg: AcceleratorConfig) -> LayerShape:
    g = plan.graph
    op = layer.op
    geom = conv_geom(layer, plan)
    x, w = g.types[op.inputs[0]].shape, g.types[op.inputs[1]].shape
    ho, wo = g.types[op.outputs[0]].shape[2:]
    p = layer.pool or 1
    ho, wo = ho // p * p, wo // p * p
    cin, cout, kh, kw = x[1], w[0], w[2], w[3]
    units = ceil_div(cout, cfg.tm)
    pixel = layer.dataflow == "pixel"
    dw = layer.depthwise
    # channel-parallel runs a depthwise block as a dense CONV over its own tm channels
    words = conv_weight_words(cfg, pixel, dw and pixel, cfg.tm if dw and not pixel else cin, kh, kw)
    align_c = cfg.tn * p // _gcd(cfg.tn, p) if pixel else p
    planes = output_planes(layer, plan)
    kept = {u: len(index) for u, index in kept_steps(plan, layer).items()}  # SPCONV units (backend/sparse.py)

    def compute(rows: int, cols: int, unit: int) -> int:
        chans = min(cfg.tm, cout - unit * cfg.tm) if dw else cin
        return conv_cycles(cfg, pixel, dw and pixel, chans, kh, kw, rows, cols, geom.sw, planes, kept.get(unit))

    return LayerShape(geom, ho, wo, p, align_c, p, 1, units, cfg.tm // cfg.tn, words,
                      0 if dw else ceil_div(cin, cfg.tn), compute, units, planes=planes)


def output_planes(layer: Layer, plan: Plan) -> int:
    """Byte planes of a conv layer's output in DRAM and in the output buffer (1 for 8 bits)."""
    t = plan.tensors.get(layer.output)
    return t.planes if t is not None else 1


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
