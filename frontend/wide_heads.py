"""Wide heads: a quantized model's head convs give their exact int32 sums at the outputs.

A detector's box regressors span a wide range that an 8-bit output holds only coarsely
(BlazeFace's ±155 px in 1-px steps). ``wide_heads`` drops the output quantizers between the
graph outputs and the convs feeding them (through layout ops only), so those convs' exact
sums reach the outputs; the accelerator stores them as wide outputs (docs/isa.md). A wide
output is one sum at one exponent, so a head conv must have per-tensor weights:
``per_tensor_heads`` swaps them into a per-channel model (``quantize_model(...,
wide_heads=True)`` does both; docs/quantize.md).
"""

from __future__ import annotations

import onnx

from ..errors import QuantizationError

LAYOUT_OPS = ("Concat", "Reshape", "Transpose", "Flatten")


def wide_heads(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Drop the output quantizers of the head, in place: every ``QuantizeLinear →
    DequantizeLinear`` pair on the way from a graph output back through layout ops (Concat,
    Reshape, Transpose, Flatten) to the convolutions that feed them. Those convs then give
    their exact int32 sums (the accelerator's wide outputs) instead of 8-bit codes:
    BlazeFace's regressors span ±155 px, which 8 bits hold only in 1-px steps. Returns the
    head convs reached."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    drop, heads, todo = set(), [], [o.name for o in g.output]
    rename = {}  # a removed DQ's output -> the float tensor before its Q
    while todo:
        n = producer.get(todo.pop())
        if n is None:
            continue
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            drop.update((id(n), id(q)))
            rename[n.output[0]] = q.input[0]
            todo.append(q.input[0])
        elif n.op_type in LAYOUT_OPS:
            todo.extend(n.input if n.op_type == "Concat" else n.input[:1])
        elif n.op_type == "Conv":
            heads.append(n)
    outputs = {o.name for o in g.output}
    back = {v: k for k, v in rename.items() if k in outputs}  # an output named on its DQ
    keep = [n for n in g.node if id(n) not in drop]
    for n in keep:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [back.get(o, o) for o in n.output]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}  # the dropped pairs' scales and zero points go too
    unused = [t for t in g.initializer if t.name not in used]
    for t in unused:
        g.initializer.remove(t)
    return heads


def weight_inits(model: onnx.ModelProto, conv: onnx.NodeProto) -> set[str]:
    """Initializer names behind a quantized conv's weight and bias DequantizeLinear nodes."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {i for w in conv.input[1:] if w in producer for i in producer[w].input}


def per_tensor_heads(model: onnx.ModelProto, per_tensor: onnx.ModelProto, heads: list[onnx.NodeProto]) -> None:
    """Copy each head conv's weight and bias initializers from ``per_tensor`` (the same float
    model quantized per tensor, with the same activation scales) into ``model``, in place."""
    inits = {i.name: i for i in per_tensor.graph.initializer}
    for conv in heads:
        names = weight_inits(model, conv)
        twin = next((n for n in per_tensor.graph.node if n.name == conv.name), None)
        if twin is None or names != weight_inits(per_tensor, twin):
            raise QuantizationError(f"head conv {conv.name!r} is quantized differently per tensor")
        for init in model.graph.initializer:
            if init.name in names:
                init.CopyFrom(inits[init.name])
