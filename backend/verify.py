"""The back end's plan verifier: ``verify_plan(plan, after=PASS)`` checks the invariants that
hold after each pass and raises ``VerifyError`` naming the pass."""

from __future__ import annotations

from ..errors import VerifyError
from ..ir.cost import ceil_div
from .plan import HostOp, Layer, Plan
from .tiling import ring_words, tile_words


def verify_plan(plan: Plan, after: str) -> Plan:
    """Check the plan's invariants for the passes run so far; raise ``VerifyError`` naming ``after``."""

    def fail(msg: str):
        raise VerifyError(f"back-end plan invalid after {after}: {msg}")

    cfg = plan.config
    seen: set[str] = set(plan.graph.inputs) | set(plan.graph.constants)
    names: set[str] = set()
    # A concat stored in place by its producers has no layer: its output exists once the
    # last of its inputs is written.
    in_place = [plan.graph.op(name) for name in plan.fused if plan.graph.op(name).kind == "concat"]
    for item in plan.order:
        seen.update(o for op in in_place if seen.issuperset(op.inputs) for o in op.outputs)
        if item.name in names:
            fail(f"{item.name!r} scheduled twice")
        names.add(item.name)
        if isinstance(item, HostOp):
            op = plan.graph.op(item.name)
            missing = [t for t in op.inputs if t not in seen]
            if missing:
                fail(f"host op {item.name!r} reads {missing} before they are produced")
            seen.update(op.outputs)
            continue
        layer = item
        for t in layer.inputs:
            if t not in plan.tensors:
                fail(f"layer {layer.name!r} reads {t!r}, which has no DRAM placement")
            if t not in seen:
                fail(f"layer {layer.name!r} reads {t!r} before it is produced")
        if layer.output not in plan.tensors:
            fail(f"layer {layer.name!r} writes {layer.output!r}, which has no DRAM placement")
        seen.add(layer.output)
        seen.update(plan.graph.op(layer.name).outputs if layer.kind != "copy" else ())
        seen.update(o for f in layer.fused for o in plan.graph.op(f).outputs)
        if layer.is_conv and layer.dataflow not in (None, "channel", "pixel"):
            fail(f"layer {layer.name!r} has dataflow {layer.dataflow!r}")
        if layer.tiling is not None:
            _verify_tiling(layer, plan, fail)
    for t in plan.tensors.values():
        if t.blocks < ceil_div(t.shape[1], cfg.tn):
            fail(f"tensor {t.name!r} has {t.blocks} blocks for {t.shape[1]} channels")
    if plan.dram:
        _verify_dram(plan, fail)
    return plan


def _verify_tiling(layer: Layer, plan: Plan, fail) -> None:
    cfg = plan.config
    t = layer.tiling
    if t.sc < 1 or t.br < 1 or (layer.pool and (t.sc % layer.pool or t.br % layer.pool)):
        fail(f"layer {layer.name!r}: tile {t.br}x{t.sc} does not suit pool {layer.pool}")
    words = ring_words(layer, plan)
    if words > cfg.line_buffer_words:
        fail(f"layer {layer.name!r}: rings need {words} line-buffer words, the target has {cfg.line_buffer_words}")
    if tile_words(layer, plan) * (t.obuf_bufs // 2) > cfg.output_half_words:
        fail(f"layer {layer.name!r}: output tiles overflow an output-buffer half")
    covered = sorted(b for g in t.groups for b in g)
    if covered != list(range(len(covered))) or not covered:
        fail(f"layer {layer.name!r}: output blocks {covered} are not each computed exactly once")


def _verify_dram(plan: Plan, fail) -> None:
    d = plan.dram
    const_end = d["const_base"] + d["const_size"]
    spans = []
    for t in plan.tensors.values():
        if t.addr < 0:
            fail(f"tensor {t.name!r} has no DRAM address")
        end = t.addr + (t.blocks * t.planes - 1) * t.blk_stride + t.shape[2] * t.row_stride
        if end > d["size"] or t.addr < const_end and end > d["const_base"]:
            fail(f"tensor {t.name!r} at [{t.addr}, {end}) leaves the activation area")
        spans.append((t, t.addr, end))
    live = d.get("live", {})
    for i, (a, a0, a1) in enumerate(spans):
        for b, b0, b1 in spans[i + 1:]:
            if a.buffer == b.buffer or a1 <= b0 or b1 <= a0:
                continue
            la, lb = live.get(a.buffer), live.get(b.buffer)
            if la is None or lb is None or not (la[1] < lb[0] or lb[1] < la[0]):
                fail(f"tensors {a.name!r} and {b.name!r} overlap in DRAM while both live")
