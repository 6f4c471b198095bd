"""Run a whole compiled program: host ops and accelerator segments, in manifest order.

``simulate`` is the entry point (``shiftflow simulate``); ``check_simulation`` in
``sim/check.py`` adds the verification ladder on top of it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..ir.decode import decode_program
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
    bit_exact: bool | None = None
    checks: dict = field(default_factory=dict)

    @property
    def fps(self) -> float | None:
        """Frames per second of the accelerator alone (host ops take no cycles)."""
        return self.clock_mhz * 1e6 / self.total_cycles if self.total_cycles else None

    def to_json(self) -> dict:
        return {"bit_exact": self.bit_exact, "total_cycles": self.total_cycles, "clock_mhz": self.clock_mhz,
                "fps": self.fps, "mac_utilization": self.mac_utilization, "dram_bytes": self.dram_bytes,
                "layers": self.layers, "counters": self.counters, "seconds": round(self.seconds, 4),
                "checks": self.checks}

    def table(self) -> str:
        return format_layers(self.layers, self.total_cycles, self.clock_mhz)


def format_report(result: SimResult) -> str:
    """The per-layer table, the frame summary, and the verification verdict when checked."""
    fps = f"{result.fps:.1f} fps" if result.fps else "no accelerator cycles"
    lines = [result.table(),
             f"{fps}, MAC utilization {result.mac_utilization:.3f}, DRAM traffic {result.dram_bytes / 2**20:.2f} MiB, "
             f"simulated in {result.seconds:.2f} s"]
    for level, check in result.checks.items():
        if level.startswith("L"):
            verdict = "bit-exact" if check["bit_exact"] else f"MISMATCH (max abs diff {check['max_abs_diff']:g})"
            lines.append(f"{level.replace('_vs_', ' vs ')}: {verdict}")
    return "\n".join(lines)


def make_feeds(program: Program, inputs: dict | np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 arrays for every graph input: ``inputs`` (a dict by name, or one array for a
    single-input model), else seeded standard-normal data (the same as ``shiftflow check``)."""
    graph = program.graph
    names = list(graph.inputs)
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise UsageError(f"unknown input(s) {unknown}; the model takes {names}")
    elif inputs is not None and len(names) != 1:
        raise UsageError(f"the model takes {len(names)} inputs {names}; pass a dict of arrays by name")
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in names:
        t = graph.types[name]
        if inputs is None:
            a = rng.standard_normal(t.shape)
        elif isinstance(inputs, dict):
            if name not in inputs:
                raise UsageError(f"missing input {name!r}; the model takes {names}")
            a = inputs[name]
        else:
            a = inputs
        a = np.asarray(a)
        if a.shape != t.shape or not np.issubdtype(a.dtype, np.floating):
            raise UsageError(f"input {name!r} must have shape {list(t.shape)} and a float dtype, "
                             f"got {list(a.shape)} {a.dtype}")
        feeds[name] = a.astype(np.float32)
    return feeds


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
    return SimResult(outputs, total, cfg.clock_mhz, macs / (cfg.macs_per_cycle * total) if total else 0.0,
                     counters["dram_bytes"], rows, counters, time.perf_counter() - t0, checks=checks)
