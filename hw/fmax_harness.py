"""An I/O-free wrapper for measuring a component's Fmax (``hw/fmax.py``)."""

from amaranth import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class FmaxHarness(wiring.Component):
    """Wraps a component so that place-and-route sees only register-to-register paths and
    two I/O pins, whatever the component's port count.

    Every input port bit comes from a shift chain fed by ``din``; every output port bit is
    folded into a one-XOR-deep compressor register (``c[i] <= out[i] ^ c[i-1]``) whose last
    bit is ``dout``. All outputs stay observable, so nothing is optimized away.
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
        comp = Signal(max(len(flat), 1))
        for i, bit in enumerate(flat):
            m.d.sync += comp[i].eq(bit ^ (comp[i - 1] if i else self.din))
        m.d.comb += self.dout.eq(comp[-1])
        return m
