"""The compute unit: CONV, VEC and NOP instructions on the on-chip memories it owns.

::

    instr ──▶ decode (hw/job.py) ──▶ job ──▶ Sequencer (hw/seq.py) ──▶ descriptor
                                                │  (pe_latency - 8 delay stages)
                 load unit ─▶ lb_w ─▶ LineBuffer ◀┤ addresses ─▶ WeightBuffer ◀─ wb_w
                 load unit ─▶ pb_w ─▶ ParamBuffer │ (read: 1 cycle)
                                 │ (at accept)   ▼
                              params      operand router ──▶ MACArray (3) ─┐
                                 │                        └─▶ VecALU   (3) ─┤ sums + meta
                                 └──────────────────────────▶ Retire: drain ─▶ PPU (4) ─▶ (1) ─▶
                                        fused pool ─▶ OutputBuffer ─▶ ob_r/ob_rdata ─▶ store unit

Semantics are docs/isa.md's and sim/machine.py's, bit for bit. Timing: an instruction
accepted on ``instr`` in cycle 0 pulses ``done`` in cycle ``C`` and the next instruction can
be accepted in that same cycle (``instr.ready`` is ``~busy | done``), where, with ``S =
max(steps, drain)`` slots per group (exactly ``ir.cost.conv_cycles`` / ``vec_cycles``):

    C = 1 + rows * groups * S + min(steps, drain) + pe_latency        (CONV)
    C = 1 + rows * cols * nblk * taps + 1 + pe_latency                 (VEC; drain = 1; ir.cost.vec_taps)
    C = 1                                                              (NOP)

The leading 1 (``ir.cost.COMPUTE_START``) is the accept register: a CONV or VEC is decoded
from the registered instruction in the cycle after its accept, and starts then.

With ``cfg.compute_chain`` (off on both targets; ``_chain``) the unit takes the next
CONV/SPCONV/VEC before ``done``, when the previous one's final group reaches retire, and holds
its start so its first sums reach retire after the previous end (``ir.timeline.chain_back``,
``chain_start``); ``instr.ready`` then depends on the offered opcode (a NOP or FINISH waits for
nothing in flight): a target turning it on for Fmax would take that class bit from the
controller's fetch head instead.

Every group's drain overlaps the next group's beats; the last group's, ``min(steps, drain)``,
has nothing to overlap. The fixed part, 8 cycles, is the line-buffer read (1), the MAC array (3),
the PPU (4: an input register and three stages) and the output-buffer write register (1) after
the last beat's slot, less the first drain cycle that the drain term counts; ``pe_latency - 8``
extra register stages (block-RAM output registers, then the
operand router's output, then the descriptor) make it ``pe_latency``.

The last words are offered to the output buffer in the ``done`` cycle and read back through
``ob_r`` from the cycle after, or two after with ``cfg.obuf_write_reg`` (each buffer copy's
write register); a STORE accepted in the ``done`` cycle reads from ``ir.cost.DMA_START``
cycles later (:class:`hw.buffers.OutputBuffer`).

Ports: ``instr`` (stream of ``ir.isa.INSTR``), ``done``, ``lb_w``/``wb_w``/``pb_w`` (load unit
writes, :mod:`hw.buffers`), ``ob_r``/``ob_rdata`` (store unit reads).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.config import AcceleratorConfig
from ..ir.isa import INSTR, PARAM_BYTES, Opcode
from .buffers import ObufRead, OutputBuffer, ParamBuffer, ParamEntry, WeightBuffer
from .job import Kind, decode_job, job_layout, job_products, products_layout
from .linebuf import LineBuffer, beat_write_layout
from .pe import MACArray, act_operand, dsp_pairs, weight_operand
from .ppu import PPU
from .retire import Retire
from .seq import LOOP_FLAGS, Sequencer, loop_ones
from .spconv_walk import SpconvWalk
from .vecalu import VecALU

#: The fixed part of an instruction's cycles: the line-buffer read, the MAC array and the PPU
#: and the retire stage's write register after the last beat's slot, less one cycle that the
#: drain term already counts.
BASE_LATENCY = 1 + MACArray.LATENCY + PPU.LATENCY + Retire.LATENCY - 1


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_config(cfg: AcceleratorConfig) -> None:
    """Raise ``ShiftflowError`` (one line) unless the compute unit can be built for ``cfg``."""
    tm, tn, lanes, beat = cfg.tm, cfg.tn, cfg.ppu_lanes, cfg.dram_bytes_per_cycle
    # Checked in order, each assuming the ones before it.
    rules = [
        (lambda: all(_pow2(v) for v in (tm, tn, lanes)),
         f"tm ({tm}), tn ({tn}) and ppu_lanes ({lanes}) must be powers of two"),
        (lambda: tm % tn == 0, f"tm ({tm}) must be a multiple of tn ({tn})"),
        (lambda: lanes % tm == 0 and lanes <= tm * tn,
         f"ppu_lanes ({lanes}) must be a multiple of tm ({tm}) and at most tm*tn"),
        (lambda: beat <= tn * tn, f"a DRAM beat ({beat} bytes) must be at most tn words"),
        (lambda: (tm * tn) % beat == 0 and (PARAM_BYTES * tm) % beat == 0,
         f"weight words ({tm * tn} bytes) and parameter rows ({PARAM_BYTES * tm} bytes) must hold whole DRAM "
         f"beats ({beat})"),
        (lambda: _pow2(cfg.output_half_words) and cfg.output_half_words % (lanes // tn) == 0,
         f"output_half_words ({cfg.output_half_words}) must be a power of two of at least ppu_lanes/tn"),
        (lambda: cfg.pe_latency >= BASE_LATENCY,
         f"pe_latency ({cfg.pe_latency}) must be at least {BASE_LATENCY}, the compute pipeline's depth"),
        (lambda: not cfg.compute_chain or (cfg.chain_retire_single and cfg.chain_front == cfg.pe_latency - PPU.LATENCY),
         f"compute_chain is built with chain_retire_single and chain_front = pe_latency - {PPU.LATENCY} "
         f"({cfg.pe_latency - PPU.LATENCY})"),
    ]
    for ok, message in rules:
        if not ok():
            raise ShiftflowError(f"compute unit for target {cfg.name!r}: {message}")


class _JobAt:
    """A job's fields from ``now`` in the cycle ``sel`` holds, else from ``later``."""

    def __init__(self, sel, now, later):
        self._sel, self._now, self._later = sel, now, later

    def __getattr__(self, name):
        return Mux(self._sel, getattr(self._now, name), getattr(self._later, name))


