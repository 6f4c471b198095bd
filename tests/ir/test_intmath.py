"""Round-half-to-even shifts and exact convolution kernels."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.ir.intmath import conv2d, round_shift


@settings(max_examples=300, deadline=None)
@given(v=st.integers(-(1 << 40), 1 << 40), shift=st.integers(-30, 10))
def test_round_shift_is_round_half_even(v, shift):
    expected = round(v * 2.0 ** shift) if shift < 0 else v << shift  # Python's round is half-to-even
    assert int(round_shift(np.int64(v), shift)) == expected


def test_ties_go_to_even():
    v = np.array([-7, -5, -3, -1, 1, 3, 5, 7], dtype=np.int64)  # all exactly .5 after >> 1
    assert round_shift(v, -1).tolist() == [-4, -2, -2, 0, 0, 2, 2, 4]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(1, 4), s=st.integers(1, 3), groups=st.sampled_from([1, 2]))
def test_conv2d_matches_direct_loops(seed, k, s, groups):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(1, 4, 7, 6))
    w = rng.integers(-8, 8, size=(4, 4 // groups, k, k))
    pads, dil = (1, 0, 2, 1), (1, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    ho, wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    ref = np.zeros((1, 4, ho, wo), dtype=np.int64)
    cg = 4 // groups
    for m in range(4):
        g = m // (4 // groups)
        for i in range(ho):
            for j in range(wo):
                patch = xp[0, g * cg:(g + 1) * cg, i * s:i * s + k, j * s:j * s + k]
                ref[0, m, i, j] = int((patch * w[m]).sum())
    assert np.array_equal(conv2d(x, w, (s, s), pads, dil, groups, (ho, wo)), ref)
