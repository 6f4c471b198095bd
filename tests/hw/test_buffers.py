# amaranth: UnusedElaboratable=no
"""hw/linebuf.py and hw/buffers.py against numpy models (hypothesis): DMA beat writes with
strobes, strided multi-copy line-buffer reads, parameter reads from any entry, output-buffer
word writes and strided store-side reads with back-pressure."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.hw.buffers import OutputBuffer, ParamBuffer
from shiftflow.hw.linebuf import LineBuffer
from shiftflow.ir.config import TINY
from shiftflow.ir.isa import PARAM_BYTES, PARAM_DTYPE
from tests.hw.streams import simulate

CFG = TINY
TN, BEAT = CFG.tn, CFG.dram_bytes_per_cycle
WORDS = CFG.line_buffer_words


def word_bytes(v: int, n: int) -> np.ndarray:
    return np.frombuffer(int(v).to_bytes(n, "little"), np.uint8)


@settings(max_examples=15, deadline=None)
@given(writes=st.lists(st.tuples(st.integers(0, WORDS // (BEAT // TN) - 1), st.binary(min_size=BEAT, max_size=BEAT),
                                 st.integers(0, (1 << BEAT) - 1)), min_size=1, max_size=12),
       reads=st.lists(st.tuples(st.lists(st.integers(0, WORDS - 1), min_size=2, max_size=2), st.integers(1, 2)),
                      min_size=1, max_size=8))
def test_line_buffer(writes, reads):
    dut = LineBuffer(CFG)
    model = np.zeros((WORDS, TN), np.uint8)
    rng = np.random.default_rng(len(writes))
    init = rng.integers(0, 256, (WORDS, TN), dtype=np.uint8)
    model[:] = init
    got = []

    async def bench(ctx):
        dut.sim_load(ctx, init)
        for beat, data, strb in writes:
            addr = beat * BEAT  # beat-aligned, as the DMA writes whole beats
            ctx.set(dut.w.payload, {"addr": addr, "data": int.from_bytes(data, "little"), "strb": strb})
            ctx.set(dut.w.valid, 1)
            await ctx.tick()
            raw = np.frombuffer(data, np.uint8)
            for k in range(BEAT):
                if strb >> k & 1:
                    model[(addr + k) // TN, (addr + k) % TN] = raw[k]
        ctx.set(dut.w.valid, 0)
        for addrs, stride in reads:
            ctx.set(dut.rd_addr, addrs)
            ctx.set(dut.rd_stride, stride)
            await ctx.tick()
            got.append([[list(ctx.get(dut.rd_data[c][lane])) for lane in range(TN)] for c in range(2)])

    simulate(dut, bench)
    for (addrs, stride), words in zip(reads, got):
        for c, a in enumerate(addrs):
            # stride 2: half the lanes a read, lanes l and l + TN/2 the same word
            want = [model[(a + (lane if stride == 1 else 2 * (lane % (TN // 2)))) % WORDS].tolist()
                    for lane in range(TN)]
            assert words[c] == want, (a, stride)


@settings(max_examples=10, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(0, 1), st.integers(0, CFG.param_entries // CFG.tm - 1).map(
    lambda row: row * CFG.tm)), min_size=1, max_size=6))
def test_param_buffer_reads_whole_rows(entries):
    dut = ParamBuffer(CFG)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2, CFG.param_entries * PARAM_BYTES), dtype=np.uint8)
    got = []

    async def bench(ctx):
        dut.sim_load(ctx, image)
        for bank, entry in entries:
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_bank, bank)
            ctx.set(dut.rd_entry, entry)
            await ctx.tick()
            ctx.set(dut.rd_en, 0)
            got.append([(int(ctx.get(e.bias)), int(ctx.get(e.shift))) for e in dut.rd_data])

    simulate(dut, bench)
    for (bank, entry), values in zip(entries, got):
        raw = image[bank].view(PARAM_DTYPE)[entry:entry + CFG.tm]
        want = [(int(r["bias"]), int(r["shift"])) for r in raw]
        assert values == want


def test_param_buffer_write_port():
    """DMA beats through ``w`` land where ``sim_load`` would put the same image."""
    dut = ParamBuffer(CFG)
    image = np.random.default_rng(2).integers(0, 256, (2, CFG.param_entries * PARAM_BYTES), dtype=np.uint8)
    got = []

    async def bench(ctx):
        for bank in range(2):
            for addr in range(0, CFG.param_entries * PARAM_BYTES, BEAT):
                ctx.set(dut.w.payload, {"bank": bank, "addr": addr, "strb": (1 << BEAT) - 1,
                                        "data": int.from_bytes(image[bank, addr:addr + BEAT].tobytes(), "little")})
                ctx.set(dut.w.valid, 1)
                await ctx.tick()
        ctx.set(dut.w.valid, 0)
        for entry in (0, 2 * CFG.tm, CFG.param_entries - CFG.tm):
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_bank, 1)
            ctx.set(dut.rd_entry, entry)
            await ctx.tick()
            got.append([int(ctx.get(e.bias)) for e in dut.rd_data])

    simulate(dut, bench)
    biases = image[1].view(PARAM_DTYPE)["bias"]
    assert got == [biases[e:e + CFG.tm].tolist() for e in (0, 2 * CFG.tm, CFG.param_entries - CFG.tm)]


@settings(max_examples=10, deadline=None)
@given(writes=st.lists(st.tuples(st.integers(0, 1), st.integers(0, CFG.output_half_words - 2), st.booleans()),
                       min_size=1, max_size=10),
       reads=st.lists(st.tuples(st.integers(0, 1), st.integers(0, CFG.output_half_words - 40), st.integers(1, 15)),
                      min_size=1, max_size=6),
       write_reg=st.booleans())
def test_output_buffer(writes, reads, write_reg):
    """Writes of consecutive words, then strided reads from the cycle the last write has
    landed (one later with ``obuf_write_reg``), the reader stalling: every word as written."""
    dut = OutputBuffer(dataclasses.replace(CFG, obuf_write_reg=write_reg))
    rng = np.random.default_rng(3)
    model = rng.integers(0, 256, (2, CFG.output_half_words, TN), dtype=np.uint8)
    init = model.copy()
    got = []

    async def bench(ctx):
        dut.sim_load(ctx, init)
        for half, addr, both in writes:  # consecutive words, as the retire stage writes them
            data = rng.integers(0, 256, (2, TN), dtype=np.uint8)
            ctx.set(dut.wr_half, half)
            ctx.set(dut.wr, [{"en": 1, "addr": addr, "data": int.from_bytes(data[0].tobytes(), "little")},
                             {"en": int(both), "addr": addr + 1, "data": int.from_bytes(data[1].tobytes(), "little")}])
            await ctx.tick()
            model[half, addr] = data[0]
            if both:
                model[half, addr + 1] = data[1]
        ctx.set(dut.wr, [{"en": 0, "addr": 0, "data": 0}] * 2)
        if write_reg:
            await ctx.tick()
        for k, (half, addr, stride) in enumerate(reads):
            ctx.set(dut.rd.payload, {"half": half, "addr": addr, "stride": stride})
            ctx.set(dut.rd.valid, 1)
            await ctx.tick().until(dut.rd.ready)
            ctx.set(dut.rd.valid, 0)
            for _ in range(k % 3):  # the reader stalls: the data must hold
                await ctx.tick()
            ctx.set(dut.rd_data.ready, 1)
            _clk, _rst, data = await ctx.tick().sample(dut.rd_data.payload)
            ctx.set(dut.rd_data.ready, 0)
            got.append(word_bytes(data, BEAT))
        np.testing.assert_array_equal(dut.sim_dump(ctx), model)

    simulate(dut, bench)
    for (half, addr, stride), data in zip(reads, got):
        want = np.concatenate([model[half, addr + i * stride] for i in range(BEAT // TN)])
        np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("write_reg", [False, True])
def test_output_buffer_write_lands_after_its_register(write_reg):
    """A word written in cycle ``t`` is read back from ``t + 1`` on, ``t + 2`` with
    ``obuf_write_reg``; a read in between finds the old word (the port is not transparent)."""
    dut = OutputBuffer(dataclasses.replace(CFG, obuf_write_reg=write_reg))
    old, new = np.zeros((2, CFG.output_half_words, TN), np.uint8), np.full(TN, 0xA5, np.uint8)
    got = []

    async def bench(ctx):
        dut.sim_load(ctx, old)
        ctx.set(dut.wr_half, 1)
        ctx.set(dut.wr, [{"en": 1, "addr": 6, "data": int.from_bytes(new.tobytes(), "little")},
                         {"en": 0, "addr": 7, "data": 0}])
        ctx.set(dut.rd.payload, {"half": 1, "addr": 6, "stride": 1})
        ctx.set(dut.rd.valid, 1)
        ctx.set(dut.rd_data.ready, 1)
        await ctx.tick()  # cycle t: the write is offered, and a read of its word issued
        ctx.set(dut.wr, [{"en": 0, "addr": 0, "data": 0}] * 2)
        for _ in range(3):  # the data of the reads issued in t, t + 1, t + 2 (one each cycle)
            _clk, _rst, data = await ctx.tick().sample(dut.rd_data.payload)
            got.append(word_bytes(data, BEAT)[:TN].tolist())

    simulate(dut, bench)
    fresh, stale = new.tolist(), [0] * TN
    assert got == ([stale, fresh, fresh] if not write_reg else [stale, stale, fresh])
