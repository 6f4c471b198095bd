"""``shiftflow prune``: SIMD-structured (1×N block) magnitude pruning of a conv network.

The block is what the PE array skips as a unit (docs/sparsity.md): for a conv with weights
``W[M, C/g, kh, kw]`` on a target with ``tm`` output channels in parallel, block
``(b, c, y, x)`` is the ``tm`` weights ``W[b*tm:(b+1)*tm, c, y, x]`` — one pixel-parallel
step (one input channel at one kernel tap, every output channel of the block). A layer at
density ``d`` keeps the ``round(d * blocks)`` blocks of largest L1 norm (of the real,
dequantized weights; ties: the lower block index is kept) and zeroes the rest. For
comparison the same magnitude rule also prunes ``unstructured`` (single weights) and
``filter`` (whole output channels).

Models: a float model is pruned, then quantized as ``shiftflow quantize`` does (zeros stay
zero under any scale, and BatchNormalization folding scales whole output channels); a QDQ /
QCDQ model is pruned on its own grid (its int8 weight codes set to 0; scales untouched;
QCDQ's Clip between codes and DequantizeLinear is looked through); a
QONNX model is rewritten to QDQ first. Every conv is pruned except the stem (a conv whose
input comes from a graph input through no other conv: a few input channels, few steps, the
most sensitive layer) and those named in ``dense``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import UsageError

PATTERNS = ("block", "unstructured", "filter")


def _keep(scores: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask of the ``round(density * n)`` (at least 1) largest of ``scores`` (flat
    order breaks ties: the lower index wins)."""
    flat = scores.reshape(-1)
    k = max(1, round(density * flat.size))
    order = np.lexsort((np.arange(flat.size), -flat))  # by score descending, then index
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)


