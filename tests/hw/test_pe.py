# amaranth: UnusedElaboratable=no
"""hw/pe.py against numpy: int and pow2 weights, signed and unsigned activations, dense and
depthwise pairing, groups of any length."""


import numpy as np
import pytest

from shiftflow.errors import ShiftflowError
from shiftflow.hw.pe import MAC, MACArray, dsp_pairs
from tests.hw.streams import simulate


def weight_values(codes: np.ndarray, pow2: bool) -> np.ndarray:
    """Real values of weight bytes (docs/isa.md encodings)."""
    codes = codes.astype(np.int64)
    if not pow2:
        return codes.astype(np.uint8).view(np.int8).astype(np.int64)
    mag = np.left_shift(1, codes & 0x07)  # bits 5..3 are reserved (zero in valid codes)
    return np.where(codes & 0x40, np.where(codes & 0x80, -mag, mag), 0)


def act_values(acts: np.ndarray, a_signed: bool) -> np.ndarray:
    return acts.astype(np.uint8).view(np.int8).astype(np.int64) if a_signed else acts.astype(np.int64)


def random_weights(rng: np.random.Generator, shape, pow2: bool, max_exp: int = 7) -> np.ndarray:
    if not pow2:
        return rng.integers(0, 256, shape)
    codes = 0x40 | rng.integers(0, max_exp + 1, shape) | (rng.integers(0, 2, shape) << 7)
    return np.where(rng.random(shape) < 0.2, 0, codes)


@pytest.mark.parametrize("pow2", [False, True])
@pytest.mark.parametrize("a_signed", [False, True])
def test_mac(pow2, a_signed):
    rng = np.random.default_rng(int(pow2) * 2 + int(a_signed))
    groups = [(rng.integers(0, 256, n), random_weights(rng, n, pow2)) for n in (1, 5, 17, 3)]
    dut = MAC()
    got = []

    async def tb(ctx):
        ctx.set(dut.mode, {"a_signed": a_signed, "pow2": pow2})
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


def dsp_beat(act: np.ndarray, wgt: np.ndarray, depthwise: bool) -> list:
    """A beat's DSP operands from PE values (``rows × cols`` ints): what the operand router
    gives the array. Dense PE pairs share their activation, depthwise pairs their weight."""
    rows, cols = wgt.shape
    out = []
    for q in range(rows // 2):
        row = []
        for l in range(cols):
            (r0, l0), (r1, l1) = dsp_pairs(q, l, depthwise)
            if depthwise:
                assert wgt[r0, l0] == wgt[r1, l1]
                row.append({"shared": int(wgt[r0, l0]), "lo": int(act[r0, l0]), "hi": int(act[r1, l1])})
            else:
                assert act[r0, l0] == act[r1, l1]
                row.append({"shared": int(act[r0, l0]), "lo": int(wgt[r0, l0]), "hi": int(wgt[r1, l1])})
        out.append(row)
    return out


def run_array(rows, cols, pow2, a_signed, groups, depthwise=False, packed=True):
    """Feed ``groups`` (lists of (act, wgt) beats; ``act`` one row broadcast to every row, or
    depthwise ``rows × cols``; ``wgt`` ``rows × cols`` codes) back to back; the sums.
    ``packed=False``: the array with each DSP pair's products in their own multipliers."""
    dut = MACArray(rows, cols, packed=packed)
    got = []

    async def drive(ctx):
        ctx.set(dut.mode, {"depthwise": depthwise})
        for beats in groups:
            for k, (act, wgt) in enumerate(beats):
                a = act_values(np.asarray(act), a_signed)
                a = a if depthwise else np.broadcast_to(a, (rows, cols))
                ctx.set(dut.i.payload, {"dsp": dsp_beat(a, weight_values(np.asarray(wgt), pow2), depthwise),
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


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("pow2,a_signed", [(False, True), (True, False), (True, True)])
def test_array(pow2, a_signed, packed):
    """Dense: one activation per column broadcast to every row, every PE its own weight and
    sum (both dataflows: channel-parallel adds a row's sums while draining)."""
    rows, cols = 4, 4
    rng = np.random.default_rng(7)
    groups = [[(rng.integers(0, 256, cols), random_weights(rng, (rows, cols), pow2)) for _ in range(n)]
              for n in (1, 3, 9, 2, 1)]
    got = run_array(rows, cols, pow2, a_signed, groups, packed=packed)
    want = [sum(weight_values(w, pow2) * act_values(a, a_signed)[None, :] for a, w in beats) for beats in groups]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("pow2,a_signed", [(False, True), (True, False)])
def test_array_depthwise(pow2, a_signed, packed):
    """Depthwise pixel-parallel: every PE its own activation, one weight per row (the DSPs pair
    lanes instead of rows); a dense group follows to check the pairing switches back."""
    rows, cols = 4, 6
    rng = np.random.default_rng(11)
    groups = [[(rng.integers(0, 256, (rows, cols)), np.repeat(random_weights(rng, (rows, 1), pow2), cols, 1))
               for _ in range(n)] for n in (1, 9, 4)]
    got = run_array(rows, cols, pow2, a_signed, groups, depthwise=True, packed=packed)
    want = [sum(weight_values(w, pow2) * act_values(a, a_signed) for a, w in beats) for beats in groups]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("packed", [True, False])
def test_array_extremes(packed):
    """Largest magnitudes: -128 * -128 summed, unsigned 255 * -2**7 and 255 * +2**7."""
    big = [(np.full(4, 0x80), np.full((2, 4), 0x80))] * 5
    assert run_array(2, 4, False, True, [big], packed=packed)[0].tolist() == [[5 * 16384] * 4] * 2
    top = [(np.full(4, 255), np.full((2, 4), 0xC7))] * 3  # -2**7
    assert run_array(2, 4, True, False, [top], packed=packed)[0].tolist() == [[-3 * 255 << 7] * 4] * 2
    pos = [(np.full(4, 255), np.full((2, 4), 0x47))] * 3  # +2**7
    assert run_array(2, 4, True, False, [pos], packed=packed)[0].tolist() == [[3 * 255 << 7] * 4] * 2
    low = [(np.full(4, 0x7F), np.full((2, 4), 0x80))] * 2  # 127 * -128 twice: the low product's sign
    assert run_array(2, 4, False, True, [low], packed=packed)[0].tolist() == [[-2 * 127 * 128] * 4] * 2


@pytest.mark.parametrize("kw", [{"rows": 0, "cols": 4}, {"rows": 3, "cols": 4}, {"rows": 4, "cols": 4, "acc_bits": 16}])
def test_bad_parameters(kw):
    with pytest.raises(ShiftflowError, match="MACArray"):
        MACArray(**kw)
