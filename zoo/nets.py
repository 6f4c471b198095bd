"""The zoo's networks, written with Brevitas quantized layers.

Every network obeys the numerics of docs/design.md ("Numerics") by construction:

- all quantizers are fixed point (power-of-two scales, zero point 0): signed 8-bit for the
  network input and for linear (no-ReLU) outputs, unsigned 8-bit after every ReLU;
- every convolution/linear layer has an int32 bias at scale ``s_in * s_w`` and is followed by
  its own activation quantizer, so a layer maps onto bias + requant-shift + activation;
- every residual Add and every Concat is followed by an explicit quantizer;
- no BatchNorm; average pools cover a power-of-two number of elements.

The builders take the weight quantizer (activations are always 8-bit) and an input size
already validated by :func:`shiftflow.zoo.spec.resolve_hw`.
"""

import warnings
from contextlib import contextmanager

from .spec import STRIDE

with warnings.catch_warnings():
    # Brevitas warns at import about optional kernels it does not find; under the test
    # suite's ``-W error`` that would be fatal, and it says nothing about our models.
    warnings.simplefilter("ignore")
    import torch
    from torch import nn
    import brevitas.nn as qnn
    from brevitas.core.stats import AbsMax
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

DETECTOR_CLASSES = 20
DETECTOR_ANCHORS = 3


class _HeadroomAbsMax(AbsMax):
    """Twice max|w|: the scale statistic of the pow2 weight quantizer.

    A fixed-point quantizer's scale is 2^ceil(log2(stat)) / 2^(bits-1). The pow2 projection
    makes max|w| an exact power of two, which would land on integer 128 and be clipped to
    127 (not a power of two); doubling the statistic puts it on 64 instead.
    """

    def forward(self, x):
        return 2 * super().forward(x)


class Int4WeightPerTensorFixedPoint(Int8WeightPerTensorFixedPoint):
    """4-bit narrow (±7) per-tensor fixed-point weights."""

    bit_width = 4


class Pow2WeightPerTensorFixedPoint(Int8WeightPerTensorFixedPoint):
    """8-bit fixed-point weights for tensors already projected onto {0, ±2^e}."""

    scaling_stats_impl = _HeadroomAbsMax


WEIGHT_QUANT = {"w8a8": Int8WeightPerTensorFixedPoint, "w4a8": Int4WeightPerTensorFixedPoint,
                "pow2": Pow2WeightPerTensorFixedPoint}


