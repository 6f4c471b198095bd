"""The compute sequencer: walks a job's loop nest (``hw/job.py``), one slot per cycle.

Each cycle it presents a :func:`desc_layout` descriptor: whether the slot carries a beat
(the PE array or the vector ALU takes one), the beat's line-buffer word addresses (per
line-buffer copy), weight row and lane, which lanes read real data (the others read zero:
padding by position, lanes past ``chans``), and, with a group's last beat, the group's
output position (:data:`Meta`) for the retire stage.

A group of ``steps`` beats occupies ``max(steps, slots)`` slots (``slots``: the retire
stage's cycles a group, ``ir.cost.conv_slots``; the drain, longer for wide outputs): after
its last beat the sequencer pads until the group has had ``slots`` slots, so that groups
reach the retire stage at least ``slots`` cycles apart (the accumulators are
double-buffered: the next group accumulates while this one drains). No product of loop
counts is needed: the group ends when its inner loops are done and its slot counter has
reached ``slots - 1``. ``start`` (the
cycle the instruction is accepted) resets everything
to zero; the first slot is the next cycle.

Everything is kept incrementally — row and column offsets, ring row addresses, block
offsets, weight rows, pooled output positions — so no multiplier sits in the per-cycle path.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.isa import InGeom, Post, Tile, VecOp, Window
from .buffers import OBUF_ADDR_BITS
from .arith import csa_sum
from .job import OFF_BITS, STEP_BITS, Kind, lane_offset
from .spconv_walk import Step

#: Output position of a group, for pooling and output-buffer addresses.
Meta = data.StructLayout({
    "final": unsigned(1),  # the instruction's last group
    "rfirst": unsigned(1), "rlast": unsigned(1),  # first / last row of a pooling window
    "prow": unsigned(OBUF_ADDR_BITS),  # (r // p) * obuf_cols * blk
    "q0": Tile["cols"].shape,  # first output column of the group
    "qd": Tile["cols"].shape, "qm": Post["pool"].shape,  # q0 // p, q0 % p
    "pcol": unsigned(OBUF_ADDR_BITS),  # VEC: (q0 // p) * blk
    "kb": InGeom["chans"].shape,  # VEC: output channel block
})


def desc_layout(tn: int, copies: int, addr_bits: int, wrow_bits: int) -> data.StructLayout:
    lane = unsigned(max(1, (tn - 1).bit_length()))
    # One line-buffer copy: ``blk`` is the depthwise channel block this slot reads.
    return data.StructLayout({**({"blk": unsigned(1)} if copies == 1 else {}),
        "valid": unsigned(1), "first": unsigned(1), "last": unsigned(1),
        "addr": data.ArrayLayout(unsigned(addr_bits), copies), "stride": Window["sw"].shape,
        "w_row": unsigned(wrow_bits), "wl": lane, "cl": lane,
        "lane_ok": unsigned(tn),  # operand a: lanes (pixels or channels) that read real data
        "tap_ok": unsigned(1),  # operand a's tap (lane 0's pixel) is inside the image
        "b_ok": unsigned(tn),  # operand b (VEC ADD)
        "meta": Meta,
    })


#: The loop-end flags the sequencer keeps in registers (``x`` is ``x == n_x - 1``, ...; ``gs``:
#: the group has had its ``slots - 1`` slots), and their values with every counter at zero.
LOOP_FLAGS = ("x", "y", "bi", "bo", "q", "r", "qsub", "rsub", "rpm", "gs")
Ones = data.StructLayout({name: unsigned(1) for name in LOOP_FLAGS})


def loop_ones(job) -> dict:
    """Each loop-end flag of ``job`` (a ``job_layout`` view) with its counter at zero: the
    count is one (``gs``: at most one slot a group)."""
    return {"x": job.n_x == 1, "y": job.n_y == 1, "bi": job.n_bi == 1, "bo": job.n_bo == 1, "q": job.n_q == 1,
            "r": job.n_r == 1, "qsub": job.rep_q == 1, "rsub": job.rep_r == 1, "rpm": job.pool == 1,
            "gs": job.slots <= 1}


class Sequencer(wiring.Component):
    """Ports: ``start``, ``job`` (registered; valid from the cycle after ``start``), ``ones``
    (:func:`loop_ones` of the job being started, valid with ``start``), ``desc``
    (the current slot's descriptor, combinational from the state registers; with ``staged``,
    the descriptor of the slot before, from a register that cuts the line-buffer address sums
    in two: the state's terms summed in front of it, the copy and wrap offsets after)."""

    def __init__(self, tn: int, copies: int, addr_bits: int, wrow_bits: int, job_shape, staged: bool = False,
                 idle_hold: bool = True):
        self.tn, self.copies, self.addr_bits, self.staged, self.idle_hold = tn, copies, addr_bits, staged, idle_hold
        super().__init__({"start": In(1), "job": In(job_shape), "ones": In(Ones),
                          "desc": Out(desc_layout(tn, copies, addr_bits, wrow_bits)),
                          # SPCONV: the index walker's steps (hw/spconv_walk.py); ``sp_flush``
                          # empties the offset stage (a new instruction), ``sp_primed`` says it
                          # holds a step, ``sp_start`` marks a start whose first step it is.
                          "sp": In(stream.Signature(Step)), "sp_flush": In(1), "sp_primed": Out(1),
                          "sp_start": In(1)})

    def elaborate(self, platform):
        m = Module()
        j, d, tn = self.job, self.desc, self.tn
        aw = self.addr_bits
        lane_bits = max(1, (tn - 1).bit_length())
        active = Signal()
        # Loop counters, each as wide as the count it runs to.
        r, q, bo, bi = (Signal(c.shape(), name=n) for c, n in ((j.n_r, "r"), (j.n_q, "q"), (j.n_bo, "bo"),
                                                                  (j.n_bi, "bi")))
        rsub, qsub, y, x = (Signal(c.shape(), name=n) for c, n in ((j.rep_r, "rsub"), (j.rep_q, "qsub"),
                                                                      (j.n_y, "y"), (j.n_x, "x")))
        cl, wl = Signal(lane_bits), Signal(lane_bits)
        gs = Signal(j.slots.shape())  # slots into the group, saturating at slots - 1
        padding = Signal()  # the group's beats are done, its drain slots are not
        fresh = Signal()  # no beat of the group yet
        ro_r, ro, co_q, co = (Signal(OFF_BITS, name=n) for n in ("ro_r", "ro", "co_q", "co"))
        ra_r = [Signal(aw, name=f"ra_r{o}") for o in "ab"]
        ra = [Signal(aw, name=f"ra{o}") for o in "ab"]
        bof = [Signal(aw, name=f"bof{o}") for o in "ab"]
        cbase = Signal(j.chans.shape().width + 1)  # first channel of the current block (lanes past chans read 0)
        wrow = Signal(STEP_BITS)
        rpm, qm = Signal(j.pool.shape()), Signal(j.pool.shape())
        prow, pcol = Signal(OBUF_ADDR_BITS), Signal(OBUF_ADDR_BITS)
        q0, qd = Signal(j.cols.shape()), Signal(j.cols.shape())
        ops = (j.a, j.b)

        # Loop-end flags in registers, each set as its counter steps from a comparison of the
        # counter's current value (``c + 2 == n``): the group end and the enables of all the
        # state registers start from flip-flops, not from ``c == n - 1`` (an adder and a
        # comparison on the job register: tiny's critical path at 55.33 MHz).
        lf = {name: Signal(name=f"{name}_last") for name in LOOP_FLAGS}
        ones = loop_ones(j)  # at a restart within the instruction
        x_last, y_last, bi_last, bo_last, q_last, r_last = (lf[n] for n in ("x", "y", "bi", "bo", "q", "r"))
        # Pixel-parallel at column stride 2: each step takes two slots, the low half of the
        # lanes at the step's address, then the high half tn words on (hw/linebuf.py).
        split, phase = Signal(), Signal()
        m.d.comb += split.eq(j.pixel & (j.lsw >= 2))
        twice = split
        if self.copies == 1:
            # One line-buffer copy (hw/linebuf.py): a VEC ADD reads ``b`` in a second slot
            # (``phase`` 1, operand a's lanes masked, b's kept: the vector ALU sums the two
            # slots as taps), and a depthwise step of more than tn channels reads its second
            # channel block in further slots (``bphase`` 1, at ``cols`` words on, in ``bof``).
            vsplit, bser, bphase = Signal(), Signal(), Signal()
            m.d.comb += [vsplit.eq((j.kind == Kind.VEC) & (j.op == VecOp.ADD)), bser.eq(j.depthwise & (j.chans > tn))]
            twice = split | vsplit
            step_done = (~twice | phase) & (~bser | bphase)
        else:
            step_done = ~split | phase  # this slot finishes the step
        # SPCONV: the current step's offsets come from the walker's list, through the offset
        # stage ``nx`` (the next step's products, registered), and its end from the list's
        # ``last`` (``s_last``, the current step's).
        s_last = Signal()
        nx_valid, nx_last, nx_cl = Signal(), Signal(), Signal(lane_bits)
        nx_co, nx_ro, nx_ra, nx_bof = Signal(OFF_BITS, name="nx_co"), Signal(OFF_BITS, name="nx_ro"), \
            Signal(aw, name="nx_ra"), Signal(aw, name="nx_bof")
        # ``x_last & y_last & bi_last`` in a register of its own (``xyb_last``, set wherever
        # the three are): the group end, whose enables fan out over the whole state, is then
        # one flag less deep (tiny's ECP5 critical path ran x_last -> co_q's enable).
        xyb_last = Signal()
        # Whether the job is an SPCONV (its start was the walker's, ``sp_start``), in a flag of
        # the sequencer's own loaded at the start: the job register's ``sparse`` fanned out
        # from the compute unit into the group end (tiny's ECP5 median-seed path on 9804e9b,
        # ``job.sparse`` -> ``co_q``'s enable, 17.48 ns, 15.54 of it routing).
        sparse = Signal()
        inner_last = Mux(sparse, s_last, xyb_last) & step_done
        beat = Signal()
        group_end = Signal()
        m.d.comb += [beat.eq(active & ~padding),
                     group_end.eq(active & (padding | inner_last) & lf["gs"])]

        # -- descriptor --------------------------------------------------------------------------
        # ``out`` is the slot's descriptor; ``staged`` registers it into ``desc``.
        out = Signal.like(d) if self.staged else d
        row_ok = [(ro >= op.row_lo) & (ro < op.row_hi) for op in ops]
        col_ok = []
        for lane in range(tn):
            if "lane_col" in j.shape().members:
                # The job's bounds less the lane's offset (``seq_lane_bounds``; timing: no adder
                # between ``co`` and the compares, the sequencer's slowest path alone).
                col_ok.append((co >= j.lane_col[lane].lo) & (co < j.lane_col[lane].hi))
                continue
            c = Signal(OFF_BITS + 2, name=f"col{lane}")
            m.d.comb += c.eq(co + lane_offset(lane, j.lsw))
            col_ok.append((c >= j.a.col_lo) & (c < j.a.col_hi))
        b_tap = row_ok[1] & (co >= j.b.col_lo) & (co < j.b.col_hi)
        cleft = Signal(signed(cbase.shape().width + 1))
        m.d.comb += cleft.eq(j.chans - cbase)
        tap_ok = row_ok[0] & col_ok[0]
        for lane in range(tn):
            chan_ok = cleft > lane
            half_ok = ~split | (phase == (lane >= tn // 2))
            b_ok = b_tap & chan_ok
            if self.copies == 1:  # a VEC ADD's slot reads one operand
                half_ok, b_ok = half_ok & ~(vsplit & phase), b_ok & phase
            m.d.comb += [out.lane_ok[lane].eq(~j.empty & half_ok &
                                              Mux(j.pixel, row_ok[0] & col_ok[lane], tap_ok & chan_ok)),
                         out.b_ok[lane].eq(b_ok)]
        if self.copies == 1:
            m.d.comb += out.blk.eq(bphase)
        m.d.comb += [out.valid.eq(beat), out.first.eq(fresh), out.last.eq(beat & inner_last), out.tap_ok.eq(tap_ok),
                     out.stride.eq(j.lsw), out.w_row.eq(j.w_row + wrow), out.wl.eq(wl), out.cl.eq(cl)]
        # Line-buffer word addresses: operand o's k + ra + bof + co (less ss past the ring's
        # wrap), copy 0 operand a (tn words on in a split step's second half), copy 1 VEC's
        # operand b, else (depthwise) a's next block; copy c: a's block c. (One copy: b in a VEC
        # ADD's second slot, a's second block through bof.)
        base, offs = [], []
        for o, op in enumerate(ops):
            terms = [op.k, ra[o], bof[o], co] + ([Mux(split & phase, tn, 0)] if o == 0 else [])
            base.append(csa_sum(m, terms, aw, f"addr_base{'ab'[o]}"))
            # (Both candidates from the job's fields, the compare only selecting: timing, the
            # compare, a negation and an addition were one chain into ``addr_offa1_r``,
            # 15.1-15.9 ns on two of 5c57a98's seeds.)
            past = ro >= op.wrap_at
            offs.append([Mux(past, c * j.a.cols - op.ss, c * j.a.cols) for c in range(self.copies)] if o == 0
                        else [Mux(past, -op.ss, 0)])
        if self.copies == 1:  # the one copy reads operand b in a VEC ADD's second slot
            vsel = vsplit & phase
            base[0], offs[0] = Mux(vsel, base[1], base[0]), [Mux(vsel, offs[1][0], offs[0][0])]
        if self.staged:  # the sums' terms before the register, the offsets' additions after
            regs = [(Signal(aw, name=f"addr_base{'ab'[o]}_r"), [Signal(aw, name=f"addr_off{'ab'[o]}{c}_r")
                                                                 for c in range(len(offs[o]))])
                    for o in range(2)]
            for (b_r, o_r), b, o in zip(regs, base, offs):
                m.d.sync += [b_r.eq(b), *[r.eq(v) for r, v in zip(o_r, o)]]
            base, offs = [b for b, _ in regs], [o for _, o in regs]
            for name, _ in d.shape():
                if name != "addr":
                    m.d.sync += getattr(d, name).eq(getattr(out, name))
        for c in range(self.copies):
            m.d.comb += d.addr[c].eq(base[0] + offs[0][c])
        if self.copies > 1:
            with m.If(j.kind == Kind.VEC):  # constant through the instruction, staged or not
                m.d.comb += d.addr[1].eq(base[1] + offs[1][0])
        mt = out.meta
        m.d.comb += [mt.final.eq(bo_last & q_last & r_last), mt.rfirst.eq(rpm == 0), mt.rlast.eq(lf["rpm"]),
                     mt.prow.eq(prow), mt.q0.eq(q0), mt.qd.eq(qd), mt.qm.eq(qm), mt.pcol.eq(pcol), mt.kb.eq(bo)]

        # -- next state ----------------------------------------------------------------------------
        take = Signal()  # SPCONV: the current step becomes nx's

        def load_step(co_base, ro_base, ra_base):
            """SPCONV: the next step's offsets from the offset stage onto these bases."""
            m.d.sync += [co.eq(co_base + nx_co), ro.eq(ro_base + nx_ro), ra[0].eq(ra_base + nx_ra),
                         bof[0].eq(nx_bof), cl.eq(nx_cl), s_last.eq(nx_last)]

        def step(name, counter, count):
            """``counter`` one on; its flag from the counter's current value."""
            m.d.sync += [counter.eq(counter + 1), lf[name].eq(counter + 2 == count)]

        def clear(*pairs):
            """Counters back to zero, their flags to ``loop_ones``."""
            for name, counter in pairs:
                m.d.sync += [counter.eq(0), lf[name].eq(ones[name])]

        def restart_inner(new_co, new_ro, new_ra):
            clear(("x", x), ("y", y), ("bi", bi))
            m.d.sync += xyb_last.eq(ones["x"] & ones["y"] & ones["bi"])
            m.d.sync += [cl.eq(0), wl.eq(0), wrow.eq(0), co.eq(new_co), ro.eq(new_ro)]
            m.d.sync += [ra[o].eq(new_ra[o]) for o in range(2)]
            with m.If(sparse):
                m.d.comb += take.eq(1)
                load_step(new_co, new_ro, new_ra[0])

        # The offset stage: a step's products with the job's steps (small: a 4-bit kernel
        # row/column, and the channel block times the ring's columns), registered, so that the
        # sequencer's state takes only adds. It holds the step after the current one.
        sp = self.sp.payload
        m.d.comb += [self.sp.ready.eq(~nx_valid | take), self.sp_primed.eq(nx_valid)]
        with m.If(take):
            m.d.sync += nx_valid.eq(0)
        with m.If(self.sp.valid & self.sp.ready):
            m.d.sync += [nx_valid.eq(1), nx_last.eq(sp.last), nx_cl.eq(sp.c[:lane_bits]),
                         nx_co.eq(sp.x * j.dcol), nx_ro.eq(sp.y * j.dh), nx_ra.eq(sp.y * j.a.dra_y),
                         nx_bof.eq((sp.c >> lane_bits) * j.a.cols)]
        with m.If(self.sp_flush):
            m.d.sync += nx_valid.eq(0)

        # While idle the state is held at a start's values, so a start enables only a few
        # registers (timing: ``start`` comes from the compute unit's ``go`` and the decoded
        # job, and as the enable of the whole state it was tiny's slowest seed's critical path
        # on 9804e9b, ``go`` -> ``bofa``'s enable, 18.47 ns, 16.52 of it routing). A start
        # never finds the sequencer active (the compute unit takes an instruction when the
        # last one is done or, chaining, when its final group has reached retire).
        def hold_start_values():
            m.d.sync += phase.eq(0)
            if self.copies == 1:
                m.d.sync += bphase.eq(0)
            for sig in (r, q, bo, bi, rsub, qsub, y, x, cl, wl, gs, padding, ro_r, ro, co_q, co, *ra_r, *ra, *bof,
                        cbase, wrow, rpm, qm, prow, pcol, q0, qd, s_last):
                m.d.sync += sig.eq(0)
            m.d.sync += [lf[name].eq(getattr(self.ones, name)) for name in LOOP_FLAGS]
            m.d.sync += xyb_last.eq(self.ones.x & self.ones.y & self.ones.bi)

        # (``idle_hold`` off, zu3eg: the start loads them, in the start's branch; holding them
        # while idle cost zu3eg's sequencer 364 LUTs and a ninth LUT level, its depth goal 8.)
        if self.idle_hold:
            with m.If(~active):
                hold_start_values()
        with m.If(self.start):
            if not self.idle_hold:
                hold_start_values()
            m.d.sync += [active.eq(1), fresh.eq(1), sparse.eq(self.sp_start)]
            with m.If(self.sp_start):
                m.d.comb += take.eq(1)
                load_step(0, 0, 0)
        with m.Elif(active):
            m.d.sync += phase.eq(beat & twice & ~phase)
            if self.copies == 1:  # the second block after both halves of the first
                bnext = Signal()
                m.d.comb += bnext.eq(bphase ^ (beat & bser & (~twice | phase)))
                m.d.sync += bphase.eq(bnext)
                with m.If(bser):  # (a depthwise group keeps bof 0 otherwise)
                    m.d.sync += bof[0].eq(Mux(bnext, j.a.cols, 0))
            m.d.sync += [gs.eq(Mux(group_end, 0, Mux(lf["gs"], gs, gs + 1))),
                         lf["gs"].eq(Mux(group_end, ones["gs"], lf["gs"] | (gs + 2 >= j.slots))),
                         padding.eq(~group_end & (padding | inner_last)), fresh.eq(group_end)]
            with m.If(group_end):
                with m.If(~bo_last):  # VEC: next channel block of the same pixel
                    step("bo", bo, j.n_bo)
                    m.d.sync += cbase.eq(cbase + tn)
                    m.d.sync += [bof[o].eq(bof[o] + ops[o].cols) for o in range(2)]
                    restart_inner(co_q, ro_r, ra_r)
                with m.Elif(~q_last):  # next column (VEC) or pixel group (CONV)
                    step("q", q, j.n_q)
                    clear(("bo", bo))
                    m.d.sync += [cbase.eq(0), *[bof[o].eq(0) for o in range(2)], q0.eq(q0 + j.qstep)]
                    mod = qm + j.qstep_mod
                    carry = mod >= j.pool
                    m.d.sync += [qm.eq(Mux(carry, mod - j.pool, mod)), qd.eq(qd + j.qstep_div + carry),
                                 pcol.eq(pcol + Mux((j.qstep_div + carry) != 0, j.blk, 0))]
                    with m.If(lf["qsub"]):
                        clear(("qsub", qsub))
                        m.d.sync += co_q.eq(co_q + j.csw)
                        restart_inner(co_q + j.csw, ro_r, ra_r)
                    with m.Else():
                        step("qsub", qsub, j.rep_q)
                        restart_inner(co_q, ro_r, ra_r)
                with m.Elif(~r_last):  # next output row
                    step("r", r, j.n_r)
                    clear(("q", q), ("qsub", qsub), ("bo", bo))
                    m.d.sync += [cbase.eq(0), co_q.eq(0), q0.eq(0),
                                 qm.eq(0), qd.eq(0), pcol.eq(0), *[bof[o].eq(0) for o in range(2)]]
                    with m.If(lf["rpm"]):
                        clear(("rpm", rpm))
                        m.d.sync += prow.eq(prow + j.d_prow)
                    with m.Else():
                        step("rpm", rpm, j.pool)
                    with m.If(lf["rsub"]):
                        new_ra = [ra_r[o] + ops[o].dra_r for o in range(2)]
                        clear(("rsub", rsub))
                        m.d.sync += [ro_r.eq(ro_r + j.sh), *[ra_r[o].eq(new_ra[o]) for o in range(2)]]
                        restart_inner(0, ro_r + j.sh, new_ra)
                    with m.Else():
                        step("rsub", rsub, j.rep_r)
                        restart_inner(0, ro_r, ra_r)
                with m.Else():
                    m.d.sync += active.eq(0)
            with m.Elif(beat & ~inner_last & step_done):
                with m.If(wl == j.wl_wrap):  # pixel-parallel: tn steps per weight word
                    m.d.sync += [wl.eq(0), wrow.eq(wrow + 1)]
                with m.Else():
                    m.d.sync += wl.eq(wl + 1)
                with m.If(sparse):  # the list's next step
                    m.d.comb += take.eq(1)
                    load_step(co_q, ro_r, ra_r[0])
                with m.Elif(~x_last):
                    step("x", x, j.n_x)
                    m.d.sync += [co.eq(co + j.dcol), xyb_last.eq((x + 2 == j.n_x) & y_last & bi_last)]
                with m.Elif(~y_last):
                    clear(("x", x))
                    step("y", y, j.n_y)
                    m.d.sync += xyb_last.eq(ones["x"] & (y + 2 == j.n_y) & bi_last)
                    m.d.sync += [co.eq(co_q), ro.eq(ro + j.dh), *[ra[o].eq(ra[o] + ops[o].dra_y) for o in range(2)]]
                with m.Else():  # next input block (channel-parallel) or channel (pixel-parallel)
                    clear(("x", x), ("y", y))
                    step("bi", bi, j.n_bi)
                    m.d.sync += xyb_last.eq(ones["x"] & ones["y"] & (bi + 2 == j.n_bi))
                    m.d.sync += [co.eq(co_q), ro.eq(ro_r), *[ra[o].eq(ra_r[o]) for o in range(2)]]
                    with m.If(~j.pixel):
                        m.d.sync += [bof[0].eq(bof[0] + j.a.cols), cbase.eq(cbase + tn)]
                    with m.Elif(cl == tn - 1):
                        m.d.sync += [cl.eq(0), bof[0].eq(bof[0] + j.a.cols)]
                    with m.Else():
                        m.d.sync += cl.eq(cl + 1)
        return m
