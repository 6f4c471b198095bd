"""A DRAM model in the simulated design itself: AXI4 slave ports with the target's latency
and bandwidth, optional random stalls, one shared memory with a backdoor for the bench.

The whole-program bench (``hw/tb/program.py``) runs millions of cycles; a cocotb coroutine
per cycle (``hw/tb/dram.py``) manages a few thousand cycles a second, so the memory model
lives in the Verilog instead and Python only touches the design between segments.
Behaviour per port — the same as ``hw/tb/dram.py`` and ``tests/hw/memmodel.py``, the
memory every unit's cycle contract is stated against:

- an AR accepted in cycle ``c`` has its first R beat presented in cycle ``c + latency``, the
  rest back to back (one beat per cycle: a beat is ``dram_bytes_per_cycle`` bytes, the
  target's bandwidth); bursts are served in order (all IDs 0);
- W beats are taken only for an AW accepted in an earlier cycle; the B response of a burst
  is presented ``latency`` cycles after its last W beat;
- ``stall`` (12 bits, probability ``stall/4096``) withholds ARREADY, RVALID, AWREADY, WREADY
  and BVALID, each drawn independently each cycle from a per-port xorshift64 generator
  (reseeded from ``seed`` while ``seed_we``). ``stall = 0`` never stalls.

``fault`` bits are sticky checks the bench asserts on: 0 an AR or AW found its request FIFO
full (back-pressure the reference memory never applies), 1 WLAST disagreed with the AW's
burst length, 2 an address past the model's memory, 3 a write on the read-only port.

Storage is :data:`STORE_VERILOG`, a plain Verilog array (an Amaranth ``Memory`` of millions
of words takes minutes to elaborate) marked public for VPI, so cocotb reads and writes it
directly (``dut.dram.mem[word]``).
"""

from __future__ import annotations

from pathlib import Path

from amaranth import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out, flipped

from ...errors import ShiftflowError
from ...ir.config import AcceleratorConfig
from ..axi import axi4_signature
from ..csr import csr_signature
from ..top import AcceleratorTop
from ..verilog import VerilogDesign, to_verilog

STORE_MODULE = "sf_dram_store"
STORE_VERILOG = f"""\
// Bench-only DRAM storage: 2 asynchronous read ports, 1 byte-enabled write port.
module {STORE_MODULE} #(parameter AW = 20, parameter BB = 8) (
  input wire clk,
  input wire [AW-1:0] ra0, output wire [8*BB-1:0] rd0,
  input wire [AW-1:0] ra1, output wire [8*BB-1:0] rd1,
  input wire [AW-1:0] wa, input wire [8*BB-1:0] wd, input wire [BB-1:0] we
);
  reg [8*BB-1:0] mem [0:(1<<AW)-1] /*verilator public_flat_rw*/;
  assign rd0 = mem[ra0];
  assign rd1 = mem[ra1];
  integer i;
  always @(posedge clk)
    for (i = 0; i < BB; i = i + 1)
      if (we[i]) mem[wa][8*i +: 8] <= wd[8*i +: 8];
endmodule
"""

FIFO_DEPTH = 1024  # deeper than any transfer's outstanding bursts (the reference memory is unbounded)
FAULT_FULL, FAULT_WLAST, FAULT_RANGE, FAULT_WRITE = 1, 2, 4, 8


