"""``shiftflow quantize``: po2 post-training quantization of a float ONNX model into QDQ ONNX.

The pipeline is a flat list of named steps (see :func:`quantize_model`):

1. ``load_float_model`` (``float_model.py``): check the float model and prepare it (opset 21;
   ``float_rewrites.py``: BatchNormalization folded, Gemm weights normalized);
2. ``_plan``: which activation tensors get ``QuantizeLinear → [Clip] → DequantizeLinear``,
   which Conv/Gemm/MatMul get integer weights, which activations fuse into them, and which
   ops (MaxPool, Reshape, ...) merely carry an already quantized tensor along;
3. ``collect_ranges`` / ``activation_fracs`` (``calibrate.py``): float ranges of the planned
   tensors under onnxruntime and the po2 scale of each;
4. ``_Rewriter``: emits the QDQ graph with power-of-two scales and zero points 0, weights
   encoded by :func:`int_weights` or :func:`pow2_weights`;
5. ``_finish``: IR 10 / opset 21, checker, shape inference.

The exact rules (scale choice, the pow2 weight window, fusion) are in ``docs/quantize.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shiftflow.errors import QuantizationError, UnsupportedError, UsageError
from shiftflow.frontend.calib_data import calibration_feeds, load_calibration
from shiftflow.frontend.calibrate import activation_fracs, activation_grid, collect_ranges, fit_frac
from shiftflow.frontend.float_model import IR_VERSION, OPSET, graph_inputs, load_float_model
from shiftflow.frontend.float_rewrites import attr, drop_unused_initializers, plain_gemm

__all__ = ["quantize_model", "load_calibration", "int_weights", "pow2_weights", "pow2_levels"]

WBITS = range(2, 9)
ABITS = range(4, 9)
WEIGHT_KINDS = ("int", "pow2")

#: Ops that carry a quantized input to their output without changing its values or scale.
PASS_THROUGH = {"MaxPool", "Reshape", "Flatten", "Transpose", "Resize", "Identity",
                "Squeeze", "Unsqueeze"}
#: Activations fused into the Conv/Gemm/MatMul in front of them (quantized after, not between).
FUSED_ACTIVATIONS = {"Relu", "LeakyRelu", "Clip"}


def quantize_model(model: onnx.ModelProto | str | os.PathLike, *,
                   calib: np.ndarray | dict[str, np.ndarray] | None = None,
                   calib_random: int | None = None, wbits: int = 8, abits: int = 8,
                   weights: str = "int", per_channel: bool = False, wide_heads: bool = False,
                   seed: int = 0) -> onnx.ModelProto:
    """Quantize a float32 ONNX model to QDQ ONNX with power-of-two scales.

    ``calib`` is calibration input (one array, or arrays by input name, samples on axis 0;
    see :func:`shiftflow.frontend.calib_data.calibration_feeds`); ``calib_random=N`` uses N
    seeded standard-normal samples instead. Exactly one must be given. ``wbits`` (2..8) and
    ``weights`` (``"int"`` or ``"pow2"``) choose the weight encoding, per tensor or per output
    channel (``per_channel``); ``abits`` (4..8) the activation width. ``wide_heads`` drops
    the output quantizers of the convs feeding the graph outputs (``frontend/wide_heads.py``),
    which keep per-tensor weights even with ``per_channel``.

    Returns a new model (IR 10, opset 21, shapes inferred) that onnxruntime runs: every
    activation the accelerator computes passes ``QuantizeLinear → [Clip] → DequantizeLinear``
    with scale ``2**-frac`` and zero point 0 (int8, or uint8 for non-negative tensors);
    weights are int8 initializers and biases int32 initializers at ``s_in * s_w``, each
    behind a ``DequantizeLinear``. Raises ``UsageError`` for bad arguments or a model that is
    not float, ``UnsupportedError`` / ``QuantizationError`` for what cannot be quantized.
    """
    _check_args(wbits, abits, weights)
    model = load_float_model(model)
    _name_nodes(model.graph)
    feeds = calibration_feeds(graph_inputs(model.graph), calib, calib_random, seed)
    plan = _plan(model.graph)
    ranges = collect_ranges(model, feeds, plan.activations)
    fracs = activation_fracs(model, feeds, ranges, abits)
    def rewrite(per_channel: bool) -> onnx.ModelProto:
        m = onnx.ModelProto.FromString(model.SerializeToString())
        return _Rewriter(m, ranges, fracs, wbits=wbits, abits=abits, pow2=weights == "pow2",
                         per_channel=per_channel).run(plan)

    quantized = rewrite(per_channel)
    if wide_heads:
        from shiftflow.frontend.wide_heads import per_tensor_heads, wide_heads as drop_output_quantizers

        heads = drop_output_quantizers(quantized)
        if not heads:
            raise UsageError("--wide-heads: no conv feeds a graph output through layout ops only "
                             "(Concat, Reshape, Transpose, Flatten)")
        if per_channel:  # activation scales do not depend on the weight mode: the swap is exact
            per_tensor_heads(quantized, rewrite(False), heads)
    return _finish(quantized)


def _check_args(wbits: int, abits: int, weights: str) -> None:
    if not isinstance(wbits, int) or wbits not in WBITS:
        raise UsageError(f"--wbits must be an integer in 2..8; found {wbits!r}")
    if not isinstance(abits, int) or abits not in ABITS:
        raise UsageError(f"--abits must be an integer in 4..8; found {abits!r}")
    if weights not in WEIGHT_KINDS:
        raise UsageError(f"--weights must be 'int' or 'pow2'; found {weights!r}")


def _rows(w: np.ndarray, axis: int | None) -> np.ndarray:
    """``w`` as float64 rows: one per channel along ``axis``, or a single row."""
    w = np.asarray(w, dtype=np.float64)
    return w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)


def _unrows(q: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    if axis is None:
        return q.reshape(shape)
    moved = (shape[axis], *shape[:axis], *shape[axis + 1:])
    return np.moveaxis(q.reshape(moved), 0, axis)


def _best_frac(row: np.ndarray, first: int, encode) -> int:
    """``first`` (nothing saturates) or ``first + 1`` (one bit finer, the largest weights
    saturate), whichever reconstructs ``row`` with the smaller squared error; ties keep
    ``first``. Saturating a few outliers often pays for a finer grid for all the others."""
    def sse(frac):
        return float(np.sum((encode(row, frac) * 2.0 ** -frac - row) ** 2))
    return first + 1 if sse(first + 1) < sse(first) else first


def _int_code(row: np.ndarray, frac: int, qmax: int) -> np.ndarray:
    return np.clip(np.round(row * 2.0 ** frac), -qmax, qmax)


def int_weights(w: np.ndarray, axis: int | None, wbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric narrow-range ``wbits`` integer weights with a po2 scale per row.

    Returns ``(q, frac)``: int8 ``q`` of ``w``'s shape with ``|q| <= 2**(wbits-1) - 1`` and
    ``w ~= q * 2**-frac``; ``frac`` has one entry per channel along ``axis`` (per-channel) or
    one in all (``axis=None``). Each frac is :func:`fit_frac` of the row's max, or one more
    when that lowers the squared error (:func:`_best_frac`).
    """
    qmax = 2 ** (wbits - 1) - 1
    rows = _rows(w, axis)
    fracs = []
    for row in rows:
        amax = float(np.abs(row).max())
        fracs.append(_best_frac(row, fit_frac(-amax, amax, -qmax, qmax),
                                lambda r, f: _int_code(r, f, qmax)))
    frac = np.array(fracs)
    q = _int_code(rows, frac[:, None], qmax)
    return _unrows(q, w.shape, axis).astype(np.int8), frac