def _stage(m: Module, value, name: str):
    """``value`` one cycle later (a register of the same shape)."""
    reg = Signal.like(value, name=name)
    m.d.sync += reg.eq(value)
    return reg


class ComputeUnit(wiring.Component):
    """The compute unit for ``cfg`` (see the module docstring). The memories are attributes
    (``lb``, ``wb``, ``pb``, ``ob``) with ``sim_load``/``sim_dump`` helpers for testbenches.

    ``products_in``: the decoder's products (``hw.job.job_products`` of the ``instr`` payload)
    come in on ``products``, beside the payload, from the controller's compute queue
    (``cfg.queue_products``), instead of being formed here."""

    def __init__(self, cfg: AcceleratorConfig, products_in: bool = False):
        check_config(cfg)
        self.cfg, self.products_in = cfg, products_in
        self.lb, self.wb, self.pb, self.ob = LineBuffer(cfg), WeightBuffer(cfg), ParamBuffer(cfg), OutputBuffer(cfg)
        self.job_shape = job_layout(cfg, self.lb.addr_bits, self.wb.row_bits)
        beat = cfg.dram_bytes_per_cycle
        super().__init__({
            "instr": In(stream.Signature(INSTR)),
            "done": Out(1),
            "lb_w": In(stream.Signature(beat_write_layout(beat))),
            "wb_w": In(stream.Signature(beat_write_layout(beat, banked=True))),
            "pb_w": In(stream.Signature(beat_write_layout(beat, banked=True))),
            "ob_r": In(stream.Signature(ObufRead)),
            "ob_rdata": Out(stream.Signature(unsigned(8 * beat))),
            **({"products": In(products_layout(cfg))} if products_in else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, tm, tn = self.cfg, self.cfg.tm, self.cfg.tn
        lb, wb, pb, ob = self.lb, self.wb, self.pb, self.ob
        m.submodules.lb, m.submodules.wb, m.submodules.pb, m.submodules.ob = lb, wb, pb, ob
        wiring.connect(m, wiring.flipped(self.lb_w), lb.w)
        wiring.connect(m, wiring.flipped(self.wb_w), wb.w)
        wiring.connect(m, wiring.flipped(self.pb_w), pb.w)
        wiring.connect(m, wiring.flipped(self.ob_r), ob.rd)
        wiring.connect(m, ob.rd_data, wiring.flipped(self.ob_rdata))
        # The first extra stage beyond the block-RAM output and router registers goes inside
        # the sequencer, between its address sums' terms and their offsets.
        seq_staged = cfg.pe_latency - BASE_LATENCY >= 3
        m.submodules.seq = seq = Sequencer(tn, lb.copies, lb.addr_bits, wb.row_bits, self.job_shape, seq_staged,
                                                  cfg.seq_idle_hold)
        m.submodules.mac = mac = MACArray(tm, tn, cfg.acc_bits, packed=not cfg.split_products)
        # With a beat register stage (``extra >= 2``, below) the vector ALU's own operand register
        # takes its place: the multipliers' inputs from flip-flops, the same cycles.
        vec_reg = cfg.pe_latency - BASE_LATENCY >= 2
        m.submodules.vec = vec = VecALU(tn, cfg.acc_bits, cfg.split_products, operand_reg=vec_reg,
                                        shift_luts=cfg.vec_shift_luts)
        m.submodules.retire = retire = Retire(cfg, self.job_shape)

        # -- accept, decode, done ------------------------------------------------------------------
        # The accepted instruction is registered (``ins``) and decoded in the next cycle, ``go``,
        # in which a CONV or VEC starts (ir.cost.COMPUTE_START): nothing combinational runs
        # from the controller's issue decision into the decoder's multipliers.
        busy, accept, go = Signal(), Signal(), Signal()
        ins = Signal(INSTR)
        opcode = self.instr.payload.header.opcode
        job_next, job = Signal(self.job_shape), Signal(self.job_shape)
        # The decoder's products, from the payload (or, ``products_in``, from the queue beside
        # it) and registered beside ``ins`` (sampled every cycle too): the multipliers sit in
        # front of a register, not between two.
        products = {}
        formed = ({name: getattr(self.products, name) for name, _ in products_layout(cfg)} if self.products_in
                  else job_products(cfg, self.instr.payload))
        for name, value in formed.items():
            products[name] = Signal(value.shape(), name=f"job_{name}")
            m.d.sync += products[name].eq(value)
        decode_job(m, cfg, ins, job_next, products)
        nop_done = Signal()
        runs = (opcode == Opcode.CONV) | (opcode == Opcode.VEC) | (opcode == Opcode.SPCONV)
        m.d.sync += [nop_done.eq(accept & ~runs), go.eq(accept & runs)]
        m.d.comb += self.done.eq(nop_done | retire.done)
        # ``fire``: the sequencer (or an SPCONV's walker) starts; ``go`` unless chaining holds it.
        fire, final_in = Signal(), Signal()  # final_in: the front's last group reaches retire
        lead = Signal.like(job.lead, name="start_lead")  # the job being started's (a held one: registered)
        m.d.comb += lead.eq(Mux(go, job_next.lead, job.lead))
        chain = self._chain(m, retire, accept, go, runs, fire, final_in, lead) if cfg.compute_chain else None
        if chain is None:
            m.d.comb += [self.instr.ready.eq(~busy | self.done), fire.eq(go)]
        m.d.comb += accept.eq(self.instr.valid & self.instr.ready)
        # ``ins`` is used only in the cycle after an accept, so it samples the payload every
        # cycle: no enable fanning out from the issue decision to its hundreds of bits.
        m.d.sync += ins.eq(self.instr.payload)
        with m.If(accept):
            m.d.sync += busy.eq(1)
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        with m.If(go):
            m.d.sync += job.eq(job_next)
        # SPCONV: the index walker starts with the instruction; the sequencer starts when the
        # first step has reached its offset stage (ir.cost.SPCONV_START cycles later).
        m.submodules.walk = walk = SpconvWalk(cfg)
        sp_wait = Signal()
        # A start in ``go`` takes the decoded job's fields (the job register loads then); a
        # held one (chaining) the registered job's.
        start_job = job_next if chain is None else _JobAt(go, job_next, job)
        sp_go = fire & start_job.sparse
        m.d.comb += [walk.start.eq(sp_go), walk.kept.eq(start_job.kept), walk.kh.eq(start_job.n_y),
                     walk.kw.eq(start_job.n_x),
                     walk.base.eq(start_job.w_row + ((start_job.kept + tn - 1) >> (tn - 1).bit_length())),
                     seq.sp.payload.eq(walk.o.payload), seq.sp.valid.eq(walk.o.valid), walk.o.ready.eq(seq.sp.ready),
                     seq.sp_flush.eq(fire), seq.sp_start.eq(sp_wait & seq.sp_primed)]
        with m.If(sp_go):
            m.d.sync += sp_wait.eq(1)
        with m.Elif(seq.sp_start):
            m.d.sync += sp_wait.eq(0)
        m.d.comb += [seq.start.eq((fire & ~start_job.sparse) | seq.sp_start), seq.job.eq(job)]
        # The sequencer's loop-end flags at a start: the decoded job's in ``go`` (the job
        # register loads then), the registered job's at an SPCONV's later start.
        for name, now, later in zip(LOOP_FLAGS, loop_ones(job_next).values(), loop_ones(job).values()):
            m.d.comb += getattr(seq.ones, name).eq(Mux(go, now, later))

        # The block's parameters, read in the start cycle and held for the instruction; a VEC
        # holds bias 0 and shift rshift in every entry, so the drain needs no mux for them.
        conv = ins.body.conv
        params, p_load, v_load = Signal(data.ArrayLayout(ParamEntry, tm)), Signal(), Signal()
        m.d.comb += [pb.rd_en.eq(go & (job_next.kind == Kind.CONV)), pb.rd_bank.eq(conv.wbank),
                     pb.rd_entry.eq(conv.p_addr)]
        m.d.sync += [p_load.eq(pb.rd_en), v_load.eq(go & (job_next.kind == Kind.VEC))]
        with m.If(p_load):
            m.d.sync += params.eq(pb.rd_data)
        with m.Elif(v_load):
            m.d.sync += [v for e in params for v in (e.bias.eq(0), e.shift.eq(job.rshift))]

        # -- descriptor, memory read, operand router, with pe_latency - BASE_LATENCY extra
        # register stages where they cut the longest paths: first the memories' outputs (block
        # RAM output registers), then the router's output, then inside the sequencer's address
        # sums (``seq_staged``), then before the memories.
        extra = cfg.pe_latency - BASE_LATENCY
        desc = seq.desc
        for k in range(max(0, extra - 2 - seq_staged)):
            desc = _stage(m, desc, f"desc_stage{k}")
        # The weight port: a beat's weight word is read when the step is a word's first
        # (``wl == 0``); the other cycles of an SPCONV the walker reads its index list through
        # it, and the word is held in ``wgt_reg`` (enabled by the read) for the word's steps.
        wread = desc.valid & (desc.wl == 0)
        m.d.comb += [lb.rd_addr.eq(desc.addr), lb.rd_stride.eq(desc.stride),
                     wb.rd_addr.eq(Mux(job.sparse & ~wread, walk.rd_addr, desc.w_row)),
                     walk.rd_grant.eq(job.sparse & ~wread), walk.rd_data.eq(wb.rd_data)]
        rd = _stage(m, desc, "rd")
        words, wgt = lb.rd_data, wb.rd_data
        wgt_new = ~job.sparse | (rd.valid & (rd.wl == 0))  # wb.rd_data is a weight word this cycle
        if extra >= 1:
            wgt_reg = Signal.like(wgt, name="wgt_reg")
            with m.If(wgt_new):
                m.d.sync += wgt_reg.eq(wgt)
            # Depthwise: a lane's words are zeroed as they are registered (a synchronous reset
            # of the flip-flops), so the router's tm*tn depthwise operands need no lane mask.
            # Which lanes, registered beside ``rd``: the reset comes straight from a register.
            dw_zero = Signal(tn, name="dw_zero")
            m.d.sync += dw_zero.eq(Mux(job.depthwise, ~desc.lane_ok, 0))
            words_reg = Signal.like(words, name="words_reg")
            for c in range(lb.copies):
                for lane in range(tn):
                    with m.If(dw_zero[lane]):
                        m.d.sync += words_reg[c][lane].eq(0)
                    with m.Else():
                        m.d.sync += words_reg[c][lane].eq(words[c][lane])
            rd, words, wgt = _stage(m, rd, "rd_reg"), words_reg, wgt_reg
        else:  # no register stage to enable: a hold register and a multiplexer
            held, wgt_now = Signal.like(wgt, name="wgt_held"), Signal.like(wgt, name="wgt_now")
            m.d.comb += wgt_now.eq(Mux(wgt_new, wgt, held))
            m.d.sync += held.eq(wgt_now)
            wgt = wgt_now
        beat, vb = Signal.like(mac.i.payload, name="mac_beat"), Signal.like(vec.i.payload, name="vec_beat")
        self._route(m, job, rd, words, wgt, beat, dw_masked=extra >= 1)
        m.d.comb += [beat.first.eq(rd.first), beat.last.eq(rd.last),
                     vb.a.eq(words[0][0]), vb.b.eq(words[min(1, lb.copies - 1)][0]),  # one copy: b a cycle after a
                     vb.a_ok.eq(rd.lane_ok), vb.b_ok.eq(rd.b_ok),
                     vb.tap_ok.eq(rd.tap_ok), vb.first.eq(rd.first), vb.last.eq(rd.last)]
        m.d.comb += [vec.i.payload.eq(vb), vec.i.valid.eq(rd.valid & (job.kind == Kind.VEC))]
        assert vec.operand_reg == (extra >= 2)
        if extra >= 2:
            rd, beat = _stage(m, rd, "beat_desc"), _stage(m, beat, "beat_reg")
        m.d.comb += [mac.i.payload.eq(beat), mac.i.valid.eq(rd.valid & (job.kind == Kind.CONV)),
                     mac.mode.depthwise.eq(job.depthwise),
                     vec.mode.op.eq(job.op), vec.mode.a_signed.eq(job.a.signed_), vec.mode.b_signed.eq(job.b.signed_),
                     vec.mode.shift_a.eq(job.shift_a), vec.mode.shift_b.eq(job.shift_b)]

        # -- group metadata alongside the MAC array / vector ALU, then retire ---------------------
        meta, meta_valid = rd.meta, rd.valid & rd.last
        for k in range(MACArray.LATENCY):
            staged, staged_valid = Signal.like(rd.meta, name=f"meta{k}"), Signal(name=f"meta_valid{k}")
            m.d.sync += [staged.eq(meta), staged_valid.eq(meta_valid)]
            meta_soon = meta_valid
            meta, meta_valid = staged, staged_valid
        # Chaining: retire keeps its own job and parameters, taken from the front's with each
        # group a cycle before its sums arrive (the previous instruction has ended by then).
        rjob, rparams = job, params
        if chain is not None:
            rjob, rparams = Signal(self.job_shape, name="retire_job"), Signal.like(params, name="retire_params")
            with m.If(meta_soon):
                m.d.sync += [rjob.eq(job), rparams.eq(params)]
            m.d.comb += [final_in.eq(meta_valid & meta.final), chain.eq(rjob.slots)]
        m.d.comb += [retire.job.eq(rjob), retire.params.eq(rparams), retire.sums.eq(mac.o.payload),
                     retire.vsums.eq(vec.o.payload), retire.meta.eq(meta), retire.meta_valid.eq(meta_valid),
                     retire.meta_soon.eq(meta_soon),
                     ob.wr.eq(retire.wr), ob.wr_half.eq(rjob.half)]
        return m

    def _chain(self, m, retire, accept, go, runs, fire, final_in, lead):
        """The chaining controls (``cfg.compute_chain``; ir.timeline.chain_back / chain_start):
        the next CONV/SPCONV/VEC is taken once the front pipeline is empty (the previous one's
        final group reaches retire: ``final_in``), a NOP only with nothing in flight; a taken
        instruction's start (``fire``) waits until its first sums (``lead``, the job's, then
        the front) would reach retire after the previous one's end (retire holds one
        instruction at a time). Returns the signal to drive with retire's job's slots."""
        cfg = self.cfg
        front_busy, pending = Signal(), Signal()
        n = Signal(range(3))  # instructions in flight
        slots = Signal(self.job_shape["slots"].shape)
        # toend: cycles to the previous instruction's end, loaded when its final group arrives
        # (the end is then slots + back cycles ahead; ir.timeline.chain_back), saturating at
        # 0. A start may fire when its first sums, lead + chain_front - 1 cycles after it,
        # reach retire after that end (ir.timeline.chain_start).
        back = cfg.pe_latency - cfg.chain_front
        toend = Signal(range((1 << len(slots)) + back))
        with m.If(final_in):
            m.d.sync += toend.eq(slots + back - 1)
        with m.Elif(toend != 0):
            m.d.sync += toend.eq(toend - 1)
        can = toend <= lead + (cfg.chain_front - 2)
        m.d.comb += [self.instr.ready.eq(Mux(runs, ~front_busy | final_in, (n == 0) | ((n == 1) & self.done))),
                     fire.eq((go | pending) & can)]
        with m.If(accept & runs):
            m.d.sync += front_busy.eq(1)
        with m.Elif(final_in):
            m.d.sync += front_busy.eq(0)
        m.d.sync += [pending.eq((go | pending) & ~can), n.eq(n + accept - self.done)]
        return slots

    def _route(self, m, job, rd, words, wgt, beat, dw_masked):
        """The operand router: each DSP's decoded operands (``hw.pe.dsp_pairs``) with one level
        of multiplexing from the line-buffer words and the weight word. Shared values (a
        lane's dense activation, a row's broadcast weight) are decoded once; channel-parallel
        weights are int8 (a pow2 CONV is pixel-parallel)."""
        tm, tn = self.cfg.tm, self.cfg.tn
        a_s, pow2, pixel, dw = job.a.signed_, job.pow2, job.pixel, job.depthwise

        def named(value, name, keep=False):
            sig = Signal(signed(9), name=name, attrs={"keep": 1} if keep else {})
            m.d.comb += sig.eq(value)
            return sig

        # Dense: lane l's activation (pixel-parallel: channel cl of pixel l; channel-parallel:
        # channel l of the pixel), zero past a partial pixel group.
        dense = [named(Mux(rd.lane_ok[l], act_operand(Mux(pixel, words[0][l][rd.cl], words[0][0][l]), a_s), 0),
                       f"dense_a{l}", keep=True) for l in range(tn)]
        # Pixel-parallel and depthwise: row i's weight for this step, broadcast across lanes.
        wrow = [named(weight_operand(wgt[i][rd.wl], pow2), f"row_w{i}", keep=True) for i in range(tm)]

        # Depthwise: channels past chans read zero; with one line-buffer copy so do the rows
        # of the channel block the slot does not read (``rd.blk``, hw/seq.py).
        one = self.lb.copies == 1
        real = [(job.chans > c) & (rd.blk == c // tn) if one else job.chans > c for c in range(tm)]

        def dw_act(c, l):  # depthwise: channel c of pixel l (a channel past chans: below)
            act = act_operand(words[0 if one else c // tn][l][c % tn], a_s)
            return act if dw_masked else Mux(rd.lane_ok[l], act, 0)  # dw_masked: zeroed words

        # Channel-parallel: every PE its own weight, always int8 (pow2 codes are pixel-parallel
        # only, docs/isa.md), so no decoder per PE.
        for q in range(tm // 2):
            for l in range(tn):
                (lo_r, lo_l), (hi_r, hi_l) = dsp_pairs(q, l, True)
                op = beat.dsp[q][l]
                m.d.comb += [
                    # Depthwise: lo and hi are both row lo_r's, so a channel past chans is
                    # zeroed in the shared weight (both products 0), not in each activation.
                    op.shared.eq(Mux(dw, Mux(real[lo_r], wrow[lo_r], 0), dense[l])),
                    op.lo.eq(Mux(dw, dw_act(lo_r, lo_l), Mux(pixel, wrow[2 * q], wgt[2 * q][l].as_signed()))),
                    op.hi.eq(Mux(dw, dw_act(hi_r, hi_l), Mux(pixel, wrow[2 * q + 1], wgt[2 * q + 1][l].as_signed()))),
                ]
