"""A skid buffer: a stream stage whose ``ready`` towards the sender is a register.

::

    i.valid/payload ──┬──────────────▶ o.valid/payload     (empty: straight through)
                      └─▶ [held] ────▶                       (held: from the register)
    i.ready ◀── ~held (a register)   ◀── o.ready

Amaranth 0.5's ``lib.stream`` has no such component. This one cuts the combinational path
from a receiver's ``ready`` back into the sender (an AXI slave's ``arready`` into the DMA's
request logic, say): the sender sees ``ready = ~held``, a flip-flop. Data pass straight
through while nothing is held, so with a receiver that is always ready the stage adds no
cycle and the cycle model does not see it. When the receiver refuses a transfer the sender
has already made, the stage keeps it (``held``) and presents it first; the sender waits one
cycle per refusal. Order is kept and nothing is lost or duplicated (``tests/hw/test_skid.py``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class _Stage(wiring.Component):
    """A stream stage: ``i`` (stream of ``shape``) in, ``o`` out."""

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})


class SkidBuffer(_Stage):
    """``i`` → ``o``, one transfer held at most; see the module docstring."""

    def elaborate(self, platform):
        m = Module()
        held = Signal()
        hold = Signal.like(self.i.payload)
        m.d.comb += [
            self.i.ready.eq(~held),
            self.o.valid.eq(held | self.i.valid),
            self.o.payload.eq(Mux(held, hold, self.i.payload)),
        ]
        with m.If(held):
            with m.If(self.o.ready):
                m.d.sync += held.eq(0)
        with m.Elif(self.i.valid & ~self.o.ready):  # taken from the sender, refused downstream
            m.d.sync += [held.eq(1), hold.eq(self.i.payload)]
        return m


class RegisterSlice(_Stage):
    """``i`` (stream of ``shape``) → ``o`` through a register: ``o.valid``/``o.payload`` are
    flip-flops, and so is ``i.ready`` (a skid register behind the output one). Every transfer
    arrives one cycle after it was sent while the receiver keeps up; the stage passes one
    transfer a cycle, keeps order, and loses or duplicates nothing. It cuts both directions
    between two units placed apart (the store unit's output-buffer reads:
    ``AcceleratorConfig.store_read_slice``), at the cost of that cycle, which the cycle
    model counts."""

    def elaborate(self, platform):
        m = Module()
        held = Signal()
        hold = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(~held)
        with m.If(~self.o.valid | self.o.ready):  # the output register takes its next transfer
            with m.If(held):
                m.d.sync += [self.o.payload.eq(hold), held.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~held):  # output refused: the sent transfer waits in the skid
            m.d.sync += [held.eq(1), hold.eq(self.i.payload)]
        return m
