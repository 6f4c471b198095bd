"""Benchmark: the 512×512 reference detector compiled for zu3eg and simulated.

    python benchmarks/bench_detector_accel.py [--target zu3eg] [--variant w8a8] [--repeats 3]

Reports, side by side in one run:
- compile time (median; goal < 5 s) and simulation wall time per frame (goal < 10 s);
- cycles, fps at the target clock (goal >= 18; the clock is nominal), MAC utilization (goal:
  mean over conv layers >= 0.80; layers run overlapped count as one), per-layer table;
- the hybrid dataflow (auto) against channel-only and pixel-only, forced for the whole net.
Every run's outputs must equal the integer interpreter's (L2 == L1) on the same input, else
the benchmark fails (``guard.write_result``). Writes
``benchmarks/results/detector_accel_<target>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from guard import write_result
from shiftflow.backend.compile import compile_model
from shiftflow.backend.estimate import conv_utilization
from shiftflow.frontend.interpreter import Interpreter
from shiftflow.sim.check import compare_outputs
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model


def run(path: Path, target: str, dataflow: str, repeats: int, reference: dict) -> dict:
    """Compile and simulate ``repeats`` times; ``reference`` caches the interpreter's outputs
    (the same graph and seeded input for every dataflow), which the simulation must equal."""
    compile_s, sim_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        program = compile_model(path, target, dataflow=dataflow)
        t1 = time.perf_counter()
        result = simulate(program, seed=0)
        t2 = time.perf_counter()
        compile_s.append(t1 - t0)
        sim_s.append(t2 - t1)
    r = result.to_json()
    if "outputs" not in reference:
        reference["outputs"] = Interpreter(program.graph).run(make_feeds(program, None, 0))
    exact = compare_outputs(program, result.outputs, reference["outputs"])["bit_exact"]
    return {"dataflow": dataflow, "bit_exact": exact, "compile_s": round(statistics.median(compile_s), 3),
            "simulate_s": round(statistics.median(sim_s), 3), "total_cycles": r["total_cycles"],
            "fps": round(r["fps"], 2), "mac_utilization": round(r["mac_utilization"], 4),
            "conv_utilization": conv_utilization(r["layers"], program.config.macs_per_cycle,
                                                program.manifest["layers"]), "dram_bytes": r["dram_bytes"],
            "instructions": program.n_instructions, "layers": r["layers"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="zu3eg")
    p.add_argument("--variant", default="w8a8")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    path = zoo_model("detector", args.variant, "qcdq")
    reference: dict = {}
    rows = {df: run(path, args.target, df, args.repeats if df == "auto" else 1, reference)
            for df in ("auto", "channel", "pixel")}
    print(f"detector {args.variant} on {args.target}")
    print(f"{'dataflow':9} {'compile s':>9} {'sim s':>7} {'cycles':>11} {'fps':>7} {'util':>6} {'conv util (mean / weighted)':>28}")
    for df, r in rows.items():
        cu = r["conv_utilization"]
        print(f"{df:9} {r['compile_s']:9.2f} {r['simulate_s']:7.2f} {r['total_cycles']:11d} {r['fps']:7.2f} "
              f"{r['mac_utilization']:6.3f} {cu['plain_mean']:13.3f} / {cu['cycle_weighted']:.3f}")
    hybrid = rows["auto"]["total_cycles"]
    speedup = {df: round(rows[df]["total_cycles"] / hybrid, 3) for df in ("channel", "pixel")}
    print(f"hybrid speed-up: {speedup['channel']:.2f}x over channel-only, {speedup['pixel']:.2f}x over pixel-only")
    print(f"\n{'layer':36} {'op':8} {'dataflow':8} {'cycles':>10} {'MMAC':>8} {'util':>6} {'stall':>8}")
    for l in rows["auto"]["layers"]:
        print(f"{l['name'][:36]:36} {l['op']:8} {str(l['dataflow']):8} {l['cycles']:10d} {l['macs'] / 1e6:8.2f} "
              f"{l['utilization']:6.3f} {l['stall_cycles']:8d}")
    result = {"model": path.name, "target": args.target, "statistic": "median", "goals": {
        "compile_s": 5, "simulate_s": 10, "fps": 18, "conv_utilization": 0.80}, "runs": rows,
        "hybrid_speedup": speedup}
    write_result(f"detector_accel_{args.target}.json", result,
                 {f"{df} simulation bit-exact with the interpreter": r["bit_exact"] for df, r in rows.items()})
    return result


if __name__ == "__main__":
    main()
