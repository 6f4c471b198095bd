"""SPCONV's index walker: the kept steps' ``(c, y, x)``, one a cycle, from the weight bank.

An SPCONV (docs/isa.md, ``ir/sparse.py``) lists its kept steps in the weight bank after their
weights, one 16-bit entry a step packing the input channel, kernel row and column as
``(c << (yb + xb)) | (y << xb) | x``. The walker reads the list through a weight-bank read port
and streams the steps on ``o`` in list order, over and over (every pixel group of the
instruction runs the whole list), from ``start`` until the next ``start``:

- ``start`` (one cycle) samples ``kept``, ``base`` (the bank row of the list's first word:
  ``wbank*weight_bank_words + w_addr + ceil(kept/tn)``), ``kh`` and ``kw``;
- the port: ``rd_en`` asks for a read of row ``rd_addr``; ``rd_grant`` says the port reads
  for the walker this cycle (the owner of the port gives it the cycles the weight stream does
  not use); ``rd_data`` is the row's word the cycle after a granted read, as
  ``hw.buffers.WeightBuffer.rd_data`` gives it (``tm`` rows of ``tn`` bytes, byte ``i*tn + l``
  of the word in row ``i`` lane ``l``);
- ``o``: a stream of :data:`Step`; ``last`` marks the list's last entry (a pixel group's last
  step). A consumer that holds ``ready`` low stalls the walker, nothing is lost. With
  ``spare`` (``AcceleratorConfig.spconv_spare``, tiny) ``ready`` reaches only ``o``'s
  register and a one-step spare register (the walker makes its next step while the spare is
  empty), not the walker's state. The steps on ``o`` are the same, never later (it is never
  behind: a step ahead while ``o`` is held), so the cycle model does not see it.

A read fetches a *chunk* of ``per`` entries (one row of a word, ``tn // 2`` entries, but at
least :data:`CHUNK_MIN`: a whole word at ``tiny``), chunk ``k`` at word ``base + k // chunks``
(``chunks`` a word). Chunks wait in a ``depth``-chunk queue; a read is asked for while the
queue and the read in flight leave room; a list of one chunk is read once and kept. With every read granted and ``o``
always ready, the first step is on ``o`` :data:`PRIMING` cycles after ``start`` and one
follows every cycle after (``tests/hw/test_spconv_walk.py``). The walker needs the port for
one cycle every ``per`` steps, and once more a pixel group for the list's last, partial chunk. Splitting an entry is two shifts by amounts fixed at
``start`` (a flat step number ``(c*kh + y)*kw + x`` would need a divider by ``kh*kw``:
docs/sparsity.md "The RTL").
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.config import AcceleratorConfig
from ..ir.cost import SPCONV_PRIMING
from ..ir.isa import InGeom, SpConv, Window
from ..ir.sparse import INDEX_BYTES

#: One kept step: input channel, kernel row and column, and whether it ends the list.
Step = data.StructLayout({"c": InGeom["chans"].shape, "y": Window["kh"].shape, "x": Window["kw"].shape,
                          "last": unsigned(1)})
#: Cycles from ``start`` to the first step on ``o`` (reads granted at once): the first read
#: is asked for the cycle after ``start``, its word comes a cycle later into the queue, and
#: the queue's head goes through ``o``'s register. The cycle model's (``ir.cost``).
PRIMING = SPCONV_PRIMING
#: Fewest entries a read takes (a chunk): with a whole list in one chunk the walker reads it
#: once, else it needs at most ``ceil(kept/8) + 1`` of a group's ``max(kept, drain)`` cycles.
CHUNK_MIN = 8


def chunk_entries(cfg: AcceleratorConfig) -> int:
    """Entries a read takes: one row of a word, at least ``CHUNK_MIN`` (a ``tiny`` word's rows
    hold two), at most the word."""
    return min(cfg.tm * cfg.tn, max(cfg.tn, CHUNK_MIN * INDEX_BYTES)) // INDEX_BYTES


class SpconvWalk(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, depth: int = 4, spare: bool | None = None):
        tm, tn = cfg.tm, cfg.tn
        #: the spare step register (``AcceleratorConfig.spconv_spare`` unless given)
        self.spare = cfg.spconv_spare if spare is None else spare
        if depth < 2 or depth & (depth - 1):  # a power of two: the queue's pointers wrap by themselves
            raise ValueError(f"the walker's queue depth must be a power of two of at least 2 (depth={depth})")
        if tn < 2 or tn & (tn - 1) or tm & (tm - 1):
            raise ValueError(f"the walker needs tn >= 2 and tm, tn powers of two (tm={tm}, tn={tn})")
        self.depth = depth
        self.per = chunk_entries(cfg)
        self.chunks = tm * tn // (self.per * INDEX_BYTES)  # chunks a word
        self.row_bits = max(1, (2 * cfg.weight_bank_words - 1).bit_length())
        super().__init__({
            "start": In(1), "kept": In(SpConv["kept"].shape), "base": In(self.row_bits),
            "kh": In(Window["kh"].shape), "kw": In(Window["kw"].shape),
            "rd_en": Out(1), "rd_addr": Out(self.row_bits), "rd_grant": In(1),
            "rd_data": In(data.ArrayLayout(data.ArrayLayout(unsigned(8), tn), tm)),
            "o": Out(stream.Signature(Step)),
        })

    def elaborate(self, platform):
        m = Module()
        chunks, per, depth = self.chunks, self.per, self.depth
        kept_bits = self.kept.shape().width
        ebits = 8 * INDEX_BYTES
        # The instruction's constants, sampled at start.
        active = Signal()
        last_j = Signal(kept_bits)  # kept - 1
        last_k = Signal(kept_bits)  # chunks - 1
        base = Signal(self.row_bits)
        xb, yb = Signal(range(ebits)), Signal(range(ebits))
        # The fields' masks and the channel's shift, made at start (timing: the entry's
        # decode was an adder and a mask generator in front of the shifters, the walker's
        # path into ``spare``, 16.9 ns on b448768's first seed).
        xmask, ymask, cb = Signal(ebits), Signal(ebits), Signal(range(2 * ebits))
        widths = [max(0, (k - 1).bit_length()) for k in range(1 << self.kh.shape().width)]  # a field's bits
        bits, masks = Array(widths), Array((1 << w) - 1 for w in widths)

        # -- reads: chunk rk at word rword, chunk rsel of the word; the word comes the cycle
        # after the grant. A list in one chunk is read once and stays at the queue's head.
        # (range(max(2, chunks)): no zero-width signals where a word is one chunk, as at tiny.)
        rk, rword, rsel = Signal(kept_bits), Signal(self.row_bits), Signal(range(max(2, chunks)))
        inflight, insel = Signal(), Signal(range(max(2, chunks)))
        single = Signal()
        # -- the chunk queue: depth registers, head and tail pointers, fill level.
        queue = Array(Signal(per * ebits, name=f"chunk{i}") for i in range(depth))
        head, tail, level = Signal(range(depth)), Signal(range(depth)), Signal(range(depth + 1))
        push, pop = Signal(), Signal()

        def succ(p):
            return (p + 1)[:len(p)]

        room = Mux(single, 1, depth)
        m.d.comb += [self.rd_en.eq(active & (level + inflight < room)), self.rd_addr.eq(rword)]
        granted = self.rd_en & self.rd_grant
        m.d.sync += [inflight.eq(granted), insel.eq(rsel)]
        with m.If(granted):
            with m.If(rk == last_k):
                m.d.sync += [rk.eq(0), rword.eq(base), rsel.eq(0)]
            with m.Else():
                m.d.sync += rk.eq(rk + 1)
                if chunks > 1:
                    m.d.sync += rsel.eq(rsel + 1)
                    with m.If(rsel == chunks - 1):
                        m.d.sync += rword.eq(rword + 1)
                else:
                    m.d.sync += rword.eq(rword + 1)
        m.d.comb += push.eq(inflight)
        with m.If(push):
            word = self.rd_data.as_value()
            chunk = word.word_select(insel, per * ebits) if chunks > 1 else word[:per * ebits]
            m.d.sync += tail.eq(succ(tail))
            for i in range(depth):  # one enable a register (an Array target lowers to an incomplete case)
                with m.If(tail == i):
                    m.d.sync += queue[i].eq(chunk)
        m.d.sync += level.eq(level + push - pop)

        # -- the head chunk's entry e, split, into o's register.
        e = Signal(range(max(2, per)))
        j = Signal(kept_bits)
        entry = Signal(ebits)
        spare, spare_valid = Signal(Step), Signal()
        m.d.comb += entry.eq(Array(queue[head].word_select(i, ebits) for i in range(per))[e])
        # The walker makes a step (``load``) whenever it has an entry and the spare register
        # is empty: no term of ``o.ready`` reaches its state (the consumer's ready is the
        # sequencer's loop logic; into ``j``'s enable it was tiny's compute-side worst path,
        # 18.0 ns). The step goes into ``o``'s register if that is free this cycle, else into
        # ``spare`` (which samples every step while empty), and ``o`` takes the spare first.
        # (Without ``spare``, zu3eg's form: a step is made only into a free ``o``.)
        free = ~self.o.valid | self.o.ready
        load = (level != 0) & (~spare_valid if self.spare else free)
        end = j == last_j
        m.d.comb += pop.eq(load & ~single & (end | (e == per - 1)))
        made = Signal(Step)
        m.d.comb += [made.x.eq(entry & xmask), made.y.eq((entry >> xb) & ymask),
                     made.c.eq(entry >> cb), made.last.eq(end)]
        if self.spare:
            with m.If(~spare_valid):
                m.d.sync += spare.eq(made)
            m.d.sync += spare_valid.eq(~free & (spare_valid | load))
            with m.If(free):
                m.d.sync += [self.o.valid.eq(spare_valid | load), self.o.payload.eq(Mux(spare_valid, spare, made))]
        else:
            with m.If(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(load):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(made)]
        with m.If(load):
            m.d.sync += [e.eq(Mux(pop | end, 0, e + 1)), j.eq(Mux(end, 0, j + 1))]
            with m.If(pop):
                m.d.sync += head.eq(succ(head))

        with m.If(self.start):  # after everything above: a new instruction drops the old state
            nchunks_m1 = ((self.kept + per - 1) >> (per - 1).bit_length()) - 1
            m.d.sync += [active.eq(1), last_j.eq(self.kept - 1), last_k.eq(nchunks_m1), base.eq(self.base),
                         single.eq(nchunks_m1 == 0),
                         xb.eq(bits[self.kw]), yb.eq(bits[self.kh]), cb.eq(bits[self.kw] + bits[self.kh]),
                         xmask.eq(masks[self.kw]), ymask.eq(masks[self.kh]), rk.eq(0), rword.eq(self.base), rsel.eq(0),
                         inflight.eq(0), head.eq(0), tail.eq(0), level.eq(0), e.eq(0), j.eq(0), self.o.valid.eq(0),
                         spare_valid.eq(0)]
        return m
