"""The functional model, opcode by opcode, against direct numpy references (docs/isa.md)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.ir.config import TARGETS, TINY, ZU3EG
from shiftflow.ir.intmath import window_reduce
from shiftflow.ir.isa import VecOp
from tests.sim.asm import ref_conv, requant, run_conv, run_vec

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
    pow2 = draw(st.booleans())
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
