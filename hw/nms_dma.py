"""The NMS unit: the ``NMS`` instruction's executor — the DMA front end and sequencer around
the cell former (``NmsCells``) and the core behind it (``NmsBack``) (docs/nms_core.md).

::

    instr ─▶ fields ─▶ table size (n·n) ─▶ read the parameter table and the patch list's
             header (one linear read each, requests back to back): levels → level memory,
             (k, s) → channel registers, pairs → pair memory; header → count
          ─▶ read the patch entries → patch buffer (when 0 < count <= patches)
          ─▶ per level: its stride to its channels' registers (2 cycles a level)
          ─▶ the pyramid's slot table from the pair table (ir.nms.slot_table): per channel a,
             its n pairs one a cycle (a competing one written to the next slot), a cycle, then
             the unused slots cleared one a cycle, and one more
          ─▶ per level: its entry, A·C and the plane step (two shift-add products), the map
             walkers started; per block: its lanes' (anchor, class, channel, kernel, shift) one
             lane a cycle, block_start, its words from DRAM to NmsCells (patches merged from
             the buffer), wait until NmsBack's spatial stage has drained the block
          ─▶ finish (bad: the patch list's count over ``patches``, or NmsCells' flag)
          ─▶ NmsBack's pyramid and list writes ─▶ ListWriter ─▶ the last response ─▶ done

Fields or a parameter table the core cannot run (``ir.nms.field_fault``,
``NmsParams.fault``; docs/nms_core.md "A table the core cannot run") are checked as they come
in — the fields once, the channels' (k, s) as they arrive, each level the cycle after its
stride step, each pair in the slot scan — and go to ``finish`` without a map word: fields
right after the patch list's header, a table after the slot table (``ir.nms.fault_cycles``);
``bad`` then, and the header's flags word becomes FLAG_BAD_TABLE.

Executor contract (hw/control.py): ``instr`` is taken with ``ready = ~busy`` (the cycle after
``done`` at the earliest: an NMS is a barrier, never offered sooner); ``done``
pulses in cycle ``S + ir.nms.nms_cycles(...)`` when the memory answers a read's first beat
``dram_latency`` cycles after the request, beats back to back, a write's response
``dram_latency`` cycles after its last beat and never stalls. Reads and writes share ``mem``
(the target's DRAM beat, 8 or 16 bytes). The map words are one-beat requests issued one a cycle
ahead of the data; the data side walks the same addresses to find its lanes' bytes.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.config import AcceleratorConfig
from ..ir.isa import INSTR, Nms
from ..ir.nms import FLAG_BAD_TABLE, LEVEL_DTYPE, SLOT_KERNEL_BITS, NmsCore, core_of
from .dma import mem_signature
from .nms_front import PATCH, NmsCells
from .nms_unit import NmsBack
from .nms_walk import LinearReader, ListWriter, MapWalker, Multiplier

#: One level of the parameter table: ir.nms.LEVEL_DTYPE's fields (little-endian, no padding)
#: in order, LSB first.
LEVEL = data.StructLayout({name: unsigned(8 * LEVEL_DTYPE[name].itemsize) for name in LEVEL_DTYPE.names})
assert LEVEL.size == 8 * LEVEL_DTYPE.itemsize
MAX_LEVELS = 1 << Nms["levels"].shape.width  # the instruction's ``levels`` field


class NmsUnit(wiring.Component):
    """The NMS executor of ``cfg`` (module docstring): ``instr`` (an NMS instruction word),
    ``done`` (a one-cycle pulse), ``mem`` (its DRAM reads and writes)."""

    def __init__(self, cfg: AcceleratorConfig, core: NmsCore | None = None):
        self.cfg, self.core = cfg, core or core_of(cfg)
        if self.core is None:
            raise ShiftflowError(f"target {cfg.name} has no NMS core")
        bw, lanes, tn = cfg.dram_bytes_per_cycle, self.core.lanes, cfg.tn
        if 16 % bw or bw < 2 or tn % lanes or bw % lanes:
            raise ShiftflowError(f"NMS unit needs a DRAM beat dividing 16 bytes and lanes ({lanes}) dividing tn "
                                 f"({tn}) and the beat ({bw})")
        self.cells, self.back = NmsCells(self.core), NmsBack(self.core)
        super().__init__({"instr": In(stream.Signature(INSTR)), "done": Out(1),
                          "mem": Out(mem_signature(bw))})

    def elaborate(self, platform):
        m = Module()
        cfg, core = self.cfg, self.core
        bw, lanes, tn, zn = cfg.dram_bytes_per_cycle, core.lanes, cfg.tn, core.partners
        lg = (bw - 1).bit_length()
        nmax = core.max_channels
        m.submodules.cells, m.submodules.back = cells, back = self.cells, self.back
        m.submodules.mul = mul = Multiplier()
        m.submodules.rd = rd = LinearReader(bw)
        m.submodules.rq = rq = MapWalker(32, lanes, tn)
        m.submodules.dw = dw = MapWalker(lg, lanes, tn)
        m.submodules.wr = wr = ListWriter(bw)
        wiring.connect(m, cells.o, back.i)

        f = Signal.like(self.instr.payload.body.nms)
        # The level's entry, in two registers: ``lvc`` for the table check (loaded in
        # STRIDE_WR), ``lv`` for the run (loaded in LV_LATCH by ``lv_load``, a flip-flop set
        # in LV_RD). Timing: one register loaded in both states had its enable decoded from
        # the FSM state and fanned out to all its bits, across the check and the walkers
        # (18.85 ns on c3f9a79, 17.62 of it routing: the whole tiny design's critical path).
        lv, lvc, lv_load = Signal(LEVEL), Signal(LEVEL), Signal()
        n = f.channels

        # --- memories and registers the table fills ---
        lvl_mem = Memory(shape=unsigned(LEVEL.size), depth=MAX_LEVELS, init=[])
        pair_mem = Memory(shape=unsigned(8 * bw), depth=max(1, -(-2 * nmax * nmax // bw)), init=[])
        patch_mem = Memory(shape=unsigned(PATCH.size), depth=core.patches, init=[])
        m.submodules.lvl_mem, m.submodules.pair_mem, m.submodules.patch_mem = lvl_mem, pair_mem, patch_mem
        lvl_w, lvl_r = lvl_mem.write_port(granularity=8 * bw), lvl_mem.read_port()
        pair_w, pair_r = pair_mem.write_port(), pair_mem.read_port()
        patch_w, patch_r = patch_mem.write_port(granularity=8 * bw), patch_mem.read_port()
        kreg = Signal(data.ArrayLayout(unsigned(8), nmax))
        sreg = Signal(data.ArrayLayout(unsigned(8), nmax))
        stride = Signal(data.ArrayLayout(unsigned(16), nmax))

        # --- the table's byte layout: levels, then (k, s) per channel, then the pairs ---
        # Registered once the n·n product is in (TSIZE), so the routing below compares the
        # beat's offset with registers only (timing); the first read takes them unregistered.
        tlen_c, cbase, pbase, tlen = Signal(20), Signal(20), Signal(20), Signal(20)
        m.d.comb += tlen_c.eq((f.levels << 5) + (((n << 1) + 15) & ~15) + (((mul.p << 1) + 15) & ~15))
        off = Signal(20)  # bytes of the linear read received
        cbeat, pbeat = Signal(8), Signal(16)  # beats of the channel part, of the pair part
        count, over = Signal(32), Signal()  # the patch list's header
        tbad = Signal()  # the table is one the core cannot run (below)
        cbad = Signal()  # the last beat had a channel whose (k, s) the core cannot run
        m.d.sync += cbad.eq(0)
        beat = self.mem.rd_resp.payload
        linear, patching = Signal(), Signal()  # a linear read's beats are arriving (else map words)
        lin = linear & self.mem.rd_resp.valid  # rd_resp.ready is 1 in these phases
        # Which part the next beat is in, kept in registers beside ``off`` (timing: the
        # compares of ``off`` fanned out to every channel's kernel and shift enables), and the
        # channel beat one-hot (``chot[g]``: ``cbeat == g``).
        in_lv, in_ch, in_pr, at_hd = Signal(), Signal(), Signal(), Signal()
        ngroups = -(-nmax // (bw // 2))
        chot = Signal(ngroups)

        def parts(at, c, p, t):  # the flags of the beat at offset ``at``
            return [in_lv.eq(at < c), in_ch.eq(at < p), in_pr.eq(at < t), at_hd.eq(at == t)]

        with m.If(lin):
            m.d.sync += [off.eq(off + bw), *parts(off + bw, cbase, pbase, tlen)]
            with m.If(in_lv):
                m.d.comb += [lvl_w.addr.eq(off[5:]), lvl_w.data.eq(beat.replicate(32 // bw)),
                             lvl_w.en.eq(1 << off[lg:5])]
            with m.Elif(in_ch):
                m.d.sync += [cbeat.eq(cbeat + 1), chot.eq(chot << 1)]
                # Each channel's kernel in 1..max_kernel above its shift, checked as it arrives
                # (a beat's channels at once; the part's padding past ``n`` is not a channel).
                # (The verdict is registered, ``cbad``, and lands in ``tbad`` a cycle later:
                # timing, the beat comes from the memory's read data.)
                for i in range(bw // 2):
                    k, s = beat[16 * i:16 * i + 8], beat[16 * i + 8:16 * i + 16]
                    ok = (k != 0) & (k <= core.max_kernel) & (s < k)
                    with m.If(((cbeat << (bw // 2 - 1).bit_length()) + i < n) & ~ok):
                        m.d.sync += cbad.eq(1)
                for c in range(nmax):
                    group, i = c // (bw // 2), c % (bw // 2)
                    with m.If(chot[group]):
                        m.d.sync += [kreg[c].eq(beat[16 * i:16 * i + 8]), sreg[c].eq(beat[16 * i + 8:16 * i + 16])]
            with m.Elif(in_pr):
                m.d.sync += pbeat.eq(pbeat + 1)
                m.d.comb += [pair_w.addr.eq(pbeat), pair_w.data.eq(beat), pair_w.en.eq(1)]
            with m.Elif(at_hd):
                m.d.sync += count.eq(beat[:32])
        poff = Signal(32)
        with m.If(patching & self.mem.rd_resp.valid):  # the patch entries
            m.d.sync += poff.eq(poff + bw)
            m.d.comb += [patch_w.addr.eq(poff[4:]), patch_w.data.eq(beat.replicate(16 // bw)),
                         patch_w.en.eq(1 << poff[lg:4])]

        # --- patches to NmsCells, from a register (timing: no block RAM output in the merge
        # path): it holds patch pidx, the memory's output patch pidx + 1 (one read ahead) ---
        pidx, pcount = Signal(16), Signal(16)
        preg = Signal(PATCH)
        prime = Signal()  # (STRIDE_RD) read patch 0 into the register
        take_p = cells.p.valid & cells.p.ready
        pvalid = Signal()  # pidx < pcount, kept in a register (timing: the merge decision)
        m.d.comb += [cells.p.valid.eq(pvalid), cells.p.payload.eq(preg), cells.p_end.eq(~pvalid),
                     patch_r.addr.eq(Mux(prime, 0, Mux(take_p, pidx + 2, pidx + 1)))]
        with m.If(take_p):
            m.d.sync += [pidx.eq(pidx + 1), preg.eq(patch_r.data), pvalid.eq(pidx + 1 < pcount)]

        # --- level, block and lane state ---
        li, first = Signal(4), Signal(8)
        # (``lane`` one bit at one lane: a zero-width wire fails Verilator's lint)
        arun, crun, b0, lane = Signal(8), Signal(12), Signal(16), Signal(range(max(2, lanes)), name="lane")
        nch, plane_step = Signal(20), Signal(32)
        m.d.comb += lvl_r.addr.eq(li)
        lvl_next = Signal(LEVEL)  # the level memory's output, registered (STRIDE_WR)
        m.d.sync += lvl_next.eq(lvl_r.data)
        # Which channels are the level's, decided with the read (STRIDE_RD: ``first`` is the
        # level's then) and registered, one flag a channel: STRIDE_WR's stride enables come
        # from a flip-flop each, not from a sum and compares fanned out to every channel.
        in_level = Signal(nmax)
        rd_level = Signal(LEVEL)
        m.d.comb += rd_level.eq(lvl_r.data)
        m.d.sync += lv_load.eq(0)
        with m.If(lv_load):  # LV_LATCH (above)
            m.d.sync += lv.eq(lvl_r.data)
        m.d.sync += in_level.eq(Cat((c >= first) & (c < first + rd_level.anchors) for c in range(nmax)))
        k_of = lambda c: kreg[c][:len(back.kernel[0])]
        s_of = lambda c: sreg[c][:len(back.shift[0])]
        m.d.comb += [cells.level.eq(li), cells.planes_log2.eq(f.planes), cells.shift.eq(lv.shift),
                     cells.start.eq(lv.start), cells.anchors.eq(lv.anchors), cells.thr.eq(f.thr),
                     cells.width.eq(lv.width), cells.b0.eq(b0), back.height.eq(lv.height), back.width.eq(lv.width),
                     back.out_addr.eq(f.out_addr), back.capacity.eq(f.capacity)]
        for w in (rq, dw):
            m.d.comb += [w.dram_addr.eq(lv.dram_addr), w.row_stride.eq(lv.row_stride), w.blk_stride.eq(lv.blk_stride),
                         w.plane_step.eq(plane_step), w.height.eq(lv.height), w.width.eq(lv.width),
                         w.planes_log2.eq(f.planes), w.nch.eq(nch)]

        # --- DRAM read port: linear reads, or one-beat map words ---
        mapping, feeding = Signal(), Signal()
        got = self.mem.rd_resp.valid & self.mem.rd_resp.ready
        req = self.mem.rd_req
        m.d.comb += [req.valid.eq(Mux(mapping, rq.busy, rd.req.valid)),
                     req.payload.addr.eq(Mux(mapping, rq.addr & ~(bw - 1), rd.req.payload.addr)),
                     req.payload.beats.eq(Mux(mapping, 1, rd.req.payload.beats)),
                     rd.req.ready.eq(~mapping & req.ready), rq.step.eq(mapping & req.ready)]
        m.d.comb += [cells.i.valid.eq(feeding & self.mem.rd_resp.valid),
                     cells.i.payload.eq(beat.bit_select(dw.addr * 8, 8 * lanes)),
                     self.mem.rd_resp.ready.eq(Mux(feeding, cells.i.ready, ~mapping)),
                     dw.step.eq(feeding & got)]
        with m.If(feeding & got & dw.block_end):
            m.d.sync += feeding.eq(0)

        # --- list writes ---
        # The header of a flagged table: NmsBack writes count 0 with FLAG_BAD_PATCH (its ``bad``),
        # the flags word becomes FLAG_BAD_TABLE alone (the only record written then).
        tflag = Signal()  # the fields or the table are ones the core cannot run
        m.d.comb += [wr.w.valid.eq(back.w.valid), back.w.ready.eq(wr.w.ready), wr.w.payload.eq(back.w.payload)]
        with m.If(tflag):
            m.d.comb += wr.w.payload.data[32:36].eq(FLAG_BAD_TABLE)  # (NmsBack's flags are bits 32..34)
        for name in ("wr_req", "wr_data"):
            wiring.connect(m, getattr(wr, name), wiring.flipped(getattr(self.mem, name)))
        wiring.connect(m, wiring.flipped(self.mem.wr_resp), wr.wr_resp)

        # --- slot table scan ---
        a, b, q, z = Signal(8), Signal(8), Signal(16), Signal(range(zn + 1))
        vd, bd, qd = Signal(), Signal(8), Signal(16)
        m.d.comb += pair_r.addr.eq(q[lg:])
        # The pair memory's block-RAM output registered, and the pair's fields with it (a
        # cycle a channel: ir.nms.SCAN_FIXED; timing: the RAM's clock-to-output is ~5.6 ns of
        # tiny's ECP5 budget).
        pdata, vd2, bd2, qd2 = Signal.like(pair_r.data), Signal(), Signal(8), Signal(16)
        kk, ks = Signal(8), Signal(8)
        m.d.comb += [kk.eq(pdata.bit_select(qd2[:lg] * 8, 8)),
                     ks.eq(pdata.bit_select(qd2[:lg] * 8 + 8, 8))]
        # The two strides from registers (a is held through its scan, b's is taken as it is
        # issued), and the slot's write registered (timing: the pyramid reads the slots long
        # after; the last write lands in LV_RD).
        sa, sb, sb2 = Signal(16), Signal(16), Signal(16)
        m.d.sync += [sa.eq(stride[a]), pdata.eq(pair_r.data), vd2.eq(vd), bd2.eq(bd), qd2.eq(qd), sb2.eq(sb)]
        (rho_a, ok_a), (rho_b, ok_b) = _log2_ratios(m, sa, sb2)
        slot, slot_we = Signal.like(back.slot_data), Signal()
        m.d.comb += [slot.partner.eq(bd2), slot.k.eq(kk), slot.ks.eq(ks), slot.rho_a.eq(rho_a), slot.rho_b.eq(rho_b)]
        m.d.sync += [back.slot_we.eq(slot_we), back.slot_addr.eq(a * zn + z), back.slot_data.eq(slot)]
        scanning = Signal()  # (not "process": a SystemVerilog class name Verilator reserves)
        with m.If(scanning & vd2 & (kk != 0) & (z < zn)):
            m.d.comb += [slot_we.eq(1), slot.valid.eq(1)]
            m.d.sync += z.eq(z + 1)

        # --- the table's check (ir.nms.NmsParams.fault; docs/nms_core.md "A table the core
        # cannot run"): sticky ``tbad``, decided after the slot table, before any map word ---
        # A competing pair: not on the diagonal, a slot left, K and the stride ratio within
        # the slot's fields (a power of two: s << rho == the coarser stride), K_s < K.
        # The pair's verdict is registered (``pbad``; timing: the ratio compares -> ``tbad``'s
        # OR was tiny's NMS unit's slowest path, 17.7 ns alone): it lands in ``tbad`` a cycle
        # later, and FILL, which reads ``tbad`` as soon as the last pair is in, reads ``pbad``
        # beside it (no cycle).
        pbad = Signal()
        m.d.sync += pbad.eq(scanning & vd2 & (kk != 0) & ((a == bd2) | (z >= zn) | (kk >= 1 << SLOT_KERNEL_BITS)
                                                          | (ks >= kk) | ~ok_a | ~ok_b))
        # Per level (its entry in ``lv`` the cycle after STRIDE_WR, ``chk``): an anchor, a
        # stride, the width, the keys' bits; its channels (``inr``: the stride writes' range,
        # registered) each a kernel at most min(H, W) (1..max_kernel and the shift were checked
        # as they arrived); then (``chk2``, registered products) its box indices start + H·W·A
        # within 2**index_bits (W narrowed to max_width's bits: a wider map is flagged anyway;
        # H·W·A >= 1 here, else a kernel or the anchors are flagged).
        chk, chk2, asum, inr = Signal(), Signal(), Signal(12), Signal(nmax)
        mkb, ib = core.max_kernel.bit_length(), core.index_bits
        clip = lambda v: Mux(v >= core.max_kernel, core.max_kernel, v[:mkb])
        # The check runs in two stages (timing: the level's fields -> the key-bit sums / the
        # kernel bound's clips and min -> the compares -> the verdict was zu3eg's deepest
        # path, 10 LUT levels): in ``chk`` the level's operands are narrowed into registers
        # (the kernel bound ``mk``, the key bits, the shift, the flags that need no sum, the
        # level's channels), in ``chk2`` they are compared; ``wbad`` registers the verdict.
        hk, wk, mk = Signal(mkb), Signal(mkb), Signal(mkb)
        m.d.comb += [hk.eq(clip(lvc.height)), wk.eq(clip(lvc.width)), mk.eq(Mux(hk < wk, hk, wk))]
        bits = Mux(lvc.bits == 0, 32, lvc.bits)
        assert core.key_bits < 64
        mk2, inr2, sh2, bits2, over2, flat2 = Signal(mkb), Signal(nmax), Signal(6), Signal(6), Signal(), Signal()
        m.d.sync += [mk2.eq(mk), inr2.eq(inr), sh2.eq(lvc.shift[:6]), bits2.eq(bits[:6]), over2.eq(bits[6:] != 0),
                     flat2.eq((lvc.width > core.max_width) | (lvc.anchors == 0) | (lvc.stride == 0)
                              | (lvc.shift[6:] != 0))]
        code = Mux(f.planes == 0, min(8, core.code_bits), Mux(f.planes == 1, min(16, core.code_bits),
                                                               min(32, core.code_bits)))
        # min(code, bits) + shift > key_bits, on 6-bit sums (a bits or shift of 64 or more is over)
        keys = (code + sh2 > core.key_bits) & (over2 | (bits2 + sh2 > core.key_bits))
        wide = flat2 | keys
        kbad = Cat(inr2[c] & (kreg[c][:mkb] > mk2) for c in range(nmax))
        # The box count's product is registered too (``chk3``; timing: multiplier -> sum ->
        # compare was the whole tiny design's critical path, 17.1 ns): the last level's check
        # still lands in the first slot scan, long before ``tbad`` is read (FILL).
        wa, hh, st = Signal(8 + core.max_width.bit_length()), Signal(16), Signal(32)
        m.d.sync += [chk2.eq(chk), wa.eq(lvc.width[:core.max_width.bit_length()] * lvc.anchors), hh.eq(lvc.height),
                     st.eq(lvc.start)]
        # (The level's verdict registered too, ``wbad``: timing, the level register's fields
        # -> the key-bit sums and kernel compares -> ``tbad`` was 18.1 ns in the whole design.)
        # ``tbad`` has it three cycles after ``chk``, as ``chk3``'s: before FILL reads it.
        wbad = Signal()
        m.d.sync += wbad.eq(chk2 & (wide | kbad.any()))
        with m.If(cbad | pbad | wbad):  # the registered verdicts (above)
            m.d.sync += tbad.eq(1)
        chk3, boxes, st3 = Signal(), Signal(32), Signal(32)
        m.d.sync += [chk3.eq(chk2), boxes.eq(wa * hh), st3.eq(st)]
        with m.If(chk3 & ((st3[ib:] != 0) | (boxes[ib + 1:] != 0) | (st3[:ib] + boxes[:ib + 1] > 1 << ib))):
            m.d.sync += tbad.eq(1)
        m.d.sync += [chk.eq(0), inr.eq(0)]

        busy, take, fbad = Signal(), Signal(), Signal()  # fbad: ir.nms.field_fault
        # ``ready`` is ``~busy`` alone: an NMS is a barrier (hw/control.py), so the next one is
        # offered two cycles after this one's ``done`` at the earliest, and nothing runs from
        # ``done`` (the list writer's state) through the controller back into this FSM.
        # ``take`` (the controller's barrier decision: every other unit idle) reaches only
        # ``busy``, the state and the multiplier's start: the fields follow the offered word
        # while idle and are held from the take on, and the run's registers are cleared in
        # every idle cycle (zu3eg's deepest path ran that decision into their enables).
        m.d.comb += [self.instr.ready.eq(~busy), take.eq(self.instr.valid & self.instr.ready)]
        with m.If(~busy):
            m.d.sync += f.eq(self.instr.payload.body.nms)
        with m.If(take):
            m.d.sync += busy.eq(1)
        m.d.comb += [mul.a.eq(self.instr.payload.body.nms.channels),
                     mul.b.eq(self.instr.payload.body.nms.channels), mul.start.eq(take)]

        with m.FSM(name="nms_dma"):
            with m.State("IDLE"):
                m.d.sync += [off.eq(0), poff.eq(0), pidx.eq(0), pcount.eq(0), pvalid.eq(0), li.eq(0), first.eq(0),
                             a.eq(0), b.eq(0), q.eq(0), z.eq(0), vd.eq(0), linear.eq(1), over.eq(0),
                             cbeat.eq(0), chot.eq(1), pbeat.eq(0), tbad.eq(0), tflag.eq(0), asum.eq(0)]
                with m.If(take):
                    m.next = "TSIZE"
            with m.State("TSIZE"), m.If(~mul.busy):
                m.d.sync += fbad.eq((f.levels == 0) | (f.channels < f.levels) | (f.channels > nmax) | (f.classes == 0)
                                    | (f.planes == 3) | (f.patches > core.patches) | (f.capacity > core.survivors))
                m.d.comb += [rd.start.eq(1), rd.addr.eq(f.table_addr), rd.nbytes.eq(tlen_c)]
                cbase_c, pbase_c = f.levels << 5, (f.levels << 5) + (((n << 1) + 15) & ~15)
                m.d.sync += [cbase.eq(cbase_c), pbase.eq(pbase_c), tlen.eq(tlen_c), *parts(0, cbase_c, pbase_c, tlen_c)]
                m.next = "TREQ"
            with m.State("TREQ"), m.If(~rd.busy):
                m.d.comb += [rd.start.eq(1), rd.addr.eq(f.patch_addr), rd.nbytes.eq(16)]
                m.next = "HREQ"
            with m.State("HREQ"), m.If(off == tlen + 16):
                m.d.sync += linear.eq(0)
                with m.If(fbad):
                    m.d.sync += tflag.eq(1)
                    m.next = "FIN"
                with m.Elif(count > f.patches):
                    m.d.sync += over.eq(1)
                    m.next = "STRIDE_RD"
                with m.Elif(count == 0):
                    m.next = "STRIDE_RD"
                with m.Else():
                    m.d.comb += [rd.start.eq(1), rd.addr.eq(f.patch_addr + 16), rd.nbytes.eq(count << 4)]
                    m.next = "PREQ"
            with m.State("PREQ"):
                m.d.comb += patching.eq(1)
                with m.If(poff == count << 4):
                    m.d.sync += [pcount.eq(count), pvalid.eq(1)]  # count >= 1 here
                    m.next = "STRIDE_RD"
            with m.State("STRIDE_RD"):
                m.d.comb += prime.eq(1)
                m.next = "STRIDE_WR"
            with m.State("STRIDE_WR"):
                m.d.sync += preg.eq(patch_r.data)
                # The level from a register (``lvl_next``, its read issued a cycle ahead: in the
                # previous STRIDE_WR, at ``li + 1``, or before the first STRIDE_RD at 0), not from
                # the level memory's output: the channel-range decode below fans out to every
                # channel's stride enable (timing: 16.2 ns on c5f2533; no cycle).
                e = Signal(LEVEL, name="stride_e")
                m.d.comb += [e.eq(lvl_next), lvl_r.addr.eq(li + 1)]
                for c in range(nmax):
                    with m.If(in_level[c]):
                        m.d.sync += [stride[c].eq(e.stride), inr[c].eq(1)]
                m.d.sync += [first.eq(first + e.anchors), li.eq(li + 1), lvc.eq(e), chk.eq(1),
                             asum.eq(asum + e.anchors)]
                m.next = "STRIDE_RD"
                with m.If(li == f.levels - 1):
                    m.d.sync += li.eq(0)
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += scanning.eq(1)
                m.d.sync += [vd.eq(1), bd.eq(b), sb.eq(stride[b]), qd.eq(q), b.eq(b + 1), q.eq(q + 2)]
                with m.If(b == n - 1):
                    m.next = "TAIL"
            with m.State("TAIL"):
                m.d.comb += scanning.eq(1)
                m.d.sync += [vd.eq(0), b.eq(0)]
                m.next = "TAIL2"
            with m.State("TAIL2"):  # the last pair, from the registered RAM output
                m.d.comb += scanning.eq(1)
                m.next = "FILL"
            with m.State("FILL"):
                with m.If(z < zn):
                    m.d.comb += [slot_we.eq(1), slot.valid.eq(0)]
                    m.d.sync += z.eq(z + 1)
                with m.Else():
                    m.d.sync += [a.eq(a + 1), z.eq(0), first.eq(0)]
                    m.next = "SCAN"
                    with m.If(a == n - 1):
                        m.next = "LV_RD"
                        with m.If(tbad | pbad | (asum != n)):
                            m.d.sync += tflag.eq(1)
                            m.next = "FIN"
            with m.State("LV_RD"):
                m.d.sync += lv_load.eq(1)
                m.next = "LV_LATCH"
            with m.State("LV_LATCH"):
                e = Signal(LEVEL, name="level_e")
                m.d.comb += [e.eq(lvl_r.data), mul.start.eq(1), mul.a.eq(e.anchors), mul.b.eq(f.classes)]
                m.next = "LV_MUL1"
            with m.State("LV_MUL1"), m.If(~mul.busy):
                nblk = Mux(lv.blocks != 0, lv.blocks, (mul.p + tn - 1) >> (tn - 1).bit_length())
                m.d.comb += [mul.start.eq(1), mul.a.eq(lv.blk_stride), mul.b.eq(nblk)]
                m.d.sync += nch.eq(mul.p)
                m.next = "LV_MUL2"
            with m.State("LV_MUL2"), m.If(~mul.busy):
                m.d.sync += [plane_step.eq(mul.p), arun.eq(0), crun.eq(0), b0.eq(0), lane.eq(0), mapping.eq(1)]
                m.d.comb += [rq.start.eq(1), dw.start.eq(1)]
                m.next = "LANES"
            with m.State("LANES"):
                act = arun < lv.anchors
                for i in range(lanes):
                    with m.If(lane == i):
                        ch = first + arun
                        m.d.sync += [cells.anchor[i].eq(Mux(act, arun, 0)), cells.active[i].eq(act),
                                     back.chan[i].eq(Mux(act, ch, 0)), back.cls[i].eq(crun),
                                     back.kernel[i].eq(Mux(act, k_of(ch), 1)), back.shift[i].eq(Mux(act, s_of(ch), 0))]
                with m.If(crun == f.classes - 1):
                    m.d.sync += [crun.eq(0), arun.eq(arun + 1)]
                with m.Else():
                    m.d.sync += crun.eq(crun + 1)
                m.d.sync += lane.eq(lane + 1)
                with m.If(lane == lanes - 1):
                    m.d.sync += lane.eq(0)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [cells.block_start.eq(1), back.block_start.eq(1)]
                m.d.sync += feeding.eq(1)
                m.next = "BWAIT"
            with m.State("BWAIT"), m.If(~back.block_busy):
                with m.If(b0 + lanes < nch):
                    m.d.sync += b0.eq(b0 + lanes)
                    m.next = "LANES"
                with m.Elif(li != f.levels - 1):
                    m.d.sync += [li.eq(li + 1), first.eq(first + lv.anchors), mapping.eq(0)]
                    m.next = "LV_RD"
                with m.Else():
                    m.d.sync += mapping.eq(0)
                    m.next = "FIN"
            with m.State("FIN"):
                m.d.comb += [back.finish.eq(1), back.bad.eq(over | cells.bad | tflag)]
                m.next = "BACK"
            with m.State("BACK"), m.If(back.done):
                m.next = "DRAIN"
            with m.State("DRAIN"), m.If(wr.idle):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "IDLE"
        return m


def _log2_ratios(m: Module, sa, sb):
    """``(rho_a, ok_a), (rho_b, ok_b)``: ``sa << rho_a == sb << rho_b == max(sa, sb)`` (a rho
    is 0 when there is none, and its ``ok`` low: a pair with none is flagged,
    ``ir.nms.NmsParams.fault``). The finer stride's shifted compares run beside ``sa > sb``
    and are selected after it (timing: no max() in front of sixteen compares); the coarser
    stride's ratio is 0 (``s << 0 == s``)."""
    a_over = Signal()
    m.d.comb += a_over.eq(sa > sb)
    out = []
    for fine, coarse, below in ((sa, sb, ~a_over), (sb, sa, a_over)):  # below: fine <= coarse
        r, found = Signal(3), Signal()
        for i in reversed(range(8)):  # the smallest i wins (several only when both are 0)
            with m.If(fine << i == coarse):
                m.d.comb += [r.eq(i), found.eq(1)]
        rho, ok = Signal(3), Signal()
        m.d.comb += [rho.eq(Mux(below, r, 0)), ok.eq(~below | found)]
        out.append((rho, ok))
    return out
