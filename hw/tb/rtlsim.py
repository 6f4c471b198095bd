"""Body of the ``shiftflow rtlsim`` command (cli.py parses): the build on the RTL
(:class:`hw.tb.rtl_accel.RtlAccelerator`) and on the simulator, same input; outputs compared
bit for bit (``sim.check.compare_outputs``) and, without stalls, every segment's cycles (RTL
CYCLES register vs ``ir.timeline``). Part of the bench: it runs the simulator next to the RTL.
A build compiled with ``--nms psrr``, given its head spec, also runs its NMS part on both
(``_nms_part``): the survivor lists compared byte for byte and the NMS segment's cycles.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...ir.nms import HEADER_DTYPE
from ...sim.accelerator import SimAccelerator
from ...sim.check import compare_outputs
from ...sim.run import make_feeds, simulate
from .rtl_accel import RtlAccelerator, RtlError

#: DRAM-model stall probability of ``rtlsim --stalls``.
STALL_PROBABILITY = 0.1


def rtlsim(program, inputs: np.ndarray | None = None, seed: int = 0, stalls: bool = False, accelerator=None,
           progress: Callable[[str], object] | None = None, spec=None) -> dict:
    """Run ``program`` on the simulator and on the RTL with the same feeds; the report
    (``passed`` is the verdict: outputs bit-exact, the RTL completed, and — without
    stalls — cycles equal in every segment; a build without instructions passes with a
    ``note``, ``bit_exact`` and ``cycles_equal`` None: nothing runs on the RTL). ``accelerator``: an open
    :class:`RtlAccelerator` to reuse (its simulator process stays up; its
    ``stall`` and ``seed`` are set here), else one is started and stopped. ``progress``
    (optional) is called with each phase's name as it starts (``simulator``, then the
    :class:`RtlAccelerator` phases of a started one). ``spec``: the head spec
    (``runtime.heads.HeadSpec``) of a build compiled with ``--nms psrr``: its NMS part then
    runs too, after the model, on both (``_nms_part``; the report's ``nms``)."""
    feeds = make_feeds(program, inputs, seed)
    if progress:
        progress("simulator")
    t0 = time.perf_counter()
    ref_acc = SimAccelerator()
    ref = simulate(program, feeds, seed, accelerator=ref_acc)
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
        if spec is not None and "nms" in program.manifest:
            if progress:
                progress("NMS part")
            report["nms"] = _nms_part(program, spec, ref_acc, rtl)
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
        nms = report.get("nms")
        if nms:  # counters() then include the NMS part's segment; the model's total is the sum
            report["sim_cycles"] += nms["sim_cycles"]
            report["bit_exact"] = bool(report["bit_exact"] and nms["bit_exact"])
        if not stalls:  # got.total_cycles is the cycle model's sum; the RTL's own count is the counters'
            report["cycles_equal"] = (rtl.counters()["cycles"] == report["sim_cycles"]
                                      and (not nms or nms["rtl_cycles"] == nms["sim_cycles"])
                                      and all(s["rtl_cycles"] == s["sim_cycles"] for s in report["segments"]))
        report["rtl_cycles"] = rtl.counters()["cycles"]
    report["passed"] = bool(report["completed"] and report["bit_exact"] and (stalls or report["cycles_equal"]))
    return report


def _nms_part(program, spec, ref_acc, rtl) -> dict:
    """The build's NMS part (``runtime.nms_core.CoreNms``: the CPU's recovery from the head
    outputs each accelerator stored, the patch list and table written, NMS + FINISH run, the
    list read) on the simulator and on the RTL, each right after its model run: the survivor
    lists (header and entries, every byte of the buffer) and the detections compared, and
    both cycle counts (the simulator's is the model's, with the NMS's measured cost)."""
    from ...runtime.nms_core import CoreNms
    from ...sim.host import read_tensor

    nms, tensors, tn = program.manifest["nms"], program.manifest["tensors"], program.config.tn
    runs = {}
    for name, acc in (("sim", ref_acc), ("rtl", rtl)):
        core = CoreNms(program, spec, nms["score"])
        dets, cycles = core.run(acc, {t: read_tensor(acc, t, tensors[t], tn) for t in core.outputs})
        raw = acc.read_dram(nms["out_addr"], 16 * (1 + core.params.capacity))
        runs[name] = {"rows": dets.rows, "cycles": cycles, "list": raw, "fallbacks": core.fallbacks}
    sim, got = runs["sim"], runs["rtl"]
    head = np.frombuffer(sim["list"][:16], HEADER_DTYPE)[0]
    return {"ran": sim["cycles"] > 0 and got["cycles"] > 0, "survivors": int(head["count"]), "flags": int(head["flags"]),
            "list_equal": sim["list"] == got["list"], "rows_equal": bool(np.array_equal(sim["rows"], got["rows"])),
            "bit_exact": sim["list"] == got["list"] and bool(np.array_equal(sim["rows"], got["rows"])),
            "rtl_cycles": got["cycles"], "sim_cycles": sim["cycles"], "cpu_fallbacks": got["fallbacks"]}


def format_rtlsim(report: dict) -> str:
    if report["note"]:
        return f"{report['note']}; simulator {report['seconds']['sim']:.2f} s; PASS"
    lines = [f"segment @{s['start']:>6} ({s['count']} instr): RTL {s['rtl_cycles']} cycles, "
             f"simulator {s['sim_cycles']}" + ("" if report["stalls"] or s["rtl_cycles"] == s["sim_cycles"]
                                              else "  MISMATCH") for s in report["segments"]]
    nms = report.get("nms")
    if nms:
        lines.append(f"NMS part: {nms['survivors']} survivors (flags {nms['flags']}), list "
                     f"{'bit-exact' if nms['bit_exact'] else 'MISMATCH'}, RTL {nms['rtl_cycles']} cycles, "
                     f"simulator {nms['sim_cycles']}" + ("" if nms["ran"] else " (patch list over the core's "
                                                         "buffer: ran on the CPU)"))
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
