"""Instruction fetch: the segment's words from DRAM into a bounded fetch buffer.

::

    start ─▶ addr, left ──▶ rd_req {addr, nb beats}  (while run, left > 0, held < fetch_depth)
                                   │ DRAM (own read port)
    rd_resp beats ──▶ assemble nb beats ──▶ HeadFifo(fetch_depth) ──▶ word (to dispatch)
                                  └─ classes (opcode decoded) ─┘──▶ cls

``held`` counts the words requested and not yet dispatched (in flight or in the buffer), so
the buffer never overflows and ``rd_resp`` is always ready. Timing (the reading of
``ir.cost.fetch_ready``), cycle 0 being the cycle after ``start``: request ``k`` is presented
in the first cycle in which ``run`` holds, the segment has words left and ``held <
fetch_depth`` — request 0 in cycle 0, later ones one a cycle, and request ``k`` no earlier
than the cycle after word ``k - fetch_depth`` is taken from ``word`` (``held`` is a
register). A word whose last beat arrives in cycle ``t`` is valid on ``word`` from cycle
``t + 1``. With a memory that accepts every request and presents the first beat ``L`` cycles
after accepting it, beats in order one a cycle, word ``k`` is therefore valid from
``max(F_{k-1} + nb, D_{k-B} + 1 + L + nb)`` (``F_0 = L + nb``) — ``fetch_ready``.

``cls`` travels with ``word``: bit ``i`` says whether the word's opcode is one of
``classes[i]``, decoded as the word enters the buffer, so dispatch decides from stored bits
(no opcode decoder between the buffer and the queues).

``idle`` is low while beats are owed by the memory; a new ``start`` must wait for it (the
controller's STATUS.busy includes it), so a segment never sees an earlier one's beats.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.config import AcceleratorConfig
from ..ir.cost import fetch_beats
from ..ir.isa import BODY_OF, INSTR, INSTR_BYTES, Body
from .dma import ADDR_BITS, mem_signature


def used_bits(opcodes) -> int:
    """Low bits of an ``INSTR`` word that instructions with these opcodes use: the header and
    their bodies (the body union starts right after the header; what lies above the largest
    of them is other opcodes' fields or padding, which a buffer need not keep)."""
    bodies = [Body.members[BODY_OF[op]].size for op in opcodes if op in BODY_OF]
    return INSTR["body"].offset + max(bodies, default=0)


#: Bits of a word the fetch buffer keeps (every opcode's body; not the padding).
WORD_BITS = used_bits(BODY_OF)


class HeadFifo(wiring.Component):
    """A ``SyncFIFO`` (same ports and timing: an entry written in cycle ``t`` is readable from
    ``t + 1``, a read frees its slot for the next cycle's write) with a side field ``tag``
    whose head value ``r_tag`` comes from a register, not from the memory's read: dispatch
    decides from ``r_tag`` (and ``r_rdy``, a register too) one register deep (timing closure;
    the word itself is still read from the memory, it only feeds data inputs). The register
    is loaded with the next head's tag in the cycle before: the entry after the head (a
    second, tag-only memory read one slot ahead) when the head is read, else the incoming
    tag when the queue is (or becomes) empty of others.

    ``head_word``: the word is kept so too (``r_data`` from a register loaded like the tag's,
    the memory read one slot ahead instead of at the head), so whatever the head's word feeds
    starts at flip-flops; the same ports and timing."""

    def __init__(self, width: int, tag_width: int, depth: int, head_word: bool = False):
        assert depth >= 1
        self.depth, self.head_word = depth, head_word
        super().__init__({"w_en": In(1), "w_data": In(width), "w_tag": In(tag_width), "w_rdy": Out(1),
                          "r_en": In(1), "r_data": Out(width), "r_tag": Out(tag_width), "r_rdy": Out(1)})

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory

        m = Module()
        d = self.depth

        def incr(v):
            return Mux(v == d - 1, 0, v + 1)

        words = m.submodules.words = Memory(shape=len(self.w_data), depth=d, init=[])
        tags = m.submodules.tags = Memory(shape=len(self.w_tag), depth=d, init=[])
        w_words, w_tags = words.write_port(), tags.write_port()
        r_words, r_tags = words.read_port(domain="comb"), tags.read_port(domain="comb")
        level = Signal(range(d + 1))
        produce, consume, after = Signal(range(d)), Signal(range(d)), Signal(range(d), init=1 % d)
        head_tag, nonempty = Signal.like(self.w_tag), Signal()
        do_write = self.w_en & self.w_rdy
        do_read = self.r_en & nonempty
        m.d.comb += [
            self.w_rdy.eq(level != d), self.r_rdy.eq(nonempty), self.r_tag.eq(head_tag),
            w_words.addr.eq(produce), w_words.data.eq(self.w_data), w_words.en.eq(do_write),
            w_tags.addr.eq(produce), w_tags.data.eq(self.w_tag), w_tags.en.eq(do_write),
            r_words.addr.eq(after if self.head_word else consume), r_tags.addr.eq(after),
        ]
        heads = [(head_tag, r_tags.data, self.w_tag)]
        if self.head_word:
            head_word = Signal.like(self.w_data, name="head_word")
            heads.append((head_word, r_words.data, self.w_data))
            m.d.comb += self.r_data.eq(head_word)
        else:
            m.d.comb += self.r_data.eq(r_words.data)
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_read):
            m.d.sync += [consume.eq(incr(consume)), after.eq(incr(after))]
        with m.If(do_write & ~do_read):
            m.d.sync += [level.eq(level + 1), nonempty.eq(1)]
        with m.If(do_read & ~do_write):
            m.d.sync += [level.eq(level - 1), nonempty.eq(level != 1)]
        # The next head: after a read, the entry behind it (stored if level >= 2, else the one
        # written now); without a read, the same head, or the one written now into an empty queue.
        for reg, stored, incoming in heads:
            with m.If(do_read):
                m.d.sync += reg.eq(Mux(level >= 2, stored, incoming))
            with m.Elif(~nonempty):
                m.d.sync += reg.eq(incoming)
        return m