def _blocks(a: np.ndarray, tm: int) -> np.ndarray:
    """``a`` (M, ...) as (blocks, tm, ...), the last block padded with zeros past M."""
    padded = np.zeros((-(-a.shape[0] // tm) * tm,) + a.shape[1:], a.dtype)
    padded[:a.shape[0]] = a
    return padded.reshape((-1, tm) + a.shape[1:])


def block_mask(w: np.ndarray, tm: int, density: float) -> np.ndarray:
    """The mask (``w``'s shape) keeping the ``density`` share of 1×``tm`` blocks of ``w``
    ``(M, C, kh, kw)`` by L1 norm; the last block of a layer whose M is not a multiple of
    ``tm`` has fewer rows."""
    m = w.shape[0]
    scores = _blocks(np.abs(w).astype(np.float64), tm).sum(axis=1)
    keep = _keep(scores, density)
    return np.repeat(keep, tm, axis=0)[:m]


def pattern_mask(w: np.ndarray, pattern: str, tm: int, density: float) -> np.ndarray:
    """The mask of ``pattern`` (one of ``PATTERNS``) at ``density`` for conv weights ``w``."""
    if pattern == "block":
        return block_mask(w, tm, density)
    if pattern == "unstructured":
        return _keep(np.abs(w), density)
    if pattern == "filter":
        keep = _keep(np.abs(w).reshape(w.shape[0], -1).sum(axis=1), density)
        return np.broadcast_to(keep.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape).copy()
    raise UsageError(f"--pattern must be one of {', '.join(PATTERNS)}, found {pattern!r}")


@dataclass(frozen=True)
class PrunedLayer:
    """One conv's pruning: blocks of 1×tm, how many kept, and the weights kept."""
    name: str
    blocks: int
    kept_blocks: int
    weights: int
    kept_weights: int

    def to_json(self) -> dict:
        return {"name": self.name, "blocks": self.blocks, "kept_blocks": self.kept_blocks,
                "block_density": self.kept_blocks / self.blocks, "weights": self.weights,
                "kept_weights": self.kept_weights}


def _weight_sources(model: onnx.ModelProto):
    """Per conv node: (node, initializer holding its weights, the dequantization scale or
    None for float weights, whether it is a stem conv: one whose input comes from a graph
    input through no other conv/matmul). Quantized weights are ``DequantizeLinear(int8
    init, scale)``."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    graph_inputs = {i.name for i in g.input} - set(inits)
    seen: dict[str, bool] = {}

    def from_input(t: str) -> bool:  # reaches a graph input through no weighted op
        if t in graph_inputs:
            return True
        if t in seen:
            return seen[t]
        seen[t] = False  # cycles cannot happen in ONNX; this only guards the recursion
        n = producer.get(t)
        seen[t] = n is not None and n.op_type not in ("Conv", "Gemm", "MatMul") and any(
            from_input(i) for i in n.input if i and i not in inits)
        return seen[t]

    out = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 2:
            continue
        w = n.input[1]
        if w in inits:
            out.append((n, inits[w], None, from_input(n.input[0])))
            continue
        dq = producer.get(w)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
            continue
        codes = dq.input[0]
        while codes not in inits and producer.get(codes) is not None and producer[codes].op_type == "Clip":
            codes = producer[codes].input[0]  # QCDQ: int8 codes → Clip (the narrow range) → DQ
        if codes in inits:
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
            out.append((n, inits[codes], scale, from_input(n.input[0])))
    return out


def _real(codes: np.ndarray, scale) -> np.ndarray:
    """Real weights of codes and their dequantization scale (None: float weights)."""
    real = codes.astype(np.float64)
    if scale is not None:  # magnitude of the real weight: per-channel scales differ
        real = real * (scale.reshape(-1, 1, 1, 1) if scale.size > 1 else scale.reshape(()))
    return real


def real_weights(model: onnx.ModelProto, dense: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The real 4-D weights of every conv ``prune_weights`` would prune, by node name (a
    weight tensor shared by several convs under its first one)."""
    out, done = {}, set()
    for node, init, scale, stem in _weight_sources(model):
        if stem or node.name in dense or init.name in done:
            continue
        done.add(init.name)
        codes = numpy_helper.to_array(init)
        if codes.ndim == 4:
            out[node.name] = _real(codes, scale)
    return out


def prune_weights(model: onnx.ModelProto, density: float, tm: int, pattern: str = "block",
                  dense: tuple[str, ...] = (), densities: dict[str, float] | None = None) -> list[PrunedLayer]:
    """Prune ``model``'s conv weights in place (module docstring) and report each conv;
    ``densities`` overrides ``density`` per conv (node name)."""
    for d in (density, *(densities or {}).values()):
        if not 0.0 < d <= 1.0:
            raise UsageError(f"--density must be in (0, 1], found {d}")
    found = set()
    report = []
    done: set[str] = set()
    for node, init, scale, stem in _weight_sources(model):
        found.add(node.name)
        if stem or node.name in dense or init.name in done:  # a shared weight tensor is pruned once
            continue
        done.add(init.name)
        codes = numpy_helper.to_array(init)
        if codes.ndim != 4:
            continue
        mask = pattern_mask(_real(codes, scale), pattern, tm, (densities or {}).get(node.name, density))
        init.CopyFrom(numpy_helper.from_array(np.where(mask, codes, np.zeros_like(codes)), init.name))
        steps = _blocks(mask, tm).any(axis=1)  # a block is kept when any of its weights is
        report.append(PrunedLayer(node.name, steps.size, int(np.count_nonzero(steps)), int(codes.size),
                                  int(np.count_nonzero(mask))))
    missing = sorted(set(dense) - found)
    if missing:
        raise UsageError(f"--dense names no conv: {', '.join(missing)} (convs: {', '.join(sorted(found))})")
    if not report:
        raise UsageError("the model has no conv with constant 4-D weights to prune (the stem is kept dense)")
    return report


def prune_model(path: str | os.PathLike, density: float, target: str = "tiny", pattern: str = "block",
                dense: tuple[str, ...] = (), calib=None, calib_random: int | None = None,
                **quantize_args) -> tuple[onnx.ModelProto, list[PrunedLayer]]:
    """The QDQ model of ``path`` pruned at ``density`` in ``target``'s blocks, and the
    per-conv report. A float model is quantized after pruning (``calib``/``calib_random``
    and ``quantize_args`` as ``quantize_model`` takes them); a quantized one needs none."""
    from ..ir.config import load_target
    from .qonnx_to_qdq import has_qonnx_nodes, qonnx_to_qdq

    tm = load_target(target).tm
    try:
        model = onnx.load(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others for a bad file
        raise UsageError(f"cannot read {os.fspath(path)!r} as ONNX: {exc}") from None
    if has_qonnx_nodes(model):
        model = qonnx_to_qdq(model)
    quantized = any(n.op_type in ("DequantizeLinear", "QuantizeLinear") for n in model.graph.node)
    if quantized:
        if calib is not None or calib_random is not None:
            raise UsageError("the model is already quantized: it is pruned on its own grid, give no "
                             "--calib/--calib-random")
        return model, prune_weights(model, density, tm, pattern, dense)
    from .float_model import load_float_model
    from .quantize import quantize_model

    model = load_float_model(model)  # BatchNormalization folded first: its scale is per channel anyway
    report = prune_weights(model, density, tm, pattern, dense)
    return quantize_model(model, calib=calib, calib_random=calib_random, **quantize_args), report

