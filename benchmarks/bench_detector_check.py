"""Benchmark: import + check (L1 interpreter vs L0 onnxruntime) of the 512×512 detector.

    python benchmarks/bench_detector_check.py [--repeats 3] [--variants w8a8 ...]

Builds (or reuses) the zoo detector, then times ``import_onnx`` and ``check_model`` end to
end per variant and export form; prints medians and writes
``benchmarks/results/detector_check.json``. Goal: under 10 s on a 2-core machine. Every check
must be bit-exact (L1 == L0), else the benchmark fails (``guard.write_result``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from guard import write_result
from shiftflow.backend.partition import host_reasons
from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.summary import summarize
from shiftflow.ir.config import ZU3EG
from shiftflow.zoo import zoo_model

GOAL_S = 10.0


def measure(path: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = import_onnx(path)
        t1 = time.perf_counter()
        report = check_model(path, seed=0, graph=graph)
        t2 = time.perf_counter()
        runs.append({"import_s": t1 - t0, "check_s": t2 - t1, "total_s": t2 - t0, "bit_exact": report.bit_exact,
                     "max_abs_diff": report.max_abs_diff, "interpreter_s": report.seconds["interpreter"],
                     "onnxruntime_s": report.seconds["onnxruntime"]})
    s = summarize(graph, host_reasons(graph, ZU3EG), ZU3EG.name)
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0] if k.endswith("_s")}
    return {"model": path.name, "macs": s["total_macs"], "conv_layers": len(s["layers"]), "cpu_ops": len(s["cpu_ops"]),
            "bit_exact": all(r["bit_exact"] for r in runs), "max_abs_diff": max(r["max_abs_diff"] for r in runs),
            "median": med, "repeats": repeats}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["w8a8", "pow2"])
    p.add_argument("--forms", nargs="+", default=["qcdq", "qonnx"])
    args = p.parse_args(argv)
    rows = []
    print(f"{'model':44} {'GMAC':>6} {'import':>7} {'interp':>7} {'ort':>7} {'total':>7}  result")
    for variant in args.variants:
        for form in args.forms:
            r = measure(zoo_model("detector", variant, form), args.repeats)
            m = r["median"]
            print(f"{r['model']:44} {r['macs'] / 1e9:6.2f} {m['import_s']:7.2f} {m['interpreter_s']:7.2f} "
                  f"{m['onnxruntime_s']:7.2f} {m['total_s']:7.2f}  "
                  f"{'bit-exact' if r['bit_exact'] else 'MISMATCH'} (goal < {GOAL_S:.0f} s)")
            rows.append(r)
    result = {"goal_s": GOAL_S, "statistic": "median", "runs": rows}
    write_result("detector_check.json", result, {f"{r['model']} bit-exact": r["bit_exact"] for r in rows}, indent=2)
    return result


if __name__ == "__main__":
    main()
