"""The functional model, opcode by opcode, against direct numpy references (docs/isa.md)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.ir.config import TARGETS, TINY, ZU3EG
from shiftflow.ir.intmath import window_reduce
from shiftflow.ir.isa import VecOp
from shiftflow.ir.program import ProgramError
from tests.sim.asm import conv_asm, pack_weights, ref_conv, requant, run_conv, run_vec, unblocked

TARGET_LIST = [TINY, ZU3EG]


@st.composite
def conv_cases(draw):
    dataflow = draw(st.sampled_from(["channel", "pixel", "depthwise"]))
    k = draw(st.integers(1, 4))
    dil = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    span = dil * (k - 1) + 1
    h, w = draw(st.integers(span, span + 6)), draw(st.integers(span, span + 6))
    pads = draw(st.tuples(*[st.integers(0, k - 1)] * 4))
    c = draw(st.integers(1, 9))
    m = c if dataflow == "depthwise" else draw(st.integers(1, 9))
    pow2 = dataflow != "channel" and draw(st.booleans())  # pow2 codes are pixel-parallel only
    act = draw(st.sampled_from(["none", "relu", "leaky"]))
    x_signed = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (c, h, w)) if x_signed else rng.integers(0, 256, (c, h, w))
    shape = (m, 1 if dataflow == "depthwise" else c, k, k)
    if pow2:
        wt = np.where(rng.random(shape) < 0.3, 0, rng.choice([-1, 1], shape) << rng.integers(0, 7, shape))
    else:
        wt = rng.integers(-128, 128, shape)
    lo, hi = (0, 255) if act == "relu" and draw(st.booleans()) else (-128, 127)
    return dict(x=x, w=wt, bias=rng.integers(-5000, 5000, m), shift=rng.integers(-2, 12, m),
                dataflow="pixel" if dataflow == "depthwise" else dataflow, depthwise=dataflow == "depthwise",
                pow2=pow2, stride=stride, pads=pads, dil=dil, act=act, leaky_exp=-draw(st.integers(0, 4)),
                lo=lo, hi=hi, x_signed=x_signed)


@pytest.mark.parametrize("cfg", TARGET_LIST, ids=lambda c: c.name)
@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_conv_matches_reference(cfg, case):
    got, _ = run_conv(cfg, **case)
    assert np.array_equal(got, ref_conv(**case))


@pytest.mark.parametrize("dataflow", ["channel", "pixel"])
def test_conv_fused_pool(dataflow):
    rng = np.random.default_rng(1)
    case = dict(x=rng.integers(-128, 128, (5, 8, 6)), w=rng.integers(-128, 128, (6, 5, 3, 3)),
                bias=rng.integers(-999, 999, 6), shift=np.full(6, 9), pads=(1, 1, 1, 1), act="leaky",
                leaky_exp=-3, pool=2, dataflow=dataflow)
    got, _ = run_conv(TINY, **case)
    assert got.shape == (6, 4, 3)
    assert np.array_equal(got, ref_conv(**case))


def test_conv_rounds_half_to_even_and_clamps():
    x = np.array([[[1, 3, 5, 7, -1, -3, 100, -100]]])  # one channel, one row
    w = np.ones((1, 1, 1, 1), np.int64)
    got, _ = run_conv(TINY, x, w, bias=[0], shift=[1], lo=-20, hi=20)
    assert got[0, 0].tolist() == [0, 2, 2, 4, 0, -2, 20, -20]


def test_left_shift_and_channel_block_beyond_tm():
    rng = np.random.default_rng(2)
    case = dict(x=rng.integers(-4, 4, (11, 4, 4)), w=rng.integers(-3, 3, (9, 11, 1, 1)),
                bias=rng.integers(-9, 9, 9), shift=np.full(9, -2))
    got, _ = run_conv(TINY, **case)
    assert np.array_equal(got, ref_conv(**case))
    assert got.min() == -128  # the left shift saturates


def _pow2_case(dataflow, m=6, c=5, seed=8):
    """A pow2 conv whose weights include exponent 7 (±128) and every other exponent."""
    rng = np.random.default_rng(seed)
    depthwise = dataflow == "depthwise"
    m = c if depthwise else m
    shape = (m, 1 if depthwise else c, 3, 3)
    w = np.where(rng.random(shape) < 0.2, 0, rng.choice([-1, 1], shape) << rng.integers(0, 8, shape))
    w.reshape(-1)[:2] = [128, -128]
    return dict(x=rng.integers(-128, 128, (c, 6, 7)), w=w, bias=rng.integers(-999, 999, m), shift=np.full(m, 11),
                pads=(1, 1, 1, 1), pow2=True, dataflow="pixel" if depthwise else dataflow, depthwise=depthwise)


@pytest.mark.parametrize("cfg", TARGET_LIST, ids=lambda c: c.name)
@pytest.mark.parametrize("dataflow", ["pixel", "depthwise"])
def test_conv_pow2_exponent_7_is_exact(cfg, dataflow):
    case = _pow2_case(dataflow)
    assert (np.abs(case["w"]) == 128).sum() > 2
    got, _ = run_conv(cfg, **case)
    want = ref_conv(**case)
    assert np.array_equal(got, want)
    assert len(np.unique(want)) > 20  # not saturated: the ±128 products count


def _run_patched(cfg, case, patch):
    """Assemble ``case``'s conv, let ``patch(codes)`` edit its weight codes in DRAM (``codes``:
    output blocks × words × tm × tn, a view), run; returns the output."""
    asm, out, nbytes, shape = conv_asm(cfg, **case)
    tm, tn = cfg.tm, cfg.tn
    wbytes, wwords = pack_weights(case["w"], tm, tn, case["dataflow"], case["depthwise"], True)
    patch(asm.dram[0x40000:0x40000 + len(wbytes)].reshape(-1, wwords, tm, tn))  # conv_asm's weight address
    acc, _ = asm.run(cfg)
    return unblocked(acc.read_dram(out, nbytes), *shape, tn, True)


def test_conv_pow2_channel_parallel_is_rejected():
    """pow2 codes need the pixel-parallel dataflow (docs/isa.md)."""
    with pytest.raises(ProgramError, match=r"instruction \d+ \(CONV\): pow2 weights need the pixel-parallel"):
        run_conv(TINY, **_pow2_case("channel"))


@pytest.mark.parametrize("dataflow", ["pixel", "depthwise"])
@pytest.mark.parametrize("bit", [3, 4, 5])
def test_conv_pow2_reserved_code_bits_are_rejected(dataflow, bit):
    case = _pow2_case(dataflow)
    # tiny (tm = 4): one CONV per block of 4 output channels, at instructions 3 and 5 (or, depthwise,
    # behind a LOAD_ACT each: 3 and 6); block 1's codes are read by the second CONV only.
    second = 6 if dataflow == "depthwise" else 5
    word, row, lane = 1, 1, 2

    def patch(codes):
        codes[1, word, row, lane] = 0x40 | 0x80 | 2 | 1 << bit  # -2**2 with a reserved bit

    with pytest.raises(ProgramError) as info:
        _run_patched(TINY, case, patch)
    msg = str(info.value)
    assert msg.startswith(f"instruction {second} (CONV): pow2 weight code 0x{0xC2 | 1 << bit:02x} in weight word ")
    assert f"(row {row}, lane {lane}) sets reserved bits 5..3" in msg and "\n" not in msg


def test_conv_pow2_zero_codes_ignore_their_other_bits():
    """Bit 6 clear is zero whatever bits 7 and 5..0 hold (reserved bits included)."""
    case = _pow2_case("pixel")
    rng = np.random.default_rng(9)

    def patch(codes):
        zero = codes & 0x40 == 0
        codes[zero] = (rng.integers(0, 256, codes.shape) & 0xBF)[zero]
        assert (codes[zero] & 0x38).any()

    assert np.array_equal(_run_patched(TINY, case, patch), ref_conv(**case))


def _pool_ref(a, k, stride, pads, out_hw, how):
    return window_reduce(a[None], k, stride, pads, (1, 1), out_hw, how)[0]


@pytest.mark.parametrize("cfg", TARGET_LIST, ids=lambda c: c.name)
def test_vec_add(cfg):
    rng = np.random.default_rng(3)
    a, b = rng.integers(-128, 128, (2, 6, 7, 5))
    got, _ = run_vec(cfg, VecOp.ADD, a, b, shift_a=2, shift_b=0, rshift=1, act="relu", lo=0, hi=255)
    assert np.array_equal(got, requant((a << 2) + b, 1, "relu", lo=0, hi=255))


@pytest.mark.parametrize("cfg", TARGET_LIST, ids=lambda c: c.name)
def test_vec_maxpool_padding_never_wins(cfg):
    rng = np.random.default_rng(4)
    a = rng.integers(-128, -1, (3, 7, 7))  # all negative: a zero pad would win
    got, _ = run_vec(cfg, VecOp.MAXPOOL, a, k=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1), out_hw=(4, 4))
    assert np.array_equal(got, _pool_ref(a, (3, 3), (2, 2), (1, 1, 1, 1), (4, 4), "max"))


@pytest.mark.parametrize("cfg", TARGET_LIST, ids=lambda c: c.name)
def test_vec_avgpool_rounds(cfg):
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (5, 6, 6))
    got, _ = run_vec(cfg, VecOp.AVGPOOL, a, k=(2, 2), stride=(2, 2), out_hw=(3, 3), rshift=2)
    assert np.array_equal(got, requant(_pool_ref(a, (2, 2), (2, 2), (0, 0, 0, 0), (3, 3), "sum"), 2))


def test_vec_resize_and_requant_leaky():
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, (3, 3, 4))
    got, _ = run_vec(TINY, VecOp.RESIZE, a, k=(2, 3), out_hw=(6, 12))
    assert np.array_equal(got, np.repeat(np.repeat(a, 2, axis=1), 3, axis=2))
    got, _ = run_vec(TINY, VecOp.REQUANT, a, rshift=1, act="leaky", leaky_exp=-2, lo=-8, hi=7)
    assert np.array_equal(got, requant(a, 1, "leaky", -2, -8, 7))


def test_vec_unsigned_input_and_fused_pool():
    a = np.random.default_rng(7).integers(0, 256, (2, 4, 4))
    got, _ = run_vec(TINY, VecOp.REQUANT, a, signed=False, lo=0, hi=255, pool=2)
    assert np.array_equal(got, _pool_ref(a, (2, 2), (2, 2), (0, 0, 0, 0), (2, 2), "max"))


def test_targets_are_the_named_ones():
    assert set(TARGETS) == {c.name for c in TARGET_LIST}

