"""Benchmark: programs with overlapped layers (backend/overlap.py) on the RTL at tiny scale.

    python benchmarks/bench_fusion_rtl.py [--target tiny]

The overlap pass changes only the program — tiling, ring and bank placement, and an order in
which a depthwise layer's steps interleave with the pointwise layer reading it — so the RTL
runs it unchanged. This runs such programs on the target's AcceleratorTop under Verilator
(``hw.tb.rtlsim.rtlsim``) and compares them with the simulator: outputs bit-exact and, without
DRAM stalls, equal cycles in every segment. Cases: zoo mobilenet at 32x32 (pairs whose steps
interleave), the same with random AXI stalls, and the zoo detector at 64x64 (on tiny its one
candidate pair falls below ``MIN_GAIN``: a program as the default options make it). Each case
records how many layers run overlapped and how many of them start before their producer ends.
Writes ``benchmarks/results/fusion_rtl_<target>.json`` only when every case passes.
"""

from __future__ import annotations

import argparse
import time

from guard import write_result
from shiftflow.backend.compile import compile_graph, run_backend
from shiftflow.frontend.importer import import_onnx
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.hw.tb.rtlsim import rtlsim
from shiftflow.ir.config import load_target
from shiftflow.zoo import zoo_model

CASES = (("mobilenet", (32, 32), False), ("mobilenet", (32, 32), True), ("detector", (64, 64), False))


def overlapped(graph, cfg, program) -> tuple[int, int]:
    """(layers run overlapped with their producer, of which start before it ends)."""
    marked = {x.name for x in run_backend(graph, cfg).layers if "overlap" in x.params}
    layers = program.manifest["layers"]
    pairs = [(layers[i - 1], x) for i, x in enumerate(layers) if x["name"] in marked]
    return len(pairs), sum(c["first"] < p["last"] for p, c in pairs)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tiny")
    args = ap.parse_args(argv)
    cfg = load_target(args.target)
    rtl = RtlAccelerator(progress=lambda phase: print(f"  {phase} ...", flush=True))
    rows = []
    try:
        for name, hw, stalls in CASES:
            graph = import_onnx(zoo_model(name, "w8a8", "qcdq", input_hw=hw))
            program = compile_graph(graph, cfg)
            pairs, interleaved = overlapped(graph, cfg, program)
            t0 = time.perf_counter()
            rep = rtlsim(program, seed=1, stalls=stalls, accelerator=rtl)
            row = {"name": f"{name} {hw[0]}x{hw[1]}", "stalls": stalls, "overlapped_layers": pairs,
                   "interleaved": interleaved, "passed": rep["passed"], "bit_exact": rep["bit_exact"],
                   "cycles_equal": rep["cycles_equal"], "rtl_cycles": rep["rtl_cycles"],
                   "sim_cycles": rep["sim_cycles"], "instructions": program.n_instructions,
                   "seconds": round(time.perf_counter() - t0, 1), "error": rep["error"]}
            rows.append(row)
            print(f"{row['name']:16} {'stalls ' if stalls else ''}{pairs} overlapped ({interleaved} interleaved): "
                  f"{'PASS' if row['passed'] else 'FAIL'}, rtl {row['rtl_cycles']} / sim {row['sim_cycles']} cycles, "
                  f"{row['seconds']} s", flush=True)
    finally:
        rtl.close()
    out = {"target": cfg.name, "cases": rows, "passed": sum(r["passed"] for r in rows), "total": len(rows)}
    write_result(f"fusion_rtl_{cfg.name}.json", out,
                 {f"{r['name']}{' (stalls)' if r['stalls'] else ''}: {r['error'] or 'outputs or cycles differ'}":
                  r["passed"] for r in rows} | {f"{r['name']} interleaves layers": r["interleaved"] > 0 for r in rows
                                                if r["name"].startswith("mobilenet")})
    return out


if __name__ == "__main__":
    main()
