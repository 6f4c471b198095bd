"""cocotb bench: whole accelerator segments on :class:`hw.tb.axiram.ProgramBench` under
Verilator, served to a host process (``hw/tb/rtl_accel.py``) command by command.

The single cocotb test, :func:`serve`, connects to the ``multiprocessing.connection``
listener named by ``SF_BENCH_ADDR`` (authkey ``SF_BENCH_KEY``, hex) and answers requests
until ``("quit",)``. While it waits for a request no simulated time passes. Requests:

- ``("zero", nbytes)`` / ``("write", addr, data)`` / ``("read", addr, n)``: the DRAM model's
  memory through VPI (the backdoor; costs no cycles);
- ``("run", seg_addr, seg_len, stall, seed, max_cycles)``: reseed the stall generators, set
  their probability (``stall``/4096), write SEG_ADDR, SEG_LEN and CTRL.start over the CSR
  port, wait for STATUS.done (or error, or ``max_cycles``), then read every CSR. Answers
  ``{"status", "error", "cycles", "units", "fault", "timeout", "seconds", "waited", "edges"}``
  where ``waited`` counts the cycles from the start write to done as seen by the bench and
  ``edges`` the rising clock edges from the one that takes the start to the one that raises
  done (the bench's own count of what the CYCLES register holds).

Any exception in the bench is sent back as ``("exception", text)`` before the test fails.
"""

from __future__ import annotations

import os
import time
import traceback
from multiprocessing.connection import Client

import cocotb
from cocotb.clock import Clock
from cocotb.handle import Immediate
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge

from ..csr import STATUS_BUSY, STATUS_DONE, STATUS_ERROR, UNIT_COUNTERS, Reg

PERIOD_NS = 10
UNITS = ("load", "compute", "store")


class Bench:
    """The bench's view of the design: CSR accesses, the DRAM backdoor, segments."""

    def __init__(self, dut, beat: int):
        self.dut, self.clk, self.beat = dut, dut.clk, beat
        self.mem = dut.dram.mem

    # -- DRAM backdoor (immediate VPI writes: no simulated time passes between requests) ---
    def _word(self, i: int) -> int:
        return int(self.mem[i].value)

    def write(self, addr: int, payload: bytes) -> None:
        bb, n = self.beat, len(payload)
        if not n:
            return
        first, end = addr // bb, -(-(addr + n) // bb)
        image = bytearray((end - first) * bb)
        if addr % bb:  # partial words keep their other bytes
            image[:bb] = self._word(first).to_bytes(bb, "little")
        if (addr + n) % bb:
            image[-bb:] = self._word(end - 1).to_bytes(bb, "little")
        image[addr - first * bb:addr - first * bb + n] = payload
        for k in range(end - first):
            self.mem[first + k].value = Immediate(int.from_bytes(image[k * bb:(k + 1) * bb], "little"))

    def read(self, addr: int, n: int) -> bytes:
        bb = self.beat
        first, end = addr // bb, -(-(addr + n) // bb)
        raw = b"".join(self._word(i).to_bytes(bb, "little") for i in range(first, end))
        return raw[addr - first * bb:addr - first * bb + n]

    def zero(self, nbytes: int) -> None:
        for i in range(-(-nbytes // self.beat)):
            self.mem[i].value = Immediate(0)

    # -- CSRs ------------------------------------------------------------------------------
    async def csr_write(self, reg: int, value: int) -> None:
        d = self.dut
        await FallingEdge(self.clk)
        d.csr__addr.value, d.csr__wdata.value, d.csr__we.value = int(reg), value, 1
        await FallingEdge(self.clk)
        d.csr__we.value = 0

    async def csr_read(self, reg: int) -> int:
        await FallingEdge(self.clk)
        self.dut.csr__addr.value = int(reg)
        await ReadOnly()
        return int(self.dut.csr__rdata.value)

    # -- one segment ---------------------------------------------------------------------
    async def run(self, seg_addr: int, seg_len: int, stall: int, seed: int, max_cycles: int) -> dict:
        d = self.dut
        await FallingEdge(self.clk)
        d.stall.value, d.seed.value, d.seed_we.value = stall, seed, 1
        await FallingEdge(self.clk)
        d.seed_we.value = 0
        await self.csr_write(Reg.SEG_ADDR, seg_addr)
        await self.csr_write(Reg.SEG_LEN, seg_len)
        t0 = time.perf_counter()
        await FallingEdge(self.clk)
        d.csr__addr.value, d.csr__wdata.value, d.csr__we.value = int(Reg.CTRL), 1, 1
        begin = cocotb.utils.get_sim_time("ns")
        await FallingEdge(self.clk)
        d.csr__we.value = 0
        timeout = False
        ended = cocotb.utils.get_sim_time("ns") - PERIOD_NS // 2  # the rising edge before this falling one
        if not (int(d.done.value) or int(d.error.value)):
            limit = ClockCycles(self.clk, max_cycles)
            fired = await First(RisingEdge(d.done), RisingEdge(d.error), limit)
            timeout = fired is limit
            ended = cocotb.utils.get_sim_time("ns")
        waited = round((cocotb.utils.get_sim_time("ns") - begin) / PERIOD_NS)
        # The bench's own count, from simulated time: rising edges after the one that takes
        # the CTRL write, up to the one that raises done (what CYCLES should hold).
        edges = round(ended - (begin + PERIOD_NS // 2)) // PERIOD_NS
        seconds = time.perf_counter() - t0
        status = await self.csr_read(Reg.STATUS)
        if status & STATUS_ERROR and status & STATUS_BUSY:  # let owed beats and executors drain
            for _ in range(max_cycles):
                if not (await self.csr_read(Reg.STATUS)) & STATUS_BUSY:
                    break
            status = await self.csr_read(Reg.STATUS)
        out = {"status": status, "done": bool(status & STATUS_DONE), "error": await self.csr_read(Reg.ERROR),
               "cycles": await self.csr_read(Reg.CYCLES), "timeout": timeout, "seconds": seconds, "waited": waited,
               "edges": edges,
               "fault": int(d.fault.value), "units": {}}
        for unit, (busy, stalled) in zip(UNITS, UNIT_COUNTERS):
            out["units"][unit] = {"busy": await self.csr_read(busy), "stall": await self.csr_read(stalled)}
        await FallingEdge(self.clk)  # out of the read-only phase: the backdoor may write again
        return out


@cocotb.test()
async def serve(dut):
    """Answer the host's requests (module docstring) until it says quit."""
    conn = Client(os.environ["SF_BENCH_ADDR"], authkey=bytes.fromhex(os.environ["SF_BENCH_KEY"]))
    bench = Bench(dut, int(os.environ["SF_BENCH_BEAT"]))
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.csr__we.value, dut.csr__addr.value, dut.csr__wdata.value = 0, 0, 0
    dut.stall.value, dut.seed.value, dut.seed_we.value = 0, 0, 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    try:
        while True:
            cmd = conn.recv()
            op = cmd[0]
            if op == "quit":
                conn.send(("ok", None))
                break
            if op == "zero":
                bench.zero(cmd[1])
                reply = None
            elif op == "write":
                bench.write(cmd[1], cmd[2])
                reply = None
            elif op == "read":
                reply = bench.read(cmd[1], cmd[2])
            elif op == "run":
                reply = await bench.run(*cmd[1:])
            else:
                raise ValueError(f"unknown bench request {op!r}")
            conn.send(("ok", reply))
    except Exception:
        conn.send(("exception", traceback.format_exc()))
        raise
    finally:
        conn.close()
