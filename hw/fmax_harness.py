"""An I/O-free wrapper for measuring a component's Fmax (``hw/fmax.py``)."""

from amaranth import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class FmaxHarness(wiring.Component):
    """Wraps a component so that place-and-route sees only register-to-register paths and
    two I/O pins, whatever the component's port count.

    Every input port bit comes from a shift chain fed by ``din``; every output port bit is
    registered (``r[i] <= out[i]``) and the registers are folded into a one-XOR-deep
    compressor chain (``c[i] <= r[i] ^ c[i-1]``) whose last bit is ``dout``. All outputs stay
    observable, so nothing is optimized away. Both sides of the component end in registers
    of the harness, as its ports would at registered I/O (an output bit's own register can
    sit by its driver; folded straight into the chain, whose flip-flops the placer strings
    across the die, the output paths were 14-15.7 ns on all four seeds of the whole ``tiny``
    on 77d956e, an artifact of the harness).
    """
    din: In(1)
    dout: Out(1)

    def __init__(self, dut: wiring.Component):
        self.dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        ins, outs = [], []
        for _path, member, value in self.dut.signature.flatten(self.dut):
            (ins if member.flow == In else outs).append(Value.cast(value))
        n_in = sum(len(v) for v in ins)
        chain = Signal(max(n_in, 1))
        m.d.sync += chain.eq(Value.cast(chain << 1) | self.din)
        pos = 0
        for v in ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)
        flat = [bit for v in outs for bit in v]
        held = Signal(max(len(flat), 1), name="out_reg")
        comp = Signal(max(len(flat), 1))
        for i, bit in enumerate(flat):
            m.d.sync += [held[i].eq(bit), comp[i].eq(held[i] ^ (comp[i - 1] if i else self.din))]
        m.d.comb += self.dout.eq(comp[-1])
        return m
