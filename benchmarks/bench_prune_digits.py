"""Benchmark: accuracy vs density of 1×tm block pruning on scikit-learn's digits, against
unstructured and filter pruning at the same density, before and after fine-tuning.

The digits CNN (``zoo/digits.py``: conv 1→16 (the stem, kept dense), conv 16→32, linear) is
trained as the bundled model is; its second conv is pruned by magnitude with
``frontend.prune.pattern_mask`` — 1×32 blocks (zu3eg's ``tm``), 1×4 blocks (tiny's),
single weights, or whole filters — at each density, then fine-tuned at the fixed mask
(Adam, the mask re-applied after every step), exported, quantized (w8a8, the bundled
calibration) and scored on the held-out split under onnxruntime. Every quantized model
must pass ``shiftflow check`` bit-exactly on 8 test images and keep its zeros (no more
nonzero blocks than the mask keeps), else nothing is written.

    python benchmarks/bench_prune_digits.py [--epochs N]

Writes ``benchmarks/results/prune_digits.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bench_quantize_digits import logits
from guard import write_result
from shiftflow.frontend.check import check_model
from shiftflow.frontend.prune import pattern_mask
from shiftflow.frontend.quantize import quantize_model
from shiftflow.ir.config import load_target
from shiftflow.zoo.digits import SEED, calibration_images, export, load_data, train

DENSITIES = (1.0, 0.75, 0.5, 0.375, 0.25)
PATTERNS = {"block 1x32 (zu3eg)": ("block", load_target("zu3eg").tm), "block 1x4 (tiny)": ("block", load_target("tiny").tm),
            "unstructured": ("unstructured", 1), "filter": ("filter", 1)}


def pruned_copy(net, pattern: str, tm: int, density: float):
    """A copy of ``net`` with its second conv masked; the mask (torch bool)."""
    import copy

    import torch

    twin = copy.deepcopy(net)
    conv = twin.features[4]
    mask = torch.from_numpy(pattern_mask(conv.weight.detach().numpy().astype(np.float64), pattern, tm, density))
    with torch.no_grad():
        conv.weight.mul_(mask)
    return twin, mask


def fine_tune(net, mask, x: np.ndarray, y: np.ndarray, epochs: int):
    """Adam at a tenth of the training rate, the mask re-applied after every step."""
    import torch

    def reapply(n):
        with torch.no_grad():
            n.features[4].weight.mul_(mask)

    return train(x, y, epochs, net=net, lr=3e-4, after_step=reapply)


def _second_conv_codes(model: onnx.ModelProto) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
    return inits[producer[conv.input[1]].input[0]]


def score(net, mask, tm: int, calib, x_test, y_test, out: Path) -> dict:
    model = quantize_model(export(net), calib=calib, seed=SEED)
    onnx.save(model, out)
    codes = _second_conv_codes(model)
    kept_steps = mask.numpy().reshape(-1, tm, *codes.shape[1:]).any(1)
    nonzero = (codes.reshape(-1, tm, *codes.shape[1:]) != 0).any(1)
    top1 = float(np.mean(logits(model, x_test).argmax(1) == y_test))
    exact = all(check_model(out, x[None]).bit_exact for x in x_test[:8])
    return {"top1": round(top1, 4), "check_bit_exact": exact,
            "zeros_kept": bool(nonzero.sum() <= kept_steps.sum()),
            "weight_density": round(float(mask.numpy().mean()), 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="fine-tuning epochs at the fixed mask")
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_data()
    calib = calibration_images(x_train, 256)
    start = time.perf_counter()
    net = train(x_train, y_train)
    tmp = Path(tempfile.mkdtemp(prefix="shiftflow_prune_"))
    rows, checks = {}, {}
    for name, (pattern, tm) in PATTERNS.items():
        rows[name] = []  # one row per density, in DENSITIES order (docs index them: a key has no dots)
        for d in DENSITIES:
            pruned, mask = pruned_copy(net, pattern, tm, d)
            row = {"density": d, "no_fine_tune": score(pruned, mask, max(tm, 1), calib, x_test, y_test, tmp / "a.onnx")}
            if d < 1.0:
                tuned = fine_tune(pruned, mask, x_train, y_train, args.epochs)
                row["fine_tuned"] = score(tuned, mask, max(tm, 1), calib, x_test, y_test, tmp / "b.onnx")
            rows[name].append(row)
            for k, r in row.items():
                if k == "density":
                    continue
                checks[f"{name} d={d} {k}: check bit-exact"] = r["check_bit_exact"]
                checks[f"{name} d={d} {k}: zeros kept"] = r["zeros_kept"]
            print(f"{name:20} density {d:5.3f}: top-1 {row['no_fine_tune']['top1']:.4f}"
                  + (f", fine-tuned {row['fine_tuned']['top1']:.4f}" if "fine_tuned" in row else ""), flush=True)
    result = {"dataset": "sklearn load_digits, 30% stratified held-out split", "test_samples": len(y_test),
              "pruned": "the second conv (16->32, 3x3); the stem and the linear layer stay dense",
              "quantization": "w8a8 per tensor, po2 (shiftflow quantize), 256 calibration images",
              "fine_tune_epochs": args.epochs, "seconds": round(time.perf_counter() - start, 1),
              "densities": list(DENSITIES), "patterns": rows}
    write_result("prune_digits.json", result, checks, indent=2)
    return result


if __name__ == "__main__":
    main()