#: pow2 weights live in an int8 container as +-2**k, so k <= 6: at most 7 exponent levels.
POW2_MAX_LEVELS = 7


def pow2_levels(wbits: int) -> int:
    """Exponent levels of ``wbits``-bit pow2 weights: sign bit + zero + the rest, int8-capped."""
    return min(2 ** (wbits - 1) - 1, POW2_MAX_LEVELS)


def _pow2_code(row: np.ndarray, frac: int, levels: int) -> np.ndarray:
    """Integers ``0`` or ``+-2**k`` (``0 <= k < levels``) nearest in value to ``row * 2**frac``.

    Between ``2**k`` and ``2**(k+1)`` the cut is the midpoint ``1.5 * 2**k`` (nearest value,
    which has a lower error than the log-domain cut ``sqrt(2) * 2**k``); below ``1/2`` the
    code is 0; ties go to the larger magnitude; magnitudes above ``2**(levels-1)`` saturate.
    """
    a = np.abs(row) * 2.0 ** frac
    mant, exp = np.frexp(a)                      # a = mant * 2**exp, mant in [0.5, 1)
    k = np.where(mant >= 0.75, exp, exp - 1)     # nearest-value exponent of a
    mag = np.where(a >= 0.5, 2.0 ** np.clip(k, 0, levels - 1), 0.0)
    return np.sign(row) * mag


