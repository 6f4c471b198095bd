"""Whole graphs for property tests: a small printable description (``GraphSpec``) and the ONNX
model it stands for — QDQ written directly (po2 scales, int8/uint8 activations of 3..8 bits,
int or pow2 weights, int32 bias at ``s_in * s_w``: what Brevitas exports) or, when
``spec.quantizer`` is set, the same network in float quantized by
``shiftflow.frontend.quantize.quantize_model`` (what ``shiftflow quantize --calib-random``
does). ``tests.strategies.graphs`` draws specs; the repr of a failing one rebuilds it.

Tensor 0 is the graph input, tensor ``i + 1`` the output of ``nodes[i]``. Scales are fitted to
each tensor's expected range (``_Tensor.amp``, propagated through the ops), so outputs use
their codes instead of saturating everywhere; ``Node.q``'s jitter moves them off that fit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import onnx

from shiftflow.frontend.quantize import quantize_model
from tests.modelgen import QDQBuilder, _weights

#: Node kinds the accelerator may run, and kinds that always run on the host.
ACCEL_KINDS = ("conv", "act", "maxpool", "avgpool", "add", "concat", "resize")
HOST_KINDS = ("sigmoid", "silu", "softmax", "leaky_host", "layout", "bcast_add")


class Node(NamedTuple):
    """One op: ``kind`` (``ACCEL_KINDS`` or ``HOST_KINDS``), input tensors, attributes (see
    ``tests.strategies.graphs``), and ``q = (bits, jitter)`` of the QuantizeLinear after it;
    ``None``: no quantizer, the op carries its input's scale on (MaxPool, Resize, ReLU, a
    Transpose pair)."""

    kind: str
    inputs: tuple
    attrs: dict
    q: tuple | None = (8, 0)


class GraphSpec(NamedTuple):
    """Input ``shape = (C, H, W)`` quantized to ``in_bits``; ``nodes`` in topological order;
    graph ``outputs`` (tensor indices); ``seed`` of weights and biases; ``quantizer``:
    ``None`` for a QDQ model, else ``quantize_model`` keywords for the float model."""

    shape: tuple
    nodes: tuple
    outputs: tuple
    seed: int = 0
    in_bits: int = 8
    quantizer: dict | None = None


def out_size(n: int, k: int, s: int, p0: int, p1: int, d: int = 1, ceil: bool = False) -> int:
    """ONNX window sweep length (a ceil-mode window may not start in the end padding)."""
    span = n + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    return out - 1 if ceil and (out - 1) * s >= n + p0 else out


def node_shape(node: Node, shapes: list) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``node``'s output given the shapes of all earlier tensors."""
    c, h, w = shapes[node.inputs[0]]
    a = node.attrs
    if node.kind == "conv":
        k, s, p, d = a["k"], a["stride"], a["pads"], a.get("dilation", 1)
        return a["cout"], out_size(h, k, s, p[0], p[2], d), out_size(w, k, s, p[1], p[3], d)
    if node.kind in ("maxpool", "avgpool"):
        if a.get("global"):
            return c, 1, 1
        (kh, kw), s, p, ceil = a["kernel"], a["stride"], a["pads"], a.get("ceil", 0)
        return c, out_size(h, kh, s, p[0], p[2], 1, ceil), out_size(w, kw, s, p[1], p[3], 1, ceil)
    if node.kind == "concat":
        return sum(shapes[t][0] for t in node.inputs), h, w
    if node.kind == "resize":
        fh, fw = a["factors"]
        return c, h * fh, w * fw
    return c, h, w


def spec_shapes(spec: GraphSpec) -> list[tuple[int, int, int]]:
    shapes = [tuple(spec.shape)]
    for node in spec.nodes:
        shapes.append(node_shape(node, shapes))
    return shapes


class _Tensor(NamedTuple):
    amp: float        # expected largest |value| (about 3 sigma)
    nonneg: bool
    q: tuple | None   # (frac, bits, signed) of its quantizer; None: its first input's
    clip: float | None = None  # the upper clip bound of the op producing it


class _Conv(NamedTuple):
    w: np.ndarray     # integer weights
    wf: np.ndarray    # weight frac per output channel (all equal when per tensor)
    per_channel: bool
    bias: np.ndarray | None  # real values


