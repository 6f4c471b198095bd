# amaranth: UnusedElaboratable=no
"""hw/dma.py in amaranth.sim against Python DRAM / on-chip memory models with random stalls:
LOAD_ACT boxes into a ring, STORE boxes from a strided output buffer, LOAD_WGT linear copies,
and the exact cycle count without stalls."""

import random

import pytest

from shiftflow.errors import ShiftflowError
from shiftflow.hw.dma import DMA, DmaCmd
from shiftflow.ir.cost import DMA_EMPTY, DMA_START
from tests.hw.memmodel import Dram, Sram
from tests.hw.streams import put, simulate

TN, BB = 4, 8


def box_cmd(*, store=False, sel=0, dram_addr, ncols, nblk, nrows, row_stride, blk_stride,
            sram_addr, row_step, blk_step, slots=None, slot0=0, stride=TN):
    return {"store": store, "sel": sel, "dram_addr": dram_addr, "row_stride": row_stride,
            "blk_stride": blk_stride, "nblk": nblk, "nrows": nrows, "seg_bytes": ncols * TN,
            "sram_addr": sram_addr, "sram_row_step": row_step, "sram_blk_step": blk_step,
            "slots": slots or nrows, "slot0": slot0, "stride": stride}


def linear_cmd(*, dram_addr, nbytes, sram_addr, sel=1):
    return {"store": False, "sel": sel, "dram_addr": dram_addr, "row_stride": 0, "blk_stride": 0,
            "nblk": 1, "nrows": 1, "seg_bytes": nbytes, "sram_addr": sram_addr, "sram_row_step": 0,
            "sram_blk_step": 0, "slots": 1, "slot0": 0, "stride": TN}


def run(cmds, *, dram_bytes=None, sram_bytes=None, stall=0.0, latency=5, sram_latency=1, max_burst=16, seed=0,
        bb=BB):
    """Run ``cmds`` one after another; returns (dram, sram, the cycle of each command's
    ``done`` counted from its acceptance, 0)."""
    dut = DMA(beat_bytes=bb, word_bytes=TN, max_burst=max_burst)
    dram = Dram(dut.mem, bb, latency=latency, stall=stall, seed=seed)
    sram = Sram(dut, TN, latency=sram_latency, stall=stall, seed=seed + 1)
    for a, b in (dram_bytes or {}).items():
        dram.mem[a] = b
    sram.mem.update(sram_bytes or {})
    took = []

    async def driver(ctx):
        for c in cmds:
            await put(ctx, dut.cmd, [c], stall=stall, rng=random.Random(seed))
            cycles = 1  # put returns in the cycle after the acceptance
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            took.append(cycles)
            await ctx.tick()

    simulate(dut, driver, background=[dram.run, sram.run], deadline=20_000)
    return dram, sram, took


def dram_pattern(n, seed=3):
    rng = random.Random(seed)
    return {a: rng.randrange(256) for a in range(n)}


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_load_act_ring(stall):
    """3 blocks x 5 rows x 3 words from an unaligned column into a 4-slot ring from slot 2."""
    W, H, x0, cols, base, slot_words = 7, 6, 1, 3, 40, 16
    src = dram_pattern(4096)
    cmd = box_cmd(dram_addr=1000 + x0 * TN, ncols=cols, nblk=3, nrows=5, row_stride=W * TN,
                  blk_stride=H * W * TN, sram_addr=base * TN, row_step=slot_words * TN, blk_step=cols * TN,
                  slots=4, slot0=2)
    _, sram, _ = run([cmd], dram_bytes=src, stall=stall)
    want = {}
    for b in range(3):
        for r in range(5):
            for j in range(cols):
                for byte in range(TN):
                    word = base + ((2 + r) % 4) * slot_words + b * cols + j
                    want[(0, word * TN + byte)] = src[1000 + x0 * TN + b * H * W * TN + r * W * TN + j * TN + byte]
    assert sram.mem == want  # and nothing else was written


@pytest.mark.parametrize("stall,sram_latency", [(0.0, 1), (0.5, 3)])
def test_store_box_strided(stall, sram_latency):
    """2 blocks x 3 rows x 5 words from an output buffer holding blocks interleaved (stride nblk)."""
    nblk, nrows, ncols, W = 2, 3, 5, 9
    rng = random.Random(4)
    obuf = {(2, a): rng.randrange(256) for a in range(0, 4 * nblk * nrows * ncols * TN)}
    dst = 512 + 3 * TN  # unaligned to the 8-byte beat
    cmd = box_cmd(store=True, sel=2, dram_addr=dst, ncols=ncols, nblk=nblk, nrows=nrows, row_stride=W * TN,
                  blk_stride=4 * W * TN, sram_addr=0, row_step=ncols * nblk * TN, blk_step=TN, stride=nblk * TN)
    dram, _, _ = run([cmd], sram_bytes=obuf, stall=stall, sram_latency=sram_latency)
    want = {}
    for b in range(nblk):
        for r in range(nrows):
            for j in range(ncols):
                for byte in range(TN):
                    want[dst + b * 4 * W * TN + r * W * TN + j * TN + byte] = obuf[(2, ((r * ncols + j) * nblk + b) * TN + byte)]
    assert dram.mem == want


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_load_wgt_linear_bursts(stall):
    """A 1001-byte copy that crosses a 4 KiB boundary and needs several bursts; the last beat
    is partial and the on-chip start is not word aligned."""
    src = {a: (a * 7 + 3) & 0xFF for a in range(4096 - 200, 4096 + 1000)}
    cmd = linear_cmd(dram_addr=4096 - 128, nbytes=1001, sram_addr=6)
    dram, sram, _ = run([cmd], dram_bytes=src, stall=stall)
    assert sram.mem == {(1, 6 + i): src[4096 - 128 + i] for i in range(1001)}
    for _, addr, beats in dram.requests:
        assert 1 <= beats <= 16 and addr % BB == 0
        assert addr // 4096 == (addr + beats * BB - 1) // 4096