@contextmanager
def quiet():
    """Silence the warnings torch and Brevitas emit while tracing and exporting.

    Scoped on purpose: the test suite turns warnings into errors and that must stay true
    for every other line of shiftflow.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _value(t):
    """The float value of a Brevitas QuantTensor (or a plain tensor as is).

    Add/Concat of two QuantTensors demands equal scales; the zoo instead adds the dequantized
    values and requantizes the result with its own quantizer, which is what the frontend sees.
    """
    return getattr(t, "value", t)


def _act(relu: bool, *, out: bool = False) -> nn.Module:
    """Quantizer after a layer: unsigned 8-bit after a ReLU, signed 8-bit otherwise.

    ``out`` marks a network output, which is returned as a plain (dequantized) tensor.
    """
    if relu:
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=not out)
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=not out)


def _conv(cin, cout, k, wq, *, stride=1, groups=1, relu=True, out=False) -> nn.Sequential:
    """Conv (same padding, int32 bias, weight quantizer ``wq``) and its act quantizer."""
    layer = qnn.QuantConv2d(
        cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=True,
        weight_quant=wq, bias_quant=Int32Bias, return_quant_tensor=False)
    return nn.Sequential(layer, _act(relu, out=out))


def _linear(cin, cout, wq, *, relu=True, out=False) -> nn.Sequential:
    layer = qnn.QuantLinear(cin, cout, bias=True, weight_quant=wq, bias_quant=Int32Bias,
                            return_quant_tensor=False)
    return nn.Sequential(layer, _act(relu, out=out))


def _input_quant() -> nn.Module:
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)


def _dws(cin, cout, wq, stride=1) -> nn.Sequential:
    """MobileNetV1 depthwise-separable block: dw 3×3 + ReLU, pw 1×1 + ReLU."""
    return nn.Sequential(
        _conv(cin, cin, 3, wq, stride=stride, groups=cin),
        _conv(cin, cout, 1, wq))


def _global_pool(hw, stride) -> nn.Sequential:
    """Average pool over the whole final map, then requantize (unsigned: inputs are ReLU'd)."""
    window = (hw[0] // stride, hw[1] // stride)
    return nn.Sequential(
        nn.AvgPool2d(window),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True))


class MnistNet(nn.Module):
    """conv3×3(8)-maxpool-conv3×3(16)-maxpool-fc(32)-fc(10): Conv, MaxPool, Flatten, Gemm."""

    def __init__(self, wq, hw=(28, 28)):
        super().__init__()
        flat = 16 * (hw[0] // 4) * (hw[1] // 4)
        self.body = nn.Sequential(
            _input_quant(), _conv(1, 8, 3, wq), nn.MaxPool2d(2),
            _conv(8, 16, 3, wq), nn.MaxPool2d(2), nn.Flatten(),
            _linear(flat, 32, wq), _linear(32, 10, wq, relu=False, out=True))

    def forward(self, x):
        return self.body(x)


class BasicBlock(nn.Module):
    """ResNet basic block; the sum is requantized by the QuantReLU that follows the Add."""

    def __init__(self, cin, cout, wq, stride=1):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, wq, stride=stride)
        self.conv2 = _conv(cout, cout, 3, wq, relu=False)
        self.shortcut = (_conv(cin, cout, 1, wq, stride=stride, relu=False)
                         if stride != 1 or cin != cout else nn.Identity())
        self.add_quant = _act(relu=True)

    def forward(self, x):
        return self.add_quant(_value(self.conv2(self.conv1(x))) + _value(self.shortcut(x)))


class ResNet(nn.Module):
    """ResNet-8-style: stem, three stages of two basic blocks (16/32/64 ch), pool, fc."""

    def __init__(self, wq, hw=(32, 32)):
        super().__init__()
        blocks = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks += [BasicBlock(cin, cout, wq, stride), BasicBlock(cout, cout, wq)]
            cin = cout
        self.body = nn.Sequential(
            _input_quant(), _conv(3, 16, 3, wq), *blocks,
            _global_pool(hw, STRIDE["resnet"]), nn.Flatten(),
            _linear(64, 10, wq, relu=False, out=True))

    def forward(self, x):
        return self.body(x)


class MobileNet(nn.Module):
    """MobileNetV1-style (width 0.25 of the original's channel plan), 1×1-conv classifier."""

    def __init__(self, wq, hw=(64, 64)):
        super().__init__()
        plan = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
        layers = [_input_quant(), _conv(3, 16, 3, wq, stride=2)]
        cin = 16
        for cout, stride in plan:
            layers.append(_dws(cin, cout, wq, stride))
            cin = cout
        layers += [_global_pool(hw, STRIDE["mobilenet"]),
                   _conv(cin, 10, 1, wq, relu=False, out=True), nn.Flatten()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class Detector(nn.Module):
    """Reference single-shot detector: MobileNetV1-style backbone + two-level FPN + YOLO heads.

    Outputs (raw conv maps, no decode): ``head_s16`` at stride 16 and ``head_s32`` at stride
    32, each with ``DETECTOR_ANCHORS * (5 + DETECTOR_CLASSES)`` channels laid out per anchor
    as (x, y, w, h, objectness, class scores...). The neck upsamples the stride-32 features
    (nearest, ×2) and concatenates them with the stride-16 backbone features.
    """
    # (channels, stride) of the depthwise-separable blocks: MobileNetV1-1.0's plan, which
    # puts the whole net at ~3.3 GMAC at 512×512 (see docs/zoo.md).
    C3_PLAN = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
    C4_PLAN = ((512, 2),) + ((512, 1),) * 5
    C5_PLAN = ((1024, 2), (1024, 1))
    NECK = 256

    def __init__(self, wq, hw=(512, 512)):
        super().__init__()
        outs = DETECTOR_ANCHORS * (5 + DETECTOR_CLASSES)
        self.stem = nn.Sequential(_input_quant(), _conv(3, 32, 3, wq, stride=2))
        cin = 32
        stages = []
        for plan in (self.C3_PLAN, self.C4_PLAN, self.C5_PLAN):
            blocks = []
            for cout, stride in plan:
                blocks.append(_dws(cin, cout, wq, stride))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.c3, self.c4, self.c5 = stages
        c4_ch = self.C4_PLAN[-1][0]
        self.lateral = _conv(cin, self.NECK, 1, wq)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # Both concat inputs are ReLU outputs, so the requantizer may be unsigned.
        self.cat_quant = qnn.QuantIdentity(
            act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.p4 = _dws(self.NECK + c4_ch, self.NECK, wq)
        self.p5 = _dws(self.NECK, self.NECK, wq)
        self.head_s16 = _conv(self.NECK, outs, 1, wq, relu=False, out=True)
        self.head_s32 = _conv(self.NECK, outs, 1, wq, relu=False, out=True)

    def forward(self, x):
        c4 = self.c4(self.c3(self.stem(x)))
        lat = self.lateral(self.c5(c4))
        cat = self.cat_quant(torch.cat([_value(self.up(lat)), _value(c4)], dim=1))
        return self.head_s16(self.p4(cat)), self.head_s32(self.p5(lat))


_CLASSES = {"mnist": MnistNet, "resnet": ResNet, "mobilenet": MobileNet, "detector": Detector}
OUTPUT_NAMES = {"mnist": ["logits"], "resnet": ["logits"], "mobilenet": ["logits"],
                "detector": ["head_s16", "head_s32"]}


def in_channels(name: str) -> int:
    return 1 if name == "mnist" else 3


def build_net(name: str, variant: str, hw: tuple[int, int]) -> nn.Module:
    """A freshly initialised (not yet calibrated) network; the caller seeds torch first.

    Weights use Kaiming-normal init (fan-in, ReLU gain) so that activations keep their
    magnitude through a BN-free stack; biases keep PyTorch's default small uniform init.
    """
    with quiet():
        net = _CLASSES[name](WEIGHT_QUANT[variant], hw)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return net


def weight_layers(net: nn.Module):
    """The conv/linear layers of ``net`` (Brevitas layers subclass the torch ones)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def count_macs(net: nn.Module, hw: tuple[int, int], channels: int) -> int:
    """Multiply-accumulates of one batch-1 inference, from the layers' output shapes."""
    macs = 0

    def hook(m, inputs, output):
        nonlocal macs
        per_out = m.weight[0].numel()  # (cin/groups)*kh*kw, or in_features
        macs += _value(output).numel() * per_out

    handles = [m.register_forward_hook(hook) for m in weight_layers(net)]
    try:
        # Calibration mode switches quantization off: a plain float forward.
        with quiet(), torch.no_grad(), calibration_mode(net):
            net(torch.zeros(1, channels, *hw))
    finally:
        for h in handles:
            h.remove()
    return macs
