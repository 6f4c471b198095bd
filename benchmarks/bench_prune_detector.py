"""Benchmark: mAP vs density of the trained ``shapesdet`` (w8a8) pruned by ``shiftflow prune``
in zu3eg's 1×32 blocks, against unstructured and filter pruning at the same density.

    python benchmarks/bench_prune_detector.py [--images 100] [--fine-tune-steps 300]

The QCDQ export is pruned on its own grid. Pruned layers: the pointwise (1×1) convs — most
of the MACs and the layers a sparse conv speeds up (docs/sparsity.md: depthwise layers are
drain-bound, and the stem and the small heads are the most sensitive) — at a uniform density;
the stem, the depthwise convs and the heads stay dense (``prune --dense``), the same for
every pattern. Each model is scored on the first ``--images`` validation images at L0
(onnxruntime) with greedy NMS (``zoo/shapesdet_eval.py``: VOC mAP at IoU 0.5, COCO
0.50:0.95), and must pass ``shiftflow check`` bit-exactly. With ``--fine-tune-steps N`` each
pruned model is also fine-tuned — QAT as ``zoo/train_shapesdet.py`` trains it, N steps at
peak learning rate ``--fine-tune-lr`` (one-cycle), the pruned model's own zero pattern re-applied after every step —
re-exported, and scored again (its exported zeros checked against the mask); the dense model
is fine-tuned as long, so the comparison is at equal training. Writes
``benchmarks/results/prune_detector.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from guard import write_result
from shiftflow.frontend.check import check_model
from shiftflow.frontend.prune import prune_model
from shiftflow.runtime.heads import load_heads
from shiftflow.zoo.build import build_zoo
from shiftflow.zoo.shapesdet_eval import detections, mean_ap, onnxruntime_outputs, val_set

DENSITIES = (1.0, 0.75, 0.5, 0.375, 0.25)
PATTERNS = ("block", "unstructured", "filter")
TARGET = "zu3eg"


def conv_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every conv's weight codes by its torch module name (the ONNX node ``/a/b.c/Conv`` is
    module ``b.c``; QCDQ: int8 initializer → Clip → DQ)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            t = producer[n.input[1]].input[0]
            while t not in inits:
                t = producer[t].input[0]
            out[n.name.split("/")[-2]] = inits[t]
    return out


def kept_dense(model: onnx.ModelProto) -> tuple[str, ...]:
    """Node names of the convs every pattern leaves dense: all but the pointwise ones."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    dense = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            t = producer[n.input[1]].input[0]
            while t not in inits:
                t = producer[t].input[0]
            shape = tuple(inits[t].dims)
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if not (shape[2:] == (1, 1) and group == 1):
                dense.append(n.name)
    return tuple(dense)


def shapesdet_setup(tmp: str, images: int):
    """The trained shapesdet (w8a8 QCDQ) built into ``tmp``: its path, head spec, the first
    ``images`` validation images with their boxes, and the convs every pattern leaves dense."""
    (path,) = build_zoo(tmp, names=["shapesdet"], variants=["w8a8"], forms=["qcdq"], log=lambda _: None)
    return path, load_heads(path), *val_set(images), kept_dense(onnx.load(path))


def score(path, images, gts, spec) -> dict:
    outs = onnxruntime_outputs(path, images)
    return mean_ap([detections(spec, o) for o in outs], gts)