class AxiSlavePort(wiring.Component):
    """One AXI4 slave port's timing (see the module docstring) in front of storage ports
    addressed in words of ``data_bytes``; ``go`` bits (AR, R, AW, W, B) allow each channel
    this cycle, ``now`` is the cycle counter."""

    def __init__(self, data_bytes: int, word_bits: int, latency: int, writable: bool):
        if latency < 1:
            raise ShiftflowError(f"the bench DRAM needs a latency of at least 1 cycle, got {latency}")
        self.bb, self.aw, self.latency, self.writable = data_bytes, word_bits, latency, writable
        super().__init__({
            "axi": In(axi4_signature(data_bytes)), "now": In(32), "go": In(5),
            "rd_addr": Out(word_bits), "rd_data": In(8 * data_bytes),
            "wr_addr": Out(word_bits), "wr_data": Out(8 * data_bytes), "wr_en": Out(data_bytes),
            "fault": Out(4),
        })

    def elaborate(self, platform):
        m = Module()
        axi, go, now = self.axi, self.go, self.now
        shift = (self.bb - 1).bit_length()
        fault = Signal(4)
        m.d.comb += self.fault.eq(fault)
        burst = data.StructLayout({"addr": 32, "beats": 9, "t": 32})

        def out_of_range(addr):
            return (addr >> shift) >> self.aw != 0

        m.submodules.ar = ar = SyncFIFO(width=burst.size, depth=FIFO_DEPTH)
        head = data.View(burst, ar.r_data)
        m.d.comb += [
            axi.arready.eq(go[0] & ar.w_rdy), ar.w_en.eq(axi.arvalid & axi.arready),
            ar.w_data.eq(Cat(axi.araddr, axi.arlen + 1, now + self.latency)),
        ]
        with m.If(axi.arvalid & go[0] & ~ar.w_rdy):
            m.d.sync += fault.eq(fault | FAULT_FULL)
        with m.If(axi.arvalid & axi.arready & out_of_range(axi.araddr)):
            m.d.sync += fault.eq(fault | FAULT_RANGE)
        rbeat = Signal(9)
        last = Signal()
        m.d.comb += [
            self.rd_addr.eq((head.addr >> shift) + rbeat), last.eq(rbeat + 1 == head.beats),
            axi.rvalid.eq(ar.r_rdy & (now >= head.t) & go[1]),
            axi.rdata.eq(self.rd_data), axi.rlast.eq(last), axi.rresp.eq(0), axi.rid.eq(0),
            ar.r_en.eq(axi.rvalid & axi.rready & last),
        ]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += rbeat.eq(rbeat + 1)
            with m.If(last):
                m.d.sync += rbeat.eq(0)

        m.d.comb += [axi.bid.eq(0), axi.bresp.eq(0)]
        if not self.writable:
            m.d.comb += [axi.awready.eq(0), axi.wready.eq(0), axi.bvalid.eq(0)]
            with m.If(axi.awvalid | axi.wvalid):
                m.d.sync += fault.eq(fault | FAULT_WRITE)
            return m

        m.submodules.aw = aw = SyncFIFO(width=41, depth=FIFO_DEPTH)
        m.submodules.b = b = SyncFIFO(width=32, depth=FIFO_DEPTH)
        whead = data.View(data.StructLayout({"addr": 32, "beats": 9}), aw.r_data)
        m.d.comb += [
            axi.awready.eq(go[2] & aw.w_rdy), aw.w_en.eq(axi.awvalid & axi.awready),
            aw.w_data.eq(Cat(axi.awaddr, axi.awlen + 1)),
        ]
        with m.If(axi.awvalid & go[2] & ~aw.w_rdy):
            m.d.sync += fault.eq(fault | FAULT_FULL)
        with m.If(axi.awvalid & axi.awready & out_of_range(axi.awaddr)):
            m.d.sync += fault.eq(fault | FAULT_RANGE)
        wbeat = Signal(9)
        wlast = Signal()
        take = Signal()
        m.d.comb += [
            wlast.eq(wbeat + 1 == whead.beats),
            axi.wready.eq(aw.r_rdy & go[3]), take.eq(axi.wvalid & axi.wready),
            self.wr_addr.eq((whead.addr >> shift) + wbeat), self.wr_data.eq(axi.wdata),
            self.wr_en.eq(_gated(take, axi.wstrb)),
            aw.r_en.eq(take & wlast),
            b.w_en.eq(take & wlast), b.w_data.eq(now + self.latency),
            axi.bvalid.eq(b.r_rdy & (now >= b.r_data) & go[4]), b.r_en.eq(axi.bvalid & axi.bready),
        ]
        with m.If(take):
            m.d.sync += wbeat.eq(wbeat + 1)
            with m.If(wlast):
                m.d.sync += wbeat.eq(0)
            with m.If(axi.wlast != wlast):
                m.d.sync += fault.eq(fault | FAULT_WLAST)
        with m.If(take & wlast & ~b.w_rdy):
            m.d.sync += fault.eq(fault | FAULT_FULL)
        return m


