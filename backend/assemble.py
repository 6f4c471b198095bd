"""Passes ``schedule`` and ``encode`` over the whole plan, and the manifest.

``schedule_plan`` cuts the execution order into segments (runs of accelerator layers between
host ops), generates each segment's steps, orders them, assigns tokens and ends the segment
with FINISH. ``manifest`` writes what the simulator and the host runtime read
(``ir/program.py``; keys described in docs/backend.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..ir.isa import Opcode
from ..ir.ops import conv_macs
from .emit import Emitter, Ins
from .encode import Encoder, encode_all
from .overlap import interleave
from .plan import HostOp, Layer, Plan
from .schedule import Tracker, assign_tokens, program_order, step_needs
from .sparse import summary as sparse_summary


@dataclass
class Scheduled:
    """Instructions of all segments (global program order) and where each piece lives."""

    instructions: list[Ins] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    code: bytes = b""

    def summary(self) -> str:
        return f"{len(self.instructions)} instructions {_counts(self.instructions)}, {len(self.segments)} segments"


def _runs(plan: Plan):
    """Consecutive runs of host ops / layers in execution order."""
    run: list = []
    for item in plan.order:
        if run and isinstance(item, HostOp) != isinstance(run[-1], HostOp):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def schedule_plan(plan: Plan) -> Plan:
    """The schedule pass."""
    cfg = plan.config
    sched = Scheduled()
    grids = {t.name: (t.blocks, t.shape[2], t.shape[3]) for t in plan.tensors.values() if t.buffer == t.name}
    overlaps = plan.dram["overlaps"]
    emitter = Emitter(plan)
    for run in _runs(plan):
        if isinstance(run[0], HostOp):
            sched.segments.append({"kind": "host", "ops": [h.name for h in run]})
            continue
        steps = []
        for li, layer in enumerate(run):
            steps += emitter.layer_steps(layer, li)
        if plan.overlap:
            steps = interleave(steps, step_needs(steps, grids),
                               {li for li, layer in enumerate(run) if "overlap" in layer.params})
        ordered = program_order(steps, step_needs(steps, grids))
        code = assign_tokens(ordered, Tracker(cfg, grids, overlaps))
        start = len(sched.instructions)
        seg = len(sched.segments)
        sched.segments.append({"kind": "accel", "start": start, "count": len(code)})
        ranges: dict[int, list[int]] = {}
        tiles: dict[int, int] = {}
        for k, ins in enumerate(code[:-1]):
            r = ranges.setdefault(ins.layer, [start + k, start + k])
            r[1] = start + k
            if ins.opcode in (Opcode.CONV, Opcode.VEC, Opcode.SPCONV):
                tiles[ins.layer] = tiles.get(ins.layer, 0) + 1
        for li, layer in enumerate(run):
            first, last = ranges.get(li, [start, start - 1])
            sched.layers.append(_layer_entry(plan, layer, first, last, seg, tiles.get(li, 0)))
        sched.instructions += code
    return replace(plan, program=sched)


def _layer_entry(plan: Plan, layer: Layer, first: int, last: int, seg: int, tiles: int) -> dict:
    g = plan.graph
    macs = 0
    if layer.is_conv:
        op = layer.op
        # the model's MACs: a space-to-depth stem's zero taps (backend/stem.py) are not counted
        wshape = op.attrs.get("model_weight_shape", g.types[op.inputs[1]].shape)
        macs = conv_macs(g.types[op.inputs[0]].shape, wshape, g.types[op.outputs[0]].shape)
    return {"name": layer.name, "op": "concat" if layer.kind == "copy" else layer.kind, "dataflow": layer.dataflow,
            "macs": macs, "first": first, "last": last, "segment": seg, "tiles": tiles, "note": layer.note,
            "fused": list(layer.fused), "overlap": layer.params.get("overlap", ""),
            "chunks": [c1 - c0 for c0, c1 in layer.tiling.chunks],  # a split reduction's channels per chunk
            **({"sparse": sparse} if (sparse := sparse_summary(plan, layer)) else {})}


def encode_plan(plan: Plan, check: bool = True) -> Plan:
    """The encode pass; with ``check``, the first instruction of every opcode is compared
    against ``ir/isa.encode`` itself."""
    enc = Encoder()
    instrs = plan.program.instructions
    if check:
        seen = set()
        for ins in instrs:
            if ins.opcode not in seen:
                seen.add(ins.opcode)
                enc.check(ins)
    plan.program.code = encode_all(instrs, enc)
    return plan


def manifest(plan: Plan, passes: list[str]) -> dict:
    """The manifest of a compiled plan (see docs/backend.md)."""
    g = plan.graph
    tensors = {t.name: {"addr": t.addr, "shape": list(t.shape), "bits": t.bits, "signed": t.signed, "frac": t.frac,
                        "blocks": t.blocks, "row_stride": t.row_stride, "blk_stride": t.blk_stride,
                        **({"planes": t.planes} if t.planes > 1 else {})}
               for t in plan.tensors.values()}
    d = plan.dram
    return {
        "dram": {"size": d["size"], "const_base": d["const_base"], "const_size": d["const_size"]},
        "tensors": tensors,
        "inputs": [{"name": n, "shape": list(g.types[n].shape)} for n in g.inputs],
        "outputs": [{"name": n, "shape": list(g.types[n].shape), "type": str(g.types[n])} for n in g.outputs],
        "segments": plan.program.segments,
        "layers": plan.program.layers,
        "host_reasons": dict(plan.host_reasons),
        "fused": dict(plan.fused),
        "passes": passes,
        "dataflow": plan.dataflow_request,
        "instruction_counts": _counts(plan.program.instructions),
        "weight_groups": {name: [list(x) for x in b.get("wgt", [])] for name, b in plan.buffers.items()
                          if b.get("wgt")},
    }


def _counts(instrs: list[Ins]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ins in instrs:
        out[ins.opcode.name] = out.get(ins.opcode.name, 0) + 1
    return out