def fine_tune(pruned: onnx.ModelProto, steps: int, lr: float, out_path: str) -> bool:
    """Fine-tune the trained w8a8 net at ``pruned``'s zero pattern; export it to
    ``out_path``. True when the export keeps every pruned weight at zero."""
    from shiftflow.zoo.nets import quiet, torch
    from shiftflow.zoo.shapes_data import make_split
    from shiftflow.zoo.shapesdet import TRAIN_HW
    from shiftflow.zoo.shapesdet_export import export_shapesdet, load_trained
    from shiftflow.zoo.train_shapesdet import SEED, train

    net = load_trained("w8a8")
    modules = dict(net.named_modules())
    weights = conv_weights(pruned)
    layers = [modules[name] for name in weights]
    masks = [torch.from_numpy(w != 0) for w in weights.values()]
    assert [tuple(m.shape) for m in masks] == [tuple(layer.weight.shape) for layer in layers]

    def reapply(_net):
        with torch.no_grad():
            for layer, m in zip(layers, masks):
                layer.weight.mul_(m)

    reapply(net)
    torch.manual_seed(SEED)
    images, boxes = make_split("train", 4000, TRAIN_HW)
    with quiet():
        train(net, images, boxes, steps, lr, 32, np.random.default_rng(SEED), log=lambda _: None,
              after_step=reapply)
    export_shapesdet(net, "qcdq", TRAIN_HW, Path(out_path))
    return all(((w != 0) <= m.numpy()).all() for w, m in zip(conv_weights(onnx.load(out_path)).values(), masks))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--fine-tune-steps", type=int, default=0, help="QAT steps per fine-tuned model (>= 40)")
    ap.add_argument("--fine-tune-lr", type=float, default=1e-3)
    ap.add_argument("--fine-tune-densities", type=float, nargs="+", default=list(DENSITIES),
                    help="densities to fine-tune at (each costs --fine-tune-steps QAT steps per pattern; "
                         "1.0, the dense reference fine-tuned as long, once)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="shiftflow_prune_det_")
    path, spec, images, gts, dense = shapesdet_setup(tmp, args.images)
    rows, checks = {}, {}
    for pattern in PATTERNS:
        rows[pattern] = []
        for d in DENSITIES:
            model, layers = prune_model(path, d, TARGET, pattern, dense=dense)
            p = os.path.join(tmp, f"{pattern}-{d}.onnx")
            onnx.save(model, p)
            checks[f"{pattern} d={d}: check bit-exact"] = check_model(p).bit_exact
            blocks = sum(x.blocks for x in layers)
            row = {"density": d, "block_density": round(sum(x.kept_blocks for x in layers) / blocks, 4),
                   "weight_density": round(sum(x.kept_weights for x in layers) / sum(x.weights for x in layers), 4),
                   "pruned": score(p, images, gts, spec)}
            if args.fine_tune_steps and d in args.fine_tune_densities and (d < 1.0 or pattern == PATTERNS[0]):
                q = os.path.join(tmp, f"{pattern}-{d}-ft.onnx")
                checks[f"{pattern} d={d}: fine-tuned zeros kept"] = fine_tune(model, args.fine_tune_steps, args.fine_tune_lr, q)
                row["fine_tuned"] = score(q, images, gts, spec)
            rows[pattern].append(row)
            print(f"{pattern:12} density {d:5.3f} (blocks {row['block_density']:.3f}, weights "
                  f"{row['weight_density']:.3f}): VOC {row['pruned']['voc_map']:6.2f}"
                  + (f", fine-tuned {row['fine_tuned']['voc_map']:6.2f}" if "fine_tuned" in row else ""), flush=True)
    result = {"model": os.path.basename(path), "target": TARGET, "images": args.images,
              "pruned": "the pointwise convs, uniform density, by shiftflow prune (magnitude); stem, "
                        "depthwise and heads dense",
              "nms": "greedy, IoU 0.5, score > 0.05 (zoo/shapesdet_eval.py)", "level": "L0 onnxruntime",
              "fine_tune_steps": args.fine_tune_steps, "fine_tune_lr": args.fine_tune_lr,
              "fine_tune_densities": args.fine_tune_densities if args.fine_tune_steps else [], "seconds": round(time.perf_counter() - start, 1),
              "densities": list(DENSITIES), "patterns": rows}
    write_result("prune_detector.json", result, checks, indent=2)
    return result


if __name__ == "__main__":
    main()
