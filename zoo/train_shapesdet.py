"""Train ``shapesdet`` (both zoo variants) on the synthetic shapes dataset and save its weights.

``python -m shiftflow.zoo.train_shapesdet [--steps N] [--pow2-steps N] [--out DIR]``

Quantization-aware training throughout, seeded (torch, data order and the dataset itself):

- ``w8a8``: QAT from the start — Brevitas's fixed-point activation quantizers collect their
  statistics during the first steps and then learn their power-of-two scales. There is no
  float warm-up: the net is small and converges under QAT, and a warm-up would double the
  time on the shared 2-core machine.
- ``pow2``: fine-tuned from the trained ``w8a8`` weights. Float "shadow" weights are kept;
  each step the layers' weights are their projection onto {0, ±2^e} (``project_pow2``,
  the zoo's pow2 rule), and the projected weights' gradients update the shadows (a
  straight-through estimator). The saved weights are the final projection.

Anchor matching (per image, IoU of every anchor with every ground-truth box): an anchor is
positive for the box it overlaps most when that IoU ≥ ``POS_IOU``; each box's best anchor is
positive for it too (so small or odd boxes are never unmatched); anchors with best IoU below
``NEG_IOU`` are negatives; the rest are ignored by the class loss. Losses: sigmoid focal loss
(alpha 0.25, gamma 2) on every non-ignored anchor and class, plus smooth-L1 (beta 1/9) on the
positives' encoded offsets, both divided by the number of positives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import nets
from .export import project_pow2
from .nets import quiet, torch
from .shapes_data import CLASSES, make_split
from .shapesdet import TRAIN_HW, VARIANCES, ShapesDet, anchor_boxes, preprocess

POS_IOU, NEG_IOU = 0.5, 0.4
WEIGHTS_DIR = Path(__file__).parent / "weights"
SEED = 10


def weights_path(variant: str, directory: Path = WEIGHTS_DIR) -> Path:
    return directory / f"shapesdet-{variant}.pt"


def _iou(anchors_xyxy: np.ndarray, gt: np.ndarray) -> np.ndarray:
    lt = np.maximum(anchors_xyxy[:, None, :2], gt[None, :, :2])
    rb = np.minimum(anchors_xyxy[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area(anchors_xyxy)[:, None] + area(gt)[None, :] - inter)


def match(anchors: np.ndarray, gt: np.ndarray):
    """Targets for one image: ``cls`` (N,) int64 (class, -1 negative, -2 ignored) and ``box``
    (N, 4) encoded offsets (meaningful where ``cls >= 0``). ``anchors`` are (N, 4) cxcywh."""
    n = len(anchors)
    cls = np.full(n, -1, np.int64)
    box = np.zeros((n, 4), np.float32)
    if len(gt) == 0:
        return cls, box
    axy = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], 1)
    iou = _iou(axy, gt[:, :4])
    best_gt, best_iou = iou.argmax(1), iou.max(1)
    cls[(best_iou >= NEG_IOU) & (best_iou < POS_IOU)] = -2
    pos = best_iou >= POS_IOU
    forced = iou.argmax(0)  # each box's best anchor
    best_gt[forced] = np.arange(len(gt))
    pos[forced] = True
    g = gt[best_gt[pos]]
    a = anchors[pos]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    gx, gy = (g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2
    box[pos] = np.stack([(gx - a[:, 0]) / (a[:, 2] * VARIANCES[0]), (gy - a[:, 1]) / (a[:, 3] * VARIANCES[1]),
                         np.log(gw / a[:, 2]) / VARIANCES[2], np.log(gh / a[:, 3]) / VARIANCES[3]], 1)
    cls[pos] = g[:, 4].astype(np.int64)
    return cls, box


def flatten_outputs(outs):
    """Head maps → (B, N, C) logits and (B, N, 4) offsets in the decoder's box order."""
    c = len(CLASSES)
    logits, deltas = [], []
    for cls_map, box_map in zip(outs[0::2], outs[1::2]):
        b, _, h, w = cls_map.shape
        logits.append(cls_map.reshape(b, -1, c, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, c))
        deltas.append(box_map.reshape(b, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
    return torch.cat(logits, 1), torch.cat(deltas, 1)


def detection_loss(outs, cls_t, box_t):
    logits, deltas = flatten_outputs(outs)
    pos = cls_t >= 0
    npos = max(1.0, float(pos.sum()))
    target = torch.zeros_like(logits)
    target[pos, cls_t[pos]] = 1.0
    valid = (cls_t != -2).unsqueeze(-1).float()
    p = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha * (1 - pt) ** 2 * ce * valid).sum() / npos
    reg = torch.nn.functional.smooth_l1_loss(deltas[pos], box_t[pos], beta=1 / 9, reduction="sum") / npos
    return focal + reg


def _targets(anchors, boxes_list):
    pairs = [match(anchors, b) for b in boxes_list]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs])))


