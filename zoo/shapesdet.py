"""``shapesdet``: the zoo's trained single-shot detector for the synthetic shapes dataset.

SSD-style, fully convolutional, sigmoid class scores (no background class). A strided
MobileNetV1-style backbone (depthwise-separable blocks, no BatchNorm, the numerics of
:mod:`shiftflow.zoo.nets`) feeds three head levels at strides 8, 16 and 32. Each level has
two 3×3 head convolutions with NO output quantizer — their outputs are the exact int32
accumulators (dequantized) — exported as separate ONNX outputs:

- ``cls_sN`` (1, A*C, H/N, W/N), channel ``a*C + c``: the class logits;
- ``box_sN`` (1, A*4, H/N, W/N), channel ``a*4 + k``: ``(dx, dy, dw, dh)``, centre-size
  against the anchor with variances ``VARIANCES`` and exp size (docs/heads.md, ``ssd``).

Anchors (``A = 3`` per cell) are ``BASE × stride`` on a side, square and at aspect 2:1 and
1:2 (same area), centred on each cell. The input is RGB mapped to ``p/128 - 1`` (``scale``
1/128, ``mean`` 1), which the int8 input quantizer at scale 2^-7 represents exactly.
"""

from __future__ import annotations

import math

import numpy as np

from .nets import _conv, _dws, _input_quant, qnn, nn, Int32Bias
from .shapes_data import CLASSES

STRIDES = (8, 16, 32)
ANCHORS = 3
BASE = 2.0  # anchor side (square anchor) = BASE * stride
VARIANCES = (0.1, 0.1, 0.2, 0.2)
TRAIN_HW = (128, 128)
OUTPUT_NAMES = [f"{kind}_s{s}" for s in STRIDES for kind in ("cls", "box")]
# (channels, stride) of the depthwise-separable blocks after the 3×3/2 stem (24 channels);
# a block list ends at each head level.
PLAN = {8: ((48, 2), (48, 1), (64, 2), (64, 1)),
        16: ((128, 2), (128, 1)),
        32: ((192, 2), (192, 1))}
STEM = 24


def anchor_sizes(stride: int) -> list[tuple[float, float]]:
    """``[w, h]`` of the level's anchors in input pixels: square, 2:1 and 1:2, equal area."""
    b = BASE * stride
    r = math.sqrt(2.0)
    return [(b, b), (b * r, b / r), (b / r, b * r)]


def anchor_boxes(hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) float32 ``(cx, cy, w, h)`` of every anchor, in the decoder's box order:
    levels by stride, then ``(y, x, a)`` row-major (docs/heads.md, "the box index")."""
    rows = []
    for s in STRIDES:
        gh, gw = hw[0] // s, hw[1] // s
        cy, cx = np.meshgrid((np.arange(gh) + 0.5) * s, (np.arange(gw) + 0.5) * s, indexing="ij")
        sizes = np.array(anchor_sizes(s), dtype=np.float32)
        a = np.empty((gh, gw, ANCHORS, 4), dtype=np.float32)
        a[..., 0], a[..., 1] = cx[:, :, None], cy[:, :, None]
        a[..., 2:] = sizes
        rows.append(a.reshape(-1, 4))
    return np.concatenate(rows)


def _head(cin: int, cout: int, wq) -> nn.Module:
    """3×3 conv with int32 bias and no output quantizer: its output is the exact sum."""
    return qnn.QuantConv2d(cin, cout, 3, padding=1, bias=True, weight_quant=wq,
                           bias_quant=Int32Bias, return_quant_tensor=False)


class ShapesDet(nn.Module):
    """The detector; ``forward`` returns the six head maps in ``OUTPUT_NAMES`` order."""

    def __init__(self, wq, hw=TRAIN_HW):
        super().__init__()
        self.stem = nn.Sequential(_input_quant(), _conv(3, STEM, 3, wq, stride=2))
        cin = STEM
        stages, heads = [], []
        for s in STRIDES:
            blocks = []
            for cout, stride in PLAN[s]:
                blocks.append(_dws(cin, cout, wq, stride))
                cin = cout
            stages.append(nn.Sequential(*blocks))
            heads.append(nn.ModuleList([_head(cin, ANCHORS * len(CLASSES), wq),
                                        _head(cin, ANCHORS * 4, wq)]))
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for stage, (cls, box) in zip(self.stages, self.heads):
            x = stage(x)
            outs += [cls(x), box(x)]
        return tuple(outs)


def check_hw(hw: tuple[int, int]) -> None:
    from ..errors import UsageError

    if hw[0] % STRIDES[-1] or hw[1] % STRIDES[-1] or min(hw) <= 0:
        raise UsageError(f"shapesdet input size must be positive multiples of {STRIDES[-1]}, "
                         f"got {hw[0]}x{hw[1]}")


def head_spec(hw: tuple[int, int]) -> dict:
    """The ``shiftflow.heads.v1`` document (docs/heads.md) of the model at input ``hw``."""
    levels = []
    for s in STRIDES:
        levels.append({
            "stride": s, "grid": [hw[0] // s, hw[1] // s],
            "anchors": [[w, h] for w, h in anchor_sizes(s)],
            "scores": {"output": f"cls_s{s}", "layout": "nchw"},
            "boxes": {"output": f"box_s{s}", "layout": "nchw"}})
    return {
        "format": "shiftflow.heads.v1",
        "input": {"name": "input", "height": hw[0], "width": hw[1], "channels": 3,
                  "resize": "letterbox", "pad_value": 0, "scale": 1 / 128,
                  "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]},
        "classes": list(CLASSES), "decoder": "ssd", "score": "sigmoid",
        "box": {"variances": list(VARIANCES), "size": "exp"},
        "levels": levels}


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB → float32 (B, 3, H, W) ``p/128 - 1`` (the spec's mapping)."""
    return (images.astype(np.float32) / 128.0 - 1.0).transpose(0, 3, 1, 2).copy()
