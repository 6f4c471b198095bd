"""A compute instruction (CONV, VEC, NOP) decoded into the compute unit's working form.

:func:`decode_job` turns the ``ir.isa.INSTR`` view of an instruction into a :data:`Job`
(``job_layout(cfg)``): loop counts, address steps and bounds with every product the
sequencer needs precomputed, so that the sequencer only adds. The products themselves come
from :func:`job_products`, computed from the instruction stream's payload in the cycle of its
accept and registered (no cycle: the decoder runs in the cycle after the accept anyway), so that
no multiplier lies between the decoder's input register and the job register (the whole tiny
design's critical path on the ECP5 was ``ins`` -> ``chans * kh * kw`` -> ``lead``). All offsets the sequencer keeps
start at zero; the job's constants fold in where the tile starts (ring row of its first
output row, first image column, weight row, ...).

Loop nest (outer to inner; docs/isa.md): output rows ``r`` (``n_r``; each row repeated
``rep_r`` times for RESIZE), columns or pixel groups ``q`` (``n_q``, ``rep_q``), output
channel blocks ``bo`` (VEC), input blocks or channels ``bi`` (CONV), kernel rows ``y``,
kernel columns ``x``. A CONV group is ``(r, q)``: its ``steps = n_bi*n_y*n_x`` beats
accumulate into one set of sums; a VEC group is ``(r, q, bo)`` with ``n_y*n_x`` taps.
Each group occupies ``max(steps, drain)`` cycles. Counts of zero (only
in hostile programs) run once: a zero reduction count masks every activation (``empty``),
a zero output count writes nothing (``nowrite``), nor does a CONV whose sums go to the
partial-sum buffer (``psum_out``, see :mod:`hw.retire`).
"""

from __future__ import annotations

from amaranth import Array, Cat, Mux, Signal, signed, unsigned
from amaranth.lib import data

from ..ir.config import AcceleratorConfig
from ..ir.cost import COMPUTE_START, SPCONV_START, conv_drain, conv_slots
from ..ir.isa import INSTR, Conv, Dataflow, InGeom, Opcode, Post, SpConv, Tile, Vec, VecOp, Window, field_max, field_shape
from .buffers import OBUF_ADDR_BITS

#: Bits of the row/column offsets and their bounds (rows*sh + kh*dh and cols*sw + kw*dw at
#: the fields' largest values).
OFF_BITS = max(field_max(Tile, "rows") * field_max(Window, "sh") + field_max(Window, "kh") * field_max(Window, "dh"),
               field_max(Tile, "cols") * field_max(Window, "sw") + field_max(Window, "kw") * field_max(Window, "dw"),
               ).bit_length()
#: Bits of a weight row offset (``w_addr`` onward).
STEP_BITS = Conv["w_addr"].width


class Kind:
    NOP, CONV, VEC = 0, 1, 2


def operand_layout(addr_bits: int) -> data.StructLayout:
    """One input geometry (``inp`` or ``inp_b``) in working form. Word address of a tap at row
    offset ``ro`` and column offset ``co`` in block offset ``bo``:
    ``k + ra(ro) - (ro >= wrap_at ? ss : 0) + bo + co`` (mod the line buffer), where
    ``ra(ro) = ro * slot_words`` is kept incrementally with ``dra_y``/``dra_r``."""
    a = unsigned(addr_bits)
    bound = signed(OFF_BITS + 1)
    slots = field_shape(InGeom, "ring.slots")
    return data.StructLayout({
        "k": a, "dra_y": a, "dra_r": a, "ss": a, "cols": a,
        "wrap_at": signed(max(slots.width, InGeom["slot_first"].width) + 1),  # slots - slot_first
        "row_lo": bound, "row_hi": bound, "col_lo": bound, "col_hi": bound,
        "signed_": unsigned(1),
    })


