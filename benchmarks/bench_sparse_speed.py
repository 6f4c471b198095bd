"""Benchmark: speed-up vs density of the 512×512 zoo detector with SPCONV, at zu3eg.

    python benchmarks/bench_sparse_speed.py [--target zu3eg] [--variant w8a8] [--check-hw 64]

The detector (``shiftflow.zoo``, as ``bench_detector_accel.py`` builds it) is pruned by
``shiftflow prune``'s rule (1×tm blocks, every conv but the stem) at densities 1.0, 0.75,
0.5, 0.375 and 0.25, compiled with SPCONV (``compile_model(..., sparse=True)``) and
simulated: every conv's cycles, the whole frame's cycles and fps at the target clock, the
speed-up against the dense model (issue 12's goal: density 0.5 at >= 1.6x the dense fps).
Each pruned model is also compiled at a small input (``--check-hw``) and checked bit-exactly
at every level (simulator = interpreter = onnxruntime), and the 512×512 run's outputs must
equal the interpreter's; else nothing is written (``guard.write_result``). Writes
``benchmarks/results/sparse_speed_<target>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx
from guard import write_result
from shiftflow.backend.compile import compile_model
from shiftflow.frontend.interpreter import Interpreter
from shiftflow.frontend.prune import prune_model
from shiftflow.ir.config import load_target
from shiftflow.sim.check import check_simulation, compare_outputs
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model

DENSITIES = (1.0, 0.75, 0.5, 0.375, 0.25)


def run(path: Path, small_path: Path, target: str) -> dict:
    """Compile the model at ``path`` with SPCONV, simulate a frame (outputs against the
    interpreter), and check ``small_path`` (the same weights at a small input) at every level."""
    program = compile_model(path, target, sparse=True)
    result = simulate(program, seed=0)
    reference = Interpreter(program.graph).run(make_feeds(program, None, 0))
    exact = compare_outputs(program, result.outputs, reference)["bit_exact"]
    ladder = check_simulation(compile_model(small_path, target, sparse=True), small_path, seed=0)
    r = result.to_json()
    sparse = {x["name"]: x["sparse"] for x in program.manifest["layers"] if "sparse" in x}
    convs = [{"name": x["name"], "dataflow": x["dataflow"], "cycles": x["cycles"], "macs": x["macs"],
              **({"sparse": sparse[x["name"]]} if x["name"] in sparse else {})}
             for x in r["layers"] if x["op"] == "conv"]
    spconv = program.manifest["instruction_counts"].get("SPCONV", 0)
    return {"bit_exact": exact, "small_input_bit_exact": ladder.bit_exact, "total_cycles": r["total_cycles"],
            "fps": round(r["fps"], 2), "spconv_instructions": spconv, "sparse_layers": len(sparse),
            "conv_cycles": sum(x["cycles"] for x in convs), "convs": convs}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="zu3eg")
    p.add_argument("--variant", default="w8a8")
    p.add_argument("--check-hw", type=int, default=64, help="input size of the every-level check")
    args = p.parse_args(argv)
    path = zoo_model("detector", args.variant, "qcdq")
    small = zoo_model("detector", args.variant, "qcdq", input_hw=(args.check_hw, args.check_hw))
    runs: dict[float, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in DENSITIES:
            pruned = [path, small]
            if d < 1.0:  # the same weights, so the same masks, at both sizes
                for k, src in enumerate((path, small)):
                    model, _ = prune_model(src, d, args.target)
                    pruned[k] = Path(tmp) / f"detector_{d}_{k}.onnx"
                    onnx.save(model, pruned[k])
            r = runs[d] = {"density": d, **run(*pruned, args.target)}
            print(f"density {d:5}: {r['total_cycles']:>11,} cycles {r['fps']:7.2f} fps, "
                  f"{r['sparse_layers']} sparse layers, {r['spconv_instructions']} SPCONV")
    dense = runs[1.0]
    for d, r in runs.items():
        r["speedup"] = round(dense["total_cycles"] / r["total_cycles"], 3)
        r["conv_speedup"] = round(dense["conv_cycles"] / r["conv_cycles"], 3)
        for c, c0 in zip(r["convs"], dense["convs"]):
            c["speedup"] = round(c0["cycles"] / c["cycles"], 3)
    print(f"\n{'density':>8} {'cycles':>11} {'fps':>7} {'speed-up':>9} {'conv speed-up':>14}")
    for d, r in runs.items():
        print(f"{d:>8} {r['total_cycles']:11,} {r['fps']:7.2f} {r['speedup']:9.3f} {r['conv_speedup']:14.3f}")
    print(f"\n{'conv':40} " + " ".join(f"{d:>9}" for d in runs))
    for k, c in enumerate(dense["convs"]):
        print(f"{c['name'][:40]:40} " + " ".join(f"{r['convs'][k]['cycles']:9,}" for r in runs.values()))
    result = {"model": path.name, "target": args.target, "clock_mhz": load_target(args.target).clock_mhz,
              "goal": {"density": 0.5, "speedup": 1.6}, "check_input_hw": args.check_hw,
              "runs": list(runs.values())}  # in DENSITIES order
    checks = {f"density {d}: 512x512 simulation = interpreter": r["bit_exact"] for d, r in runs.items()}
    checks |= {f"density {d}: {args.check_hw}x{args.check_hw} L2 = L1 = L0": r["small_input_bit_exact"]
               for d, r in runs.items()}
    write_result(f"sparse_speed_{args.target}.json", result, checks)
    return result


if __name__ == "__main__":
    main()
