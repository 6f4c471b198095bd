"""Per-layer statistics of a simulated run, and the table that shows them.

Cycles are attributed by the completion-front rule (docs/simulator.md, "Per-layer cycles";
``ir.timeline.layer_cycles``), so the layers of a segment add up to its cycle count exactly,
and overlap (a layer's loads hidden under the previous layer's compute) is credited to the
layer whose completion it delays. Stall cycles and DRAM bytes are summed over the
instructions a layer owns: those in its ``first..last`` range, and where ranges overlap,
those of the containing layer that starts last.
"""

from __future__ import annotations

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.timeline import Timeline, layer_cycles
from .cache import TIMELINE_COLUMNS
from .machine import dma_bytes


def layer_rows(cfg: AcceleratorConfig, layers: list[dict], timelines: list[Timeline]) -> list[dict]:
    """One row per manifest layer (manifest order), plus an ``(unattributed)`` row for any
    segment without layers; ``sum(row["cycles"]) == sum(t.cycles for t in timelines)``."""
    rows = {i: _row(layer) for i, layer in enumerate(layers)}
    extra = []
    for tl in timelines:
        first, last = tl.instrs[0].index, tl.instrs[-1].index
        cycles = layer_cycles(layers, tl)
        if not cycles:
            extra.append(dict(_row({"name": "(unattributed)", "op": "-", "dataflow": "-", "macs": 0}),
                              cycles=tl.cycles, stall_cycles=sum(tl.stall),
                              dram_bytes=sum(dma_bytes(cfg, ins) for ins in tl.instrs)))
            continue
        for i, c in cycles.items():
            rows[i]["cycles"] += c
        # Ranges may overlap (a layer's weight loads are hoisted into the previous layer's
        # range): an instruction belongs to the containing layer that starts last.
        owner = np.full(len(tl.instrs), len(layers))  # len(layers): no layer
        for i in sorted(cycles, key=lambda i: layers[i]["first"]):
            lo, hi = layers[i]["first"] - first, min(layers[i]["last"], last) - first
            owner[lo:hi + 1] = i
        stalls, moved = _per_instruction(cfg, tl)
        for key, values in (("stall_cycles", stalls), ("dram_bytes", moved)):
            sums = np.bincount(owner, values, minlength=len(layers) + 1)  # exact: integers below 2**53
            for i in cycles:
                rows[i][key] += int(sums[i])
    out = [rows[i] for i in range(len(layers))] + extra
    for row in out:
        row["utilization"] = row["macs"] / (cfg.macs_per_cycle * row["cycles"]) if row["cycles"] else 0.0
    return out


def _per_instruction(cfg: AcceleratorConfig, tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """Stall cycles and DRAM bytes of each instruction of ``tl`` (cached: a program run again
    reuses its timelines)."""
    known = TIMELINE_COLUMNS.get(id(tl))
    if known is None or known[0] is not tl:
        known = TIMELINE_COLUMNS.put(id(tl), (tl, np.array(tl.stall, np.float64),
                                              np.array([dma_bytes(cfg, ins) for ins in tl.instrs], np.float64)))
    return known[1], known[2]


def _row(layer: dict) -> dict:
    return {"name": layer["name"], "op": layer.get("op") or "-", "dataflow": layer.get("dataflow") or "-",
            "cycles": 0, "macs": int(layer.get("macs", 0)), "utilization": 0.0, "dram_bytes": 0,
            "stall_cycles": 0}


def format_layers(rows: list[dict], total_cycles: int, clock_mhz: float) -> str:
    """A fixed-width text table of ``layer_rows`` with a total line."""
    head = ("layer", "op", "dataflow", "cycles", "%", "MMAC", "util", "DRAM KiB", "stall")
    width = max([len(head[0])] + [len(r["name"]) for r in rows])
    fmt = f"{{:<{width}}}  {{:<8}} {{:<8}} {{:>10}} {{:>6}} {{:>8}} {{:>6}} {{:>9}} {{:>10}}"
    lines = [fmt.format(*head)]
    for r in rows:
        share = 100.0 * r["cycles"] / total_cycles if total_cycles else 0.0
        lines.append(fmt.format(r["name"], r["op"], r["dataflow"], r["cycles"], f"{share:.1f}",
                                f"{r['macs'] / 1e6:.2f}", f"{r['utilization']:.2f}", f"{r['dram_bytes'] / 1024:.1f}",
                                r["stall_cycles"]))
    macs = sum(r["macs"] for r in rows)
    ms = total_cycles / (clock_mhz * 1e3) if clock_mhz else 0.0
    lines.append(fmt.format("total", "", "", total_cycles, "100.0", f"{macs / 1e6:.2f}", "",
                            f"{sum(r['dram_bytes'] for r in rows) / 1024:.1f}",
                            sum(r["stall_cycles"] for r in rows)))
    lines.append(f"{total_cycles} cycles = {ms:.3f} ms at the nominal {clock_mhz:g} MHz "
                 "(the target's clock, not a measured one)")
    return "\n".join(lines)