def train(net, images, boxes, steps, lr, batch, rng, pow2=False, log=print, after_step=None):
    """Adam with a cosine schedule for ``steps`` batches; random horizontal flips.
    ``after_step(net)``, if given, runs after every optimizer step (e.g. re-applying a
    pruning mask, so the zeros stay zeros)."""
    anchors = anchor_boxes(TRAIN_HW)
    layers = nets.weight_layers(net)
    shadows = [layer.weight.detach().clone().requires_grad_(True) for layer in layers] if pow2 else []
    params = [p for n, p in net.named_parameters() if not (pow2 and n.endswith(".weight") and p.dim() == 4)]
    opt = torch.optim.Adam(params + shadows, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    net.train()
    start = time.perf_counter()
    for step in range(steps):
        idx = rng.integers(0, len(images), batch)
        x, bl = images[idx].copy(), [boxes[i].copy() for i in idx]
        w = x.shape[2]
        for k in np.flatnonzero(rng.random(batch) < 0.5):
            x[k] = x[k, :, ::-1]
            bl[k][:, [0, 2]] = w - bl[k][:, [2, 0]]
        cls_t, box_t = _targets(anchors, bl)
        if pow2:
            with torch.no_grad():
                for layer, s in zip(layers, shadows):
                    layer.weight.copy_(project_pow2(s))
        loss = detection_loss(net(torch.from_numpy(preprocess(x))), cls_t, box_t)
        opt.zero_grad()
        loss.backward()
        for layer, s in zip(layers, shadows):
            s.grad = layer.weight.grad
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(net)
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {float(loss):.3f} {time.perf_counter() - start:.0f} s")
    if pow2:
        with torch.no_grad():
            for layer, s in zip(layers, shadows):
                layer.weight.copy_(project_pow2(s))
    net.eval()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shiftflow.zoo.train_shapesdet", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1600, help="w8a8 QAT steps (batch --batch)")
    p.add_argument("--pow2-steps", type=int, default=300, help="pow2 fine-tuning steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-images", type=int, default=8000)
    p.add_argument("--pow2-lr", type=float, default=1e-4)
    p.add_argument("--w8a8-from", type=Path, metavar="PT",
                   help="skip w8a8 training: load these w8a8 weights and fine-tune pow2 only")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    images, boxes = make_split("train", args.train_images, TRAIN_HW)
    print(f"dataset: {len(images)} train images in {time.perf_counter() - t0:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    with quiet():
        net = ShapesDet(nets.WEIGHT_QUANT["w8a8"])
        for m in nets.weight_layers(net):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        # Heads start quiet: small weights, class prior 0.01 (the usual focal-loss start).
        for cls_head, box_head in net.heads:
            for h in (cls_head, box_head):
                torch.nn.init.normal_(h.weight, std=0.01)
                torch.nn.init.zeros_(h.bias)
            torch.nn.init.constant_(cls_head.bias, -4.6)
        if args.w8a8_from is None:
            secs = train(net, images, boxes, args.steps, 2e-3, args.batch, rng)
            torch.save(net.state_dict(), weights_path("w8a8", args.out))
            print(f"w8a8: {args.steps} steps in {secs:.0f} s")
        else:
            net.load_state_dict(torch.load(args.w8a8_from, map_location="cpu", weights_only=True))
            secs = 0.0
        pnet = ShapesDet(nets.WEIGHT_QUANT["pow2"])
        pnet.load_state_dict(net.state_dict())
        psecs = train(pnet, images, boxes, args.pow2_steps, args.pow2_lr, args.batch, rng, pow2=True)
        torch.save(pnet.state_dict(), weights_path("pow2", args.out))
        print(f"pow2: {args.pow2_steps} steps in {psecs:.0f} s")
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s")
    # The run's record, committed beside the weights (docs/zoo.md quotes it).
    record = {"command": "python -m shiftflow.zoo.train_shapesdet " + " ".join(argv),
              "train_images": args.train_images, "batch": args.batch, "input_hw": list(TRAIN_HW),
              "w8a8": {"steps": args.steps, "seconds": round(secs)},
              "pow2": {"steps": args.pow2_steps, "seconds": round(psecs), "from": "w8a8"},
              "total_seconds": round(total), "torch_threads": torch.get_num_threads()}
    (args.out / "shapesdet-train.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