def pow2_weights(w: np.ndarray, axis: int | None, wbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Power-of-two weights: each weight becomes 0 or ``+-2**e`` with ``e`` in a window.

    Same return contract as :func:`int_weights`, but every nonzero ``q`` is ``+-2**k`` with
    ``0 <= k < pow2_levels(wbits)``, so the weight is ``+-2**(k - frac)``. The window's top is
    the exponent nearest the row's max (the smallest frac at which the max codes without
    saturating), or one lower when that lowers the squared error.
    """
    levels = pow2_levels(wbits)
    top = 2 ** (levels - 1)
    rows = _rows(w, axis)
    fracs = []
    for row in rows:
        amax = float(np.abs(row).max())
        if amax == 0:
            fracs.append(0)
            continue
        # the max codes to `top` exactly when amax * 2**frac < 1.5 * top.
        first = fit_frac(-amax, amax, -(top * 1.5 - 0.5), top * 1.5 - 0.5)
        fracs.append(_best_frac(row, first, lambda r, f: _pow2_code(r, f, levels)))
    frac = np.array(fracs)
    q = np.stack([_pow2_code(row, f, levels) for row, f in zip(rows, frac)])
    return _unrows(q, w.shape, axis).astype(np.int8), frac


@dataclass
class _Plan:
    """What the rewrite does, decided on the float graph before calibration."""

    activations: list[str] = field(default_factory=list)   # tensors that get Q/[Clip]/DQ
    weighted: set[str] = field(default_factory=set)        # names of Conv/Gemm/MatMul to quantize
    alias: dict[str, str] = field(default_factory=dict)    # pass-through output -> its input


def _weight_slots(node: onnx.NodeProto, inits: set[str]) -> bool:
    """Whether a Conv/Gemm/MatMul has constant weights (and bias) in the form we quantize."""
    if not (node.op_type in ("Conv", "MatMul") or plain_gemm(node)) or node.input[1] not in inits:
        return False
    return len(node.input) < 3 or node.input[2] in ("", *inits)


def _plan(graph: onnx.GraphProto) -> _Plan:
    """Decide the quantization points, walking the (topologically sorted) float graph.

    Only tensors computed from a graph input count as activations; constant subgraphs (shape
    arithmetic) stay float for the importer to fold. Every float activation is quantized
    right where it is produced, except: a Conv/Gemm/MatMul output read only by a Relu,
    LeakyRelu or Clip (quantized after the activation instead), and the output of a
    pass-through op whose input is already quantized (it carries that tensor's scale).
    """
    inits = {t.name for t in graph.initializer}
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in (*graph.value_info, *graph.output, *graph.input)}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    plan = _Plan(activations=[vi.name for vi in graph_inputs(graph)])
    dynamic = set(plan.activations)
    carried = set(plan.activations)   # quantized tensors and pass-through outputs of them
    fused: set[int] = set()
    for node in graph.node:
        if not any(i in dynamic for i in node.input):
            continue
        dynamic.update(o for o in node.output if o)
        if id(node) in fused:
            new = [node.output[0]]
        elif _weight_slots(node, inits):
            plan.weighted.add(node.name)
            act = readers.get(node.output[0], [])
            if (len(act) == 1 and act[0].op_type in FUSED_ACTIVATIONS
                    and act[0].input[0] == node.output[0] and node.output[0] not in outputs):
                fused.add(id(act[0]))
                continue
            new = [node.output[0]]
        elif node.op_type in PASS_THROUGH and node.input[0] in carried and (
                node.op_type != "Resize" or attr(node, "mode", b"nearest") == b"nearest"):
            plan.alias[node.output[0]] = node.input[0]
            carried.add(node.output[0])
            continue
        else:
            new = [o for o in node.output if o and _elem_type(types, node, o) == TensorProto.FLOAT]
        plan.activations.extend(new)
        carried.update(new)
    return plan


def _elem_type(types: dict[str, int], node: onnx.NodeProto, name: str) -> int:
    if not types.get(name):
        raise UnsupportedError(f"cannot infer the element type of '{name}' (output of node "
                               f"'{node.name}', {node.op_type}); quantize needs a model whose "
                               "shapes and types onnx shape inference can resolve")
    return types[name]


def _fresh(base: str, used: set[str]) -> str:
    name, i = base, 1
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique, non-empty name (unnamed ones after their first output)."""
    used: set[str] = set()
    for node in graph.node:
        node.name = _fresh(node.name or node.output[0], used)


def _scale(frac, what: str) -> np.ndarray:
    """float32 ``2**-frac``; refuses exponents float32 cannot hold as normal numbers."""
    frac = np.asarray(frac)
    worst = int(frac.flat[np.argmax(np.abs(frac))]) if frac.size else 0
    if abs(worst) > 126:
        raise QuantizationError(f"{what} needs a scale of 2**{-worst}; po2 scales must lie in "
                                "2**-126..2**126 (normal float32)")
    return (2.0 ** -frac.astype(np.float64)).astype(np.float32)


class _Rewriter:
    """Emits the QDQ graph for a :class:`_Plan` over the prepared float model."""

    def __init__(self, model: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                 fracs: dict[str, int], *, wbits: int, abits: int, pow2: bool, per_channel: bool):
        self.model, self.graph, self.ranges, self.frac = model, model.graph, ranges, fracs
        self.wbits, self.abits, self.pow2, self.per_channel = wbits, abits, pow2, per_channel
        self.arrays = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.tensors = {n for node in self.graph.node for n in (*node.input, *node.output)}
        self.tensors |= set(self.arrays) | {vi.name for vi in (*self.graph.input, *self.graph.output)}
        self.node_names = {node.name for node in self.graph.node}
        self.outputs = {o.name for o in self.graph.output}
        self.new_inits: dict[str, TensorProto] = {}
        self.dq: dict[str, str] = {}          # quantized activation -> its DQ output
        self.weight_dq: dict[str, tuple[str, np.ndarray]] = {}  # weight -> (DQ output, frac)
        self.clip_bounds: dict[bool, list[str]] = {}  # signed? -> [min, max] initializer names

    def run(self, plan: _Plan) -> onnx.ModelProto:
        self.alias = plan.alias
        todo = set(plan.activations)
        nodes = []
        for vi in graph_inputs(self.graph):
            nodes += self._qdq(vi.name, None)
        for node in self.graph.node:
            if node.name in plan.weighted:
                nodes += self._weights(node)
            for i, name in enumerate(node.input):
                node.input[i] = self.dq.get(name, name)
            nodes.append(node)
            nodes += [n for o in list(node.output) if o in todo for n in self._qdq(o, node)]
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_inits.values())
        drop_unused_initializers(self.graph)
        return self.model

    def _const(self, base: str, array: np.ndarray) -> str:
        name = _fresh(base, self.tensors)
        self.new_inits[name] = numpy_helper.from_array(np.asarray(array), name)
        return name

    def _node(self, op: str, inputs: list[str], base: str, **attrs) -> onnx.NodeProto:
        out = _fresh(base, self.tensors)
        return helper.make_node(op, inputs, [out], name=_fresh(base, self.node_names), **attrs)

    def _frac_of(self, name: str) -> int:
        while name in self.alias:
            name = self.alias[name]
        if name not in self.frac:
            raise UnsupportedError(f"tensor '{name}' feeds a Conv/Gemm/MatMul but is not a "
                                   "quantized activation; its producer cannot be quantized")
        return self.frac[name]

    def _qdq(self, name: str, producer: onnx.NodeProto | None) -> list[onnx.NodeProto]:
        """QuantizeLinear → [Clip] → DequantizeLinear after activation ``name``."""
        lo, hi = self.ranges[name]
        signed, qmin, qmax = activation_grid(lo, self.abits)
        dtype = np.int8 if signed else np.uint8
        scale = self._const(f"{name}_scale",
                            _scale(self.frac[name], f"activation '{name}' (range [{lo:g}, {hi:g}])"))
        zero = self._const(f"{name}_zero_point", np.array(0, dtype))
        source = name
        if producer is not None and name in self.outputs:
            # A graph output keeps its name on the DequantizeLinear: the producer is renamed.
            source = _fresh(f"{name}_float", self.tensors)
            producer.output[list(producer.output).index(name)] = source
        chain = [self._node("QuantizeLinear", [source, scale, zero], f"{name}_q")]
        if self.abits < 8:
            if signed not in self.clip_bounds:  # one pair of bounds, shared by all clips
                kind = f"{'int' if signed else 'uint'}{self.abits}"
                self.clip_bounds[signed] = [self._const(f"{kind}_{end}", np.array(v, dtype))
                                            for end, v in (("min", qmin), ("max", qmax))]
            chain.append(self._node("Clip", [chain[-1].output[0], *self.clip_bounds[signed]],
                                    f"{name}_clip"))
        dq = self._node("DequantizeLinear", [chain[-1].output[0], scale, zero], f"{name}_dq")
        if source != name:
            dq.output[0] = name
        self.dq[name] = dq.output[0]
        return [*chain, dq]

    def _weights(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Integer weights (+ int32 bias at ``s_in * s_w``) behind DequantizeLinear for ``node``."""
        emitted = []
        w_name = node.input[1]
        w = self.arrays[w_name]
        # Output channels: axis 0 of Conv and (normalized, transB=1) Gemm weights, last of MatMul.
        axis = (0 if node.op_type != "MatMul" else w.ndim - 1) if self.per_channel else None
        if w_name not in self.weight_dq:
            encode = pow2_weights if self.pow2 else int_weights
            q, frac = encode(w, axis, self.wbits)
            frac = frac if axis is not None else frac[0]
            emitted.append(self._dq_const(w_name, q, frac, axis, np.int8, f"weight '{w_name}'"))
            self.weight_dq[w_name] = (emitted[-1].output[0], frac)
        node.input[1], w_frac = self.weight_dq[w_name]
        if len(node.input) > 2 and node.input[2]:
            frac = self._frac_of(node.input[0]) + w_frac
            emitted.append(self._bias(node, frac, w.shape[0 if axis is None else axis], axis))
            node.input[2] = emitted[-1].output[0]
        return emitted

    def _bias(self, node: onnx.NodeProto, frac, channels: int, axis: int | None) -> onnx.NodeProto:
        """int32 bias at scale ``2**-frac`` = ``s_in * s_w`` (per channel if the weights are)."""
        b_name = node.input[2]
        bias = self.arrays[b_name].astype(np.float64)
        if bias.size != channels:
            raise UnsupportedError(f"bias '{b_name}' of node '{node.name}' must hold one value per "
                                   f"output channel ({channels}); found shape {list(bias.shape)}")
        q = np.round(bias.reshape(-1) * 2.0 ** np.asarray(frac, dtype=np.float64))
        if np.abs(q).max(initial=0) > 2 ** 31 - 1:
            raise QuantizationError(f"bias '{b_name}' of node '{node.name}' overflows int32 at its "
                                    f"scale s_in*s_w = 2**-{np.max(frac)}; found |b| up to "
                                    f"{np.abs(bias).max():g}")
        return self._dq_const(b_name, q, frac, 0 if axis is not None else None, np.int32,
                              f"bias of node '{node.name}'")

    def _dq_const(self, base: str, q: np.ndarray, frac, axis: int | None, dtype,
                  what: str) -> onnx.NodeProto:
        scale = _scale(frac, what)
        inputs = [self._const(f"{base}_quantized", q.astype(dtype)),
                  self._const(f"{base}_scale", scale),
                  self._const(f"{base}_zero_point", np.zeros(scale.shape, dtype))]
        attrs = {} if axis is None else {"axis": axis}
        return self._node("DequantizeLinear", inputs, f"{base}_dq", **attrs)


def _finish(model: onnx.ModelProto) -> onnx.ModelProto:
    """Stamp IR 10 / opset 21, check the model and store inferred shapes as value_info."""
    kept = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET), *kept])
    model.ir_version = IR_VERSION
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
