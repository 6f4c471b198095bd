"""Rewrites of a float ONNX graph before quantization (``shiftflow quantize``'s "prepare" step).

:func:`fold_float_graph` moves ``Constant`` nodes into initializers, stores constant Gemm
weights as ``[N, K]`` (``transB=1``) with alpha/beta folded in, so a Gemm's output channel is
axis 0 like a Conv's, and folds inference-mode BatchNormalization into the Conv/Gemm that
feeds it. The rest are helpers the quantizer's QDQ rewrite shares.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def fold_float_graph(graph: onnx.GraphProto) -> None:
    """Rewrite ``graph`` in place: constants as initializers, Gemms normalized, BN folded."""
    consts = _Consts(graph)
    _normalize_gemms(graph, consts)
    _fold_batchnorms(graph, consts)
    consts.store()


class _Consts:
    """The float model's initializers as numpy arrays (``Constant`` nodes moved in here)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        kept = []
        for node in graph.node:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if node.op_type == "Constant" and value is not None:
                self.arrays[node.output[0]] = numpy_helper.to_array(value)
            else:
                kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def used_once(self, name: str) -> bool:
        """Whether exactly one node input reads ``name`` (so it may be rewritten in place)."""
        return sum(list(n.input).count(name) for n in self.graph.node) == 1

    def store(self) -> None:
        del self.graph.initializer[:]
        self.graph.initializer.extend(numpy_helper.from_array(a, name)
                                      for name, a in self.arrays.items())
        drop_unused_initializers(self.graph)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node reads (subgraphs of If/Loop included) and no output names."""
    def reads(g: onnx.GraphProto):
        for node in g.node:
            yield from node.input
            for a in node.attribute:
                for sub in (*([a.g] if a.HasField("g") else []), *a.graphs):
                    yield from reads(sub)
    used = set(reads(graph)) | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def attr(node: onnx.NodeProto, name: str, default):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _normalize_gemms(graph: onnx.GraphProto, consts: _Consts) -> None:
    """Gemm with constant B: store B as [N, K] (``transB=1``) and fold alpha/beta into B/C,
    so that the weight's output channel is axis 0 like a Conv's."""
    for node in graph.node:
        if (node.op_type != "Gemm" or plain_gemm(node) or node.input[1] not in consts
                or not consts.used_once(node.input[1])):
            continue
        has_c = len(node.input) > 2 and node.input[2] != ""
        if has_c and (node.input[2] not in consts or not consts.used_once(node.input[2])):
            continue
        b = consts.arrays[node.input[1]].astype(np.float32)
        if not attr(node, "transB", 0):
            b = b.T
        alpha, beta = (np.float32(attr(node, a, 1.0)) for a in ("alpha", "beta"))
        consts.arrays[node.input[1]] = np.ascontiguousarray(b * alpha)
        if has_c:
            consts.arrays[node.input[2]] = consts.arrays[node.input[2]] * beta
        for name, value in (("transB", 1), ("alpha", 1.0), ("beta", 1.0)):
            _set_attr(node, name, value)


def _fold_batchnorms(graph: onnx.GraphProto, consts: _Consts) -> None:
    """Fold inference-mode BatchNormalization into the Conv (or normalized Gemm) feeding it.

    BN scales each output channel: ``W' = W * g / sqrt(v + eps)`` along axis 0 and
    ``b' = (b - mean) * g / sqrt(v + eps) + beta``. Only when the producer's output feeds
    nothing else and all parameters are constants; any other BN stays an ordinary op.
    """
    producers = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    folded = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        prod = producers.get(bn.input[0])
        params = bn.input[1:5]
        if (prod is None or not (prod.op_type == "Conv" or plain_gemm(prod))
                or bn.input[0] in outputs or not all(p in consts for p in params)
                or prod.input[1] not in consts or not consts.used_once(bn.input[0])
                or not consts.used_once(prod.input[1])):
            continue
        gamma, beta, mean, var = (consts.arrays[p].astype(np.float64) for p in params)
        k = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))
        w = consts.arrays[prod.input[1]]
        consts.arrays[prod.input[1]] = (w * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        bias_name = prod.input[2] if len(prod.input) > 2 and prod.input[2] else None
        bias = consts.arrays[bias_name].astype(np.float64) if bias_name else np.zeros(w.shape[0])
        if bias_name is None or not consts.used_once(bias_name):
            bias_name = f"{prod.input[1]}_bias_bnfold"
            while bias_name in consts:
                bias_name += "_"
        consts.arrays[bias_name] = ((bias - mean) * k + beta).astype(np.float32)
        del prod.input[2:]
        prod.input.append(bias_name)
        prod.output[0] = bn.output[0]
        folded.add(id(bn))
    kept = [n for n in graph.node if id(n) not in folded]
    del graph.node[:]
    graph.node.extend(kept)


def plain_gemm(node: onnx.NodeProto) -> bool:
    """A Gemm computing ``A @ B.T + C``: weights [N, K] with output channels on axis 0."""
    return (node.op_type == "Gemm" and not attr(node, "transA", 0) and attr(node, "transB", 0) == 1
            and attr(node, "alpha", 1.0) == 1 and attr(node, "beta", 1.0) == 1)
