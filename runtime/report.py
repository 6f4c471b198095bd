"""The pipeline's report: measured stage times and a deployment estimate.

Measured here: each stage's seconds per frame (median, p95) and the system throughput of
the run (frames delivered / wall seconds). The *deployment estimate* replaces the accel
stage's measured time (a Python simulator) by the accelerator's time on the target: the
program's total cycles per frame / the target's nominal clock (the cycle model, not a
measured board). The CPU stages (pre, host, post) keep the times measured on this machine.
Stages run concurrently, so the estimated system fps is the slowest stage's (1 / its median)
and the latency the sum of the stage medians. ``host_macs`` are the conv MACs the CPU carries
(in the accel stage: host ops between accelerator segments; in the host stage: the tail).
"""

from __future__ import annotations

import numpy as np

from .pipeline import PipelineResult


def stage_stats(times: list[float]) -> dict:
    """Median and 95th percentile (seconds) of one stage's per-frame times."""
    if not times:
        return {"median_s": None, "p95_s": None, "frames": 0}
    t = np.asarray(times, np.float64)
    return {"median_s": float(np.median(t)), "p95_s": float(np.percentile(t, 95)), "frames": len(t)}


def system_report(result: PipelineResult, cycles: int, clock_mhz: float, host_macs: dict[str, int]) -> dict:
    """The JSON report of a run (fields: docs/runtime.md)."""
    stages = {name: stage_stats(t) for name, t in result.times.items()}
    accel_s = cycles / (clock_mhz * 1e6) if cycles else 0.0
    est = {name: s["median_s"] for name, s in stages.items()}
    if "accel" in est:
        est["accel"] = accel_s
    known = [v for v in est.values() if v is not None]
    slowest = max(est, key=lambda k: est[k] or 0.0) if known else None
    return {
        "frames": result.delivered, "dropped": result.dropped, "mode": result.mode,
        "measured": {"seconds": result.seconds, "fps": result.fps, "stages": stages},
        "deployment_estimate": {
            "accel_cycles_per_frame": cycles, "clock_mhz": clock_mhz, "accel_s": accel_s,
            "accel_fps": 1.0 / accel_s if accel_s else None,
            "stage_s": est, "slowest_stage": slowest,
            "fps": 1.0 / est[slowest] if slowest and est[slowest] else None,
            "latency_s": sum(known) if known else None,
            "note": "accel = cycle model at the nominal clock; pre/host/post measured on this machine"},
        "host_macs": host_macs,
    }


def format_report(rep: dict) -> str:
    """The report as a few lines for a terminal."""
    m, d = rep["measured"], rep["deployment_estimate"]
    lines = [f"{rep['frames']} frames, {rep['dropped']} dropped, {m['fps']:.2f} fps measured here "
             f"({rep['mode']} workers, {m['seconds']:.2f} s)"]
    for name, s in m["stages"].items():
        if s["median_s"] is not None:
            lines.append(f"  {name:6s} median {s['median_s'] * 1e3:9.2f} ms  p95 {s['p95_s'] * 1e3:9.2f} ms")
    if d["fps"]:
        lines.append(f"deployment estimate: accelerator {d['accel_cycles_per_frame']:,} cycles at the nominal "
                     f"{d['clock_mhz']:g} MHz (cycle model, not a measured board) = {d['accel_s'] * 1e3:.2f} ms; "
                     f"CPU stages as measured here; system {d['fps']:.1f} fps "
                     f"(slowest stage: {d['slowest_stage']}), latency {d['latency_s'] * 1e3:.1f} ms")
    macs = rep["host_macs"]
    lines.append(f"host conv MACs on the CPU per frame: {macs.get('accel', 0):,} in the accel stage, "
                 f"{macs.get('host', 0):,} in the host stage")
    return "\n".join(lines)
