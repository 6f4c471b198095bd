"""Benchmark: accuracy of latency-budget allocations against uniform density at the same
cycle budget, on the trained ``shapesdet`` (w8a8) at zu3eg.

    python benchmarks/bench_prune_budget_detector.py [--densities 0.5] [--images 100] [--fine-tune-steps 400]

For each uniform density ``D`` the pointwise convs are pruned at ``D`` in zu3eg's 1×32 blocks
(``shiftflow prune --density D``, the other convs dense, as ``bench_prune_detector.py`` does)
and the program compiled with SPCONV at a ``--hw`` × ``--hw`` input (default 512, the size
``bench_system.py`` deploys it at: at the trained 128×128 the net is bound by DRAM and
density barely moves its cycles); its frame cycles (cycle model, layer overlap on, as
``compile --sparse`` builds it) are the budget. The same convs are then pruned with
``shiftflow prune --latency-budget`` at that budget with each allocation method
(``backend/sparse_budget.py``: the exact knapsack and ADMM), each allocation's program
compiled and costed. Every model is scored at L0 (onnxruntime, greedy NMS, VOC mAP at IoU
0.5 on the first ``--images`` validation images), fine-tuned at its own mask
(``bench_prune_detector.fine_tune``: QAT, ``--fine-tune-steps`` steps) and scored again — the
uniform model too, in the same run, so the rows compare at equal training. Writes
``benchmarks/results/prune_budget_detector.json`` (only when every model passes ``check``
bit-exactly and every fine-tuned export keeps its zeros).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import onnx

from bench_prune_detector import TARGET, fine_tune, score, shapesdet_setup
from guard import write_result
from shiftflow.backend.sparse_budget import compile_cycles, prune_to_budget
from shiftflow.frontend.check import check_model
from shiftflow.frontend.prune import prune_model

METHODS = ("knapsack", "admm")


def evaluate(model: onnx.ModelProto, name: str, tmp: str, args, images, gts, spec, checks: dict, shapes) -> dict:
    """Cycles (at ``shapes``), check, mAP before and after fine-tuning of one pruned model."""
    p = os.path.join(tmp, f"{name}.onnx")
    onnx.save(model, p)
    checks[f"{name}: check bit-exact"] = check_model(p).bit_exact
    row = {"cycles": compile_cycles(model, TARGET, shapes)[0], "pruned": score(p, images, gts, spec)}
    if args.fine_tune_steps:
        q = os.path.join(tmp, f"{name}-ft.onnx")
        checks[f"{name}: fine-tuned zeros kept"] = fine_tune(model, args.fine_tune_steps, args.fine_tune_lr, q)
        row["fine_tuned"] = score(q, images, gts, spec)
    ft = f", fine-tuned {row['fine_tuned']['voc_map']:6.2f}" if "fine_tuned" in row else ""
    print(f"{name:22} {row['cycles']:>10,} cycles: VOC {row['pruned']['voc_map']:6.2f}{ft}", flush=True)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--densities", type=float, nargs="+", default=[0.5])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--hw", type=int, default=512, help="input size the cycles are counted at (square)")
    ap.add_argument("--fine-tune-steps", type=int, default=400, help="QAT steps per model (0: no fine-tuning)")
    ap.add_argument("--fine-tune-lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="shiftflow_prune_budget_")
    path, spec, images, gts, dense = shapesdet_setup(tmp, args.images)
    shapes = {onnx.load(path).graph.input[0].name: [1, 3, args.hw, args.hw]}
    checks, runs = {}, []
    for d in args.densities:
        uniform, _ = prune_model(path, d, TARGET, dense=dense)
        run = {"uniform_density": d, "uniform": evaluate(uniform, f"uniform-{d}", tmp, args, images, gts, spec, checks, shapes)}
        run["budget"] = run["uniform"]["cycles"]
        for method in METHODS:
            model, report, alloc = prune_to_budget(path, run["budget"], TARGET, dense=dense, method=method,
                                                   input_shapes=shapes)
            row = evaluate(model, f"{method}-{d}", tmp, args, images, gts, spec, checks, shapes)
            checks[f"{method} d={d}: within the budget"] = row["cycles"] <= run["budget"]
            blocks = sum(x.blocks for x in report)
            row.update(proxy=round(alloc.error, 4), block_density=round(sum(x.kept_blocks for x in report) / blocks, 4),
                       densities=alloc.densities)
            run[method] = row
        runs.append(run)
    result = {"model": os.path.basename(path), "target": TARGET, "images": args.images,
              "pruned": "the pointwise convs (stem, depthwise and heads dense); uniform: shiftflow prune "
                        "--density; methods: shiftflow prune --latency-budget at the uniform model's cycles",
              "input_hw": [args.hw, args.hw],
              "cycles": "a frame at input_hw (the deployment size; mAP is scored at the trained 128x128), "
                        "compiled with SPCONV, layer overlap on (cycle model)",
              "nms": "greedy, IoU 0.5, score > 0.05 (zoo/shapesdet_eval.py)", "level": "L0 onnxruntime",
              "fine_tune_steps": args.fine_tune_steps, "fine_tune_lr": args.fine_tune_lr,
              "seconds": round(time.perf_counter() - start, 1), "runs": runs}
    write_result("prune_budget_detector.json", result, checks, indent=2)
    return result


if __name__ == "__main__":
    main()
