"""The NMS core behind its DMA front end: the spatial stage, the glue to the pyramid stage and
the survivor-list writer (docs/nms_core.md).

::

    per block (block_start, its geometry, kernels, shifts and each lane's channel and class):
        i: cells ─▶ NmsSpatial ─▶ survivors (lane, y, x, key, index)
                                   ─▶ glue: lane → (anchor channel, class); count; entry buffer
                                   ─▶ NmsPyramid's buffer (or, past its size, the overflow flag)
    finish ─▶ NmsPyramid ─▶ kept buffer addresses ─▶ entry buffer ─▶ w: one 16-byte entry
              (SURVIVOR_DTYPE) a write, the first ``capacity``; then the 16-byte header
              (count, flags: FLAG_LIST_FULL, FLAG_SPATIAL_FULL, FLAG_BAD_PATCH)

The front end (not built yet) reads the parameter table, streams each level's blocks from
the score maps' byte planes with the patches merged, and gives each block's lanes their
anchor channel and class (``channel = first(level) + p // classes``, ``cls = p % classes``
for lane ``l`` of block ``b0``, ``p = b0 + l``; it needs them anyway for the box index
``start + (y·W + x)·A + p // classes``). ``w`` is the list writer's request stream to the
DMA's write walker: a byte address and 16 bytes.

The entry buffer is a copy of the pyramid's (which keeps only what its comparators need in
its banks' order); sharing one would save ``survivors`` × 16 bytes of RAM.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..ir.nms import FLAG_BAD_PATCH, FLAG_LIST_FULL, FLAG_SPATIAL_FULL, NmsCore
from .nms import Y_BITS, NmsSpatial
from .nms_pyramid import NmsPyramid, entry_layout

WRITE = data.StructLayout({"addr": unsigned(32), "data": unsigned(128)})


class NmsBack(wiring.Component):
    """Spatial stage, glue, pyramid stage and list writer of an ``NmsCore`` (module
    docstring). Protocol: while idle, write the pyramid's slot table (``slot_*``) and set
    ``out_addr`` and ``capacity``; for each block, raise ``block_start`` for a cycle while
    ``block_busy`` is low with its ``height``, ``width``, ``kernel``, ``shift``, ``chan``
    and ``cls`` set (held until the next block) and send its cells on ``i``; after the last
    block has left (``block_busy`` low), raise ``finish`` for a cycle, with ``bad`` high when
    the patch list was not legal (then only the header is written: count 0, FLAG_BAD_PATCH). The list's writes come
    out on ``w``; ``done`` is high for one cycle after the header's."""

    def __init__(self, core: NmsCore):
        self.core = core
        self.spatial, self.pyramid = NmsSpatial(core, grid_copy=core.write_reg), NmsPyramid(core)
        chan_shape = self.pyramid.entry["channel"].shape
        super().__init__({
            "slot_we": In(1), "slot_addr": In(range(core.max_channels * core.partners)),
            "slot_data": In(self.pyramid.slot),
            "out_addr": In(32), "capacity": In(16),
            "block_start": In(1), "block_busy": Out(1),
            "height": In(Y_BITS), "width": In(self.spatial.xbits + 1),
            "kernel": In(data.ArrayLayout(unsigned(self.spatial.kbits), core.lanes)),
            "shift": In(data.ArrayLayout(unsigned(self.spatial.kbits), core.lanes)),
            "chan": In(data.ArrayLayout(chan_shape, core.lanes)),
            "cls": In(data.ArrayLayout(unsigned(16), core.lanes)),
            "i": In(stream.Signature(data.ArrayLayout(self.spatial.cell, core.lanes))),
            "finish": In(1), "bad": In(1), "busy": Out(1), "done": Out(1),
            "w": Out(stream.Signature(WRITE)),
        })

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.spatial = sp = self.spatial
        m.submodules.pyramid = py = self.pyramid
        m.d.comb += [py.slot_we.eq(self.slot_we), py.slot_addr.eq(self.slot_addr), py.slot_data.eq(self.slot_data)]

        # Per block: the spatial stage takes its geometry at block_start; the glue's lane
        # table (channel, class) is held by the caller for the block.
        m.d.comb += [sp.start.eq(self.block_start), sp.height.eq(self.height), sp.width.eq(self.width),
                     sp.kernel.eq(self.kernel), sp.shift.eq(self.shift), self.block_busy.eq(sp.busy)]
        # A two-entry skid buffer between the cell former and the spatial stage (timing:
        # the spatial stage's ``advance``, whose fan-out is every lane's memories and
        # counters, sees a register's valid, not the cell former's patch-merge decision, and
        # the cell former's ``ready`` is a register, not the spatial stage's ready chain).
        # Full throughput; a position reaches the stage a cycle after it left the cell
        # former, which may run up to two positions ahead (ir.nms.nms_cycles).
        main_v, skid_v = Signal(), Signal()
        main_d, skid_d = Signal.like(self.i.payload), Signal.like(self.i.payload)
        m.d.comb += [self.i.ready.eq(~skid_v), sp.i.valid.eq(main_v), sp.i.payload.eq(main_d)]
        take_up = self.i.valid & ~skid_v
        with m.If(main_v & sp.i.ready):
            with m.If(skid_v):
                m.d.sync += skid_v.eq(0)
            with m.Else():
                m.d.sync += main_v.eq(take_up)
        with m.Elif(take_up):
            with m.If(main_v):
                m.d.sync += skid_v.eq(1)
            with m.Else():
                m.d.sync += main_v.eq(1)
        # The data registers load whenever their content is free, taken or not (an empty
        # entry's data is never read), so their enables are registers' and the spatial stage's
        # ``ready``, without the cell former's ``valid`` (its patch-merge decision: 16.84 ns
        # into ``skid_d``'s enables on 7e65929's seed 4).
        with m.If(~skid_v):
            m.d.sync += skid_d.eq(self.i.payload)
        with m.If(~main_v | sp.i.ready):
            m.d.sync += main_d.eq(Mux(skid_v, skid_d, self.i.payload))
        if sp.grid_copy:
            # The shifted grid's copy of main_d (NmsSpatial's ``grid_copy``). Its initial value
            # differs so that yosys does not merge the two registers (equal D, enable and init
            # make one flip-flop; ``keep`` on the wire does not stop it); neither is read
            # before its first load (``main_v`` is low until then).
            main_s = Signal.like(self.i.payload, init=[{"valid": 1, "key": -1, "index": (1 << core.index_bits) - 1}] * core.lanes)
            with m.If(~main_v | sp.i.ready):
                m.d.sync += main_s.eq(Mux(skid_v, skid_d, self.i.payload))
            m.d.comb += sp.i_s.eq(main_s)

        abits = max(1, (core.survivors - 1).bit_length())
        entries = Memory(shape=entry_layout(core), depth=core.survivors, init=[])
        m.submodules.entries = entries
        ew, er = entries.write_port(), entries.read_port()

        # Glue: a spatial survivor becomes an entry (anchor channel, class of its lane); the
        # first ``survivors`` go to the pyramid's buffer and the copy, the rest only count.
        n = Signal(range(core.survivors + 2))  # spatial survivors taken, saturating at survivors + 1
        s = sp.o.payload
        entry = Signal(entry_layout(core))
        m.d.comb += [entry.channel.eq(self.chan[s.lane]), entry.cls.eq(self.cls[s.lane]), entry.y.eq(s.y),
                     entry.x.eq(s.x), entry.key.eq(s.key), entry.index.eq(s.index)]
        room = n < core.survivors
        # The spatial stage's output is always taken while its blocks run (the pyramid is
        # idle then and its buffer has room while ``room``), so its ready is the state
        # register's (timing: the ready gates the spatial stage's ``advance``).
        # (A register of its own, cleared and set with the state's moves out of and into
        # SPATIAL: timing, the FSM's state decode reached every enable of the spatial stage
        # through ``advance``, 17.17 ns, 15.7 of it routing, on 7e65929's third seed.)
        spatial_phase = Signal(init=1)
        m.d.comb += [py.i.payload.eq(entry), py.i.valid.eq(sp.o.valid & room),
                     sp.o.ready.eq(spatial_phase),
                     ew.addr.eq(n), ew.data.eq(entry), ew.en.eq(sp.o.valid & py.i.ready & room)]
        with m.If(sp.o.valid & sp.o.ready & (n <= core.survivors)):
            m.d.sync += n.eq(n + 1)

        kept = Signal(range(core.survivors + 1))  # survivors the pyramid kept
        pending = Signal()  # a kept survivor's entry is being read
        py_done = Signal()
        flags = Signal(3)
        record = Signal(128)
        e = er.data
        # SURVIVOR_DTYPE: index u32, key i32, cls u16, channel u16, y u16, x u16.
        m.d.comb += record.eq(Cat(_zext(e.index, 32), _sext(e.key, 32), _zext(e.cls, 16), _zext(e.channel, 16),
                                  _zext(e.y, 16), _zext(e.x, 16)))

        with m.FSM(name="nms_back") as fsm:
            with m.State("SPATIAL"), m.If(self.finish):
                m.d.sync += [kept.eq(0), py_done.eq(0), spatial_phase.eq(0)]
                with m.If(self.bad):
                    m.d.sync += flags.eq(FLAG_BAD_PATCH)
                    m.next = "HEADER"
                with m.Elif(n > core.survivors):
                    m.d.sync += flags.eq(FLAG_SPATIAL_FULL)
                    m.next = "HEADER"
                with m.Elif(n == 0):
                    m.d.sync += flags.eq(0)
                    m.next = "HEADER"
                with m.Else():
                    m.d.sync += flags.eq(0)
                    m.d.comb += py.start.eq(1)
                    m.next = "PYRAMID"
            with m.State("PYRAMID"):
                # The read holds its data while the entry waits for the writer.
                m.d.comb += [py.o.ready.eq(~pending), er.addr.eq(py.o.payload[:abits]), er.en.eq(~pending)]
                with m.If(py.o.valid & py.o.ready):
                    m.d.sync += pending.eq(1)
                with m.If(py.done):
                    m.d.sync += py_done.eq(1)
                write = pending & (kept < self.capacity)
                m.d.comb += [self.w.valid.eq(write), self.w.payload.addr.eq(self.out_addr + ((kept + 1) << 4)),
                             self.w.payload.data.eq(record)]
                with m.If(pending & (~write | self.w.ready)):
                    m.d.sync += [pending.eq(0), kept.eq(kept + 1)]
                with m.If((py_done | py.done) & ~pending):
                    m.next = "HEADER"
            with m.State("HEADER"):
                full = Signal()
                m.d.comb += [full.eq(kept > self.capacity), self.w.valid.eq(1), self.w.payload.addr.eq(self.out_addr),
                             self.w.payload.data.eq(Cat(_zext(kept, 32), flags | Mux(full, FLAG_LIST_FULL, 0)))]
                with m.If(self.w.ready):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), py.clear.eq(1)]
                m.d.sync += [n.eq(0), spatial_phase.eq(1)]
                m.next = "SPATIAL"
        m.d.comb += self.busy.eq(~spatial_phase | sp.busy)
        return m


def _sext(v, width: int):
    """Signed ``v`` sign-extended to ``width`` bits (``width >= len(v)``)."""
    v = Value.cast(v)
    return Cat(v, v[-1].replicate(width - len(v)))


def _zext(v, width: int):
    """``v`` zero-extended to ``width`` bits (``width >= len(v)``)."""
    v = Value.cast(v)
    return Cat(v, Const(0, width - len(v)))