def check_fetch_config(cfg: AcceleratorConfig) -> None:
    if not isinstance(cfg, AcceleratorConfig):
        raise ShiftflowError(f"expected an AcceleratorConfig, got {type(cfg).__name__}")


class Fetch(wiring.Component):
    """Fetches ``seg_len`` instruction words from byte ``seg_addr`` on (its low bits below
    ``instr_bytes`` are ignored: words are aligned), latched at ``start``; see the module
    docstring for the timing. ``word`` carries the low :data:`WORD_BITS` of each word, ``cls``
    (valid with it) one bit per entry of ``classes`` (tuples of opcodes)."""

    def __init__(self, cfg: AcceleratorConfig, classes: tuple = ()):
        check_fetch_config(cfg)
        self.cfg, self.classes = cfg, tuple(tuple(c) for c in classes)
        super().__init__({
            "cls": Out(max(1, len(self.classes))),
            "mem": Out(mem_signature(cfg.dram_bytes_per_cycle)),
            "start": In(1),
            "seg_addr": In(ADDR_BITS),
            "seg_len": In(32),
            "run": In(1),
            "word": Out(stream.Signature(unsigned(WORD_BITS))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, mem = self.cfg, self.mem
        nb, depth, beat_bits = fetch_beats(cfg), cfg.fetch_depth, 8 * cfg.dram_bytes_per_cycle
        align = (INSTR_BYTES - 1).bit_length()

        # The buffer starts empty at every segment (a stopped segment may leave words in it).
        # With cfg.fetch_head_reg the classes travel beside the word with a registered head
        # (timing only); otherwise they are stored with it, read through the same memory.
        ncls = len(self.cls)
        whole_word, cls_in = Signal(WORD_BITS), Signal(ncls)
        if cfg.fetch_head_reg:
            buf = HeadFifo(WORD_BITS, ncls, depth)
            m.d.comb += [buf.w_data.eq(whole_word), buf.w_tag.eq(cls_in), self.word.payload.eq(buf.r_data),
                         self.cls.eq(buf.r_tag)]
        else:
            buf = SyncFIFO(width=WORD_BITS + ncls, depth=depth)
            m.d.comb += [buf.w_data.eq(Cat(whole_word, cls_in)), self.word.payload.eq(buf.r_data[:WORD_BITS]),
                         self.cls.eq(buf.r_data[WORD_BITS:])]
        m.submodules.buf = ResetInserter(self.start)(buf)

        addr = Signal(ADDR_BITS - align)  # in words
        left = Signal(32)
        held = Signal(range(depth + 1))
        owed = Signal(range(depth * nb + 1))  # beats requested and not yet received
        request = mem.rd_req.valid & mem.rd_req.ready
        beat_in = mem.rd_resp.valid  # always ready
        taken = self.word.valid & self.word.ready

        m.d.comb += [
            mem.rd_req.valid.eq(self.run & (left != 0) & (held != depth)),
            mem.rd_req.payload.addr.eq(Cat(Const(0, align), addr)),
            mem.rd_req.payload.beats.eq(nb),
            mem.rd_resp.ready.eq(1),
            mem.wr_req.valid.eq(0),
            mem.wr_data.valid.eq(0),
            mem.wr_resp.ready.eq(1),
            self.idle.eq(owed == 0),
        ]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.seg_addr[align:]), left.eq(self.seg_len), held.eq(0)]
        with m.Else():
            with m.If(request):
                m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(request & ~taken):
                m.d.sync += held.eq(held + 1)
            with m.Elif(taken & ~request):
                m.d.sync += held.eq(held - 1)
        # ``owed`` survives a start: beats of a stopped segment still arrive (and are dropped,
        # since start resets the buffer and waits for idle).
        m.d.sync += owed.eq(owed + Mux(request, nb, 0) - beat_in)

        # Beats arrive low bytes first; the first nb-1 of a word shift into ``acc`` from the top.
        beat = Signal(range(nb))
        last = beat == nb - 1
        if nb > 1:
            acc = Signal((nb - 1) * beat_bits)
            whole = Cat(acc, mem.rd_resp.payload)
            with m.If(beat_in):
                m.d.sync += acc.eq(Cat(acc[beat_bits:], mem.rd_resp.payload))
        else:
            whole = mem.rd_resp.payload
        with m.If(beat_in):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        incoming = Signal(INSTR)
        m.d.comb += incoming.as_value().eq(whole)
        op = incoming.header.opcode
        cls = Cat(*[Cat(op == o for o in c).any() for c in self.classes]) if self.classes else Const(0, 1)
        m.d.comb += [
            buf.w_en.eq(beat_in & last),
            whole_word.eq(whole[:WORD_BITS]), cls_in.eq(cls),
            self.word.valid.eq(buf.r_rdy),
            buf.r_en.eq(self.word.ready),
        ]
        return m
