"""The DMA engine: DRAM boxes and linear copies to and from on-chip memories.

One command (:data:`DmaCmd`) describes ``nblk × nrows`` *segments* of ``seg_bytes``
contiguous DRAM bytes each — the row segments of a LOAD_ACT / STORE box (docs/isa.md), or a
single segment for LOAD_WGT. Segment ``(b, r)`` starts at DRAM byte
``dram_addr + b*blk_stride + r*row_stride`` and at on-chip byte
``sram_addr + b*sram_blk_step + ((slot0 + r) mod slots) * sram_row_step`` (the ring of a
LOAD_ACT; a STORE or LOAD_WGT uses ``slots = nrows``, ``slot0 = 0``, and a store must: its
on-chip reads start in the cycle after acceptance, before ``slot0``'s offset is multiplied out).

DRAM side (:func:`mem_signature`, the DMA is the initiator): burst read/write requests
``{addr, beats}`` on beat-aligned addresses (``beat_bytes`` per beat, at most
``max_burst`` beats, never crossing a 4 KiB boundary, as AXI4 requires), read data beats in
order, write data beats with byte strobes, one write response per burst. Every channel is a
valid/ready stream, so the memory may stall anywhere and answer with any latency.

On-chip side: loads write ``sram_wr {sel, addr, data, strb}``; stores read with ``sram_rd
{sel, addr, stride}`` and take the data from ``sram_rdata`` (in request order, any latency).
``addr`` is the on-chip byte address of beat byte 0; ``tn``-byte word ``i`` of a beat lives at
``addr + i*stride`` (loads: ``stride = tn``, contiguous). ``sel`` is copied from the command
(it picks line buffer / weight bank / parameter bank / output half). A segment whose DRAM
start is not beat-aligned has leading bytes masked in its first beat and ``addr`` moved back
accordingly, so the on-chip memory needs no realignment logic beyond its word banking.

Timing with a memory that never stalls, accepts a request per cycle and presents the first
beat of a request ``L >= 1`` cycles after accepting it (later beats back to back), with
``B = Σ_segments ceil((dram_addr % beat_bytes + seg_bytes) / beat_bytes)``:

- a load command accepted in cycle 0 is registered, loaded into the segment walkers in cycle
  1 and issues its first request in cycle 2 (one request per cycle afterwards; every request
  is computed from registers, so no combinational path runs from ``cmd`` into the DRAM
  port), writes its beats on chip in cycles ``2+L .. 1+L+B`` and pulses ``done`` in cycle
  ``2 + L + B``;
- a store command issues its first write request and its first on-chip read in cycle 2; with
  an on-chip read latency of 1 its write beats go out in cycles ``3 .. B+2``, the memory
  answers the last burst ``L`` cycles after its last beat (cycle ``B + 2 + L``) and ``done``
  pulses in cycle ``3 + L + B``;
- an empty command (no segment, or empty segments) pulses ``done`` in cycle 2 (it is
  recognised from the registered command, as the walkers load it).

Requests run ahead of data, so the latency is paid once per command. ``ir.cost``'s
``dma_box_cycles`` / ``dma_linear_cycles`` / ``dma_store_cycles`` are these numbers.
"""


from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.isa import DramBox, LoadAct, LoadWgt, field_shape

ADDR_BITS = DramBox["dram_addr"].width
SRAM_ADDR_BITS = LoadWgt["sram_addr"].width
SEL_BITS = 3
BOUNDARY = 4096  # AXI4: a burst never crosses a 4 KiB boundary
MAX_BEAT_BYTES = 128
#: Bits of ``DmaCmd.stride``: a STORE's words of one pixel are ``dst.nblk`` words of at most
#: a beat apart.
STRIDE_BITS = DramBox["nblk"].width + (MAX_BEAT_BYTES - 1).bit_length()

#: The fields a command shares with the ISA's ``DramBox``: all but ``ncols``, whose place
#: ``seg_bytes`` takes (a box row's ``ncols*tn`` bytes, or a LOAD_WGT's ``nbytes``).
BOX_FIELDS = tuple(name for name, _ in DramBox if name != "ncols")

DmaCmd = data.StructLayout({
    "store": unsigned(1),  # 1: on-chip -> DRAM
    "sel": unsigned(SEL_BITS),  # which on-chip memory (copied to every on-chip request)
    **{name: DramBox[name].shape for name in BOX_FIELDS},
    "seg_bytes": LoadWgt["nbytes"].shape,
    "sram_addr": unsigned(SRAM_ADDR_BITS),
    "sram_row_step": unsigned(SRAM_ADDR_BITS),
    "sram_blk_step": unsigned(SRAM_ADDR_BITS),
    "slots": field_shape(LoadAct, "ring.slots"),
    "slot0": LoadAct["slot0"].shape,
    "stride": unsigned(STRIDE_BITS),  # on-chip bytes between consecutive tn-byte words of a segment
})

