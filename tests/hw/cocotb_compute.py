"""cocotb bench for hw/compute.ComputeUnit on Verilator (run by tests/hw/test_compute_rtl.py).

Cases come from an ``.npz`` written by :func:`save_cases` (path in ``COMPUTE_CASES``): per
instruction its word, the line buffer, weight and parameter banks before it, the output
words it must write and its cycle count. The bench loads the memories through the unit's
own write ports (one DRAM beat per cycle, as the load unit will), runs the instruction,
counts the cycles to ``done`` and reads the written words back through the store port.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from shiftflow.hw.buffers import ObufRead
from shiftflow.hw.linebuf import beat_write_layout
from shiftflow.hw.tb.streams import issue, value, wait_high
from shiftflow.ir.config import TINY

CFG = TINY
BEAT = CFG.dram_bytes_per_cycle


def save_cases(path, snapshots, cycles: list[int], regions: list[list[tuple[int, int]]]) -> None:
    """Write the bench's input: ``regions[i]`` lists (half, word) the instruction writes."""
    arrays = {"n": np.array(len(snapshots))}
    for i, (s, c, region) in enumerate(zip(snapshots, cycles, regions)):
        region = np.array(region, np.int64).reshape(-1, 2)
        arrays |= {f"word{i}": np.frombuffer(s.word, np.uint8), f"lb{i}": s.lb, f"wbuf{i}": s.wbuf,
                   f"pbuf{i}": s.pbuf, f"cycles{i}": np.array(c), f"region{i}": region,
                   f"want{i}": s.obuf_after[region[:, 0], region[:, 1]]}
    np.savez(path, **arrays)


async def write_memory(dut, port: str, image: np.ndarray, previous: np.ndarray | None, bank: int | None) -> None:
    """Every beat of ``image`` (bytes) that differs from ``previous``, one per cycle."""
    layout = beat_write_layout(BEAT, banked=bank is not None)
    flat, old = image.reshape(-1), None if previous is None else previous.reshape(-1)
    valid, payload = getattr(dut, f"{port}__valid"), getattr(dut, f"{port}__payload")
    for addr in range(0, flat.size, BEAT):
        chunk = flat[addr:addr + BEAT]
        if old is not None and np.array_equal(chunk, old[addr:addr + BEAT]):
            continue
        fields = {"addr": addr, "data": int.from_bytes(chunk.tobytes(), "little"), "strb": (1 << BEAT) - 1}
        if bank is not None:
            fields["bank"] = bank
        await FallingEdge(dut.clk)
        valid.value = 1
        payload.value = layout.const(fields).as_bits()
    await FallingEdge(dut.clk)
    valid.value = 0


async def read_word(dut, half: int, addr: int) -> np.ndarray:
    await FallingEdge(dut.clk)
    dut.ob_r__valid.value = 1
    dut.ob_r__payload.value = ObufRead.const({"half": half, "addr": addr, "stride": 1}).as_bits()
    dut.ob_rdata__ready.value = 1
    await wait_high(dut.clk, dut.ob_r__ready)
    await FallingEdge(dut.clk)
    dut.ob_r__valid.value = 0
    await wait_high(dut.clk, dut.ob_rdata__valid)
    return np.frombuffer(value(dut.ob_rdata__payload).to_bytes(BEAT, "little")[:CFG.tn], np.uint8)


@cocotb.test()
async def replay_instructions(dut):
    cases = np.load(os.environ["COMPUTE_CASES"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for port in ("instr", "lb_w", "wb_w", "pb_w", "ob_r"):
        getattr(dut, f"{port}__valid").value = 0
    dut.ob_rdata__ready.value = 0
    dut.rst.value = 0
    prev = {}
    for i in range(int(cases["n"])):
        for port, key, banks in (("lb_w", "lb", [None]), ("wb_w", "wbuf", [0, 1]), ("pb_w", "pbuf", [0, 1])):
            image = cases[f"{key}{i}"]
            for bank in banks:
                mine = image if bank is None else image[bank]
                old = prev.get(key) if bank is None else (prev[key][bank] if key in prev else None)
                await write_memory(dut, port, mine, old, bank)
            prev[key] = image
        cycles = await issue(dut, "instr", int.from_bytes(cases[f"word{i}"].tobytes(), "little"))
        assert cycles == int(cases[f"cycles{i}"]), f"case {i}: {cycles} cycles, expected {int(cases[f'cycles{i}'])}"
        if CFG.obuf_write_reg:  # the last words land a cycle after done (read from done + 2 on)
            await FallingEdge(dut.clk)
        for (half, addr), want in zip(cases[f"region{i}"], cases[f"want{i}"]):
            got = await read_word(dut, int(half), int(addr))
            assert np.array_equal(got, want), f"case {i}: word {int(addr)} of half {int(half)} is {got}, not {want}"
