"""Benchmark: per-layer densities under a latency budget against uniform density (issue 12).

    python benchmarks/bench_sparse_budget.py [--target zu3eg] [--variant w8a8]

The zoo 512×512 detector at ``--target``: for the frame cycles of uniform densities 0.5 and
0.375 (pruned by ``shiftflow prune``'s rule, compiled with SPCONV and layer overlap) as
budgets, the
allocations of ``backend/sparse_budget.py`` — the exact knapsack, the Lagrangian relaxation
and ADMM — against the uniform model: the accuracy proxy (sum over pruned convs of the
relative reconstruction error ``||W - W_pruned|| / ||W||``), the compiled program's cycles
(cycle model), the kept share of blocks. Accuracy itself (mAP after fine-tuning) is not
measured here. The budget must be met (else nothing is written). Writes
``benchmarks/results/sparse_budget_<target>.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from guard import write_result
from shiftflow.backend.sparse_budget import allocate, compile_cycles, sample
from shiftflow.frontend.prune import (
    pattern_mask,
    prune_model,
    prune_weights,
    real_weights,
)
from shiftflow.ir.config import load_target
from shiftflow.zoo import zoo_model

UNIFORM = (0.5, 0.375)
METHODS = ("knapsack", "lagrange", "admm")


def proxy(real: dict, tm: int, densities: dict) -> float:
    """Sum of the pruned convs' relative reconstruction errors at ``densities``."""
    return float(sum(np.sqrt((w[~pattern_mask(w, "block", tm, densities[n])] ** 2).sum() / (w ** 2).sum())
                     for n, w in real.items()))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="zu3eg")
    p.add_argument("--variant", default="w8a8")
    args = p.parse_args(argv)
    tm = load_target(args.target).tm
    model, _ = prune_model(zoo_model("detector", args.variant, "qcdq"), 1.0, args.target)  # QDQ, nothing pruned
    real = real_weights(model)
    names = list(real)
    t0 = time.perf_counter()
    sampled = sample(model, args.target, tm, names)
    sample_s = time.perf_counter() - t0
    runs = []
    for d in UNIFORM:
        uniform = onnx.ModelProto()
        uniform.CopyFrom(model)
        prune_weights(uniform, d, tm)
        budget = compile_cycles(uniform, args.target, None)[0]  # the uniform model's frame, as compiled
        row = {"uniform_density": d, "budget": budget,
               "uniform": {"cycles": budget, "proxy": round(proxy(real, tm, {n: d for n in names}), 4)}}
        for method in METHODS:
            t0 = time.perf_counter()
            a = allocate(model, budget, args.target, tm, names, method=method, sampled=sampled)
            m = onnx.ModelProto()
            m.CopyFrom(model)
            layers = prune_weights(m, 1.0, tm, densities=a.densities)
            kept = sum(x.kept_blocks for x in layers) / sum(x.blocks for x in layers)
            row[method] = {"cycles": a.measured, "predicted": a.predicted, "proxy": round(proxy(real, tm, a.densities), 4),
                           "block_density": round(kept, 4), "rounds": a.rounds,
                           "seconds": round(time.perf_counter() - t0, 1), "densities": a.densities}
            assert compile_cycles(m, args.target, None)[0] == a.measured
        runs.append(row)
        print(f"budget {budget:,} (uniform {d}): proxy uniform {row['uniform']['proxy']:.3f}, " + ", ".join(
            f"{m} {row[m]['proxy']:.3f} ({row[m]['cycles']:,} cycles, kept {row[m]['block_density']:.3f})"
            for m in METHODS))
    result = {"model": "detector " + args.variant, "target": args.target, "sample_s": round(sample_s, 1),
              "samples_without_overlap": [{"density": k, "cycles": v} for k, v in sampled[0].items()], "runs": runs}
    write_result(f"sparse_budget_{args.target}.json", result,
                 {f"{m} meets budget {r['budget']}": r[m]["cycles"] <= r["budget"]
                  for r in runs for m in METHODS})
    return result


if __name__ == "__main__":
    main()