MemReq = data.StructLayout({"addr": unsigned(ADDR_BITS), "beats": unsigned(9)})


def sram_write_layout(beat_bytes: int) -> data.StructLayout:
    """Payload of ``sram_wr``: bytes ``data`` (with ``strb``) for on-chip byte ``addr`` on."""
    return data.StructLayout({"sel": unsigned(SEL_BITS), "addr": unsigned(SRAM_ADDR_BITS),
                              "data": unsigned(8 * beat_bytes), "strb": unsigned(beat_bytes)})


#: Payload of ``sram_rd``: word ``i`` of the beat comes from ``addr + i*stride``.
SramRead = data.StructLayout({"sel": unsigned(SEL_BITS), "addr": unsigned(SRAM_ADDR_BITS),
                              "stride": unsigned(STRIDE_BITS)})


def mem_signature(beat_bytes: int) -> wiring.Signature:
    """The DRAM port, seen from the initiator (the DMA)."""
    return wiring.Signature({
        "rd_req": Out(stream.Signature(MemReq)),
        "rd_resp": In(stream.Signature(unsigned(8 * beat_bytes))),
        "wr_req": Out(stream.Signature(MemReq)),
        "wr_data": Out(stream.Signature(data.StructLayout(
            {"data": unsigned(8 * beat_bytes), "strb": unsigned(beat_bytes)}))),
        "wr_resp": In(stream.Signature(unsigned(2))),  # AXI BRESP (0 = OKAY); the DMA ignores it
    })


