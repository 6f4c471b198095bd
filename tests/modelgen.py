"""Small QDQ ONNX models built in code, for tests (single layers and short chains; whole random
graphs are in ``tests/graphgen.py``)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET, IR_VERSION = 21, 10


class QDQBuilder:
    """Accumulates nodes/initializers of a QDQ model whose every activation is po2-quantized.
    With ``in_frac=None`` the input is not quantized (``cur`` is the float input ``input``):
    a float model, for ``shiftflow.frontend.quantize``."""

    def __init__(self, input_shape, in_frac=5, in_bits=8, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.input_shape = tuple(input_shape)
        self.count = 0
        self.cur = "input" if in_frac is None else self.quant("input", in_frac, in_bits, signed=True)
        self.cur_frac = in_frac

    def name(self, base):
        self.count += 1
        return f"{base}{self.count}"

    def init(self, base, array):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(array, n))
        return n

    def quant(self, x, frac, bits=8, signed=True):
        """x → QuantizeLinear → [Clip] → DequantizeLinear; returns the DQ output name."""
        dtype = np.int8 if signed else np.uint8
        s = self.init("s", np.asarray(2.0 ** -frac, np.float32))
        z = self.init("z", np.zeros((), dtype))
        q = self.name("q")
        self.nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [q], name=self.name("Q")))
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if bits < 8:
            c = self.name("c")
            self.nodes.append(helper.make_node("Clip", [q, self.init("lo", np.asarray(lo, dtype)),
                                                       self.init("hi", np.asarray(hi, dtype))], [c], name=self.name("C")))
            q = c
        out = self.name("dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], name=self.name("DQ")))
        return out

    def weight(self, ints, frac):
        """int8 initializer → DequantizeLinear (per-channel when frac is a list)."""
        w = self.init("w", np.asarray(ints, np.int8))
        frac = np.asarray(frac)
        s = self.init("ws", (2.0 ** -frac).astype(np.float32))
        z = self.init("wz", np.zeros(frac.shape, np.int8))
        out = self.name("wdq")
        attrs = {"axis": 0} if frac.ndim else {}
        self.nodes.append(helper.make_node("DequantizeLinear", [w, s, z], [out], name=self.name("WDQ"), **attrs))
        return out

    def bias(self, ints, frac):
        b = self.init("b", np.asarray(ints, np.int32))
        frac = np.asarray(frac)
        s = self.init("bs", (2.0 ** -frac).astype(np.float32))
        z = self.init("bz", np.zeros(frac.shape, np.int32))
        out = self.name("bdq")
        attrs = {"axis": 0} if frac.ndim else {}
        self.nodes.append(helper.make_node("DequantizeLinear", [b, s, z], [out], name=self.name("BDQ"), **attrs))
        return out

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def model(self, *outputs) -> onnx.ModelProto:
        """The model with graph outputs ``outputs`` (their shapes inferred), IR 10 / opset 21."""
        g = helper.make_graph(self.nodes, "gen", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  list(self.input_shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = IR_VERSION
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        del m.graph.output[:]
        m.graph.output.extend(known[o] for o in outputs)
        return m


def _weights(rng, shape, wbits, pow2):
    wmax = (1 << (wbits - 1)) - 1
    if pow2:
        e = rng.integers(0, max(1, wbits - 1), size=shape)
        w = np.where(rng.random(shape) < 0.2, 0, rng.choice([-1, 1], size=shape) * (1 << e))
        return np.clip(w, -wmax - 1, wmax)
    return rng.integers(-wmax - 1, wmax + 1, size=shape)


def conv_layer_model(cin=3, cout=4, hw=(9, 7), k=3, stride=1, pad=1, dilation=1, groups=1, wbits=8, abits=8,
                     in_bits=8, act="relu", per_channel=False, pow2=False, bias=True, seed=0,
                     out_quant=True) -> onnx.ModelProto:
    """One quantized conv layer (+ optional activation) in QDQ form.

    The output scale is chosen from the expected spread of the result, so outputs use their
    range instead of saturating everywhere. ``out_quant=False`` leaves the output
    unquantized (a detector head: the exact sum, a wide output).
    """
    in_frac = in_bits - 3  # N(0,1) inputs: about +-4 fills the range
    b = QDQBuilder((1, cin) + tuple(hw), in_frac=in_frac, in_bits=in_bits, seed=seed)
    rng = b.rng
    shape = (cout, cin // groups, k, k)
    w = _weights(rng, shape, wbits, pow2)
    wf = rng.integers(wbits - 2, wbits + 2, size=cout) if per_channel else wbits - 1
    inputs = [b.cur, b.weight(w, wf)]
    w_real = w * 2.0 ** -np.reshape(wf, (-1, 1, 1, 1))
    if bias:
        bfrac = in_frac + np.asarray(wf)
        inputs.append(b.bias(rng.integers(-(1 << (in_frac + wbits)), 1 << (in_frac + wbits), size=cout), bfrac))
    y = b.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=list(pad) if isinstance(pad, tuple)
             else [pad] * 4, dilations=[dilation, dilation], group=groups)
    signed = True
    if act == "relu":
        y, signed = b.op("Relu", [y]), False
    elif act == "leaky":
        y = b.op("LeakyRelu", [y], alpha=0.125)
    if not out_quant:
        return b.model(y)
    spread = 3 * max(1e-3, float(np.sqrt((w_real ** 2).sum(axis=(1, 2, 3)).max())))
    qmax = (1 << (abits - (1 if signed else 0))) - 1
    out_frac = int(np.floor(np.log2(qmax / spread)))
    return b.model(b.quant(y, out_frac, abits, signed=signed))
