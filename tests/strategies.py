"""Hypothesis strategies shared by the front-end and simulator property tests."""

from hypothesis import strategies as st


@st.composite
def conv_layers(draw, max_hw: int = 16, max_ch: int = 6):
    """Keyword arguments for ``tests.modelgen.conv_layer_model``: kernels 1–7, strides 1–2,
    asymmetric padding, dilation 1–2, dense/depthwise/grouped, maps from one pixel up to
    ``max_hw``, bits 2–8, int and pow2 weights."""
    k = draw(st.integers(1, 7))
    dilation = draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    pads = draw(st.tuples(*[st.integers(0, k - 1)] * 4))
    # The padded map must hold one window.
    h = draw(st.integers(max(1, span - pads[0] - pads[2]), max(max_hw, span)))
    w = draw(st.integers(max(1, span - pads[1] - pads[3]), max(max_hw, span)))
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    if kind == "dense":
        cin, cout, groups = draw(st.integers(1, max_ch)), draw(st.integers(1, max_ch)), 1
    elif kind == "depthwise":
        cin = draw(st.integers(1, max_ch))
        groups, cout = cin, cin * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(2, 4))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return dict(cin=cin, cout=cout, hw=(h, w), k=k, stride=draw(st.integers(1, 2)), pad=pads, dilation=dilation,
                groups=groups, wbits=draw(st.integers(2, 8)), abits=draw(st.integers(2, 8)),
                in_bits=draw(st.integers(2, 8)), act=draw(st.sampled_from(["none", "relu", "leaky"])),
                per_channel=draw(st.booleans()), pow2=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))
