"""Body of the ``shiftflow rtlsim`` command (cli.py parses): the build on the RTL
(:class:`hw.tb.rtl_accel.RtlAccelerator`) and on the simulator, same input; outputs compared
bit for bit (``sim.check.compare_outputs``) and, without stalls, every segment's cycles (RTL
CYCLES register vs ``ir.timeline``). Part of the bench: it runs the simulator next to the RTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...sim.check import compare_outputs
from ...sim.run import make_feeds, simulate
from .rtl_accel import RtlAccelerator, RtlError

#: DRAM-model stall probability of ``rtlsim --stalls``.
STALL_PROBABILITY = 0.1


def rtlsim(program, inputs: np.ndarray | None = None, seed: int = 0, stalls: bool = False, accelerator=None,
           progress: Callable[[str], object] | None = None) -> dict:
    """Run ``program`` on the simulator and on the RTL with the same feeds; the report
    (``passed`` is the verdict: outputs bit-exact, the RTL completed, and — without
    stalls — cycles equal in every segment; a build without instructions passes with a
    ``note``, ``bit_exact`` and ``cycles_equal`` None: nothing runs on the RTL). ``accelerator``: an open
    :class:`RtlAccelerator` to reuse (its simulator process stays up; its
    ``stall`` and ``seed`` are set here), else one is started and stopped. ``progress``
    (optional) is called with each phase's name as it starts (``simulator``, then the
    :class:`RtlAccelerator` phases of a started one)."""
    feeds = make_feeds(program, inputs, seed)
    if progress:
        progress("simulator")
    t0 = time.perf_counter()
    ref = simulate(program, feeds, seed)
    sim_seconds = time.perf_counter() - t0
    report = {"target": program.config.name, "stalls": stalls, "seed": seed, "bit_exact": False,
              "cycles_equal": None, "completed": False, "error": None, "note": None,
              "rtl_cycles": None, "sim_cycles": ref.total_cycles, "segments": [],
              "seconds": {"sim": round(sim_seconds, 3)}}
    if not program.n_instructions:  # host ops only: no RTL to start, nothing to compare
        report.update(completed=True, bit_exact=None, rtl_cycles=0, passed=True,
                      rtl_cycles_per_second=None, outputs=[], seconds={"sim": round(sim_seconds, 3), "rtl": 0.0},
                      note="the build has no accelerator instructions (host ops only): nothing runs on the RTL")
        return report
    t0 = time.perf_counter()
    rtl = accelerator if accelerator is not None else RtlAccelerator(progress=progress)
    rtl.stall, rtl.seed = (STALL_PROBABILITY if stalls else 0.0), seed
    try:
        got = simulate(program, feeds, seed, accelerator=rtl)
    except RtlError as exc:
        report["error"] = str(exc)
        got = None
    finally:
        if accelerator is None:
            rtl.close()
    segments = rtl.segments
    report["seconds"]["rtl"] = round(time.perf_counter() - t0, 3)
    report["segments"] = [{"start": s["start"], "count": s["count"], "rtl_cycles": s["cycles"],
                           "bench_cycles": s["edges"], "sim_cycles": s["model_cycles"],
                           "seconds": round(s["seconds"], 3)} for s in segments]
    sim_time = sum(s["seconds"] for s in segments)
    report["rtl_cycles_per_second"] = round(sum(s["waited"] for s in segments) / sim_time) if sim_time else None
    if got is not None:
        cmp = compare_outputs(program, got.outputs, ref.outputs)
        report.update(completed=True, bit_exact=cmp["bit_exact"], max_abs_diff=cmp["max_abs_diff"],
                      outputs=cmp["outputs"], rtl_cycles=got.counters["cycles"], counters=got.counters)
        if not stalls:  # got.total_cycles is the cycle model's sum; the RTL's own count is the counters'
            report["cycles_equal"] = (got.counters["cycles"] == ref.total_cycles
                                      and all(s["rtl_cycles"] == s["sim_cycles"] for s in report["segments"]))
    report["passed"] = bool(report["completed"] and report["bit_exact"] and (stalls or report["cycles_equal"]))
    return report


def format_rtlsim(report: dict) -> str:
    if report["note"]:
        return f"{report['note']}; simulator {report['seconds']['sim']:.2f} s; PASS"
    lines = [f"segment @{s['start']:>6} ({s['count']} instr): RTL {s['rtl_cycles']} cycles, "
             f"simulator {s['sim_cycles']}" + ("" if report["stalls"] or s["rtl_cycles"] == s["sim_cycles"]
                                              else "  MISMATCH") for s in report["segments"]]
    if report["error"]:
        lines.append(f"RTL failed: {report['error']}")
    else:
        lines.append(f"outputs: {'bit-exact' if report['bit_exact'] else 'MISMATCH'} "
                     f"(max abs diff {report.get('max_abs_diff', 0):g})")
        cyc = "not compared (random stalls)" if report["stalls"] else (
            "equal" if report["cycles_equal"] else "DIFFERENT")
        lines.append(f"cycles: RTL {report['rtl_cycles']}, simulator {report['sim_cycles']}: {cyc}")
    lines.append(f"RTL {report['seconds']['rtl']:.2f} s ({report['rtl_cycles_per_second'] or 0} cycles/s simulated), "
                 f"simulator {report['seconds']['sim']:.2f} s; {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