def _gated(take, strb):
    """Byte enables of a W beat: its strobes when taken, else none."""
    return strb & take.replicate(len(strb))


class ProgramBench(wiring.Component):
    """:class:`hw.top.AcceleratorTop` with the DRAM model on both AXI ports (one memory of
    ``dram_bytes``, a power of two). Ports: the top's ``csr``, ``done``, ``busy``,
    ``error``; ``stall``/``seed``/``seed_we`` (see the module docstring); ``fault``
    (port ``axi`` in bits 0-3, ``ifetch`` in 4-7)."""

    def __init__(self, cfg: AcceleratorConfig, dram_bytes: int = 1 << 24):
        bb = cfg.dram_bytes_per_cycle
        if dram_bytes < bb or dram_bytes & (dram_bytes - 1):
            raise ShiftflowError(f"bench DRAM size must be a power of two of at least one beat, got {dram_bytes}")
        self.cfg, self.dram_bytes = cfg, dram_bytes
        self.word_bits = (dram_bytes // bb - 1).bit_length()
        self.top = AcceleratorTop(cfg)
        self.ports = [AxiSlavePort(bb, self.word_bits, cfg.dram_latency, writable=w) for w in (True, False)]
        super().__init__({"csr": In(csr_signature()), "done": Out(1), "busy": Out(1), "error": Out(1),
                          "stall": In(12), "seed": In(64), "seed_we": In(1), "fault": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.axi_port, m.submodules.ifetch_port = data_port, fetch_port = self.ports
        wiring.connect(m, flipped(self.csr), top.csr)
        wiring.connect(m, top.axi, data_port.axi)
        wiring.connect(m, top.ifetch, fetch_port.axi)
        m.d.comb += [self.done.eq(top.done), self.busy.eq(top.busy), self.error.eq(top.error),
                     self.fault.eq(Cat(data_port.fault, fetch_port.fault))]
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        for k, port in enumerate(self.ports):
            rng = Signal(64, init=0x9E3779B97F4A7C15 + k)
            x1 = Signal(64)
            x2 = Signal(64)
            m.d.comb += [x1.eq(rng ^ (rng << 13)[:64]), x2.eq(x1 ^ (x1 >> 7))]
            m.d.sync += rng.eq(x2 ^ (x2 << 17)[:64])
            with m.If(self.seed_we):
                m.d.sync += rng.eq((self.seed ^ Const(0x5DEECE66D * (k + 1), 64)) | 1)
            m.d.comb += [port.now.eq(now),
                         port.go.eq(Cat(*(rng[12 * i:12 * i + 12] >= self.stall for i in range(5))))]
        bb = self.cfg.dram_bytes_per_cycle
        m.submodules.dram = Instance(
            STORE_MODULE, p_AW=self.word_bits, p_BB=bb, i_clk=ClockSignal("sync"),
            i_ra0=data_port.rd_addr, o_rd0=data_port.rd_data, i_ra1=fetch_port.rd_addr, o_rd1=fetch_port.rd_data,
            i_wa=data_port.wr_addr, i_wd=data_port.wr_data, i_we=data_port.wr_en)
        return m


def bench_design(cfg: AcceleratorConfig, out_dir: str | Path, dram_bytes: int = 1 << 24) -> VerilogDesign:
    """Write the bench's Verilog (``<out_dir>/<name>.v`` and the storage module) for target
    ``cfg``; the top module is ``sf_bench_<cfg.name>`` (non-identifier characters → ``_``)."""
    name = "sf_bench_" + "".join(c if c.isalnum() else "_" for c in cfg.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for path, text in ((out / f"{name}.v", to_verilog(ProgramBench(cfg, dram_bytes), name)),
                       (out / f"{STORE_MODULE}.v", STORE_VERILOG)):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        files.append(path)
    return VerilogDesign(name, tuple(files))
