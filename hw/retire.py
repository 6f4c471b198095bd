"""Retire: drain finished groups through the PPU, fused max-pool, output-buffer writes.

A group's sums (the MAC array's ``tm × tn``, or the vector ALU's ``tn`` lanes) arrive with
their :data:`hw.seq.Meta` and are drained in ``drain`` chunks of ``ppu_lanes`` values, one
chunk per cycle, straight from the (held) sums register:

- pixel-parallel: pixel-major, chunk ``k`` lane ``λ`` = output channel ``λ % tm`` of pixel
  ``k*npc + λ // tm`` (``npc = ppu_lanes/tm`` pixels per chunk, ``drain = tn/npc``);
- channel-parallel: one chunk, lane ``λ < tm`` = channel ``λ``;
- VEC: one chunk, lane ``λ < tn`` = lane ``λ`` of the word.

So a chunk is ``ppu_lanes/tn`` consecutive output words (pixel ``j``, block ``kb``), and lane
``λ`` always takes parameter entry ``λ % tm`` (VEC: bias 0, shift ``rshift``).

After the PPU (4 cycles) each word goes to pooled position ``(r // p, q // p)`` (``p =
post.pool``, 1 without pooling). Pixels of a chunk that share a pooling window are merged
first (max), so the remaining words address distinct, consecutive positions; each then
reads-modifies-writes a scratch row of 16-bit partial maxima (banked like the chunk, read two
cycles ahead into a register; the writes of the read's cycle and of the cycle between are
forwarded) — or, for the window's first pixel, just writes it — and the
window's last pixel writes the result's low bytes to the output buffer, through a register
(``Retire.LATENCY``, one cycle). Without pooling every word is first and last: a plain write.

``done`` pulses in the cycle the instruction's last chunk is written.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..ir.config import AcceleratorConfig
from ..ir.cost import conv_drain
from ..ir.isa import Act
from .arith import csa_sum
from .buffers import OBUF_ADDR_BITS, ParamEntry, word_write_layout
from .job import Kind
from .ppu import OUT_BITS, PPU
from .seq import Meta


def select_tree(m: Module, values: list, sel, name: str):
    """``values[sel]`` as a binary tree of 2:1 multiplexers on the bits of ``sel``, lowest
    first (``len(values)`` a power of two). Written as plain muxes, not a ``Switch``: yosys
    turns a case statement into a one-hot ``$pmux`` (AND-OR, two LUTs per 4:1), while abc
    packs two levels of 2:1 muxes into one LUT6."""
    level, pos = list(values), 0
    while len(level) > 1:
        level = [Mux(sel[pos], level[g + 1], level[g]) for g in range(0, len(level), 2)]
        pos += 1
    out = Signal.like(values[0], name=name)
    m.d.comb += out.eq(level[0])
    return out


def _or(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


class Retire(wiring.Component):
    """``LATENCY``: cycles from a chunk's PPU result to its output-buffer write (the write
    register). Ports: ``job``; ``params`` (``tm`` entries of the CONV's block; a VEC's hold bias 0 and
    shift ``rshift``); ``sums`` (the MAC array's held output), ``vsums`` (the vector ALU's),
    ``meta`` with ``meta_valid`` (in the cycle the group's sums first appear) and
    ``meta_soon`` (``meta_valid`` one cycle ahead); ``wr`` (to ``OutputBuffer.wr``); ``done``."""

    LATENCY = 1

    def __init__(self, cfg: AcceleratorConfig, job_shape):
        self.cfg = cfg
        self.tm, self.tn, self.lanes = cfg.tm, cfg.tn, cfg.ppu_lanes
        self.words = cfg.ppu_lanes // cfg.tn  # words per chunk
        self.npc = cfg.ppu_lanes // cfg.tm  # pixels per chunk (pixel-parallel)
        self.bpp = cfg.tm // cfg.tn  # words per pixel (CONV)
        acc = signed(cfg.acc_bits)
        super().__init__({
            "job": In(job_shape),
            "params": In(data.ArrayLayout(ParamEntry, cfg.tm)),
            "sums": In(data.ArrayLayout(data.ArrayLayout(acc, cfg.tn), cfg.tm)),
            "vsums": In(data.ArrayLayout(acc, cfg.tn)),
            "meta": In(Meta), "meta_valid": In(1), "meta_soon": In(1),
            "wr": Out(data.ArrayLayout(word_write_layout(cfg.tn), self.words)),
            "done": Out(1),
        })
        # The partial-sum buffer: one entry of ppu_lanes accumulators per chunk of a tile.
        self.psum = memory.Memory(shape=data.ArrayLayout(signed(cfg.acc_bits), cfg.ppu_lanes),
                                  depth=cfg.psum_entries, init=[])
        self.scratch = [memory.Memory(shape=unsigned(OUT_BITS * cfg.tn), depth=cfg.output_half_words // self.words,
                                      init=[]) for _ in range(self.words)]

    def elaborate(self, platform):
        m = Module()
        j, tm, tn, nw, npc, bpp = self.job, self.tm, self.tn, self.words, self.npc, self.bpp
        m.submodules.ppu = ppu = PPU(self.lanes, self.cfg.acc_bits, self.cfg.ppu_early_shift)
        is_vec = j.kind == Kind.VEC

        # -- drain: chunk k of the latched group -------------------------------------------------
        dmax = conv_drain(self.cfg)  # chunks of the array's sums (a VEC's drain is 1)
        draining = Signal()
        held = Signal(Meta)
        cqd, cqm = Signal(16), Signal(3)  # (q // p, q % p) of the chunk's first pixel
        meta = Signal(Meta)
        # kk: the chunk read this cycle, a register (0 when a group's sums arrive: meta_soon
        # tells a cycle ahead), so the drain's select lines come straight from flip-flops.
        kk = Signal(range(dmax + 1))
        qd0, qm0 = Signal(16), Signal(3)
        advance = Signal()  # chunk kk is done (not held for a wide output's next byte plane)
        m.d.sync += kk.eq(Mux(self.meta_soon, 0, Mux(advance, kk + 1, kk)))
        m.d.comb += [meta.eq(Mux(self.meta_valid, self.meta, held)),
                     qd0.eq(Mux(self.meta_valid, self.meta.qd, cqd)), qm0.eq(Mux(self.meta_valid, self.meta.qm, cqm))]
        active = self.meta_valid | draining  # chunk kk is read this cycle
        last = kk + 1 >= j.drain
        channel = (j.kind == Kind.CONV) & ~j.pixel
        # What reaches the PPU: every chunk (pixel-parallel, VEC), or channel-parallel only
        # the totals, with the last chunk. A wide output holds such a chunk for one cycle a
        # byte plane (``ph`` counts them): the chunk is read, and reaches the PPU, once.
        posted = active & (~channel | last)
        ph = Signal(2)
        hold = posted & (ph != j.planes_m1)
        valid = posted & (ph == 0)
        m.d.comb += advance.eq(active & ~hold)
        m.d.sync += ph.eq(Mux(hold, ph + 1, 0))
        mod = qm0 + j.npc_mod
        carry = mod >= j.pool
        with m.If(active):
            m.d.sync += draining.eq(~last | hold)
        with m.If(advance & j.pixel):  # channel-parallel: one pixel, the group's position
            m.d.sync += [cqm.eq(Mux(carry, mod - j.pool, mod)), cqd.eq(qd0 + j.npc_div + carry)]
        with m.Elif(self.meta_valid):
            m.d.sync += [cqm.eq(qm0), cqd.eq(qd0)]
        with m.If(self.meta_valid):
            m.d.sync += held.eq(self.meta)

        beat = ppu.i.payload
        m.d.comb += [ppu.i.valid.eq(valid), ppu.o.ready.eq(1), ppu.post.eq(j.post)]
        with m.If(j.psum_out):  # a partial sum leaves stage 1 before any activation
            m.d.comb += ppu.post.act.eq(Act.NONE)
        psum_rd = self._psum_buffer(m, valid, ppu.sum)
        # Chunk kk of the held sums (lane λ: row λ % tm, column kk*npc + λ // tm): one
        # dmax:1 mux tree per lane bit. Channel-parallel adds each chunk's npc lanes of row i
        # into the row's running sum; with the last chunk it is the row's total.
        chunk = [select_tree(m, [self.sums[lane % tm][kc * npc + lane // tm] for kc in range(dmax)], kk, f"drain{lane}")
                 for lane in range(self.lanes)]
        acc = signed(self.cfg.acc_bits)
        # Row i's running total over the chunks so far (channel-parallel), and with this chunk:
        # its npc lanes and the total so far summed at once (a carry-save sum, one adder deep).
        rows = []
        for i in range(tm):
            run = Signal(acc, name=f"run{i}")
            total = Signal(acc, name=f"run_next{i}")
            m.d.comb += total.eq(csa_sum(m, [Mux(kk == 0, 0, run)] + [chunk[pix * tm + i] for pix in range(npc)],
                                      self.cfg.acc_bits, f"row{i}"))
            with m.If(advance):
                m.d.sync += run.eq(total)
            rows.append(total)
        for lane in range(self.lanes):
            i = lane % tm
            value = Mux(channel, rows[i] if lane < tm else 0, chunk[lane])
            m.d.comb += [beat.acc[lane].eq(Mux(is_vec, self.vsums[lane] if lane < tn else 0, value)),
                         beat.bias[lane].eq(self.params[i].bias), beat.shift[lane].eq(self.params[i].shift),
                         beat.psum[lane].eq(psum_rd[lane])]
        m.d.comb += beat.psum_in.eq(j.psum_in)

        # -- where each word of the chunk goes (used 2-4 cycles after the drain) ----------------
        # Computed a cycle after the drain from its registered inputs, straight into s1 (the
        # chunk's stage in the PPU's first stage): the drain's multiplexers (``meta_valid``
        # picking the arriving or the held group) are not in front of this arithmetic.
        delayed = [Signal.like(v, name=f"{n}_d") for v, n in ((meta, "meta"), (qd0, "qd0"), (qm0, "qm0"), (kk, "kk"),
                                                              (valid, "valid"))]
        m.d.sync += [d.eq(v) for d, v in zip(delayed, (meta, qd0, qm0, kk, valid))]
        # The chunk's pixels left in the row, ``cols - q0 - kk*npc`` (only a chunk of several
        # pixels asks which exist): registered beside the others from the drain's values — the
        # job is the same in both cycles — so the existence compares, the window chain and the
        # words' ``last`` no longer follow a three-term subtraction (tiny's 15.83 ns into
        # ``last`` on 3a4cdce's median seed).
        left = Signal(signed(17))
        if npc > 1:
            m.d.sync += left.eq(j.cols - meta.q0 - kk * npc)
        meta, qd0, qm0, kk, valid = delayed  # below: the registered ones
        if npc == 1:
            m.d.comb += left.eq(j.cols - meta.q0 - kk * npc)
        info = data.StructLayout({
            "valid": unsigned(1), "done": unsigned(1), "prow": unsigned(OBUF_ADDR_BITS),
            "words": data.ArrayLayout(data.StructLayout({
                "en": unsigned(1), "first": unsigned(1), "last": unsigned(1),
                "pidx": unsigned(OBUF_ADDR_BITS), "merge": unsigned(npc)}), nw),
        })
        now = Signal(info)
        wide = j.planes_m1 != 0
        qd, qm, exists, starts = [], [], [], []
        for p in range(npc):
            if p == 0:
                qd.append(qd0), qm.append(qm0)
            else:
                nxt = qm[-1] + 1
                wrap = nxt == j.pool
                qd.append(qd[-1] + wrap), qm.append(Mux(wrap, 0, nxt))
            exists.append(Mux(j.pixel, left > p, p == 0))
            starts.append(1 if p == 0 else qm[p] == 0)
        for w in range(nw):
            p, kb = w // bpp, w % bpp
            cont, end_qm, merge = 1, qm[p], []
            for t in range(p + 1, npc):  # pixels that continue p's window inside this chunk
                cont = cont & ~starts[t] & exists[t]
                end_qm = Mux(cont, qm[t], end_qm)
                merge.append(cont)
            ww = now.words[w]
            m.d.comb += [
                ww.en.eq(starts[p] & exists[p] & ~j.nowrite & (~is_vec | (w == 0))),
                ww.first.eq(meta.rfirst & (qm[p] == 0)),
                ww.last.eq(meta.rlast & (end_qm == j.pool - 1)),
                ww.pidx.eq(Mux(is_vec, meta.pcol + meta.kb, qd[p] * bpp + kb)),
                ww.merge.eq(Cat(*[merge[t - p - 1] if t > p else Const(0, 1) for t in range(npc)])),
            ]
        m.d.comb += [now.valid.eq(valid), now.done.eq(valid & meta.final & (kk + 1 >= j.drain)),
                     now.prow.eq(j.obuf_addr + meta.prow)]
        # s1..s3 follow the chunk through the PPU's three stages.
        s1, s2, s3 = Signal(info), Signal(info), Signal(info)
        # A wide output keeps its chunk in s3 for one cycle a byte plane (``wph`` counts them;
        # chunks reach s3 at least that many cycles apart), at ``plane_words`` steps.
        wph, plane_off = Signal(2), Signal(OBUF_ADDR_BITS)
        whold = s3.valid & (wph != j.planes_m1)
        m.d.sync += [s1.eq(now), s2.eq(s1), wph.eq(Mux(whold, wph + 1, 0)),
                     plane_off.eq(Mux(whold, plane_off + j.plane_words, 0))]
        with m.If(~whold):
            m.d.sync += s3.eq(s2)
        planes = self._wide_bytes(m, s1.valid, s2.valid, ppu.sum, wph)

        # -- scratch read (stage 1, registered) and read-modify-write (stage 3) -----------------
        if self.cfg.pool_loop_reg:
            results = self._scratch_registered(m, s1, s2, s3, whold, ppu.o.payload)
        else:
            results = self._scratch(m, s1, s3, ppu.o.payload)
        # The output-buffer writes and ``done`` leave from registers (``LATENCY``): the pooled
        # maxima reach a register, not the output buffer's banking and block RAM inputs.
        for w in range(nw):
            ww = s3.words[w]
            m.d.sync += [self.wr[w].en.eq(s3.valid & ww.en & ww.last),
                         self.wr[w].addr.eq(s3.prow + ww.pidx + plane_off),
                         self.wr[w].data.eq(Mux(wide, Cat(*planes[w * tn:(w + 1) * tn]),
                                                Cat(*[v[:8] for v in results[w]])))]
        m.d.sync += self.done.eq(s3.done & ~whold)
        return m

    def _scratch(self, m, s1, s3, values):
        """The pool's scratch read (stage 1, registered) and read-modify-write (stage 3, the
        write in that cycle); returns each word's pooled lanes."""
        nw = self.words
        # The read is addressed two stages early and its data registered, so the max at stage
        # 3 starts from flip-flops, not from a block RAM's slow output (nor from the fabric
        # logic a transparent port would need there). It misses the writes of its own cycle
        # and of the cycle between (the chunks two and one stages ahead, then at stage 3):
        # both are forwarded from registers.
        lg = (nw - 1).bit_length()
        partials, writes = [], []
        for b, mem in enumerate(self.scratch):
            wp, rp, raddr = self._scratch_ports(m, b, mem, s1)
            rdata = Signal.like(rp.data, name=f"scratch_rd{b}")
            # ``fwd``: the last cycle's write; ``match0`` (for the read of the last cycle, taken
            # into ``rdata`` now) and ``match1`` (for the read of the cycle before: its data is
            # in ``rdata``) say whether it wrote the row read.
            fwd, match0, match1 = Signal.like(wp.data, name=f"scratch_fwd{b}"), Signal(), Signal()
            m.d.sync += [fwd.eq(wp.data), rdata.eq(Mux(match0, fwd, rp.data)),
                         match0.eq(wp.en & (wp.addr == rp.addr)), match1.eq(wp.en & (wp.addr == raddr))]
            partials.append(Mux(match1, fwd, rdata))
            writes.append(wp)
        results = [self._pool(m, w, values, s3.words, self._bank_pick(m, s3.words[w], partials, f"partial{w}"))
                   for w in range(nw)]
        for b, wp in enumerate(writes):
            for w in range(nw):
                ww = s3.words[w]
                with m.If(s3.valid & ww.en & ~ww.last & (ww.pidx % nw == b)):
                    m.d.comb += [wp.en.eq(1), wp.addr.eq(ww.pidx >> lg), wp.data.eq(Cat(*results[w]))]
        return results

    def _scratch_ports(self, m, b, mem, s1):
        """Bank ``b``'s write port, its read port (no transparency: block RAM) addressed by the
        word of the chunk in s1 that falls in it, and that address registered."""
        nw, lg = self.words, (self.words - 1).bit_length()
        m.submodules[f"scratch{b}"] = mem
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=())
        for w in range(nw):
            with m.If(s1.words[w].en & (s1.words[w].pidx % nw == b)):
                m.d.comb += rp.addr.eq(s1.words[w].pidx >> lg)
        raddr = Signal.like(rp.addr, name=f"scratch_raddr{b}")
        m.d.sync += raddr.eq(rp.addr)
        return wp, rp, raddr

    def _bank_pick(self, m, word, per_bank, name):
        """``per_bank[word.pidx % nw]``."""
        out = Signal.like(per_bank[0], name=name)
        for b, d in enumerate(per_bank):
            with m.If(word.pidx % self.words == b):
                m.d.comb += out.eq(d)
        return out

    def _scratch_registered(self, m, s1, s2, s3, whold, values):
        """``cfg.pool_loop_reg``: :meth:`_scratch` with its loop cut short. The recurrence (a
        window's row written by one chunk and read back by the next) runs from a register of
        the row's last result (``fwd``, taken when the registered ``use_fwd`` says so) or of
        the word's read data, through the comparisons, back into ``fwd``: no bank
        multiplexer and no write-enable logic inside it. The scratch is written from a
        register a cycle later, so a read misses three writes: the one of its own cycle and
        the one before are forwarded into the read data register, the next one through
        ``fwd``."""
        nw, tn = self.words, self.tn
        lg = (nw - 1).bit_length()
        # s3's value next cycle: the registered selects are computed for it.
        s3n = Signal.like(s3, name="s3_next")
        m.d.comb += s3n.eq(Mux(whold, s3.as_value(), s2.as_value()))
        # wsel[b][w]: word w of the chunk in s3 writes a partial maximum to bank b.
        wsel = [[Signal(name=f"wsel{b}_{w}") for w in range(nw)] for b in range(nw)]
        for b in range(nw):
            for w in range(nw):
                ww = s3n.words[w]
                m.d.sync += wsel[b][w].eq(s3n.valid & ww.en & ~ww.last & (ww.pidx % nw == b))
        layout = data.StructLayout({"en": unsigned(1), "addr": unsigned(OBUF_ADDR_BITS - lg),
                                    "data": unsigned(OUT_BITS * tn)})
        results = [Signal(data.ArrayLayout(signed(OUT_BITS), tn), name=f"pooled{w}") for w in range(nw)]
        rdb, m1n = [], []
        for b, mem in enumerate(self.scratch):
            wp, rp, raddr = self._scratch_ports(m, b, mem, s1)
            # wcur: this cycle's write (the chunk in s3); wreg: last cycle's, written to the block
            # RAM now; wreg2: the one before.
            wcur, wreg, wreg2 = (Signal(layout, name=f"scratch_{n}{b}") for n in ("wcur", "wreg", "wreg2"))
            m.d.comb += [wcur.en.eq(_or([wsel[b][w] for w in range(nw)])),
                         wcur.addr.eq(_or([Mux(wsel[b][w], s3.words[w].pidx >> lg, 0) for w in range(nw)])),
                         wcur.data.eq(_or([Mux(wsel[b][w], Cat(*results[w]), 0) for w in range(nw)])),
                         wp.en.eq(wreg.en), wp.addr.eq(wreg.addr), wp.data.eq(wreg.data)]
            m.d.sync += [wreg.eq(wcur), wreg2.eq(wreg)]
            # This cycle's read misses the writes in wcur (the block RAM takes it next cycle) and
            # in wreg (written now): ``hit_a`` / ``hit_b`` pick them when its data arrives.
            hit_a, hit_b = Signal(name=f"scratch_hita{b}"), Signal(name=f"scratch_hitb{b}")
            m.d.sync += [hit_a.eq(wcur.en & (wcur.addr == rp.addr)), hit_b.eq(wreg.en & (wreg.addr == rp.addr))]
            rd = Signal.like(rp.data, name=f"scratch_rdb{b}")
            m.d.comb += rd.eq(Mux(hit_a, wreg.data, Mux(hit_b, wreg2.data, rp.data)))
            rdb.append(rd)
            # This cycle's write against the last cycle's read (its data reaches s3 next cycle).
            hit = Signal(name=f"scratch_hitc{b}")
            m.d.comb += hit.eq(wcur.en & (wcur.addr == raddr))
            m1n.append(hit)
        olds = []
        for w in range(nw):
            rdata, fwd, use = (Signal(OUT_BITS * tn, name=f"scratch_rdw{w}"), Signal(OUT_BITS * tn, name=f"fwd{w}"),
                               Signal(name=f"use_fwd{w}"))
            # Word w's bank next cycle, and which word of this cycle's chunk writes that bank.
            bank = [Signal(name=f"bank{w}_{b}") for b in range(nw)]
            m.d.comb += [bank[b].eq(s3n.words[w].pidx % nw == b) for b in range(nw)]
            writer = [_or([bank[b] & wsel[b][v] for b in range(nw)]) for v in range(nw)]
            m.d.sync += [rdata.eq(_or([Mux(bank[b], rdb[b], 0) for b in range(nw)])),
                         use.eq(_or([bank[b] & m1n[b] for b in range(nw)])),
                         fwd.eq(_or([Mux(writer[v], Cat(*results[v]), 0) for v in range(nw)]))]
            olds.append((use, fwd, rdata))
        for w in range(nw):
            m.d.comb += Cat(*results[w]).eq(Cat(*self._pool(m, w, values, s3.words, olds[w])))
        return results

    def _wide_bytes(self, m, s1_valid, s2_valid, stage1, wph):
        """Byte ``wph`` of each lane's wide result (docs/isa.md "Wide outputs": the sum after
        the activation, sign-extended to 32 bits), for the chunk in s3: the PPU's stage-1
        value, kept two stages (loaded only with a valid chunk, so it stays through the
        chunk's byte planes)."""
        acc = signed(self.cfg.acc_bits)
        v2 = Signal(data.ArrayLayout(acc, self.lanes))
        v3 = Signal(data.ArrayLayout(acc, self.lanes))
        with m.If(s1_valid):
            m.d.sync += v2.eq(stage1)
        with m.If(s2_valid):
            m.d.sync += v3.eq(v2)
        out = []
        for lane in range(self.lanes):
            word = Signal(signed(32), name=f"wide{lane}")
            m.d.comb += word.eq(v3[lane])
            out.append(word.word_select(wph, 8))
        return out

    def _psum_buffer(self, m, valid, stage1):
        """The partial-sum buffer's ports: returns entry ``k`` while chunk ``k`` of the
        instruction is drained (``valid``; read a cycle ahead, at the count of chunks so far
        plus this cycle's); with ``psum_out`` the PPU's stage-1 value of chunk ``k`` is written
        back to entry ``k`` when it appears, two cycles later. Chunks count from 0 in every instruction (the count
        clears with ``done``), so every CONV over the same tile meets the same entries."""
        m.submodules.psum = mem = self.psum
        wp = mem.write_port()
        rp = mem.read_port()
        entries = self.cfg.psum_entries
        count = Signal(range(entries + 1))
        written, written2 = Signal.like(rp.addr), Signal.like(rp.addr)
        nxt = count + valid
        m.d.sync += [count.eq(Mux(self.done, 0, nxt)), written.eq(count), written2.eq(written)]
        m.d.comb += [wp.addr.eq(written2), wp.data.eq(stage1)]
        if not self.cfg.psum_addr_reg:
            m.d.comb += rp.addr.eq(Mux(self.done | (nxt >= entries), 0, nxt))
            return rp.data
        # ``psum_addr_reg``: the same address, both candidates in registers (``at0``: the count,
        # ``at1``: the count + 1, each 0 from ``entries`` on, as the count's width wraps), so
        # the drain's ``valid`` only picks one.

        def wrapped(v):
            v = v[:len(count)]
            return Mux(v >= entries, 0, v)
        at0 = Signal.like(rp.addr, name="psum_at0")
        at1 = Signal.like(rp.addr, name="psum_at1", init=1 if entries > 1 else 0)
        with m.If(self.done):
            m.d.sync += [at0.eq(0), at1.eq(wrapped(Const(1, len(count))))]
        with m.Elif(valid):
            m.d.sync += [at0.eq(at1), at1.eq(wrapped(count + 2))]
        m.d.comb += rp.addr.eq(Mux(self.done, 0, Mux(valid, at1, at0)))
        written_valid, written_valid2 = Signal(), Signal()
        m.d.sync += [written_valid.eq(valid), written_valid2.eq(written_valid)]
        m.d.comb += wp.en.eq(written_valid2 & self.job.psum_out)
        return rp.data

    def _pool(self, m, w, values, words, old):
        """Word ``w``'s 16-bit lanes: the maximum of the PPU's result, the chunk's other pixels
        in the same window, and the window's partial maximum unless first. All candidates
        are compared pairwise at once (one comparator deep, not a chain of maxima); a
        candidate at least as large as every other one present is taken (several are taken
        only when equal, so OR-ing them gives that value).

        ``old``, the partial maximum: a value, or ``(use, a, b)`` for ``Mux(use, a, b)``, whose
        comparisons are then made with ``a`` and with ``b`` and the verdicts selected by
        ``use`` (timing: no multiplexer in front of the comparators inside ``pool_loop_reg``'s
        loop, the retire stage's slowest path)."""
        tn, nw, bpp = self.tn, self.words, self.bpp
        p, kb = w // bpp, w % bpp
        ww = words[w]
        res = []

        def ge(v, u):  # v >= u, either side possibly a (use, a, b) choice
            for side, pick in ((v, lambda c: ge(c, u)), (u, lambda c: ge(v, c))):
                if isinstance(side, tuple):
                    use, a, b = side
                    return Mux(use, pick(a), pick(b))
            return v >= u

        for lane in range(tn):
            cands = [(values[w * tn + lane], 1)]
            cands += [(values[(t * bpp + kb) * tn + lane], ww.merge[t]) for t in range(p + 1, self.npc)]
            if isinstance(old, tuple):
                use, a, b = old
                cands.append(((use, a.word_select(lane, OUT_BITS).as_signed(), b.word_select(lane, OUT_BITS).as_signed()),
                              ~ww.first))
            else:
                cands.append((old.word_select(lane, OUT_BITS).as_signed(), ~ww.first))
            taken = []
            for i, (v, present) in enumerate(cands):
                wins = present
                for k, (u, there) in enumerate(cands):
                    if k != i:
                        wins = wins & (~there | ge(v, u))
                taken.append(Mux(wins, Mux(v[0], v[1], v[2]) if isinstance(v, tuple) else v, 0))
            r = Signal(signed(OUT_BITS), name=f"res{w}_{lane}")
            m.d.comb += r.eq(_or(taken))
            res.append(r)
        return res
