# amaranth: UnusedElaboratable=no
"""hw/pe.py against numpy: int and pow2 weights, signed and unsigned activations, both
dataflows, groups of any length."""

import random

import numpy as np
import pytest

from shiftflow.errors import ShiftflowError
from shiftflow.hw.pe import MAC, MACArray
from shiftflow.ir.isa import Dataflow
from tests.hw.streams import simulate


def weight_values(codes: np.ndarray, pow2: bool) -> np.ndarray:
    """Real values of weight bytes (docs/isa.md encodings)."""
    codes = codes.astype(np.int64)
    if not pow2:
        return codes.astype(np.uint8).view(np.int8).astype(np.int64)
    mag = np.left_shift(1, codes & 0x0F)
    return np.where(codes & 0x40, np.where(codes & 0x80, -mag, mag), 0)


def act_values(acts: np.ndarray, a_signed: bool) -> np.ndarray:
    return acts.astype(np.uint8).view(np.int8).astype(np.int64) if a_signed else acts.astype(np.int64)


def random_weights(rng: np.random.Generator, shape, pow2: bool) -> np.ndarray:
    if not pow2:
        return rng.integers(0, 256, shape)
    codes = 0x40 | rng.integers(0, 16, shape) | (rng.integers(0, 2, shape) << 7)
    return np.where(rng.random(shape) < 0.2, 0, codes)


@pytest.mark.parametrize("pow2", [False, True])
@pytest.mark.parametrize("a_signed", [False, True])
def test_mac(pow2, a_signed):
    rng = np.random.default_rng(int(pow2) * 2 + int(a_signed))
    groups = [(rng.integers(0, 256, n), random_weights(rng, n, pow2)) for n in (1, 5, 17, 3)]
    dut = MAC()
    got = []

    async def tb(ctx):
        ctx.set(dut.mode, {"a_signed": a_signed, "pow2": pow2, "dataflow": Dataflow.PIXEL})
        for acts, wgts in groups:
            for k, (a, w) in enumerate(zip(acts, wgts)):
                ctx.set(dut.i.payload, {"a": int(a), "w": int(w), "first": k == 0})
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for _ in range(MAC.LATENCY):
                await ctx.tick()
            got.append(ctx.get(dut.acc))

    simulate(dut, tb)
    want = [int((act_values(a, a_signed) * weight_values(w, pow2)).sum()) for a, w in groups]
    assert got == want


def run_array(rows, cols, dataflow, pow2, a_signed, groups):
    """Feed ``groups`` (lists of (act[cols], wgt[rows, cols]) beats) back to back; the sums."""
    dut = MACArray(rows, cols)
    got = []

    async def drive(ctx):
        ctx.set(dut.mode, {"a_signed": a_signed, "pow2": pow2, "dataflow": dataflow})
        for beats in groups:
            for k, (act, wgt) in enumerate(beats):
                ctx.set(dut.i.payload, {"act": [[int(x) for x in act]] * rows, "wgt": [[int(x) for x in r] for r in wgt],
                                        "first": k == 0, "last": k == len(beats) - 1})
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(MACArray.LATENCY + 1):
            await ctx.tick()

    async def collect(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append(np.array([[int(x) for x in r] for r in payload]))

    simulate(dut, drive, background=[collect])
    return got


@pytest.mark.parametrize("dataflow", [Dataflow.PIXEL, Dataflow.CHANNEL])
@pytest.mark.parametrize("pow2,a_signed", [(False, True), (True, False), (True, True)])
def test_array(dataflow, pow2, a_signed):
    rows, cols = 4, 4
    rng = np.random.default_rng(7)
    groups = [[(rng.integers(0, 256, cols), random_weights(rng, (rows, cols), pow2)) for _ in range(n)]
              for n in (1, 3, 9, 2, 1)]
    got = run_array(rows, cols, dataflow, pow2, a_signed, groups)
    want = []
    for beats in groups:
        prods = sum(weight_values(w, pow2) * act_values(a, a_signed)[None, :] for a, w in beats)
        if dataflow == Dataflow.CHANNEL:
            prods = np.concatenate([prods.sum(axis=1, keepdims=True), np.zeros((rows, cols - 1), np.int64)], 1)
        want.append(prods)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_array_extremes():
    """Largest magnitudes: -128 * -128 summed, and unsigned 255 << 15, in both dataflows."""
    big = [(np.full(4, 0x80), np.full((2, 4), 0x80))] * 5
    assert run_array(2, 4, Dataflow.CHANNEL, False, True, [big])[0][:, 0].tolist() == [5 * 4 * 16384] * 2
    top = [(np.full(4, 255), np.full((2, 4), 0xCF))] * 3  # -2**15
    assert run_array(2, 4, Dataflow.PIXEL, True, False, [top])[0].tolist() == [[-3 * 255 << 15] * 4] * 2


@pytest.mark.parametrize("kw", [{"rows": 0, "cols": 4}, {"rows": 4, "cols": 4, "acc_bits": 16}])
def test_bad_parameters(kw):
    with pytest.raises(ShiftflowError, match="MACArray"):
        MACArray(**kw)