class _Walker(wiring.Component):
    """Steps through a command's segments. ``start`` loads the command ``cmd`` (the incoming
    one in that cycle); from the next cycle on the outputs describe the current segment, all
    from registers (nothing combinational runs from the incoming command into them):
    ``dram``/``sram`` its start addresses, ``last`` whether it is the command's last one,
    ``addr``/``beats``/``to_boundary`` its first beat-aligned DRAM address, its beat count
    (``ir.cost.dma_segment_beats``) and the beats from ``addr`` to the next 4 KiB boundary,
    ``whole`` whether one burst of at most ``max_burst`` beats, not crossing the boundary,
    carries the segment, ``near`` whether ``to_boundary <= max_burst``. Only with ``requests`` (the request side's walker); the data side's
    has ``rem0`` (the segment's bytes counted from its first beat's byte 0:
    ``dram % beat_bytes + seg_bytes``) and ``fits0`` (``rem0 <= beat_bytes``: one beat).
    ``next`` moves on to the following segment; every one of these fields is computed as the
    segment is stepped to, so the DMA decides from registers (timing closure)."""

    def __init__(self, beat_bytes: int, requests: bool, max_burst: int = 16):
        self.lg, self.requests, self.bb, self.max_burst = (beat_bytes - 1).bit_length(), requests, beat_bytes, max_burst
        super().__init__({
            "cmd": In(DmaCmd), "start": In(1), "next": In(1),
            "dram": Out(ADDR_BITS), "sram": Out(SRAM_ADDR_BITS), "last": Out(1),
            "addr": Out(ADDR_BITS), "beats": Out(DmaCmd["seg_bytes"].width),
            "to_boundary": Out(range(BOUNDARY // beat_bytes + 1)), "whole": Out(1), "near": Out(1),
            "rem0": Out(DmaCmd["seg_bytes"].width + 1), "fits0": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c, lg = self.cmd, self.lg
        shapes = {"b": c.nblk.shape(), "r": c.nrows.shape(), "slot": c.slots.shape(), "blk_dram": ADDR_BITS,
                  "dram": ADDR_BITS, "blk_sram": SRAM_ADDR_BITS, "row_off": SRAM_ADDR_BITS}
        cur = {k: Signal(w, name=k) for k, w in shapes.items()}
        # The command's fields as loaded at start (own copies: the DMA's are elsewhere).
        keep = ("nblk", "nrows", "slots", "slot0", "sram_row_step", "blk_stride", "row_stride",
                "sram_blk_step", "seg_bytes")
        k = {name: Signal.like(getattr(c, name), name=f"cmd_{name}") for name in keep}
        with m.If(self.start):
            m.d.sync += [k[name].eq(getattr(c, name)) for name in keep]
        # The first slot's on-chip offset, slot0 * sram_row_step, is multiplied from the
        # registered fields in the cycle after start (``first``), so that no multiplier sits
        # between the incoming command and a register; until then it reads 0.
        first, first_off = Signal(), Signal(SRAM_ADDR_BITS)
        m.d.sync += first.eq(self.start)
        # ``last``'s comparisons, made as a segment is stepped to: is the current row / block
        # the last one.
        last_r, last_b = Signal(), Signal()
        m.d.comb += [self.dram.eq(cur["dram"]), self.sram.eq(cur["blk_sram"] + cur["row_off"]),
                     self.last.eq(last_b & last_r)]
        # The next segment's DRAM address and what depends on it only.
        new_dram, seg_bytes = Signal(ADDR_BITS), Signal.like(c.seg_bytes)
        next_blk, next_row = Signal(ADDR_BITS), Signal(ADDR_BITS)
        m.d.comb += [next_blk.eq(cur["blk_dram"] + k["blk_stride"]), next_row.eq(cur["dram"] + k["row_stride"]),
                     new_dram.eq(Mux(self.start, c.dram_addr, Mux(last_r, next_blk, next_row))),
                     seg_bytes.eq(Mux(self.start, c.seg_bytes, k["seg_bytes"]))]
        # ``new_dram[:bits] + seg_bytes <= limit`` is decided as ``x <= limit - seg_bytes`` for
        # each of the three candidate addresses, and the answer picked: the room is subtracted
        # from the command once (registered at start), so that a segment's step has one carry
        # chain (its address) and a comparison before its register, no mux between them.
        rooms = {}

        def fits(limit, bits):
            def low(v):
                return v[:bits] if bits else Const(0, 1)

            if limit not in rooms:
                kept = Signal(signed(c.seg_bytes.shape().width + 2), name=f"room_{limit}")
                with m.If(self.start):
                    m.d.sync += kept.eq(limit - c.seg_bytes)
                rooms[limit] = kept
            kept = rooms[limit]
            return Mux(self.start, low(c.dram_addr) <= limit - c.seg_bytes,
                       Mux(last_r, low(next_blk) <= kept, low(next_row) <= kept))

        addr, beats, tb = Signal(ADDR_BITS), Signal.like(self.beats), Signal.like(self.to_boundary)
        whole, near, rem0, fits0 = Signal(), Signal(), Signal.like(self.rem0), Signal()
        m.d.comb += [self.addr.eq(addr), self.beats.eq(beats), self.to_boundary.eq(tb), self.whole.eq(whole),
                     self.near.eq(near), self.rem0.eq(rem0), self.fits0.eq(fits0)]
        with m.If(first):  # before the stepping below, which overrides it (a store: slot0 = 0)
            product = k["slot0"] * k["sram_row_step"]
            m.d.sync += [first_off.eq(product), cur["row_off"].eq(product)]
        with m.If(self.start | self.next):
            m.d.sync += cur["dram"].eq(new_dram)
            offset = new_dram[:lg] if lg else 0
            if self.requests:
                # beats <= max_burst and beats <= tb, from the address's low bits (no chain
                # through ``beats`` and ``tb``): the span ends by max_burst beats / the boundary.
                m.d.sync += [addr.eq(new_dram - offset), beats.eq((offset + seg_bytes + (1 << lg) - 1) >> lg),
                             tb.eq((BOUNDARY >> lg) - new_dram[lg:12]),
                             near.eq(new_dram[lg:12] >= (BOUNDARY >> lg) - self.max_burst),
                             whole.eq(fits(self.max_burst * self.bb, lg) & fits(BOUNDARY, 12))]
            else:
                m.d.sync += [rem0.eq(offset + seg_bytes), fits0.eq(fits(self.bb, lg))]
        with m.If(self.start):
            m.d.sync += [cur["b"].eq(0), cur["r"].eq(0), cur["slot"].eq(c.slot0), cur["blk_dram"].eq(c.dram_addr),
                         cur["blk_sram"].eq(c.sram_addr), cur["row_off"].eq(0), first_off.eq(0),
                         last_r.eq(c.nrows == 1), last_b.eq(c.nblk == 1)]
        with m.Elif(self.next):
            with m.If(last_r):  # next block: back to the first row and slot
                m.d.sync += [cur["b"].eq(cur["b"] + 1), cur["r"].eq(0), cur["slot"].eq(k["slot0"]),
                             cur["row_off"].eq(first_off), cur["blk_dram"].eq(new_dram),
                             cur["blk_sram"].eq(cur["blk_sram"] + k["sram_blk_step"]),
                             last_r.eq(k["nrows"] == 1), last_b.eq(cur["b"] + 2 == k["nblk"])]
            with m.Else():  # next row: the ring wraps after its last slot
                m.d.sync += [cur["r"].eq(cur["r"] + 1), last_r.eq(cur["r"] + 2 == k["nrows"])]
                with m.If(cur["slot"] == k["slots"] - 1):
                    m.d.sync += [cur["slot"].eq(0), cur["row_off"].eq(0)]
                with m.Else():
                    m.d.sync += [cur["slot"].eq(cur["slot"] + 1), cur["row_off"].eq(cur["row_off"] + k["sram_row_step"])]
        return m


class DMA(wiring.Component):
    """The DMA engine (see the module docstring for command, ports and timing).

    Ports: ``cmd`` (stream of :data:`DmaCmd`, ready when idle), ``done`` (one-cycle pulse when
    a command has completed: loads after the last on-chip write, stores after the last write
    response), ``mem`` (:func:`mem_signature`), ``sram_wr``, ``sram_rd``, ``sram_rdata``.
    """

    def __init__(self, beat_bytes: int = 8, word_bytes: int = 4, max_burst: int = 16, read_depth: int = 4):
        if beat_bytes < 1 or beat_bytes & (beat_bytes - 1) or beat_bytes > MAX_BEAT_BYTES:
            raise ShiftflowError(f"DMA beat_bytes must be a power of two in 1..{MAX_BEAT_BYTES}, got {beat_bytes}")
        if word_bytes < 1 or beat_bytes % word_bytes:
            raise ShiftflowError(f"DMA beat_bytes ({beat_bytes}) must be a multiple of the word size ({word_bytes})")
        if not 1 <= max_burst <= 256 or max_burst * beat_bytes > BOUNDARY:
            raise ShiftflowError(f"DMA max_burst must be in 1..256 and span at most 4 KiB, got {max_burst}")
        if read_depth < 1:
            raise ShiftflowError(f"DMA read_depth must be positive, got {read_depth}")
        self.beat_bytes, self.word_bytes, self.max_burst, self.read_depth = beat_bytes, word_bytes, max_burst, read_depth
        bb = beat_bytes
        super().__init__({
            "cmd": In(stream.Signature(DmaCmd)),
            "done": Out(1),
            "mem": Out(mem_signature(bb)),
            "sram_wr": Out(stream.Signature(sram_write_layout(bb))),
            "sram_rd": Out(stream.Signature(SramRead)),
            "sram_rdata": In(stream.Signature(unsigned(8 * bb))),
        })

    def elaborate(self, platform):
        m = Module()
        bb, lg = self.beat_bytes, (self.beat_bytes - 1).bit_length()
        cmd_reg, cmd = Signal(DmaCmd), Signal(DmaCmd)
        busy, req_done, data_done = Signal(), Signal(), Signal()
        start, req_left, data_left = Signal(), Signal(), Signal()
        # The incoming command is sampled every cycle (``pre``: no enable fanning out from the
        # accept) and acted on from the cycle after an accept (``launch``), when the walkers
        # load it from ``pre``; requests and on-chip reads start the cycle after that
        # (``ir.cost.DMA_START`` = 2). An empty command is recognised in ``launch`` too, from
        # ``pre``, and ends there (``done`` in cycle 2, ``ir.cost.DMA_EMPTY``; its walkers load
        # and stay unused). So nothing combinational runs from the controller's issue decision
        # and the queue's word into the DMA beyond ``busy`` and these two registers.
        pre, launch = Signal(DmaCmd), Signal()
        empty = (pre.nblk == 0) | (pre.nrows == 0) | (pre.seg_bytes == 0)
        dcmd = cmd
        # ``req_left`` / ``data_left`` (busy, that side not done, not ``launch``) are registers of
        # their own, set by a non-empty ``launch`` and cleared with ``req_done`` / ``data_done`` or
        # the end (timing: ``launch`` also loads the command register and both walkers, and its
        # route to the store's on-chip read valid was 8.4 ns of the 18.1 ns path into the data
        # walker's enables on 5c57a98's seed 4).
        m.d.comb += [self.cmd.ready.eq(~busy), start.eq(self.cmd.valid & ~busy), cmd.eq(cmd_reg)]
        m.d.sync += [self.done.eq(0), pre.eq(self.cmd.payload), launch.eq(start)]
        with m.If(start):
            m.d.sync += [busy.eq(1), req_done.eq(0), data_done.eq(0)]
        with m.If(launch):
            m.d.sync += cmd_reg.eq(pre)
            with m.If(empty):
                m.d.sync += [busy.eq(0), self.done.eq(1)]

        walk_req, walk_data = _Walker(bb, requests=True, max_burst=self.max_burst), _Walker(bb, requests=False)
        m.submodules.walk_req, m.submodules.walk_data = walk_req, walk_data
        for w in (walk_req, walk_data):
            m.d.comb += [w.cmd.eq(pre), w.start.eq(launch)]

        # Request side: one burst request per cycle, split at max_burst and 4 KiB boundaries.
        # ``in_seg``: inside a segment split into several bursts (never at a command's start).
        # Every input of a request is a register (the walker's segment fields, or the rest of
        # a split segment, with its distance to the boundary computed as it was split), so
        # the request and the decision to step are one comparison deep.
        seg_bits = DmaCmd["seg_bytes"].width
        in_seg_reg, cur_addr, cur_rem, cur_ends, cur_near = Signal(), Signal(ADDR_BITS), Signal(seg_bits), Signal(), Signal()
        cur_tb = Signal.like(walk_req.to_boundary)
        in_seg = Signal()
        m.d.comb += in_seg.eq(in_seg_reg & busy)
        m.d.sync += in_seg_reg.eq(in_seg)
        addr, rem, tb = Signal(ADDR_BITS), Signal(seg_bits), Signal.like(cur_tb)
        m.d.comb += [addr.eq(Mux(in_seg, cur_addr, walk_req.addr)), rem.eq(Mux(in_seg, cur_rem, walk_req.beats)),
                     tb.eq(Mux(in_seg, cur_tb, walk_req.to_boundary))]
        # The segment ends with this burst when its rest fits both limits; otherwise the burst
        # is the smaller limit.
        # ``ends`` = (rem <= max_burst) & (rem <= tb), registered: the walker's ``whole``, or
        # computed as the segment was split.
        ends = Mux(in_seg, cur_ends, walk_req.whole)
        # A split burst ends at the boundary when ``tb <= max_burst``: that comparison is made
        # as ``tb`` is registered (``near``), not on the way to the request (its beat count).
        at_boundary = Mux(in_seg, cur_near, walk_req.near)
        split_len = Mux(at_boundary, tb, self.max_burst)
        burst_len = Mux(ends, rem, split_len)
        for port, is_store in ((self.mem.rd_req, 0), (self.mem.wr_req, 1)):
            m.d.comb += [port.valid.eq(req_left & (cmd.store == is_store)),
                         port.payload.addr.eq(addr), port.payload.beats.eq(burst_len)]
        req_fire = (self.mem.rd_req.valid & self.mem.rd_req.ready) | (self.mem.wr_req.valid & self.mem.wr_req.ready)
        with m.If(req_fire):
            with m.If(ends):
                m.d.sync += in_seg_reg.eq(0)
                m.d.comb += walk_req.next.eq(1)
                with m.If(walk_req.last):
                    m.d.sync += req_done.eq(1)
            with m.Else():
                # The rest ends with its next burst: after a burst to the boundary (the next
                # one starts on it), when rem - tb <= max_burst; after a max_burst one (tb >
                # max_burst and rem > max_burst), when rem - max_burst <= max_burst and <= tb - max_burst.
                mb = self.max_burst
                m.d.sync += [in_seg_reg.eq(1), cur_addr.eq(addr + (split_len << lg)), cur_rem.eq(rem - split_len),
                             cur_tb.eq(Mux(at_boundary, BOUNDARY >> lg, tb - mb)),
                             cur_near.eq(Mux(at_boundary, (BOUNDARY >> lg) <= mb, tb <= 2 * mb)),
                             cur_ends.eq(Mux(at_boundary, rem <= tb + mb, (rem <= 2 * mb) & (rem <= tb)))]

        # Data side: per beat, the on-chip address of byte 0 and the byte strobes.
        d_in_seg_reg, d_sram, d_rem, d_fits = Signal(), Signal(SRAM_ADDR_BITS), Signal(seg_bits + 1), Signal()
        d_in_seg = Signal()
        m.d.comb += d_in_seg.eq(d_in_seg_reg & busy)
        m.d.sync += d_in_seg_reg.eq(d_in_seg)
        d_off = walk_data.dram[:lg] if lg else 0
        words_back = (d_off // self.word_bytes) if lg else 0
        sram = Signal(SRAM_ADDR_BITS)
        rem_bytes = Signal(seg_bits + 1)
        lo = Signal(range(bb + 1))
        strb = Signal(bb)
        ones = (1 << bb) - 1
        # ``fits``: this beat is the segment's last (rem_bytes <= bb), from registers.
        fits = Signal()
        m.d.comb += [
            sram.eq(Mux(d_in_seg, d_sram,
                        walk_data.sram - words_back * dcmd.stride - (d_off % self.word_bytes if lg else 0))),
            rem_bytes.eq(Mux(d_in_seg, d_rem, walk_data.rem0)),
            fits.eq(Mux(d_in_seg, d_fits, walk_data.fits0)),
            lo.eq(Mux(d_in_seg, 0, d_off)),
            # Bytes lo .. rem_bytes-1 of the beat: ones from lo up, cut at rem_bytes.
            strb.eq((Const(ones, bb) << lo)[:bb] & Mux(fits, (Const(1, bb + 1) << rem_bytes[:lg + 1]) - 1, ones)),
        ]
        beat_fire, last_beat = Signal(), Signal()
        m.d.comb += last_beat.eq(beat_fire & fits & walk_data.last)
        with m.If(beat_fire):
            with m.If(fits):
                m.d.sync += d_in_seg_reg.eq(0)
                m.d.comb += walk_data.next.eq(1)
                with m.If(walk_data.last):
                    m.d.sync += data_done.eq(1)
            with m.Else():
                words_per_beat = bb // self.word_bytes
                m.d.sync += [d_in_seg_reg.eq(1), d_sram.eq(sram + words_per_beat * dcmd.stride), d_rem.eq(rem_bytes - bb),
                             d_fits.eq(rem_bytes <= 2 * bb)]

        # Loads: response beats go straight to the on-chip write port.
        rd, wr = self.mem.rd_resp, self.sram_wr
        m.d.comb += [
            wr.valid.eq(data_left & ~dcmd.store & rd.valid),
            rd.ready.eq(data_left & ~dcmd.store & wr.ready),
            wr.payload.sel.eq(dcmd.sel), wr.payload.addr.eq(sram),
            wr.payload.data.eq(rd.payload), wr.payload.strb.eq(strb),
        ]
        # Stores: on-chip reads run ahead; their strobes wait in a FIFO for the data.
        m.submodules.strobes = strobes = SyncFIFO(width=bb, depth=self.read_depth)
        srd, sdat, wd = self.sram_rd, self.sram_rdata, self.mem.wr_data
        m.d.comb += [
            srd.valid.eq(data_left & dcmd.store & strobes.w_rdy),
            srd.payload.sel.eq(dcmd.sel), srd.payload.addr.eq(sram), srd.payload.stride.eq(dcmd.stride),
            strobes.w_en.eq(srd.valid & srd.ready), strobes.w_data.eq(strb),
            wd.valid.eq(sdat.valid & strobes.r_rdy),
            wd.payload.data.eq(sdat.payload), wd.payload.strb.eq(strobes.r_data),
            sdat.ready.eq(wd.ready & strobes.r_rdy),
            strobes.r_en.eq(wd.valid & wd.ready),
            beat_fire.eq(Mux(dcmd.store, srd.valid & srd.ready, rd.valid & rd.ready)),
        ]

        # Completion, registered: a load with its last on-chip write; a store with the response
        # to its last burst (responses come in order, each after its burst's last data beat,
        # so that one is the last write of the command to complete).
        pending = Signal(16)
        issued = self.mem.wr_req.valid & self.mem.wr_req.ready
        answered = self.mem.wr_resp.valid & self.mem.wr_resp.ready
        m.d.comb += self.mem.wr_resp.ready.eq(1)
        m.d.sync += pending.eq(pending + issued - answered)
        load_done = ~dcmd.store & last_beat
        store_done = cmd.store & req_done & answered & (pending == 1)
        with m.If(busy & (load_done | store_done)):
            m.d.sync += [busy.eq(0), self.done.eq(1)]
        ends_all = busy & (load_done | store_done)
        with m.If(launch):
            m.d.sync += [req_left.eq(~empty), data_left.eq(~empty)]
        with m.Else():
            with m.If(req_fire & ends & walk_req.last | ends_all):
                m.d.sync += req_left.eq(0)
            with m.If(last_beat | ends_all):
                m.d.sync += data_left.eq(0)
        return m
