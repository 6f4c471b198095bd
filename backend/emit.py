"""Instruction generation: every layer's tiles become steps of LOAD / CONV|VEC / STORE.

A *step* is one band of one strip of one group: the LOAD_ACTs bringing the band's new input
rows into the ring(s), then per output block a compute instruction and the STORE of its
tile (interleaved, so a tile is stored while the next computes). The first step of a
weight group also carries the group's two LOAD_WGTs. Each instruction lists the on-chip and
DRAM regions it reads and writes; ``schedule.py`` turns those into dependency tokens.

Ring rows use *virtual row* numbers that keep counting across strips and groups: image row
``y`` of the current strip is virtual row ``vbase + y`` and lives in slot ``v mod slots``;
each strip's first loaded row follows the previous strip's last, which is what the slot
count in ``tiling.py`` is sized for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.cost import ceil_div, conv_weight_words
from ..ir.isa import PARAM_BYTES, Act, Dataflow, Opcode, VecOp, WgtTarget
from . import numerics
from .geometry import bands, layer_shape
from .plan import Layer, Plan
from .sparse import kept_steps
from .tiling import ring_plan
from .weights import uses_pow2

#: post.lo/hi of a wide CONV: ignored by the hardware, the widest the 16-bit fields hold
WIDE_CLAMP = (-(1 << 15), (1 << 15) - 1)
ACTS = {"none": Act.NONE, "relu": Act.RELU, "leaky": Act.LEAKY}
VEC_OPS = {"add": VecOp.ADD, "maxpool": VecOp.MAXPOOL, "avgpool": VecOp.AVGPOOL, "resize": VecOp.RESIZE,
           "requant": VecOp.REQUANT, "copy": VecOp.REQUANT}


@dataclass(eq=False)
class Ins:
    """One instruction before encoding: opcode, body fields (nested dicts as in ir/isa.py),
    token flags, and the regions it touches: ``onchip`` entries ``(space, index, lo, hi, write)``
    with space ``lb``/``wb``/``pb``/``ob``; ``dram`` entries ``(buffer, (b0, b1, y0, y1, x0, x1), write)``."""

    opcode: Opcode
    body: dict | None
    layer: int
    onchip: list = field(default_factory=list)
    dram: list = field(default_factory=list)
    pop_prev: int = 0
    pop_next: int = 0
    push_prev: int = 0
    push_next: int = 0


@dataclass(eq=False)
class Step:
    """One band of one strip of one group: its LOAD_ACTs, its compute/STORE pairs, and the
    group's LOAD_WGTs when it is the group's first step (``bank`` is the group's bank)."""

    layer: int
    loads: list[Ins]
    work: list[Ins]
    wloads: list[Ins] = field(default_factory=list)
    bank: int | None = None


class Emitter:
    """Generates the steps of the layers of one accelerator segment."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.cfg = plan.config
        self.obuf_next = 0

    # -- shared pieces -------------------------------------------------------------------------
    def _obuf(self, layer: Layer, words: int) -> tuple[int, int]:
        per_half = layer.tiling.obuf_bufs // 2
        k = self.obuf_next
        self.obuf_next += 1
        return k % 2, ((k // 2) % per_half) * words

    def _box(self, t, b0: int, nblk: int, y0: int, nrows: int, x0: int, ncols: int) -> dict:
        return {"dram_addr": t.addr + b0 * t.blk_stride + y0 * t.row_stride + x0 * self.cfg.tn,
                "row_stride": t.row_stride, "blk_stride": t.blk_stride, "nblk": nblk, "nrows": nrows, "ncols": ncols}

    def _dram_key(self, t, b0, nblk, y0, nrows, x0, ncols):
        b = t.block_offset + b0
        return (t.buffer, (b, b + nblk, y0, y0 + nrows, x0, x0 + ncols))

    def _slot_ranges(self, base: int, slots: int, slot_words: int, s0: int, n: int) -> list[tuple[int, int]]:
        """Line-buffer word ranges of ``n`` consecutive slots from ``s0`` (modulo the ring)."""
        n = min(n, slots)
        first = min(n, slots - s0)
        out = [(base + s0 * slot_words, base + (s0 + first) * slot_words)]
        if n > first:
            out.append((base, base + (n - first) * slot_words))
        return out

    # -- layers --------------------------------------------------------------------------------
    def layer_steps(self, layer: Layer, li: int) -> list[Step]:
        if layer.tiling.chunks:
            return self._split_steps(layer, li)
        plan = self.plan
        t = layer.tiling
        shape = layer_shape(layer, plan)
        geom = shape.geom
        buf = plan.buffers[layer.name]
        ring_blocks = max(shape.ring_blocks(g) for g in t.groups)
        slot_words = ring_blocks * t.ring_cols
        sources = self._sources(layer)
        p = layer.pool or 1
        tile_words = (t.br // p) * (t.sc // p) * max(shape.obuf_blk(g) for g in t.groups)
        steps: list[Step] = []
        vnext = 0
        for gi, group in enumerate(t.groups):
            wloads, bank = self._weight_loads(layer, li, gi) if layer.is_conv else ([], None)
            for q0 in range(0, t.out_w, t.sc):
                q1 = min(t.out_w, q0 + t.sc)
                x0, x1 = geom.clip_cols(q0, q1)
                loaded = None
                vbase = None
                for r0 in range(0, t.out_h, t.br):
                    r1 = min(t.out_h, r0 + t.br)
                    lo, hi = geom.rows(r0, r1)
                    ylo, yhi = max(lo, 0), min(hi, geom.in_h - 1)
                    new0 = ylo if loaded is None else max(ylo, loaded + 1)
                    if vbase is None:
                        vbase = vnext - new0
                    loads = []
                    if new0 <= yhi and x0 < x1:
                        for ri, (src, b0, nblk) in enumerate(sources(group)):
                            loads.append(self._load_act(li, src, b0, nblk, new0, yhi - new0 + 1, x0, x1 - x0,
                                                        buf["rings"][ri], t.slots, slot_words, t.ring_cols,
                                                        (vbase + new0) % t.slots))
                        loaded = yhi
                        vnext = vbase + yhi + 1
                    reads = self._slot_ranges(0, t.slots, slot_words, (vbase + ylo) % t.slots, yhi - ylo + 1) \
                        if ylo <= yhi else []
                    geo = {"x0": x0, "y_first": lo, "slot_first": (vbase + lo) % t.slots,
                           "x_first": geom.cols(q0, q1)[0], "rows": r1 - r0, "cols": q1 - q0,
                           "r0": r0, "q0": q0, "reads": reads, "tile_words": tile_words}
                    work = (self._conv_work(layer, li, shape, group, bank, geo, buf)
                            if layer.is_conv else self._vec_work(layer, li, shape, group, geo, buf, sources))
                    steps.append(Step(li, loads, work, wloads, bank))
                    wloads = []
        return steps

    def _split_steps(self, layer: Layer, li: int) -> list[Step]:
        """A conv split over input-channel chunks (``backend/reduction.py``): per output block,
        strip and band, one step per chunk — weights and parameters into the next bank, the
        chunk's blocks of the band's rows into the next of two rings, one CONV — and the
        band's STORE after its last chunk."""
        plan, cfg = self.plan, self.cfg
        t = layer.tiling
        shape = layer_shape(layer, plan)
        g = shape.geom
        buf = plan.buffers[layer.name]
        x = plan.tensors[layer.inputs[0]]
        slot_words = ring_plan(layer, plan)[1] // t.slots
        p = layer.pool or 1
        tile_words = (t.br // p) * (t.sc // p) * shape.obuf_blk((0,))
        last = len(t.chunks) - 1
        steps: list[Step] = []
        for (u,) in t.groups:
            for band in bands(g, t.out_h, t.out_w, t.sc, t.br):
                rows = band.yhi - band.ylo + 1
                half, addr = self._obuf(layer, tile_words)
                geo = {"x0": band.x0, "y_first": band.lo, "slot_first": (band.lo - band.ylo) % t.slots,
                       "x_first": g.cols(band.q0, band.q1)[0], "rows": band.r1 - band.r0, "cols": band.q1 - band.q0,
                       "r0": band.r0, "q0": band.q0}
                for ci, (c0, c1) in enumerate(t.chunks):
                    k = len(steps)
                    ring = buf["rings"][k % len(buf["rings"])]
                    wloads, bank = self._weight_loads(layer, li, u * len(t.chunks) + ci, buf["banks"][k])
                    loads = []
                    if rows > 0 and band.x0 < band.x1:
                        loads.append(self._load_act(li, x, c0 // cfg.tn, ceil_div(c1 - c0, cfg.tn), band.ylo, rows,
                                                    band.x0, band.x1 - band.x0, ring, t.slots, slot_words,
                                                    t.ring_cols, 0))
                    conv = self._conv_ins(layer, li, shape, u, bank, geo, ring, slot_words, 0, c1 - c0, half, addr,
                                          psum_in=ci > 0, psum_out=ci < last)
                    if rows > 0:
                        conv.onchip += [("lb", 0, a, b, False) for a, b in self._slot_ranges(ring, t.slots, slot_words,
                                                                                             0, rows)]
                    work = [conv]
                    if ci == last:
                        work += self._stores(li, plan.tensors[layer.output], u * (cfg.tm // cfg.tn),
                                             cfg.tm // cfg.tn, geo, p, half, addr)
                    steps.append(Step(li, loads, work, wloads, bank))
        return steps

    def _sources(self, layer: Layer):
        """For a group: per ring, (input DRAM tensor, first block, blocks to load)."""
        plan, cfg = self.plan, self.cfg
        tensors = plan.tensors
        if layer.is_conv:
            x = tensors[layer.inputs[0]]
            nb = ceil_div(x.shape[1], cfg.tn)
            if not layer.depthwise:
                return lambda group: [(x, 0, nb)]
            ub = cfg.tm // cfg.tn
            return lambda group: [(x, group[0] * ub, min(len(group) * ub, nb - group[0] * ub))]
        if layer.kind == "copy":
            def copy_src(group):
                src, src_block, _ = self._copy_part(layer, group)
                return [(tensors[src], src_block, len(group))]
            return copy_src
        return lambda group: [(tensors[name], group[0], len(group)) for name in layer.inputs]

    def _load_act(self, li, t, b0, nblk, y0, nrows, x0, ncols, base, slots, slot_words, cols, slot0) -> Ins:
        body = {"src": self._box(t, b0, nblk, y0, nrows, x0, ncols),
                "ring": {"base": base, "slots": slots, "slot_words": slot_words, "cols": cols}, "slot0": slot0}
        ins = Ins(Opcode.LOAD_ACT, body, li)
        ins.onchip = [("lb", 0, a, b, True) for a, b in self._slot_ranges(base, slots, slot_words, slot0, nrows)]
        ins.dram = [self._dram_key(t, b0, nblk, y0, nrows, x0, ncols) + (False,)]
        return ins

    def _weight_loads(self, layer: Layer, li: int, gi: int, bank: int | None = None) -> tuple[list[Ins], int]:
        """LOAD_WGTs of weight blob ``gi`` (``buffers["wgt"]``) into ``bank`` (default: group
        ``gi``'s bank)."""
        cfg = self.cfg
        if bank is None:
            bank = self.plan.buffers[layer.name]["banks"][gi]
        w_off, w_len, p_off, p_len = self.plan.buffers[layer.name]["wgt"][gi]
        base = self.plan.dram["const_base"]
        out = []
        for target, off, n, space, unit in ((WgtTarget.WEIGHTS, w_off, w_len, "wb", cfg.tm * cfg.tn),
                                            (WgtTarget.PARAMS, p_off, p_len, "pb", PARAM_BYTES)):
            ins = Ins(Opcode.LOAD_WGT, {"dram_addr": base + off, "nbytes": n, "target": target, "bank": bank,
                                        "sram_addr": 0}, li)
            ins.onchip = [(space, bank, 0, n // unit, True)]
            out.append(ins)
        return out, bank

    def _post(self, op, out_t, pool: int = 0) -> dict:
        act, leaky = numerics.act_fields(op)
        lo, hi = numerics.post_range(op, out_t)
        return {"act": ACTS[act], "leaky_exp": leaky, "lo": lo, "hi": hi, "pool": pool}

    def _stores(self, li, t, b0, nblk, geo, p, half, addr) -> list[Ins]:
        """The STOREs of a CONV's tile: one, or one per byte plane of a wide output (plane
        ``k`` of block ``b`` is DRAM block ``k*blocks + b``, ``plane_words`` apart on chip)."""
        words = (geo["rows"] // p) * (geo["cols"] // p) * nblk
        return [self._store(li, t, k * t.blocks + b0, nblk, geo, p, half, addr + k * words) for k in range(t.planes)]

    def _store(self, li, t, b0, nblk, geo, p, half, addr) -> Ins:
        r0, q0, rows, cols = geo["r0"] // p, geo["q0"] // p, geo["rows"] // p, geo["cols"] // p
        ins = Ins(Opcode.STORE, {"dst": self._box(t, b0, nblk, r0, rows, q0, cols), "obuf_addr": addr, "half": half},
                  li)
        ins.onchip = [("ob", half, addr, addr + rows * cols * nblk, False)]
        ins.dram = [self._dram_key(t, b0, nblk, r0, rows, q0, cols) + (True,)]
        return ins

    def _inp(self, t, base, slots, slot_words, cols, geo, chans) -> dict:
        return {"ring": {"base": base, "slots": slots, "slot_words": slot_words, "cols": cols}, "x0": geo["x0"],
                "width": t.shape[3], "height": t.shape[2], "y_first": geo["y_first"], "slot_first": geo["slot_first"],
                "x_first": geo["x_first"], "chans": chans, "signed_": int(t.signed)}

    def _conv_work(self, layer, li, shape, group, bank, geo, buf) -> list[Ins]:
        cfg, plan = self.cfg, self.plan
        t = layer.tiling
        x = plan.tensors[layer.inputs[0]]
        y = plan.tensors[layer.output]
        cout = plan.graph.types[layer.op.inputs[1]].shape[0]
        ub = cfg.tm // cfg.tn
        slot_words = max(shape.ring_blocks(gr) for gr in t.groups) * t.ring_cols
        p = layer.pool or 1
        ring = buf["rings"][0]
        work = []
        for k, u in enumerate(group):
            half, addr = self._obuf(layer, geo["tile_words"])
            view = k * ub * t.ring_cols if layer.depthwise else 0
            chans = min(cfg.tm, cout - u * cfg.tm) if layer.depthwise else x.shape[1]
            conv = self._conv_ins(layer, li, shape, u, bank, geo, ring + view, slot_words, k, chans, half, addr)
            conv.onchip += [("lb", 0, ring + a, ring + b, False) for a, b in geo["reads"]]
            work += [conv, *self._stores(li, y, u * ub, ub, geo, p, half, addr)]
        return work

    def _conv_ins(self, layer, li, shape, u, bank, geo, ring, slot_words, k, chans, half, addr, *,
                  psum_in=False, psum_out=False) -> Ins:
        """The CONV of output block ``u`` (``k``-th of its weight group) over ``chans`` input
        channels of the ring at ``ring``, into output-buffer ``half`` at ``addr``; the
        partial-sum flags for a split reduction (docs/isa.md "Partial sums")."""
        cfg, plan = self.cfg, self.plan
        t = layer.tiling
        op = layer.op
        g = shape.geom
        cout = plan.graph.types[op.inputs[1]].shape[0]
        ub = cfg.tm // cfg.tn
        p = layer.pool or 1
        planes = 1 if psum_out else plan.tensors[layer.output].planes
        post = self._post(op, plan.graph.types[layer.output], layer.pool)  # ignored by a psum_out CONV
        if planes > 1:  # wide results are not clamped (docs/isa.md "Wide outputs")
            post["lo"], post["hi"] = WIDE_CLAMP
        out_words = (geo["rows"] // p) * (geo["cols"] // p) * ub  # one byte plane of the tile
        words = shape.unit_weight_words if not t.chunks else conv_weight_words(
            cfg, layer.dataflow == "pixel", False, chans, g.kh, g.kw)
        w_addr = k * words
        body = {"dataflow": Dataflow.PIXEL if layer.dataflow == "pixel" else Dataflow.CHANNEL,
                "depthwise": int(layer.depthwise and layer.dataflow == "pixel"), "pow2": int(uses_pow2(layer, cfg)),
                "win": {"kh": g.kh, "kw": g.kw, "sh": g.sh, "sw": g.sw, "dh": g.dh, "dw": g.dw},
                "inp": self._inp(plan.tensors[layer.inputs[0]], ring, t.slots, slot_words, t.ring_cols, geo, chans),
                "tile": {"rows": geo["rows"], "cols": geo["cols"], "obuf_addr": addr,
                         "obuf_cols": geo["cols"] // p, "obuf_blk": ub, "half": half},
                "post": post, "wbank": bank, "w_addr": w_addr, "p_addr": k * cfg.tm,
                "cout": min(cfg.tm, cout - u * cfg.tm), "psum_in": int(psum_in), "psum_out": int(psum_out),
                "wide": planes.bit_length() - 1, "plane_words": out_words if planes > 1 else 0}
        index = kept_steps(plan, layer).get(u) if not t.chunks else None
        if index is not None:  # an SPCONV in the unit's dense slot (backend/sparse.py)
            body["kept"] = len(index)
        conv = Ins(Opcode.CONV if index is None else Opcode.SPCONV, body, li)
        conv.onchip = [("wb", bank, w_addr, w_addr + words, False), ("pb", bank, k * cfg.tm, (k + 1) * cfg.tm, False)]
        if not psum_out:
            conv.onchip.append(("ob", half, addr, addr + out_words * planes, True))
        return conv

    def _vec_work(self, layer, li, shape, group, geo, buf, sources) -> list[Ins]:
        cfg, plan = self.cfg, self.plan
        t = layer.tiling
        op = layer.op
        g = shape.geom
        out_t = plan.graph.types[op.outputs[0]]
        srcs = sources(group)
        nblk = len(group)
        slot_words = max(shape.ring_blocks(gr) for gr in t.groups) * t.ring_cols
        half, addr = self._obuf(layer, geo["tile_words"])
        inps = [self._inp(src, buf["rings"][i], t.slots, slot_words, t.ring_cols, geo,
                          min(nblk * cfg.tn, src.shape[1] - b0 * cfg.tn)) for i, (src, b0, _) in enumerate(srcs)]
        if layer.kind == "copy":
            shifts = {"rshift": numerics.copy_shift(plan.graph.types[srcs[0][0].name], op, out_t)}
        else:
            shifts = numerics.vec_shifts(plan.graph, op, cfg.acc_bits)
        body = {"op": VEC_OPS[layer.kind],
                "win": {"kh": g.kh, "kw": g.kw, "sh": g.sh, "sw": g.sw, "dh": g.dh, "dw": g.dw},
                "inp": inps[0], "inp_b": inps[1] if len(inps) > 1 else _zero_inp(),
                "tile": {"rows": geo["rows"], "cols": geo["cols"], "obuf_addr": addr, "obuf_cols": geo["cols"],
                         "obuf_blk": nblk, "half": half},
                "post": self._post(op, out_t), "shift_a": shifts.get("shift_a", 0), "shift_b": shifts.get("shift_b", 0),
                "rshift": shifts["rshift"]}
        vec = Ins(Opcode.VEC, body, li)
        out_words = geo["rows"] * geo["cols"] * nblk
        vec.onchip = [("lb", 0, base + a, base + b, False) for base in buf["rings"] for a, b in geo["reads"]]
        vec.onchip.append(("ob", half, addr, addr + out_words, True))
        b0 = self._copy_part(layer, group)[2] if layer.kind == "copy" else group[0]
        return [vec, self._store(li, plan.tensors[layer.output], b0, nblk, geo, 1, half, addr)]

    def _copy_part(self, layer: Layer, group) -> tuple[str, int, int]:
        """For a chunk of a concat copy (units numbered across its sources): the source
        tensor, the chunk's first block in it, and its first block in the concat."""
        start = 0
        for src, dst_block in layer.copies:
            n = ceil_div(self.plan.tensors[src].shape[1], self.cfg.tn)
            if group[0] < start + n:
                return src, group[0] - start, dst_block + group[0] - start
            start += n
        raise AssertionError("copy group outside its sources")


def _zero_inp() -> dict:
    return {"ring": {"base": 0, "slots": 0, "slot_words": 0, "cols": 0}, "x0": 0, "width": 0, "height": 0,
            "y_first": 0, "slot_first": 0, "x_first": 0, "chans": 0, "signed_": 0}
