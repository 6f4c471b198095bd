"""Benchmark: accuracy of ``shiftflow quantize`` (po2 PTQ) on scikit-learn's digits.

Trains a small seeded CNN on ``load_digits`` (8x8 grey images, 10 classes; ships with
scikit-learn), exports it to float ONNX, quantizes it with several settings and compares
top-1 accuracy on the held-out split under onnxruntime (graph optimizations off).

    python benchmarks/bench_quantize_digits.py [--out-dir DIR]

Prints a table and writes ``benchmarks/results/quantize_digits.json``. The float and quantized
models land in ``--out-dir`` (default: a fresh temporary directory, printed);
:func:`quantize_all` returns their paths so a later step can run ``shiftflow check`` on each.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from shiftflow.frontend.calibrate import float_session
from shiftflow.frontend.quantize import quantize_model

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
CALIB_SAMPLES = 256

#: name -> quantize_model keyword arguments (calibration is added by quantize_all).
SETTINGS: dict[str, dict] = {
    "w8a8": dict(wbits=8, abits=8),
    "w8a8 per-channel": dict(wbits=8, abits=8, per_channel=True),
    "w8a8 random calib": dict(wbits=8, abits=8, calib_random=CALIB_SAMPLES),
    "w4a8": dict(wbits=4, abits=8),
    "w4a8 per-channel": dict(wbits=4, abits=8, per_channel=True),
    "w2a8 per-channel": dict(wbits=2, abits=8, per_channel=True),
    "pow2 w8a8": dict(wbits=8, abits=8, weights="pow2"),
    "pow2 w4a8": dict(wbits=4, abits=8, weights="pow2"),
    "pow2 w4a8 per-channel": dict(wbits=4, abits=8, weights="pow2", per_channel=True),
    "pow2 w3a8 per-channel": dict(wbits=3, abits=8, weights="pow2", per_channel=True),
    "w8a4": dict(wbits=8, abits=4),
    "w4a4 per-channel": dict(wbits=4, abits=4, per_channel=True),
    "pow2 w4a4 per-channel": dict(wbits=4, abits=4, weights="pow2", per_channel=True),
}


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 (N, 1, 8, 8) images in [0, 1]; a stratified 70/30 split."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return tuple(train_test_split(x, digits.target, test_size=0.3, random_state=SEED,
                                  stratify=digits.target))


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool twice, then a linear classifier: BN folding and activation
    fusion are both exercised."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def train(x: np.ndarray, y: np.ndarray, epochs: int = 40) -> nn.Module:
    torch.manual_seed(SEED)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def export(net: nn.Module) -> onnx.ModelProto:
    """Float ONNX with a static batch of 1 (the accelerator's shape), IR 10 / opset 13."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation notices
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), buf, dynamo=False, opset_version=13,
                          input_names=["image"], output_names=["logits"])
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = 10
    return model


def logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's outputs under onnxruntime, one image at a time (the model's batch is 1)."""
    session = float_session(model)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: img[None]})[0] for img in x])


def quantize_all(float_model: onnx.ModelProto, calib: np.ndarray, out_dir: Path) -> dict[str, Path]:
    """Quantize ``float_model`` with every entry of :data:`SETTINGS`; return the saved paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, kwargs in SETTINGS.items():
        kwargs = dict(kwargs)
        if "calib_random" not in kwargs:
            kwargs["calib"] = calib
        path = out_dir / (name.replace(" ", "_") + ".onnx")
        onnx.save(quantize_model(float_model, seed=SEED, **kwargs), path)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="shiftflow_digits_"))
    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = load_data()
    start = time.perf_counter()
    float_model = export(train(x_train, y_train))
    train_s = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(float_model, out_dir / "float.onnx")
    calib = x_train[np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)]
    start = time.perf_counter()
    paths = quantize_all(float_model, calib, out_dir)
    quant_s = time.perf_counter() - start
    ref = logits(float_model, x_test)
    base = float(np.mean(ref.argmax(1) == y_test))
    rows = {}
    for name, path in paths.items():
        out = logits(onnx.load(path), x_test)
        top1 = float(np.mean(out.argmax(1) == y_test))
        # Relative RMS logit error: a finer signal than a top-1 over 540 images.
        err = float(np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2)))
        rows[name] = {**SETTINGS[name], "top1": round(top1, 4), "drop": round(base - top1, 4),
                      "logit_rel_rms_error": round(err, 4), "model": path.name}
    print(f"float top-1 {base:.4f} on {len(y_test)} held-out digits "
          f"(train {train_s:.1f} s, {len(paths)} quantizations {quant_s:.1f} s; models in {out_dir})")
    print(f"{'setting':24} {'top-1':>7} {'drop':>7} {'logit err':>9}")
    for name, row in rows.items():
        print(f"{name:24} {row['top1']:7.4f} {row['drop']:+7.4f} {row['logit_rel_rms_error']:9.4f}")
    result = {"dataset": "sklearn load_digits, 30% stratified held-out split",
              "test_samples": len(y_test), "calibration_samples": CALIB_SAMPLES,
              "float_top1": round(base, 4), "settings": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quantize_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
