"""Benchmark: RTL simulation speed (AcceleratorTop under Verilator, the in-design DRAM model)
next to the cycle-level simulator's, on the same Program, in one run.

    python benchmarks/bench_rtl_speed.py [--network resnet] [--hw 16x16] [--repeats 3]

Per repeat: ``sim.run.simulate`` (functional + cycle model) and ``simulate`` on an
``RtlAccelerator`` (one Verilator process, started before timing; a warm-up run first).
Reported: median wall seconds of the whole program (host ops included), simulated cycles,
cycles/s for both, and for the RTL also the cycles/s of the segments alone (Verilator time
between the CTRL write and done, no host ops or DRAM backdoor). Every RTL run must be
bit-exact with the simulator's and take exactly the cycle model's cycles in every segment,
else the benchmark fails (``guard.write_result``). Writes ``benchmarks/results/rtl_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from guard import write_result
from shiftflow.backend.compile import compile_model
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.sim.check import compare_outputs
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="resnet")
    ap.add_argument("--hw", default="16x16", help="input HxW, or 'default' for the network's own")
    ap.add_argument("--target", default="tiny")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    hw = tuple(int(v) for v in args.hw.split("x")) if args.hw != "default" else None
    program = compile_model(zoo_model(args.network, "w8a8", "qcdq", input_hw=hw), args.target)
    feeds = make_feeds(program, None, 0)

    sim_s, rtl_s, seg_s, exact, cycle_exact = [], [], [], [], []
    with RtlAccelerator() as rtl:
        t0 = time.perf_counter()
        simulate(program, feeds, accelerator=rtl)  # warm-up: model load, process start
        startup = time.perf_counter() - t0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref = simulate(program, feeds)
            sim_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = simulate(program, feeds, accelerator=rtl)
            rtl_s.append(time.perf_counter() - t0)
            seg_s.append(sum(s["seconds"] for s in rtl.segments))
            exact.append(compare_outputs(program, got.outputs, ref.outputs)["bit_exact"])
            cycle_exact.append(got.counters["cycles"] == ref.total_cycles and got.checks["cycle_model"]["exact"])
    cycles = ref.total_cycles
    sim_med, rtl_med, seg_med = (statistics.median(v) for v in (sim_s, rtl_s, seg_s))
    result = {
        "network": args.network, "input_hw": list(hw) if hw else None, "target": program.config.name,
        "repeats": args.repeats, "cycles": cycles, "rtl_cycles": got.counters["cycles"],
        "bit_exact": all(exact),
        # every segment's RTL CYCLES against the model's, and the totals (got.total_cycles is the model's)
        "cycles_equal": all(cycle_exact),
        "sim": {"seconds_median": round(sim_med, 4), "cycles_per_second": round(cycles / sim_med)},
        "rtl": {"seconds_median": round(rtl_med, 3), "cycles_per_second": round(cycles / rtl_med),
                "segments_seconds_median": round(seg_med, 3), "segment_cycles_per_second": round(cycles / seg_med),
                "first_run_seconds": round(startup, 2)},
        "sim_over_rtl_speed": round(rtl_med / sim_med, 1),
    }
    print(f"{args.network} on {result['target']}: {cycles} cycles; simulator {sim_med:.3f} s "
          f"({result['sim']['cycles_per_second']:,} cycles/s), RTL {rtl_med:.2f} s "
          f"({result['rtl']['cycles_per_second']:,} cycles/s; segments alone "
          f"{result['rtl']['segment_cycles_per_second']:,}); bit-exact {result['bit_exact']}, "
          f"cycles equal {result['cycles_equal']}")
    write_result("rtl_speed.json", result, {"RTL outputs bit-exact with the simulator's": result["bit_exact"],
                                            "RTL cycles equal to the cycle model's": result["cycles_equal"]},
                 indent=2)
    return result


if __name__ == "__main__":
    main()
