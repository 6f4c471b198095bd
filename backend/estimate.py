"""The compiler's own reading of its cycles (L3): the shared cycle model (``ir/timeline.py``)
over every accelerator segment of a compiled ``Program``, with cycles attributed to layers
by the simulator's rule (``ir.timeline.layer_cycles``), so its numbers are the simulator's.
"""

from __future__ import annotations

import statistics

from ..ir.decode import decode_program
from ..ir.program import Program
from ..ir.timeline import layer_cycles, schedule


def segment_timelines(program: Program, costs: dict[int, int] | None = None):
    """The cycle model's ``Timeline`` of every accelerator segment, in order (``costs``: a
    what-if's replaced instruction costs, ``ir.timeline.schedule``)."""
    for seg in program.manifest["segments"]:
        if seg["kind"] == "accel":
            yield schedule(program.config, decode_program(program.instructions, seg["start"], seg["count"]),
                           what_if=costs)


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
    cu = conv_utilization(rows, cfg.macs_per_cycle, layers)
    return {"total_cycles": total, "fps": cfg.clock_mhz * 1e6 / total if total else None,
            "mac_utilization": macs / (cfg.macs_per_cycle * total) if total else 0.0,
            "conv_mean_utilization": cu["plain_mean"], "conv_weighted_utilization": cu["cycle_weighted"],
            "layers": rows}


def conv_utilization(layers: list[dict], macs_per_cycle: int, manifest_layers: list[dict]) -> dict:
    """Mean MAC utilization over conv layers: the plain mean of per-layer figures, and the
    cycle-weighted one (conv MACs / (tm*tn * conv cycles)). A layer run overlapped with the one
    before (manifest ``overlap``, docs/backend.md "Layer overlap") counts together with it in
    the plain mean: the completion-front rule gives the pair's cycles to the two in no
    meaningful split."""
    runs: list[list[dict]] = []
    for layer, entry in zip(layers, manifest_layers):
        if layer["op"] != "conv":
            continue
        if entry.get("overlap") and runs and runs[-1][-1]["name"] == entry["overlap"]:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    if not runs:
        return {"plain_mean": 0.0, "cycle_weighted": 0.0, "layers": 0, "runs": 0}
    plain = statistics.mean(sum(x["macs"] for x in run) / (macs_per_cycle * max(1, sum(x["cycles"] for x in run)))
                            for run in runs)
    convs = [x for run in runs for x in run]
    cycles = sum(layer["cycles"] for layer in convs)
    weighted = sum(layer["macs"] for layer in convs) / (macs_per_cycle * cycles) if cycles else 0.0
    return {"plain_mean": round(plain, 4), "cycle_weighted": round(weighted, 4), "layers": len(convs),
            "runs": len(runs)}


def format_estimate(est: dict, clock_mhz: float) -> str:
    """A per-layer table and the frame summary."""
    width = max([5] + [len(r["name"]) for r in est["layers"]])
    lines = [f"{'layer':<{width}}  {'op':<8} {'dataflow':<8} {'cycles':>10} {'MMAC':>8} {'util':>6}"]
    for r in est["layers"]:
        lines.append(f"{r['name']:<{width}}  {r['op']:<8} {r['dataflow'] or '-':<8} {r['cycles']:>10} "
                     f"{r['macs'] / 1e6:>8.2f} {r['utilization']:>6.2f}")
    lines.append(f"total {est['total_cycles']} cycles = {est['total_cycles'] / clock_mhz / 1e3:.3f} ms at "
                 f"{clock_mhz:g} MHz: {est['fps']:.1f} fps, MAC utilization {est['mac_utilization']:.3f}, conv layers "
                 f"mean {est['conv_mean_utilization']:.3f} (an overlapped pair as one) / MAC-weighted {est['conv_weighted_utilization']:.3f}")
    return "\n".join(lines)
