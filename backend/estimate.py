"""The compiler's own reading of its cycles (L3): the shared cycle model (``ir/timeline.py``)
over every accelerator segment of a compiled ``Program``, with cycles attributed to layers
by the simulator's rule (``ir.timeline.layer_cycles``), so its numbers are the simulator's.
"""

from __future__ import annotations

from ..ir.decode import decode_program
from ..ir.program import Program
from ..ir.timeline import layer_cycles, schedule


def segment_timelines(program: Program):
    """The cycle model's ``Timeline`` of every accelerator segment, in order."""
    for seg in program.manifest["segments"]:
        if seg["kind"] == "accel":
            yield schedule(program.config, decode_program(program.instructions, seg["start"], seg["count"]))


def estimate_program(program: Program) -> dict:
    """Total cycles, fps, MAC utilization and per-layer rows (docs/simulator.md attribution)."""
    cfg = program.config
    layers = program.manifest["layers"]
    rows = [{"name": x["name"], "op": x["op"], "dataflow": x["dataflow"], "macs": x["macs"], "cycles": 0}
            for x in layers]
    total = 0
    for tl in segment_timelines(program):
        total += tl.cycles
        for i, c in layer_cycles(layers, tl).items():
            rows[i]["cycles"] += c
    macs = sum(r["macs"] for r in rows)
    for r in rows:
        r["utilization"] = r["macs"] / (cfg.macs_per_cycle * r["cycles"]) if r["cycles"] else 0.0
    convs = [r for r in rows if r["op"] == "conv"]
    conv_cycles = sum(r["cycles"] for r in convs)
    return {"total_cycles": total, "fps": cfg.clock_mhz * 1e6 / total if total else None,
            "mac_utilization": macs / (cfg.macs_per_cycle * total) if total else 0.0,
            "conv_mean_utilization": sum(r["utilization"] for r in convs) / len(convs) if convs else 0.0,
            "conv_weighted_utilization": sum(r["macs"] for r in convs) / (cfg.macs_per_cycle * conv_cycles)
            if conv_cycles else 0.0,
            "layers": rows}


def format_estimate(est: dict, clock_mhz: float) -> str:
    """A per-layer table and the frame summary."""
    width = max([5] + [len(r["name"]) for r in est["layers"]])
    lines = [f"{'layer':<{width}}  {'op':<8} {'dataflow':<8} {'cycles':>10} {'MMAC':>8} {'util':>6}"]
    for r in est["layers"]:
        lines.append(f"{r['name']:<{width}}  {r['op']:<8} {r['dataflow'] or '-':<8} {r['cycles']:>10} "
                     f"{r['macs'] / 1e6:>8.2f} {r['utilization']:>6.2f}")
    lines.append(f"total {est['total_cycles']} cycles = {est['total_cycles'] / clock_mhz / 1e3:.3f} ms at "
                 f"{clock_mhz:g} MHz: {est['fps']:.1f} fps, MAC utilization {est['mac_utilization']:.3f}, conv layers "
                 f"mean {est['conv_mean_utilization']:.3f} / MAC-weighted {est['conv_weighted_utilization']:.3f}")
    return "\n".join(lines)
