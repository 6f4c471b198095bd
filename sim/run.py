"""Run a whole compiled program: host ops and accelerator segments, in manifest order.

``simulate`` is the entry point (``shiftflow simulate``); ``check_simulation`` in
``sim/check.py`` adds the verification ladder on top of it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..ir.decode import decode_program
from ..ir.feeds import graph_feeds
from ..ir.ops import conv_macs
from ..ir.program import Program, ProgramError
from ..ir.timeline import schedule
from .accelerator import Accelerator, SimAccelerator
from .host import Host, read_tensor
from .report import format_layers, layer_rows


@dataclass
class SimResult:
    """Outputs (integer codes for int tensors, float32 otherwise) and the cycle report.
    ``bit_exact`` is ``None`` until a check (``check_simulation``) fills it."""

    outputs: dict[str, np.ndarray]
    total_cycles: int
    clock_mhz: float
    mac_utilization: float
    dram_bytes: int
    layers: list[dict]
    counters: dict
    seconds: float
    host_ops: int = 0
    host_macs: int = 0
    bit_exact: bool | None = None
    checks: dict = field(default_factory=dict)

    @property
    def fps(self) -> float | None:
        """Frames per second of the accelerator alone: the ``host_ops`` (``host_macs`` of
        them conv MACs) take no cycles here."""
        return self.clock_mhz * 1e6 / self.total_cycles if self.total_cycles else None

    def to_json(self) -> dict:
        return {"bit_exact": self.bit_exact, "total_cycles": self.total_cycles, "clock_mhz": self.clock_mhz,
                "fps": self.fps, "fps_excludes": {"host_ops": self.host_ops, "host_macs": self.host_macs},
                "mac_utilization": self.mac_utilization, "dram_bytes": self.dram_bytes,
                "layers": self.layers, "counters": self.counters, "seconds": round(self.seconds, 4),
                "checks": self.checks}

    def table(self) -> str:
        return format_layers(self.layers, self.total_cycles, self.clock_mhz)


def format_report(result: SimResult) -> str:
    """The per-layer table, the frame summary, and the verification verdict when checked."""
    n = result.host_ops
    host = f"{n} host op{'' if n == 1 else 's'} with {result.host_macs:,} MACs in host convs"
    fps = (f"{result.fps:.1f} fps of the accelerator alone (not counting {host})" if result.fps
           else f"no accelerator cycles (the program is {host})")
    lines = [result.table() if result.layers else "no accelerator layers",
             f"{fps}, MAC utilization {result.mac_utilization:.3f}, DRAM traffic {result.dram_bytes / 2**20:.2f} MiB, "
             f"simulated in {result.seconds:.2f} s"]
    for level, check in result.checks.items():
        if level.startswith("L"):
            verdict = ("bit-exact" if check["bit_exact"] else f"MISMATCH (max abs diff {check['max_abs_diff']:g})"
                       if check["bit_exact"] is not None else f"not run ({check['skipped']})")
            lines.append(f"{level.replace('_vs_', ' vs ')}: {verdict}")
    return "\n".join(lines)


def make_feeds(program: Program, inputs: dict | np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 arrays for every graph input of ``program`` (``ir.feeds.graph_feeds``: the same
    rule and the same seeded data as ``shiftflow check``)."""
    return graph_feeds(program.graph, inputs, seed)


def host_convs(program: Program) -> list[dict]:
    """The conv layers ``program`` runs on the host (``name``, ``macs``, the back end's
    ``reason``): work its accelerator cycles and fps leave out."""
    graph, reasons = program.graph, program.manifest.get("host_reasons", {})
    return [{"name": op.name, "reason": reasons[op.name],
             "macs": conv_macs(*(graph.types[t].shape for t in (op.inputs[0], op.inputs[1], op.outputs[0])))}
            for op in graph.ops if op.kind == "conv" and op.name in reasons]


def simulate(program: Program, inputs: dict | np.ndarray | None = None, seed: int = 0, progress: bool = False,
             accelerator: Accelerator | None = None, check_races: bool = False) -> SimResult:
    """Run every segment of ``program`` on ``accelerator`` (a fresh ``SimAccelerator`` by
    default, rejecting racy segments with ``check_races``) with ``inputs`` (see
    ``make_feeds``). ``progress`` shows a bar on a terminal."""
    t0 = time.perf_counter()
    feeds = make_feeds(program, inputs, seed)
    manifest = program.manifest
    accel_segments = [s for s in manifest["segments"] if s.get("kind") == "accel"]
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=sum(s["count"] for s in accel_segments), unit="instr", desc="simulate", leave=False)
    acc = accelerator if accelerator is not None else SimAccelerator(bar.update if bar else None, check_races)
    try:
        acc.load_program(program)
        dram = manifest["dram"]
        acc.write_dram(dram["const_base"], program.weights)
        host = Host(program, acc, feeds)
        timelines, mismatches = [], []
        for seg in manifest["segments"]:
            if seg.get("kind") == "host":
                host.run(seg["ops"])
            elif seg.get("kind") == "accel":
                cycles = acc.run_segment(seg["start"], seg["count"])
                tl = acc.timeline()
                if tl is None:  # an implementation without its own timeline: L3 must equal it
                    tl = schedule(program.config, decode_program(program.instructions, seg["start"], seg["count"]))
                    if tl.cycles != cycles:
                        mismatches.append({"start": seg["start"], "accelerator": cycles, "cycle_model": tl.cycles})
                timelines.append(tl)
            else:
                raise ProgramError(f"manifest segment {seg!r} is neither 'host' nor 'accel'")
        outputs = {}
        for name in program.graph.outputs:
            spec = manifest["tensors"].get(name)
            outputs[name] = read_tensor(acc, name, spec, program.config.tn) if spec else host.value(name)
    finally:
        if bar is not None:
            bar.close()
    cfg = program.config
    total = sum(tl.cycles for tl in timelines)
    rows = layer_rows(cfg, manifest["layers"], timelines)
    macs = sum(r["macs"] for r in rows)
    counters = acc.counters()
    checks = {"cycle_model": {"exact": not mismatches, "mismatches": mismatches}} if accelerator is not None else {}
    host_ops = sum(len(s["ops"]) for s in manifest["segments"] if s.get("kind") == "host")
    return SimResult(outputs, total, cfg.clock_mhz, macs / (cfg.macs_per_cycle * total) if total else 0.0,
                     counters["dram_bytes"], rows, counters, time.perf_counter() - t0, host_ops=host_ops,
                     host_macs=sum(c["macs"] for c in host_convs(program)), checks=checks)
