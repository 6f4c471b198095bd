"""cocotb bench for hw/axi.AxiDma on Verilator (run by tests/hw/test_rtl.py) with the
reusable AXI DRAM model (hw/tb/dram.py) and a small on-chip memory model."""

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from shiftflow.hw.dma import SRAM_ADDR_BITS, DmaCmd, SramRead, sram_write_layout
from shiftflow.hw.tb.dram import AxiDram
from shiftflow.hw.tb.streams import issue, value
from shiftflow.ir.cost import DMA_START
from tests.hw.test_dma import BB, TN, box_cmd, linear_cmd

ADDR_MASK = (1 << SRAM_ADDR_BITS) - 1  # on-chip addresses wrap (masked lanes may point below 0)


class Sram:
    """On-chip memory on the DMA's sram_* ports: read latency 1 (+ stalls), random back-pressure."""

    def __init__(self, dut, stall, seed):
        self.dut, self.stall, self.rng = dut, stall, random.Random(seed)
        self.mem, self.pending = {}, deque()
        self.wr_layout = sram_write_layout(BB)

    async def run(self):
        d = self.dut
        while True:
            await FallingEdge(d.clk)
            d.sram_wr__ready.value = int(self.rng.random() >= self.stall)
            d.sram_rd__ready.value = int(self.rng.random() >= self.stall)
            out = bool(self.pending) and self.rng.random() >= self.stall
            d.sram_rdata__valid.value = int(out)
            if out:
                d.sram_rdata__payload.value = self.pending[0]
            await ReadOnly()
            if value(d.sram_wr__valid) and value(d.sram_wr__ready):
                w = self.wr_layout.from_bits(value(d.sram_wr__payload))
                for j in range(BB):
                    if int(w.strb) >> j & 1:
                        self.mem[(int(w.sel), (int(w.addr) + j) & ADDR_MASK)] = (int(w.data) >> 8 * j) & 0xFF
            if value(d.sram_rd__valid) and value(d.sram_rd__ready):
                r = SramRead.from_bits(value(d.sram_rd__payload))
                addrs = [(int(r.addr) + (j // TN) * int(r.stride) + j % TN) & ADDR_MASK for j in range(BB)]
                self.pending.append(sum(self.mem.get((int(r.sel), a), 0) << 8 * j for j, a in enumerate(addrs)))
            if out and value(d.sram_rdata__ready):
                self.pending.popleft()


async def setup(dut, *, latency, stall, rate=None):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 0
    dut.cmd__valid.value = 0
    dram = AxiDram(dut, data_bytes=BB, latency=latency, stall=stall, bytes_per_cycle=rate, seed=11)
    dram.start()
    sram = Sram(dut, stall, seed=12)
    cocotb.start_soon(sram.run())
    return dram, sram


async def run_cmd(dut, cmd) -> int:
    """Issue one command; the cycle ``done`` is seen in, counted from its acceptance (as
    test_dma)."""
    return await issue(dut, "cmd", DmaCmd.const(cmd).as_bits())


@cocotb.test()
async def load_then_store_with_stalls(dut):
    """LOAD_WGT-style copy in, STORE box out, at half bandwidth with random stalls everywhere."""
    dram, sram = await setup(dut, latency=10, stall=0.3, rate=BB // 2)
    src = bytes(random.Random(1).randrange(256) for _ in range(600))
    dram.load(0x2000 - 100, src)
    await run_cmd(dut, linear_cmd(dram_addr=0x2000 - 100, nbytes=555, sram_addr=3, sel=2))
    assert {k: v for k, v in sram.mem.items()} == {(2, 3 + i): src[i] for i in range(555)}

    nblk, nrows, ncols, W = 2, 3, 5, 8
    sram.mem.update({(2, a): (a * 13) & 0xFF for a in range(nblk * nrows * ncols * TN)})
    dst = 0x8000 + TN
    await run_cmd(dut, box_cmd(store=True, sel=2, dram_addr=dst, ncols=ncols, nblk=nblk, nrows=nrows,
                               row_stride=W * TN, blk_stride=4 * W * TN, sram_addr=0,
                               row_step=ncols * nblk * TN, blk_step=TN, stride=nblk * TN))
    for b in range(nblk):
        for r in range(nrows):
            for j in range(ncols):
                got = dram.dump(dst + b * 4 * W * TN + r * W * TN + j * TN, TN)
                want = bytes(((((r * ncols + j) * nblk + b) * TN + k) * 13) & 0xFF for k in range(TN))
                assert got == want, (b, r, j)
    assert value(dut.error) == 0


@cocotb.test()
async def exact_cycles_without_stalls(dut):
    """Through AXI the DMA keeps its cycle count: a load takes DMA_START + latency + Σ segment beats."""
    latency = 16
    await setup(dut, latency=latency, stall=0.0)
    took = await run_cmd(dut, box_cmd(dram_addr=64, ncols=6, nblk=2, nrows=3, row_stride=80, blk_stride=400,
                                      sram_addr=0, row_step=24, blk_step=200))
    assert took == DMA_START + latency + 6 * 3, took