def test_cycles_without_stalls():
    """Loads: done comes DMA_START (2) + latency + Σ beats after acceptance (the first request
    goes out two cycles after the accept); stores: DMA_START + 1 + latency + Σ beats (and the
    on-chip read's cycle, the write response latency after the last beat). Σ is over segments
    of their beats."""
    L = 7
    cmds = [box_cmd(dram_addr=64, ncols=6, nblk=2, nrows=3, row_stride=80, blk_stride=400,
                    sram_addr=0, row_step=24, blk_step=200),  # aligned: 3 beats a segment
            box_cmd(dram_addr=68, ncols=6, nblk=1, nrows=4, row_stride=80, blk_stride=0,
                    sram_addr=0, row_step=24, blk_step=0),  # unaligned: 4 beats a segment
            linear_cmd(dram_addr=0, nbytes=300, sram_addr=0),
            linear_cmd(dram_addr=5, nbytes=1, sram_addr=5),  # one beat
            box_cmd(store=True, sel=2, dram_addr=68, ncols=5, nblk=2, nrows=3, row_stride=80, blk_stride=400,
                    sram_addr=0, row_step=40, blk_step=TN, stride=2 * TN),  # unaligned: 3 beats a segment
            box_cmd(store=True, sel=2, dram_addr=64, ncols=1, nblk=1, nrows=1, row_stride=0, blk_stride=0,
                    sram_addr=0, row_step=0, blk_step=0)]  # one beat
    _, _, took = run(cmds, dram_bytes=dram_pattern(2048), latency=L)
    S = DMA_START
    assert took == [S + L + 6 * 3, S + L + 4 * 4, S + L + 38, S + L + 1, S + 1 + L + 6 * 3, S + 1 + L + 1]


def test_empty_command_completes():
    """An empty command ends DMA_EMPTY cycles after its accept, moving nothing; the command
    after it runs as usual (its walkers were loaded with the empty one and left unused)."""
    empty = [box_cmd(dram_addr=0, ncols=0, nblk=1, nrows=1, row_stride=0, blk_stride=0, sram_addr=0, row_step=0,
                     blk_step=0),
             box_cmd(store=True, dram_addr=64, ncols=2, nblk=0, nrows=1, row_stride=0, blk_stride=0, sram_addr=0,
                     row_step=0, blk_step=0)]
    _, sram, took = run(empty)
    assert took == [DMA_EMPTY, DMA_EMPTY] and sram.mem == {}
    _, sram, took = run(empty[:1] + [linear_cmd(dram_addr=5, nbytes=1, sram_addr=5)], dram_bytes=dram_pattern(64),
                        latency=7)
    assert took == [DMA_EMPTY, DMA_START + 7 + 1] and len(sram.mem) == 1


def test_command_layout_fits_the_isa():
    assert DmaCmd.size < 512


@pytest.mark.parametrize("kw,match", [({"beat_bytes": 6}, "power of two"), ({"beat_bytes": 8, "word_bytes": 16}, "multiple"),
                                      ({"max_burst": 300}, "max_burst")])
def test_bad_parameters(kw, match):
    with pytest.raises(ShiftflowError, match=match):
        DMA(**kw)


@pytest.mark.parametrize("bb,max_burst", [(8, 4), (8, 16), (16, 16)])  # 16-byte beats: zu3eg's
def test_random_linear_copies_split_greedily(bb, max_burst):
    """Random copies around 4 KiB boundaries: every segment is cut into the greedy bursts
    (each min(rest, max_burst, beats to the boundary)), the bytes land, and without stalls a
    copy takes DMA_START + latency + beats (the registered ``whole`` / ``ends`` / ``fits``
    decisions of hw/dma.py against their arithmetic definition)."""
    rng = random.Random(max_burst + bb)
    cmds, spans = [], []
    for _ in range(12):
        addr = rng.choice([4096, 8192]) - rng.randrange(0, 300)
        nbytes = rng.randrange(1, 400)
        cmds.append(linear_cmd(dram_addr=addr, nbytes=nbytes, sram_addr=addr % bb))
        spans.append((addr, nbytes))
    src = {a: (a * 13 + 5) & 0xFF for a in range(3000, 8600)}
    latency = 5
    dram, sram, took = run(cmds, dram_bytes=src, latency=latency, max_burst=max_burst, bb=bb)
    want_reqs = []
    for addr, nbytes in spans:
        a, end = addr - addr % bb, addr + nbytes
        while a < end:
            beats = min(-(-(end - a) // bb), max_burst, (4096 - a % 4096) // bb)
            want_reqs.append((a, beats))
            a += beats * bb
    assert [(addr, beats) for _, addr, beats in dram.requests] == want_reqs
    want = {}
    for addr, nbytes in spans:  # later copies overwrite earlier ones' bytes
        want.update({(1, addr % bb + i): src[addr + i] for i in range(nbytes)})
    assert sram.mem == want
    assert took == [DMA_START + latency + -(-(a % bb + n) // bb) for a, n in spans]
