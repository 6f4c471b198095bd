"""Small QDQ models exercising every accelerator op kind, for the back end's tests."""

from __future__ import annotations

import numpy as np

from tests.modelgen import QDQBuilder, _weights


def _conv(b: QDQBuilder, x, cin, cout, k=3, stride=1, pad=1, groups=1, relu=True, frac=3):
    w = _weights(b.rng, (cout, cin // groups, k, k), 8, False)
    y = b.op("Conv", [x, b.weight(w, 7)], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups)
    if relu:
        return b.quant(b.op("Relu", [y]), frac, 8, signed=False)
    return b.quant(y, frac, 8, signed=True)


def vec_model(kind: str, c: int = 6, hw=(9, 11), seed: int = 0, **kw):
    """``quantize -> conv -> <kind> -> quantize``; ``kind`` is maxpool / avgpool / add / resize /
    concat / requant. Extra keywords set the window of pools."""
    b = QDQBuilder((1, 3) + tuple(hw), seed=seed)
    x = _conv(b, b.cur, 3, c)
    if kind == "maxpool":
        k, s, p = kw.get("k", 3), kw.get("s", 2), kw.get("p", 1)
        y = b.op("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=kw.get("ceil", 0))
        return b.model(b.quant(y, kw.get("out_frac", 3), 8, signed=False))
    if kind == "avgpool":
        k = kw.get("k", 2)
        y = b.op("AveragePool", [x], kernel_shape=[k, k], strides=[kw.get("s", k)] * 2)
        return b.model(b.quant(y, kw.get("out_frac", 4), 8, signed=False))
    if kind == "add":
        y = _conv(b, x, c, c, relu=False, frac=2)
        return b.model(b.quant(b.op("Relu", [b.op("Add", [x, y])]), 2, 8, signed=False))
    if kind == "resize":
        f = kw.get("f", 2)
        scales = b.init("sc", np.asarray([1, 1, f, f], np.float32))
        y = b.op("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                 nearest_mode="floor")
        return b.model(b.quant(y, kw.get("out_frac", 2), 8, signed=False))
    if kind == "concat":
        y = _conv(b, x, c, kw.get("c2", 5), frac=4)
        return b.model(b.quant(b.op("Concat", [x, y], axis=1), kw.get("out_frac", 3), 8, signed=False))
    if kind == "requant":
        return b.model(b.quant(b.op("Relu", [x]), 2, 4, signed=False))
    raise ValueError(kind)


def two_branch_concat_model(size: int, seed: int = 0):
    """conv3x3(3->12) and conv3x3(3->4) of one input -> Concat (one scale: stored in place where
    12 channels end on a block boundary) -> conv1x1(16->6), on a ``size x size`` map."""
    b = QDQBuilder((1, 3, size, size), seed=seed)
    x = b.cur
    cat = b.op("Concat", [_conv(b, x, 3, 12), _conv(b, x, 3, 4)], axis=1)
    return b.model(_conv(b, b.quant(cat, 3, 8, signed=False), 16, 6, k=1, pad=0, relu=False))


def gemm_model(k: int, n: int, wbits: int = 3, seed: int = 0):
    """A fully connected layer ``k -> n`` (Gemm, int weights of ``wbits`` bits, bias, ReLU)."""
    b = QDQBuilder((1, k), seed=seed)
    w = _weights(b.rng, (n, k), wbits, False)
    y = b.op("Gemm", [b.cur, b.weight(w, wbits + 2), b.bias(b.rng.integers(-500, 500, size=n), wbits + 7)], transB=1)
    return b.model(b.quant(b.op("Relu", [y]), 2, 8, signed=False))