def _conv_params(rng, node: Node, cin: int) -> _Conv:
    a = node.attrs
    shape = (a["cout"], cin // a["groups"], a["k"], a["k"])
    w = _weights(rng, shape, a["wbits"], a["pow2"]).astype(np.int64)
    norm = np.sqrt((w.reshape(shape[0], -1) ** 2).sum(axis=1)).clip(1)
    # A frac that keeps sqrt(sum w_real^2) near 1, so ranges neither explode nor vanish.
    wf = np.round(np.log2(norm)).astype(int)
    if not a["per_channel"]:
        wf = np.full(shape[0], int(wf.max()))
    bias = rng.normal(0, 0.3, size=shape[0]) if a["bias"] else None
    return _Conv(w, wf, a["per_channel"], bias)


def _fit(amp: float, bits: int, signed: bool, jitter: int) -> int:
    qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return math.floor(math.log2(qmax / max(amp, 2.0 ** -20))) + jitter


def _po2(x: float) -> float:
    return 2.0 ** round(math.log2(max(x, 2.0 ** -20)))


def _real(node: Node, ins: list[_Tensor], params) -> tuple[float, bool, float | None]:
    """Expected amplitude and sign of ``node``'s output (float semantics), and the upper
    bound of its clip (a power of two, so it lies on any fixed-point grid it can)."""
    a, x = node.attrs, ins[0]
    act = a.get("act", "none")
    if node.kind == "conv":
        gain = float(np.sqrt(((params.w * 2.0 ** -params.wf[:, None, None, None]) ** 2).sum(axis=(1, 2, 3))).max())
        amp, nonneg = x.amp * gain + (0 if params.bias is None else float(np.abs(params.bias).max())), False
    elif node.kind in ("add", "bcast_add"):
        amp, nonneg = math.hypot(x.amp, ins[-1].amp), x.nonneg and ins[-1].nonneg
    elif node.kind == "concat":
        amp, nonneg = max(t.amp for t in ins), all(t.nonneg for t in ins)
    elif node.kind in ("sigmoid", "softmax"):
        amp, nonneg = 1.0, True
    else:
        amp, nonneg = x.amp, x.nonneg and node.kind not in ("silu", "leaky_host")
    clip = None
    if act == "relu":
        nonneg = True
    elif act == "clip":
        clip = _po2(amp * a["hi"])
        amp, nonneg = min(amp, clip), a["lo"] == "zero"
    elif act in ("leaky", "leaky01"):
        nonneg = False
    return amp, nonneg, clip


def plan_tensors(spec: GraphSpec) -> tuple[list[_Tensor], dict]:
    """Per tensor its expected range and quantizer, and the conv parameters per node index.
    A concat with ``same`` gets its first input's quantizer and gives it to its other inputs
    (so they are stored in place); the others get their own."""
    rng = np.random.default_rng(spec.seed)
    shapes = spec_shapes(spec)
    tensors = [_Tensor(3.0, False, (spec.in_bits - 3, spec.in_bits, True))]
    params = {}
    for i, node in enumerate(spec.nodes):
        if node.kind == "conv":
            params[i] = _conv_params(rng, node, shapes[node.inputs[0]][0])
        amp, nonneg, clip = _real(node, [tensors[t] for t in node.inputs], params.get(i))
        q = None
        if node.q is not None:
            bits, jitter = node.q
            q = (_fit(amp, bits, not nonneg, jitter), bits, not nonneg)
        tensors.append(_Tensor(amp, nonneg, q, clip))
    for i, node in enumerate(spec.nodes):
        if node.kind == "concat" and node.attrs.get("same"):
            target = quant_of(tensors, spec, node.inputs[0])
            for t in {i + 1, *node.inputs[1:]} - {0}:
                if tensors[t].q is not None:
                    tensors[t] = tensors[t]._replace(q=target)
    return tensors, params


def quant_of(tensors: list[_Tensor], spec: GraphSpec, t: int) -> tuple:
    """(frac, bits, signed) consumers of tensor ``t`` see: its quantizer's, or its source's."""
    while tensors[t].q is None:
        t = spec.nodes[t - 1].inputs[0]
    return tensors[t].q


def qdq_model(spec: GraphSpec) -> onnx.ModelProto:
    """The QDQ model of ``spec`` (ignores ``spec.quantizer``)."""
    return _Emitter(spec, quantized=True).run()


def float_model(spec: GraphSpec) -> onnx.ModelProto:
    """The float model of ``spec``: the QDQ model's real-valued weights, no quantizers."""
    return _Emitter(spec, quantized=False).run()


def build_model(spec: GraphSpec) -> onnx.ModelProto:
    """What a user would compile: the QDQ model, or the float model through ``quantize_model``."""
    if spec.quantizer is None:
        return qdq_model(spec)
    return quantize_model(float_model(spec), calib_random=4, seed=spec.seed, **spec.quantizer)


class _Emitter:
    def __init__(self, spec: GraphSpec, quantized: bool):
        self.spec, self.quantized = spec, quantized
        self.tensors, self.params = plan_tensors(spec)
        in_frac = spec.in_bits - 3 if quantized else None
        self.b = QDQBuilder((1,) + tuple(spec.shape), in_frac=in_frac, in_bits=spec.in_bits, seed=spec.seed)
        self.names = [self.b.cur]

    def run(self) -> onnx.ModelProto:
        for i, node in enumerate(self.spec.nodes):
            y = getattr(self, "_" + node.kind)(i, node, [self.names[t] for t in node.inputs])
            if node.q is not None:
                y = self._quant(y, self.tensors[i + 1].q)
            self.names.append(y)
        return self.b.model(*[self.names[t] for t in self.spec.outputs])

    def _quant(self, x: str, q: tuple) -> str:
        frac, bits, signed = q
        return self.b.quant(x, frac, bits, signed) if self.quantized else x

    def _frac(self, t: int) -> int:
        return quant_of(self.tensors, self.spec, t)[0]

    def _const(self, base: str, values, dtype=np.float32) -> str:
        return self.b.init(base, np.asarray(values, dtype))

    def _activation(self, i: int, x: str, node: Node, grid: int) -> str:
        """``node.attrs["act"]`` applied to ``x``; a clip's bounds are at least one step of
        ``x``'s fixed-point grid ``2**-grid``, so the accelerator can clip exactly."""
        a, b = node.attrs, self.b
        act = a.get("act", "none")
        if act == "relu":
            return b.op("Relu", [x])
        if act == "leaky":
            return b.op("LeakyRelu", [x], alpha=2.0 ** -a["leaky_exp"])
        if act == "leaky01":
            return b.op("LeakyRelu", [x], alpha=0.1)
        if act == "clip":
            hi = max(self.tensors[i + 1].clip, 2.0 ** -grid)
            return b.op("Clip", [x, self._const("lo", 0 if a["lo"] == "zero" else -hi), self._const("hi", hi)])
        return x

    def _conv(self, i: int, node: Node, xs: list[str]) -> str:
        a, p, b = node.attrs, self.params[i], self.b
        if self.quantized:
            wf = p.wf if p.per_channel else int(p.wf[0])
            inputs = [xs[0], b.weight(p.w, wf)]
            if p.bias is not None:
                bf = self._frac(node.inputs[0]) + p.wf
                ints = np.clip(np.round(p.bias * 2.0 ** bf), -2 ** 31, 2 ** 31 - 1)
                inputs.append(b.bias(ints, bf if p.per_channel else int(bf[0])))
        else:
            inputs = [xs[0], self._const("w", p.w * 2.0 ** -p.wf[:, None, None, None])]
            if p.bias is not None:
                inputs.append(self._const("b", p.bias))
        d = a.get("dilation", 1)
        y = b.op("Conv", inputs, kernel_shape=[a["k"]] * 2, strides=[a["stride"]] * 2, pads=list(a["pads"]),
                 dilations=[d, d], group=a["groups"])
        return self._activation(i, y, node, self._frac(node.inputs[0]) + int(p.wf.min()))

    def _act(self, i: int, node: Node, xs: list[str]) -> str:
        if node.attrs["act"] == "none":  # a requantization (the float model needs a node)
            return self.b.op("Identity", xs)
        return self._activation(i, xs[0], node, self._frac(node.inputs[0]))

    def _maxpool(self, i: int, node: Node, xs: list[str]) -> str:
        a = node.attrs
        if a.get("global"):
            return self.b.op("GlobalMaxPool", xs)
        return self.b.op("MaxPool", xs, kernel_shape=list(a["kernel"]), strides=[a["stride"]] * 2,
                         pads=list(a["pads"]), ceil_mode=a.get("ceil", 0))

    def _avgpool(self, i: int, node: Node, xs: list[str]) -> str:
        a = node.attrs
        if a.get("global"):
            return self.b.op("GlobalAveragePool", xs)
        return self.b.op("AveragePool", xs, kernel_shape=list(a["kernel"]), strides=[a["stride"]] * 2,
                         pads=list(a["pads"]), count_include_pad=1)

    def _add(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("Add", xs)

    def _concat(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("Concat", xs, axis=1)

    def _resize(self, i: int, node: Node, xs: list[str]) -> str:
        a = node.attrs
        mode, rounding = (("asymmetric", "floor") if a["coords"] == "asymmetric"
                          else ("half_pixel", "round_prefer_floor"))
        if a.get("sizes"):
            c, h, w = spec_shapes(self.spec)[i + 1]
            inputs = [xs[0], "", "", self._const("sizes", [1, c, h, w], np.int64)]
        else:
            inputs = [xs[0], "", self._const("scales", [1, 1, *a["factors"]])]
        return self.b.op("Resize", inputs, mode="nearest", coordinate_transformation_mode=mode, nearest_mode=rounding)

    def _sigmoid(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("Sigmoid", xs)

    def _silu(self, i: int, node: Node, xs: list[str]) -> str:
        s = self._quant(self.b.op("Sigmoid", xs), (8, 8, False))
        return self.b.op("Mul", [xs[0], s])

    def _softmax(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("Softmax", xs, axis=1)

    def _leaky_host(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("LeakyRelu", xs, alpha=0.1)

    def _layout(self, i: int, node: Node, xs: list[str]) -> str:
        """A Transpose pair (NCHW -> NHWC -> NCHW) or a Reshape pair (flatten H, W and back)."""
        c, h, w = spec_shapes(self.spec)[node.inputs[0]]
        if node.attrs["how"] == "transpose":
            return self.b.op("Transpose", [self.b.op("Transpose", xs, perm=[0, 2, 3, 1])], perm=[0, 3, 1, 2])
        flat = self.b.op("Reshape", [xs[0], self._const("shape", [1, c, h * w], np.int64)])
        return self.b.op("Reshape", [flat, self._const("shape", [1, c, h, w], np.int64)])

    def _bcast_add(self, i: int, node: Node, xs: list[str]) -> str:
        return self.b.op("Add", [xs[0], self.b.op("GlobalMaxPool", xs)])
