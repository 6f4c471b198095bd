"""A compute instruction (CONV, VEC, NOP) decoded into the compute unit's working form.

:func:`decode_job` turns the ``ir.isa.INSTR`` view of an instruction into a :data:`Job`
(``job_layout(cfg)``): loop counts, address steps and bounds with every product the
sequencer needs precomputed (one multiplier each, used once per instruction in the cycle the
instruction is accepted), so that the sequencer only adds. All offsets the sequencer keeps
start at zero; the job's constants fold in where the tile starts (ring row of its first
output row, first image column, weight row, ...).

Loop nest (outer to inner; docs/isa.md): output rows ``r`` (``n_r``; each row repeated
``rep_r`` times for RESIZE), columns or pixel groups ``q`` (``n_q``, ``rep_q``), output
channel blocks ``bo`` (VEC), input blocks or channels ``bi`` (CONV), kernel rows ``y``,
kernel columns ``x``. A CONV group is ``(r, q)``: its ``steps = n_bi*n_y*n_x`` beats
accumulate into one set of sums; a VEC group is ``(r, q, bo)`` with ``n_y*n_x`` taps.
Each group occupies ``max(steps, drain)`` cycles. Counts of zero (only
in hostile programs) run once: a zero reduction count masks every activation (``empty``),
a zero output count writes nothing (``nowrite``).
"""

from __future__ import annotations

from amaranth import Mux, signed, unsigned
from amaranth.lib import data

from ..ir.config import AcceleratorConfig
from ..ir.cost import conv_drain
from ..ir.isa import Dataflow, InGeom, Opcode, Post, Tile, VecOp, Window
from .buffers import OBUF_ADDR_BITS

#: Bits of the row/column offsets and their bounds (rows*sh + kh*dh and cols*sw + kw*dw).
OFF_BITS = 20
STEP_BITS = 20


class Kind:
    NOP, CONV, VEC = 0, 1, 2


def operand_layout(addr_bits: int) -> data.StructLayout:
    """One input geometry (``inp`` or ``inp_b``) in working form. Word address of a tap at row
    offset ``ro`` and column offset ``co`` in block offset ``bo``:
    ``k + ra(ro) - (ro >= wrap_at ? ss : 0) + bo + co`` (mod the line buffer), where
    ``ra(ro) = ro * slot_words`` is kept incrementally with ``dra_y``/``dra_r``."""
    a = unsigned(addr_bits)
    bound = signed(OFF_BITS + 1)
    return data.StructLayout({
        "k": a, "dra_y": a, "dra_r": a, "ss": a, "cols": a,
        "wrap_at": signed(14),
        "row_lo": bound, "row_hi": bound, "col_lo": bound, "col_hi": bound,
        "signed_": unsigned(1),
    })


def job_layout(cfg: AcceleratorConfig, addr_bits: int, wrow_bits: int) -> data.StructLayout:
    lane = unsigned(max(1, (cfg.tn - 1).bit_length()))
    return data.StructLayout({
        "kind": unsigned(2), "pixel": unsigned(1), "depthwise": unsigned(1), "pow2": unsigned(1), "op": VecOp,
        "n_r": unsigned(12), "n_q": unsigned(16), "n_bo": unsigned(12), "n_bi": unsigned(12),
        "n_y": unsigned(4), "n_x": unsigned(4), "rep_r": unsigned(4), "rep_q": unsigned(4),
        "empty": unsigned(1), "nowrite": unsigned(1),
        "dh": unsigned(3), "sh": unsigned(2), "dcol": unsigned(3), "csw": unsigned(12), "lsw": unsigned(2),
        "a": operand_layout(addr_bits), "b": operand_layout(addr_bits),
        "w_row": unsigned(wrow_bits), "wl_wrap": lane,
        "chans": unsigned(12), "post": Post, "rshift": signed(8), "shift_a": unsigned(5), "shift_b": unsigned(5),
        "obuf_addr": unsigned(OBUF_ADDR_BITS), "d_prow": unsigned(OBUF_ADDR_BITS), "blk": unsigned(4),
        "half": unsigned(1), "pool": unsigned(3), "qstep": unsigned(12), "qstep_mod": unsigned(3),
        "qstep_div": unsigned(12), "npc_mod": unsigned(3), "npc_div": unsigned(12), "cols": unsigned(16),
        "drain": unsigned(12),
    })


def _at_least_one(v):
    return Mux(v == 0, 1, v)


def _operand(geom, sh, dh) -> dict:
    ring = geom.ring
    return {
        "k": ring.base + geom.slot_first * ring.slot_words + geom.x_first - geom.x0,
        "dra_y": dh * ring.slot_words, "dra_r": sh * ring.slot_words, "ss": ring.slots * ring.slot_words,
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


def decode_job(m, cfg: AcceleratorConfig, instr, job) -> None:
    """Drive ``job`` (a ``job_layout`` view) combinationally from ``instr`` (an ``INSTR``
    view) in module ``m``."""
    tm, tn, lanes = cfg.tm, cfg.tn, cfg.ppu_lanes
    lg_tn = (tn - 1).bit_length()
    op = instr.header.opcode
    c, v = instr.body.conv, instr.body.vec
    is_conv = op == Opcode.CONV

    def pick(conv_value, vec_value):
        return Mux(is_conv, conv_value, vec_value)

    # The CONV and VEC bodies place these at different offsets of the union.
    win, inp, tile, post = (layout(pick(getattr(c, name).as_value(), getattr(v, name).as_value()))
                            for name, layout in (("win", Window), ("inp", InGeom), ("tile", Tile), ("post", Post)))
    pixel = is_conv & (c.dataflow == Dataflow.PIXEL)
    depthwise = pixel & c.depthwise
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
    pool = _at_least_one(post.pool)
    qstep = Mux(pixel, tn, 1)
    npc = lanes // tm
    blk = Mux(is_conv, tm // tn, tile.obuf_blk)
    _assign(m, job, {
        "kind": Mux(is_conv, Kind.CONV, Mux(op == Opcode.VEC, Kind.VEC, Kind.NOP)),
        "pixel": pixel, "depthwise": depthwise, "pow2": is_conv & c.pow2, "op": v.op,
        "n_r": _at_least_one(tile.rows), "n_q": _at_least_one(n_q), "n_bo": _at_least_one(n_bo), "n_bi": n_bi1,
        "n_y": n_y1, "n_x": n_x1,
        "rep_r": Mux(resize, _at_least_one(win.kh), 1), "rep_q": Mux(resize, _at_least_one(win.kw), 1),
        "empty": (n_bi == 0) | (n_y == 0) | (n_x == 0),
        "nowrite": (tile.rows == 0) | (n_q == 0) | (n_bo == 0),
        "dh": win.dh, "sh": sh, "dcol": win.dw, "csw": Mux(pixel, sw << lg_tn, sw), "lsw": Mux(pixel, sw, 0),
        "a": _operand(inp, sh, win.dh), "b": _operand(v.inp_b, sh, win.dh),
        "w_row": Mux(c.wbank, cfg.weight_bank_words, 0) + c.w_addr,
        "wl_wrap": Mux(pixel, tn - 1, 0),
        "chans": inp.chans, "post": post, "rshift": v.rshift, "shift_a": v.shift_a, "shift_b": v.shift_b,
        "obuf_addr": tile.obuf_addr, "d_prow": tile.obuf_cols * blk, "blk": blk, "half": tile.half,
        "pool": pool, "qstep": qstep, "qstep_mod": qstep % pool, "qstep_div": qstep // pool,
        "npc_mod": npc % pool, "npc_div": npc // pool, "cols": tile.cols, "drain": drain,
    })