def job_layout(cfg: AcceleratorConfig, addr_bits: int, wrow_bits: int) -> data.StructLayout:
    lane = unsigned(max(1, (cfg.tn - 1).bit_length()))
    win, tile, chans, pool = Window.members, Tile.members, InGeom["chans"].shape, Post["pool"].shape
    return data.StructLayout({
        "kind": unsigned(2), "pixel": unsigned(1), "depthwise": unsigned(1), "pow2": Conv["pow2"].shape,
        "sparse": unsigned(1), "kept": SpConv["kept"].shape,  # SPCONV: its steps are the index list's
        "op": Vec["op"].shape,
        # Loop counts: rows, columns (or pixel groups), channel blocks, channels, kernel taps.
        "n_r": tile["rows"], "n_q": tile["cols"], "n_bo": chans, "n_bi": chans,
        "n_y": win["kh"], "n_x": win["kw"], "rep_r": win["kh"], "rep_q": win["kw"],
        "empty": unsigned(1), "nowrite": unsigned(1),
        "psum_in": Conv["psum_in"].shape, "psum_out": Conv["psum_out"].shape,
        "dh": win["dh"], "sh": win["sh"], "dcol": win["dw"], "csw": unsigned(win["sw"].width + lane.width),
        "lsw": win["sw"],
        "a": operand_layout(addr_bits), "b": operand_layout(addr_bits),
        "w_row": unsigned(wrow_bits), "wl_wrap": lane,
        "chans": chans, "post": Post, "rshift": Vec["rshift"].shape, "shift_a": Vec["shift_a"].shape,
        "shift_b": Vec["shift_b"].shape,
        "obuf_addr": tile["obuf_addr"], "d_prow": unsigned(OBUF_ADDR_BITS), "blk": tile["obuf_blk"],
        "half": tile["half"], "pool": pool, "qstep": unsigned(cfg.tn.bit_length()), "qstep_mod": pool,
        "qstep_div": unsigned(cfg.tn.bit_length()), "npc_mod": pool,
        "npc_div": unsigned(max(1, (cfg.ppu_lanes // cfg.tm).bit_length())), "cols": tile["cols"],
        "drain": unsigned(conv_drain(cfg).bit_length()),
        # Wide outputs (docs/isa.md): byte planes - 1 (0, 1 or 3), their spacing in the output
        # buffer, and the slots a group's results take to retire (``ir.cost.conv_slots``).
        "planes_m1": unsigned(2), "plane_words": Conv["plane_words"].shape,
        "slots": unsigned(conv_slots(cfg, True, 4).bit_length()),
        # Cycles from the start to the first group's drain in the cycle model
        # (``ir.timeline.chain_window``'s lead; a chaining unit holds its start by it).
        "lead": unsigned(LEAD_BITS),
        # ``cfg.seq_lane_bounds``: operand a's column bounds less each lane's column offset
        # (``lane * lsw``), so the sequencer compares its column with them directly.
        **({"lane_col": data.ArrayLayout(data.StructLayout({"lo": LANE_BOUND, "hi": LANE_BOUND}), cfg.tn)}
           if cfg.seq_lane_bounds else {}),
    })


#: A lane's column bound: a column bound (``signed(OFF_BITS + 1)``) less at most
#: ``(tn - 1) * 3`` (a 2-bit stride), far less than ``2**OFF_BITS``.
LANE_BOUND = signed(OFF_BITS + 2)


def lane_offset(lane: int, lsw):
    """``lane * lsw`` for the 2-bit ``lsw``, by a table of constants (a product here became
    a multiplier block on ECP5)."""
    return Array(lane * s for s in range(1 << len(lsw)))[lsw]


#: Bits of ``lead``: start cycles and a group's steps at the fields' largest values (a dense
#: product of channels and taps, or an SPCONV's list, doubled twice).
LEAD_BITS = (COMPUTE_START + SPCONV_START + 4 * max(field_max(InGeom, "chans") * field_max(Window, "kh")
                                                    * field_max(Window, "kw"), field_max(SpConv, "kept"))).bit_length()


def _at_least_one(v):
    return Mux(v == 0, 1, v)


def _by_pool(n: int, window):
    """``(n % p, n // p)`` for the constant ``n`` and ``p = max(1, window)``, as two tables
    indexed by the 3-bit ``window`` (a divider here was zu3eg's deepest path: 14 LUT levels)."""
    ps = [max(1, w) for w in range(1 << Post["pool"].shape.width)]
    return Array(n % p for p in ps)[window], Array(n // p for p in ps)[window]


def _operand(geom, prod: dict) -> dict:
    ring = geom.ring
    return {
        "k": ring.base + prod["first"] + geom.x_first - geom.x0,
        "dra_y": prod["dra_y"], "dra_r": prod["dra_r"], "ss": prod["ss"],
        "cols": ring.cols, "wrap_at": ring.slots - geom.slot_first,
        "row_lo": -geom.y_first, "row_hi": geom.height - geom.y_first,
        "col_lo": -geom.x_first, "col_hi": geom.width - geom.x_first,
        "signed_": geom.signed_,
    }


def _assign(m, view, values: dict) -> None:
    for name, value in values.items():
        if isinstance(value, dict):
            _assign(m, getattr(view, name), value)
        else:
            m.d.comb += getattr(view, name).eq(value)


def shift_add(factor, x):
    """``factor * x`` as a sum of ``x`` shifted by each set bit of ``factor`` (a narrow
    field): adders in the fabric, not a multiplier block."""
    terms = [Mux(factor[i], x << i, 0) for i in range(len(factor))]
    while len(terms) > 1:  # a balanced tree: two adders deep for four bits, not three
        terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) & ~1:]
    return terms[0]


def _taps(win):
    """``kh * kw`` (two 4-bit fields) as shifted adds in the fabric, not a multiplier block
    (timing: with ``decode_shift_add`` the taps fed the channel products' multiplier from
    another one, two ECP5 multiplier blocks in series, 16.4 ns on b448768's fourth seed; as
    a table of constants abc made seven LUT levels of it, 15.9 ns on 568dfeb)."""
    return shift_add(win.kw, win.kh)[:len(win.kh) + len(win.kw)]


def _ring_products(prefix: str, geom, dh, sh, small_luts: bool) -> dict:
    ring = geom.ring
    times = shift_add if small_luts else (lambda f, x: f * x)
    return {f"{prefix}_first": geom.slot_first * ring.slot_words, f"{prefix}_dra_y": times(dh, ring.slot_words),
            f"{prefix}_dra_r": times(sh, ring.slot_words), f"{prefix}_ss": ring.slots * ring.slot_words}


#: The products :func:`decode_job` picks by the opcode (a CONV's or a VEC's, ``conv_*`` / ``vec_*``).
PICKED = ("taps", "blk_taps", "d_prow", "a_first", "a_dra_y", "a_dra_r", "a_ss")


def job_products(cfg: AcceleratorConfig, instr) -> dict:
    """Every product :func:`decode_job` needs, as values of ``instr`` (an ``INSTR`` view), by
    name; the caller registers them. Each body's are formed from its own fields (``conv_*``,
    ``vec_*``; operand b's, ``b_*``, a VEC's alone), so that no opcode decode sits in front of
    a multiplier: :func:`decode_job` picks after the register."""
    c, v = instr.body.conv, instr.body.vec
    lg_tn = (cfg.tn - 1).bit_length()
    small = cfg.decode_shift_add  # the row steps' factors, dh and sh: 3 and 2 bits
    out = {}
    for body, name in ((c, "conv"), (v, "vec")):
        taps = _taps(body.win) if small else body.win.kh * body.win.kw
        out.update({f"{name}_taps": taps, f"{name}_blk_taps": ((body.inp.chans + cfg.tn - 1) >> lg_tn) * taps})
    vec_sh = Mux(v.op == VecOp.RESIZE, 1, v.win.sh)
    out.update({"conv_chans_taps": c.inp.chans * out["conv_taps"], "conv_d_prow": c.tile.obuf_cols * (cfg.tm // cfg.tn),
                "vec_d_prow": v.tile.obuf_cols * v.tile.obuf_blk,
                **_ring_products("conv_a", c.inp, c.win.dh, c.win.sh, small),
                **_ring_products("vec_a", v.inp, v.win.dh, vec_sh, small), **_ring_products("b", v.inp_b, v.win.dh, vec_sh, small)})
    return out


def products_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """The shapes of :func:`job_products`' values, by name: what the compute queue carries
    beside a word with ``cfg.queue_products``."""
    return data.StructLayout({name: v.shape() for name, v in job_products(cfg, Signal(INSTR)).items()})


def packed_products(cfg: AcceleratorConfig, instr):
    """:func:`job_products` of ``instr`` as one value laid out as :func:`products_layout`."""
    prods = job_products(cfg, instr)
    return Cat(*(prods[name] for name, _ in products_layout(cfg)))


def decode_job(m, cfg: AcceleratorConfig, instr, job, products: dict) -> None:
    """Drive ``job`` (a ``job_layout`` view) combinationally from ``instr`` (an ``INSTR``
    view) in module ``m``, with ``products`` :func:`job_products` of the same instruction
    (registered beside ``instr``)."""
    tm, tn, lanes = cfg.tm, cfg.tn, cfg.ppu_lanes
    lg_tn = (tn - 1).bit_length()
    op = instr.header.opcode
    c, v = instr.body.conv, instr.body.vec
    sparse = op == Opcode.SPCONV  # a CONV's fields at the same offsets, then ``kept``
    is_conv = (op == Opcode.CONV) | sparse

    def pick(conv_value, vec_value):
        return Mux(is_conv, conv_value, vec_value)

    # The CONV and VEC bodies place these at different offsets of the union.
    win, inp, tile, post = (layout(pick(getattr(c, name).as_value(), getattr(v, name).as_value()))
                            for name, layout in (("win", Window), ("inp", InGeom), ("tile", Tile), ("post", Post)))
    pixel = is_conv & (c.dataflow == Dataflow.PIXEL)
    depthwise = pixel & c.depthwise
    prod = {**{name: pick(products[f"conv_{name}"], products[f"vec_{name}"]) for name in PICKED},
            "dense": Mux(depthwise, products["conv_taps"], products["conv_chans_taps"]),
            **{name: p for name, p in products.items() if name.startswith("b_")}}
    nblk = (inp.chans + tn - 1) >> lg_tn
    resize = ~is_conv & (v.op == VecOp.RESIZE)
    pooling = ~is_conv & ((v.op == VecOp.MAXPOOL) | (v.op == VecOp.AVGPOOL))
    taps_used = is_conv | pooling  # ADD/REQUANT/RESIZE read one tap

    n_q = Mux(pixel, (tile.cols + tn - 1) >> lg_tn, tile.cols)
    n_bo = Mux(is_conv, 1, nblk)
    n_bi = Mux(is_conv, Mux(pixel, Mux(depthwise, 1, inp.chans), nblk), 1)
    n_y, n_x = Mux(taps_used, win.kh, 1), Mux(taps_used, win.kw, 1)
    sh = Mux(resize, 1, win.sh)
    sw = Mux(resize, 1, win.sw)
    n_bi1, n_y1, n_x1 = _at_least_one(n_bi), _at_least_one(n_y), _at_least_one(n_x)
    drain = Mux(is_conv, conv_drain(cfg), 1)
    wide = Mux(is_conv, c.wide, 0)
    planes_m1 = Mux(wide == 0, 0, Mux(wide == 1, 1, 3))
    slots = Mux(is_conv, Mux(pixel, conv_drain(cfg) << wide, conv_drain(cfg) + planes_m1), 1)
    pool = _at_least_one(post.pool)
    (tn_mod, tn_div), (one_mod, one_div) = _by_pool(tn, post.pool), _by_pool(1, post.pool)
    npc_mod, npc_div = _by_pool(lanes // tm, post.pool)
    blk = Mux(is_conv, tm // tn, tile.obuf_blk)
    # ``lead`` exactly as ir.cost.conv_inner_steps / vec_taps compute it from the fields (raw
    # counts, no ``_at_least_one``): the cycle model's rule, not the beats the sequencer runs.
    taps = prod["taps"]
    px_steps = Mux(sparse, instr.body.spconv.kept, prod["dense"])
    px_steps = Mux(win.sw >= 2, px_steps << 1, px_steps)
    if cfg.lb_copies == 1:
        px_steps = Mux(depthwise & (inp.chans > tn), px_steps << 1, px_steps)
    steps = Mux(pixel, px_steps, prod["blk_taps"])
    vec_taps = Mux(pooling, taps, Mux(v.op == VecOp.ADD, 2, 1) if cfg.lb_copies == 1 else 1)
    lead = Mux(is_conv, COMPUTE_START + Mux(sparse, SPCONV_START, 0) + steps, COMPUTE_START + _at_least_one(vec_taps))
    _assign(m, job, {
        "kind": Mux(is_conv, Kind.CONV, Mux(op == Opcode.VEC, Kind.VEC, Kind.NOP)),
        "pixel": pixel, "depthwise": depthwise, "pow2": is_conv & c.pow2, "op": v.op,
        "sparse": sparse, "kept": instr.body.spconv.kept,
        "n_r": _at_least_one(tile.rows), "n_q": _at_least_one(n_q), "n_bo": _at_least_one(n_bo), "n_bi": n_bi1,
        "n_y": n_y1, "n_x": n_x1,
        "rep_r": Mux(resize, _at_least_one(win.kh), 1), "rep_q": Mux(resize, _at_least_one(win.kw), 1),
        "empty": (n_bi == 0) | (n_y == 0) | (n_x == 0),
        "nowrite": (tile.rows == 0) | (n_q == 0) | (n_bo == 0) | (is_conv & c.psum_out),
        "psum_in": is_conv & c.psum_in, "psum_out": is_conv & c.psum_out,
        "dh": win.dh, "sh": sh, "dcol": win.dw, "csw": Mux(pixel, sw << lg_tn, sw), "lsw": Mux(pixel, sw, 0),
        "a": _operand(inp, {k[2:]: p for k, p in prod.items() if k.startswith("a_")}),
        "b": _operand(v.inp_b, {k[2:]: p for k, p in prod.items() if k.startswith("b_")}),
        "w_row": Mux(c.wbank, cfg.weight_bank_words, 0) + c.w_addr,
        "wl_wrap": Mux(pixel, tn - 1, 0),
        "chans": inp.chans, "post": post, "rshift": v.rshift, "shift_a": v.shift_a, "shift_b": v.shift_b,
        "obuf_addr": tile.obuf_addr, "d_prow": prod["d_prow"], "blk": blk, "half": tile.half,
        "pool": pool, "qstep": Mux(pixel, tn, 1), "qstep_mod": Mux(pixel, tn_mod, one_mod),
        "qstep_div": Mux(pixel, tn_div, one_div), "npc_mod": npc_mod, "npc_div": npc_div, "cols": tile.cols,
        "drain": drain,
        "planes_m1": planes_m1, "plane_words": c.plane_words, "slots": slots, "lead": lead,
    })
    if cfg.seq_lane_bounds:  # from the bounds and stride as the job holds them
        for lane in range(tn):
            off = lane_offset(lane, job.lsw)
            m.d.comb += [job.lane_col[lane].lo.eq(job.a.col_lo - off), job.lane_col[lane].hi.eq(job.a.col_hi - off)]
