"""What ``shiftflow inspect`` reports about an imported graph: layers, MACs, weights, CPU ops,
and — given the back end's placement — what runs on the accelerator and what on the host."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..ir.graph import Graph
from ..ir.ops import conv_macs
from . import ranges


def pow2_code_bits(w) -> int:
    """Bits of the pow2 encoding (sign + exponent code with one code for zero) of ``w``."""
    nz = abs(w[w != 0]).astype("int64")
    if not nz.size:
        return 2
    exps = [int(v).bit_length() - 1 for v in (nz.min(), nz.max())]
    levels = exps[1] - exps[0] + 1
    return 1 + levels.bit_length()


def summarize(graph: Graph, host_reasons: Mapping[str, str | None], target: str) -> dict:
    """A JSON-ready summary: per-layer rows, totals, what runs where, the CPU ops and why.

    ``host_reasons`` is the back end's placement for ``target`` (op name → why the op runs on
    the host, or None when the accelerator runs it: ``backend.partition.host_reasons``), so
    the summary says what runs where exactly as ``compile`` decides (the front end does not
    import the back end; the caller passes its decision in).
    """
    layers, cpu_ops, host_ops, kinds = [], [], [], {}
    macs = {"accelerator": 0, "host": 0}
    weight_bytes = 0
    for op in graph.ops:
        on = "host" if host_reasons.get(op.name) else "accelerator"
        if op.kind == "conv":
            x, w = graph.types[op.inputs[0]], graph.types[op.inputs[1]]
            y = graph.types[op.outputs[0]]
            op_macs = conv_macs(x.shape, w.shape, y.shape)
            macs[on] += op_macs
            wbits = pow2_code_bits(graph.constants[op.inputs[1]]) if op.attrs.get("wenc") == "pow2" else w.bits
            wb = math.ceil(w.size * wbits / 8)
            bias = graph.constants.get(op.inputs[2]) if len(op.inputs) > 2 else None
            if bias is not None:
                wb += 4 * bias.size
            weight_bytes += wb
            acc = ranges.accumulator_bits(x, graph.constants[op.inputs[1]], bias)
            depthwise = w.shape[1] == 1 and op.attrs["groups"] == x.shape[1] and x.shape[1] > 1
            layers.append({
                "name": op.name, "kernel": list(w.shape[2:]), "stride": list(op.attrs["strides"]),
                "groups": op.attrs["groups"], "depthwise": depthwise, "in": str(x), "weights": str(w), "out": str(y),
                "act": op.attrs.get("act", "none"), "wenc": op.attrs.get("wenc", "int"), "macs": op_macs,
                "weight_bytes": wb, "acc_bits": acc, "on": on,
                "host_reason": host_reasons.get(op.name),
            })
        if op.kind == "cpu":
            cpu_ops.append({"name": op.name, "onnx_op": op.attrs.get("onnx_op", "?"), "reason": op.attrs["reason"]})
        elif on == "host":
            host_ops.append({"name": op.name, "kind": op.kind, "reason": host_reasons[op.name],
                             "macs": op_macs if op.kind == "conv" else 0})
        elif op.kind != "conv":
            kinds[op.kind] = kinds.get(op.kind, 0) + 1
    return {
        "name": graph.name, "target": target,
        "inputs": {n: str(graph.types[n]) for n in graph.inputs},
        "outputs": {n: str(graph.types[n]) for n in graph.outputs},
        "layers": layers, "accelerator_ops": kinds, "host_ops": host_ops, "cpu_ops": cpu_ops,
        "total_macs": macs["accelerator"] + macs["host"], "accelerator_macs": macs["accelerator"],
        "host_macs": macs["host"], "weight_bytes": weight_bytes, "n_ops": len(graph.ops),
    }


def format_summary(s: dict) -> str:
    """Human-readable form of ``summarize``'s result."""
    lines = [f"model {s['name']}: {len(s['layers'])} conv layers, {s['total_macs'] / 1e6:.2f} MMAC, "
             f"{s['weight_bytes'] / 1024:.1f} KiB weights, {len(s['cpu_ops'])} CPU ops, {s['n_ops']} IR ops"]
    lines.append(f"  on target {s['target']}: {s['accelerator_macs'] / 1e6:.2f} MMAC on the accelerator, "
                 f"{s['host_macs'] / 1e6:.2f} MMAC on the host")
    for n, t in s["inputs"].items():
        lines.append(f"  input  {n}: {t}")
    for n, t in s["outputs"].items():
        lines.append(f"  output {n}: {t}")
    if s["layers"]:
        lines.append(f"  {'layer':<28} {'kernel':>6} {'s':>2} {'g':>4} {'act':>5} {'wenc':>4} {'acc':>4} "
                     f"{'MMAC':>9}  {'on':<5} out")
        for r in s["layers"]:
            k = "x".join(map(str, r["kernel"]))
            lines.append(f"  {r['name'][:28]:<28} {k:>6} {r['stride'][0]:>2} {r['groups']:>4} {r['act']:>5} "
                         f"{r['wenc']:>4} {r['acc_bits']:>4} {r['macs'] / 1e6:>9.3f}  {r['on'][:5]:<5} "
                         f"{r['out']}")
    if s["accelerator_ops"]:
        lines.append("  other accelerator ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(s["accelerator_ops"].items())))
    if s["host_ops"]:
        lines.append("  host ops (the accelerator cannot run them):")
        for r in s["host_ops"]:
            macs = f" ({r['macs']:,} MACs)" if r["macs"] else ""
            lines.append(f"    {r['name']}: {r['kind']}{macs}: {r['reason']}")
    if s["cpu_ops"]:
        lines.append("  CPU ops (run by onnxruntime):")
        for c in s["cpu_ops"]:
            lines.append(f"    {c['name']}: {c['reason']}")
    else:
        lines.append("  CPU ops: none")
    return "\n".join(lines)
