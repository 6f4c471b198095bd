"""The controller: fetch, dispatch, per-unit issue, dependency tokens, FINISH, CSRs.

::

                 ┌──────────── CSRs (hw/csr.py): CTRL STATUS SEG_ADDR SEG_LEN ERROR CYCLES
                 │ start        busy/stall counters per unit
                 ▼
    fetch port ◀─ Fetch (hw/fetch.py): one nb-beat burst per word, fetch_depth words held
                 │ word (fetch buffer head)
                 ▼
              dispatch: opcode classes decoded as words enter the fetch buffer; in order, one a cycle
                 │ to UNIT_OF[opcode]'s queue (FINISH: the compute queue)
        ┌────────┼─────────────────┐
        ▼        ▼                 ▼
    load queue  compute queue    store queue        HeadFifo(queue_depth) each, keeping only
        │        │                 │                the bits its opcodes use (hw.fetch.used_bits);
        │        │                 │                the head's word in a register with queue_head_reg
      issue    issue / FINISH    issue       ◀──── token counters (token_depth):
        │        │                 │                load→compute, compute→load,
        ▼        ▼                 ▼                compute→store, store→compute
      load     compute           store  ──done──▶  push (the done cycle), bypassed to pops
    (executors: instr stream, done pulse)

Timing contract (cycle 0 = the cycle after the CSR write of CTRL.start; ``F, D, S, E`` as in
``ir.timeline.schedule``, which this reproduces exactly when the fetch port's memory never
stalls and has latency ``dram_latency``, and every executor obeys its contract):

- fetch: see hw/fetch.py; word ``k`` is in the fetch buffer (valid at its head or behind
  it) from cycle ``F_k``.
- dispatch: the buffer's head goes to its unit's queue in the first cycle in which it is
  valid and that queue has room; a queue entry is freed by its instruction's start, visible
  the next cycle (``D_k = max(F_k, D_{k-1} + 1, S_j + 1)``).
- dispatch stage (``cfg.dispatch_stage`` = 1, tiny): a dispatched word spends the cycle
  after its dispatch in a register beside its queue (``staged``) and is written into the
  queue then; room counts it (entries from dispatch to start), so ``D_k`` is as above.
  With ``cfg.queue_products`` the compute queue also stores the compute unit's decoder
  products (``hw.job.job_products``) formed from that register, out on ``compute_products``
  with the head (timing only).
- start: a queue's head is visible ``1 + dispatch_stage`` cycles after its dispatch
  (``ready = D + 1 + dispatch_stage``); it starts (is offered to
  the executor with ``valid``, accepted with ``ready = ~busy | done``) when every token it
  pops is available. An executor pulses ``done`` in cycle ``E = S + C``; its pushes count
  in that cycle and a pop in the same cycle sees them. FINISH is never sent to the compute
  unit: it starts when it heads the compute queue, its pops are available and every unit is
  idle (its queue empty and no instruction in flight, or its ``done`` this cycle; a staged
  word is never missed: every earlier word was dispatched before the FINISH, so it is in its
  queue by the FINISH's first possible start); it costs one cycle.
- STATUS.done (and the ``done`` port) rises in cycle ``E_FINISH``, busy falls then, and
  CYCLES reads ``E_FINISH`` = ``Timeline.cycles`` from then on (during a segment it reads
  the current cycle number). ``UNIT_BUSY`` counts the cycles in which the unit runs an
  instruction (FINISH counts for compute), ``UNIT_STALL`` the cycles in which the unit is
  free and its queue's head is present but does not start — ``Timeline.unit_totals()``.
- errors (ERROR, STATUS.error, the ``error`` port from the next cycle on): an illegal
  opcode at the fetch buffer's head, a push into a token counter already holding
  ``token_depth`` (without a pop in that cycle), SEG_LEN words without a FINISH (code 3, an
  addition to the spec: it would otherwise hang). The controller stops issuing, fetching
  and dispatching; STATUS.busy stays up until owed fetch beats have arrived and the
  executors' instructions in flight are done, and a start is ignored while busy.

Token flags naming a neighbour the unit does not have (load's ``*_prev``, store's ``*_next``)
are ignored: ``ir.decode`` rejects them at load time, and there is no counter to act on.
Tokens left at FINISH are dropped (the counters are held at 0 from the cycle after a
segment's end through the next start).

NMS (only with ``nms``: a target with the NMS core; else it is an illegal opcode): the
fourth executor, ``nms`` / ``nms_done``, run as a barrier exactly as ``ir.timeline.schedule``
models it. Its queue is one register (an NMS is never dispatched while another is pending;
with the dispatch stage it is queued the cycle after its dispatch, as the other units' words).
It starts (is offered) when it heads that register, the segment runs and every other unit is
idle (queue empty, nothing in flight or its ``done`` this cycle), as FINISH; from its dispatch
until its ``done`` (that cycle included: ``D_next >= E_NMS``) nothing else is dispatched. Its
token flags are ignored (``ir.decode`` rejects them: it has no neighbour). ``nms_busy`` is
high from the cycle after its start through its done cycle (a register: the top's data-port
select; by the barrier no other unit has a DRAM transfer then). It has no busy/stall CSRs.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.config import AcceleratorConfig
from ..ir.isa import INSTR, UNIT_OF, Opcode, Unit
from .csr import DATA_BITS, STATUS_BUSY, STATUS_DONE, STATUS_ERROR, UNIT_COUNTERS, ErrorCode, Reg, csr_signature
from .dma import mem_signature
from .fetch import Fetch, HeadFifo, check_fetch_config, used_bits
from .job import packed_products, products_layout

__all__ = ["Controller", "csr_signature", "LEGAL"]

#: Opcodes this controller executes; the rest (NMS, unassigned codes) are errors.
LEGAL = (Opcode.NOP, Opcode.LOAD_ACT, Opcode.LOAD_WGT, Opcode.CONV, Opcode.VEC, Opcode.STORE, Opcode.FINISH,
         Opcode.SPCONV)
UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)  # the units with queues and tokens (NMS: ``nms``)
#: What a queue keeps of its head in a register (``HeadFifo``'s tag):
#: the bits the issue decision reads, so it starts at flip-flops, not at a LUT-RAM read.
_TAG = ("pop_prev", "pop_next", "finish")


def _tag(word) -> Value:
    """A queue entry's tag (``_TAG``'s fields) from its instruction ``word``."""
    return Cat(word.header.pop_prev, word.header.pop_next, word.header.opcode == Opcode.FINISH)


_PREV = {Unit.COMPUTE: Unit.LOAD, Unit.STORE: Unit.COMPUTE}
_NEXT = {Unit.LOAD: Unit.COMPUTE, Unit.COMPUTE: Unit.STORE}


def _channels(unit: Unit) -> list[tuple[str, tuple[Unit, Unit]]]:
    """``(header flag, (from, to))`` of every token FIFO the unit pops from or pushes to."""
    out = []
    for side, other in (("prev", _PREV.get(unit)), ("next", _NEXT.get(unit))):
        if other is not None:
            out += [(f"pop_{side}", (other, unit)), (f"push_{side}", (unit, other))]
    return out


class Controller(wiring.Component):
    """Runs one segment per CTRL start; ports and timing in the module docstring.

    ``fetcher`` (the :class:`hw.fetch.Fetch` instance) is exposed so that tests can observe
    dispatch (its ``word`` handshake). ``nms``: the target has the NMS core (the ``nms``,
    ``nms_done`` and ``nms_busy`` ports; NMS is legal)."""

    def __init__(self, cfg: AcceleratorConfig, nms: bool = False):
        check_fetch_config(cfg)
        self.cfg, self.has_nms = cfg, bool(nms)
        # Dispatch's decisions, decoded as words enter the fetch buffer: the unit of each
        # queue, FINISH, and NMS.
        self.fetcher = Fetch(cfg, [[op for op in LEGAL if UNIT_OF[op] == u] for u in UNITS] + [[Opcode.FINISH]]
                             + ([[Opcode.NMS]] if self.has_nms else []))
        nms_ports = {"nms": Out(stream.Signature(INSTR)), "nms_done": In(1), "nms_busy": Out(1)} if nms else {}
        # ``cfg.queue_products``: the compute head's decoder products, valid with ``compute``.
        product_ports = {"compute_products": Out(products_layout(cfg))} if cfg.queue_products else {}
        super().__init__({
            "fetch": Out(mem_signature(cfg.dram_bytes_per_cycle)),
            "load": Out(stream.Signature(INSTR)),
            "compute": Out(stream.Signature(INSTR)),
            "store": Out(stream.Signature(INSTR)),
            "load_done": In(1),
            "compute_done": In(1),
            "store_done": In(1),
            "csr": In(csr_signature()),
            "done": Out(1),
            "busy": Out(1),
            "error": Out(1),
            **nms_ports,
            **product_ports,
        })

    def elaborate(self, platform):
        m = Module()
        cfg, csr = self.cfg, self.csr
        m.submodules.fetch = fetch = self.fetcher
        wiring.connect(m, wiring.flipped(self.fetch), fetch.mem)

        running, finishing, done, error = Signal(), Signal(), Signal(), Signal()
        code = Signal(2)
        seg_addr, seg_len, dleft = Signal(32), Signal(32), Signal(32)
        cycles = Signal(32)
        start, busy = Signal(), Signal()
        # The queues, the token counters and the room counts are held empty while no segment
        # runs, from the cycle after its end (FINISH or an error) through its next start's
        # cycle: at cycle 0 they are empty, as a clear at start would leave them, and words
        # staged or pushed after an error are dropped. (Timing: ``start`` — the CSR write
        # decode and ``busy`` — reached every queue register's reset, up to 16.7 ns on
        # 568dfeb's third seed; ``hold`` is a register.)
        hold = Signal(init=1, name="queues_hold")

        # -- token counters -------------------------------------------------------------------
        fifos = list(dict.fromkeys(ch for u in UNITS for _, ch in _channels(u)))  # ordered: deterministic Verilog
        count = {ch: Signal(range(cfg.token_depth + 1), name=f"tok_{ch[0].name}_{ch[1].name}".lower())
                 for ch in fifos}
        push = {ch: Signal(name=f"push_{ch[0].name}_{ch[1].name}".lower()) for ch in fifos}
        pop = {ch: Signal(name=f"pop_{ch[0].name}_{ch[1].name}".lower()) for ch in fifos}
        overflow = Signal()
        # A push lands in its producer's done cycle; a pop in that cycle takes it (bypass).
        avail = {ch: (count[ch] != 0) | push[ch] for ch in fifos}
        overflows = []
        for ch in fifos:
            full = count[ch] == cfg.token_depth
            overflows.append(push[ch] & ~pop[ch] & full)
            with m.If(hold):
                m.d.sync += count[ch].eq(0)
            with m.Elif(push[ch] & ~pop[ch] & ~full):
                m.d.sync += count[ch].eq(count[ch] + 1)
            with m.Elif(pop[ch] & ~push[ch]):
                m.d.sync += count[ch].eq(count[ch] - 1)

        m.d.comb += overflow.eq(Cat(overflows).any())

        # -- per-unit queues, issue, in-flight tracking -------------------------------------
        ports = {Unit.LOAD: (self.load, self.load_done), Unit.COMPUTE: (self.compute, self.compute_done),
                 Unit.STORE: (self.store, self.store_done)}
        queue, started, free, idle, inflight = {}, {}, {}, {}, {}
        for u in UNITS:
            ops = [op for op in LEGAL if UNIT_OF[op] == u]
            # SyncFIFO's timing, with the head's pop flags and FINISH (its tag) and ``r_rdy`` from
            # registers: issue and the barriers (FINISH, NMS) decide one register deep, not from
            # the queue's level and memory read (zu3eg's deepest path ran from a queue's level).
            # ``queue_head_reg``: the head's word from a register too (the units' decoders and the
            # compute unit's multipliers start at flip-flops, not at the queue's LUT-RAM read).
            # ``cfg.queue_products``: the compute queue stores the decoder's products above the
            # word (formed from the dispatch stage's register, below).
            side = len(self.compute_products.as_value()) if u == Unit.COMPUTE and cfg.queue_products else 0
            q = queue[u] = HeadFifo(used_bits(ops) + side, len(_TAG), cfg.queue_depth, head_word=cfg.queue_head_reg)
            m.submodules[f"{u.name.lower()}_queue"] = ResetInserter(hold)(q)
            port, unit_done = ports[u]
            head = Signal(INSTR, name=f"{u.name.lower()}_head")
            m.d.comb += head.as_value().eq(q.r_data[:used_bits(ops)])
            if side:
                m.d.comb += self.compute_products.as_value().eq(q.r_data[used_bits(ops):])
            hflag = dict(zip(_TAG, q.r_tag))
            flags = Signal(2, name=f"{u.name.lower()}_push_flags")  # of the instruction in flight
            inflight[u] = Signal(name=f"{u.name.lower()}_inflight")
            started[u] = Signal(name=f"{u.name.lower()}_start")
            free[u] = ~inflight[u] | unit_done
            chain = u == Unit.COMPUTE and cfg.compute_chain
            if chain:  # up to two instructions in flight, their push flags in order
                flags, n_in = self._chained(m, head, port, unit_done, inflight[u])
                free[u] = (n_in == 0) | ((n_in == 1) & unit_done)
            idle[u] = ~q.r_rdy & free[u]
            tokens_ok = 1
            for flag, ch in _channels(u):
                if flag.startswith("pop"):
                    tokens_ok = tokens_ok & (~hflag[flag] | avail[ch])
                    m.d.comb += pop[ch].eq(started[u] & hflag[flag])
                else:
                    bit = ["push_prev", "push_next"].index(flag)
                    m.d.comb += push[ch].eq(unit_done & inflight[u] & flags[bit])
            go = running & q.r_rdy & tokens_ok
            m.d.comb += [port.payload.eq(head), q.r_en.eq(started[u])]
            if u == Unit.COMPUTE:
                finish = hflag["finish"]
                m.d.comb += port.valid.eq(go & ~finish)
                finish_start = Signal()
                compute_go, compute_finish = go, finish
            else:
                m.d.comb += port.valid.eq(go)
            accept = port.valid & port.ready
            if u != Unit.COMPUTE:  # the compute unit's also counts FINISH (below)
                m.d.comb += started[u].eq(accept)
            if not chain:
                with m.If(accept):
                    m.d.sync += [inflight[u].eq(1), flags.eq(Cat(head.header.push_prev, head.header.push_next))]
                with m.Elif(unit_done):
                    m.d.sync += inflight[u].eq(0)
        # FINISH: when every unit is idle (the compute unit: free, its queue holding the FINISH).
        m.d.comb += [
            finish_start.eq(compute_go & compute_finish & free[Unit.COMPUTE] & idle[Unit.LOAD] & idle[Unit.STORE]),
            started[Unit.COMPUTE].eq(self.compute.valid & self.compute.ready | finish_start),
        ]

        # -- NMS: a one-word queue and the barrier -------------------------------------------------
        to = {u: fetch.cls[i] for i, u in enumerate(UNITS)}
        is_finish = fetch.cls[len(UNITS)]
        extra = []  # NMS's class bit: legal, and its one-word queue has room whenever dispatch runs
        if self.has_nms:
            is_nms = fetch.cls[len(UNITS) + 1]
            extra = [is_nms]
            nms_word = Signal(used_bits([Opcode.NMS]))
            nms_queued, nms_inflight = Signal(), Signal()
            nms_staged = Signal() if cfg.dispatch_stage else None
            nms_head = Signal(INSTR)
            m.d.comb += nms_head.as_value().eq(nms_word)
            # As FINISH: every other unit idle (the queues hold only instructions before the NMS).
            nms_go = running & nms_queued & idle[Unit.LOAD] & idle[Unit.COMPUTE] & idle[Unit.STORE]
            nms_accept = nms_go & self.nms.ready
            # Dispatch holds while an NMS is pending or runs, up to its done cycle.
            barrier = Signal()
            pending = nms_queued | nms_inflight & ~self.nms_done
            m.d.comb += [barrier.eq(nms_staged | pending if cfg.dispatch_stage else pending), self.nms.valid.eq(nms_go),
                         self.nms.payload.eq(nms_head), self.nms_busy.eq(nms_inflight)]
            with m.If(nms_accept):
                m.d.sync += nms_inflight.eq(1)
            with m.Elif(self.nms_done):
                m.d.sync += nms_inflight.eq(0)
            inflight[Unit.NMS] = nms_inflight  # in STATUS.busy
        # -- dispatch ---------------------------------------------------------------------------
        legal = Cat(*to.values(), *extra).any()
        if cfg.dispatch_stage:
            # The dispatch stage (docs/microarchitecture.md, "Timing closure"): the word waits a
            # cycle in ``staged_word`` (sampled every cycle, no enable) while ``staged`` (set by
            # dispatch) writes it into the queue, so dispatch drives a few flip-flops and each
            # queue's write enable starts at a register. ``occupied`` counts the words from
            # dispatch to start (the staged one too), ``full`` is its registered ``== depth``:
            # room is one flip-flop, and the staged word always finds the queue not full.
            staged = {u: Signal(name=f"{u.name.lower()}_staged") for u in UNITS}
            # One register for all queues: per-queue copies tripled the fan-out of the fetch
            # buffer's LUT-RAM read (the controller alone: 78.52 MHz with copies, that read its
            # critical path).
            shared_word = Signal(len(fetch.word.payload), name="staged_word")
            m.d.sync += shared_word.eq(fetch.word.payload)
            staged_word = {u: shared_word[:len(queue[u].w_data)] for u in UNITS}
            occupied = {u: Signal(range(cfg.queue_depth + 1), name=f"{u.name.lower()}_occupied") for u in UNITS}
            full = {u: Signal(name=f"{u.name.lower()}_full") for u in UNITS}
            room = Cat(*(to[u] & ~full[u] for u in UNITS), *extra).any()
        else:
            room = Cat(*(to[u] & queue[u].w_rdy for u in UNITS), *extra).any()
        # ``dleft`` == 1 and == 0, registered with it (no wide comparison after dispatch).
        dleft_one, dleft_zero = Signal(), Signal()
        misplaced = dleft_one & ~is_finish  # the segment's last word must be FINISH
        offered = running & ~finishing & fetch.word.valid
        dispatch = offered & legal & room & ~misplaced
        if self.has_nms:
            dispatch = dispatch & ~barrier
            if cfg.dispatch_stage:
                # The word is sampled while no NMS is pending (registers only: no enable from
                # dispatch) and held from its dispatch to its accept (the unit registers it
                # then); ``nms_staged`` delays its head by the stage, as every queue's.
                m.d.sync += nms_staged.eq(dispatch & is_nms)
                with m.If(~(nms_staged | nms_queued)):
                    m.d.sync += nms_word.eq(fetch.word.payload)
                enqueue, nms_load = nms_staged, []
            else:
                enqueue, nms_load = dispatch & is_nms, [nms_word.eq(fetch.word.payload)]
            with m.If(start):
                m.d.sync += nms_queued.eq(0)
            with m.Elif(enqueue):
                m.d.sync += [nms_queued.eq(1), *nms_load]
            with m.Elif(nms_accept):
                m.d.sync += nms_queued.eq(0)
        m.d.comb += [fetch.word.ready.eq(dispatch), fetch.start.eq(start), fetch.seg_addr.eq(seg_addr),
                     fetch.seg_len.eq(seg_len), fetch.run.eq(running & ~finishing)]
        for u in UNITS:
            if cfg.dispatch_stage:
                word = Signal(INSTR, name=f"{u.name.lower()}_staged_instr")
                m.d.comb += [word.as_value().eq(staged_word[u]), queue[u].w_en.eq(staged[u]),
                             queue[u].w_data.eq(staged_word[u]),
                             queue[u].w_tag.eq(_tag(word))]
                if u == Unit.COMPUTE and cfg.queue_products:
                    # The products from the staged word's register, written beside it (timing:
                    # the multipliers between two registers, not behind the queue's read).
                    m.d.comb += queue[u].w_data[len(staged_word[u]):].eq(packed_products(cfg, word))
                m.d.sync += staged[u].eq(dispatch & to[u])
                with m.If(hold):
                    m.d.sync += [occupied[u].eq(0), full[u].eq(0)]
                with m.Elif(dispatch & to[u] & ~started[u]):
                    m.d.sync += [occupied[u].eq(occupied[u] + 1), full[u].eq(occupied[u] == cfg.queue_depth - 1)]
                with m.Elif(started[u] & ~(dispatch & to[u])):
                    m.d.sync += [occupied[u].eq(occupied[u] - 1), full[u].eq(0)]
            else:
                word = Signal(INSTR, name=f"{u.name.lower()}_dispatched_instr")
                m.d.comb += [word.as_value().eq(fetch.word.payload), queue[u].w_en.eq(dispatch & to[u]),
                             queue[u].w_data.eq(fetch.word.payload), queue[u].w_tag.eq(_tag(word))]

        # -- segment state, errors --------------------------------------------------------------
        fault = Signal(2)
        with m.If(offered & ~legal):
            m.d.comb += fault.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(running & overflow):
            m.d.comb += fault.eq(ErrorCode.TOKEN_OVERFLOW)
        with m.Elif(offered & legal & misplaced | running & ~finishing & dleft_zero):
            m.d.comb += fault.eq(ErrorCode.NO_FINISH)

        m.d.comb += [
            start.eq(csr.we & (csr.addr == Reg.CTRL) & csr.wdata[0] & ~busy),
            busy.eq(running | ~fetch.idle | Cat(inflight.values()).any()),
            self.busy.eq(busy), self.done.eq(done), self.error.eq(error),
        ]
        with m.If(start):
            m.d.sync += [running.eq(1), hold.eq(0), finishing.eq(0), done.eq(0), error.eq(0), code.eq(0), cycles.eq(0),
                         dleft.eq(seg_len), dleft_one.eq(seg_len == 1), dleft_zero.eq(seg_len == 0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(dispatch):
                m.d.sync += [dleft.eq(dleft - 1), dleft_one.eq(dleft == 2), dleft_zero.eq(dleft_one)]
                with m.If(is_finish):
                    m.d.sync += finishing.eq(1)
            with m.If(fault != 0):
                m.d.sync += [running.eq(0), hold.eq(1), error.eq(1), code.eq(fault)]
            with m.Elif(finish_start):
                m.d.sync += [running.eq(0), hold.eq(1), done.eq(1)]
        with m.If(csr.we & ~busy):
            with m.If(csr.addr == Reg.SEG_ADDR):
                m.d.sync += seg_addr.eq(csr.wdata)
            with m.If(csr.addr == Reg.SEG_LEN):
                m.d.sync += seg_len.eq(csr.wdata)

        # -- per-unit counters, register read ---------------------------------------------------
        regs = {Reg.STATUS: Cat(busy, done, error), Reg.SEG_ADDR: seg_addr, Reg.SEG_LEN: seg_len,
                Reg.ERROR: code, Reg.CYCLES: cycles}
        for u, (busy_reg, stall_reg) in zip(UNITS, UNIT_COUNTERS):
            busy_n = Signal(DATA_BITS, name=f"{u.name.lower()}_busy_cycles")
            stall_n = Signal(DATA_BITS, name=f"{u.name.lower()}_stall_cycles")
            unit_done = ports[u][1]
            with m.If(start):
                m.d.sync += [busy_n.eq(0), stall_n.eq(0)]
            with m.Elif(running):
                if u == Unit.COMPUTE and cfg.compute_chain:  # each instruction's cycles, overlaps too
                    m.d.sync += busy_n.eq(busy_n + started[u] + n_in - unit_done)
                else:
                    with m.If(started[u] | inflight[u] & ~unit_done):
                        m.d.sync += busy_n.eq(busy_n + 1)
                # Chaining: the unit takes a CONV/VEC before it is free (its ``ready`` is the
                # cycle model's rule for the head, FINISH included).
                takes = self.compute.ready if u == Unit.COMPUTE and cfg.compute_chain else free[u]
                with m.If(queue[u].r_rdy & takes & ~started[u]):
                    m.d.sync += stall_n.eq(stall_n + 1)
            regs[busy_reg], regs[stall_reg] = busy_n, stall_n
        assert STATUS_BUSY == 1 and STATUS_DONE == 2 and STATUS_ERROR == 4  # the Cat above
        with m.Switch(csr.addr):
            for reg, value in regs.items():
                with m.Case(reg):
                    m.d.comb += csr.rdata.eq(value)
            with m.Default():  # CTRL and unused words read 0
                m.d.comb += csr.rdata.eq(0)
        return m

    @staticmethod
    def _chained(m, head, port, unit_done, inflight):
        """The compute unit's in-flight count (0-2) and the push flags of its instructions in
        order, with ``cfg.compute_chain`` (hw/compute.py takes the next CONV/VEC before the
        previous one's done; each done pushes the oldest one's tokens). Returns the oldest's
        flags and the count; drives ``inflight`` (count != 0)."""
        n_in = Signal(range(3), name="compute_count")
        f0, f1 = Signal(2, name="compute_push_flags"), Signal(2, name="compute_push_flags1")
        accept = port.valid & port.ready
        new = Cat(head.header.push_prev, head.header.push_next)
        leaves = unit_done & (n_in != 0)
        m.d.sync += n_in.eq(n_in + accept - leaves)
        m.d.comb += inflight.eq(n_in != 0)
        # After the oldest leaves, entry 0 is the next one (f1) or, with none, the accepted one.
        with m.If(leaves):
            m.d.sync += f0.eq(Mux(n_in == 2, f1, new))
            with m.If(accept & (n_in == 2)):
                m.d.sync += f1.eq(new)
        with m.Elif(accept):
            with m.If(n_in == 0):
                m.d.sync += f0.eq(new)
            with m.Else():
                m.d.sync += f1.eq(new)
        return f0, n_in
