"""Benchmark: accuracy of ``shiftflow quantize`` (po2 PTQ) on scikit-learn's digits.

Trains a small seeded CNN on ``load_digits`` (8x8 grey images, 10 classes; ships with
scikit-learn), exports it to float ONNX, quantizes it with several settings and compares
top-1 accuracy on the held-out split under onnxruntime (graph optimizations off).

    python benchmarks/bench_quantize_digits.py [--out-dir DIR]

Every quantized model must pass ``shiftflow check`` bit-exactly on 16 test images, else the
benchmark fails (``guard.write_result``).

Prints a table and writes ``benchmarks/results/quantize_digits.json``. The float and quantized
models land in ``--out-dir`` (default: a fresh temporary directory, printed);
:func:`quantize_all` returns their paths so a later step can run ``shiftflow check`` on each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from guard import write_result
from shiftflow.frontend.calibrate import float_session
from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.quantize import quantize_model
from shiftflow.zoo.digits import SEED, calibration_images, export, load_data, train

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
    x_train, x_test, y_train, y_test = load_data()
    start = time.perf_counter()
    float_model = export(train(x_train, y_train))
    train_s = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(float_model, out_dir / "float.onnx")
    calib = calibration_images(x_train, CALIB_SAMPLES)
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
        # The quantized model must also pass `shiftflow check` (L1 == L0, bit for bit).
        graph = import_onnx(path)
        exact = all(check_model(path, x[None], graph=graph).bit_exact for x in x_test[:16])
        rows[name] = {**SETTINGS[name], "top1": round(top1, 4), "drop": round(base - top1, 4),
                      "logit_rel_rms_error": round(err, 4), "check_bit_exact": exact, "model": path.name}
    print(f"float top-1 {base:.4f} on {len(y_test)} held-out digits "
          f"(train {train_s:.1f} s, {len(paths)} quantizations {quant_s:.1f} s; models in {out_dir})")
    print(f"{'setting':24} {'top-1':>7} {'drop':>7} {'logit err':>9} {'check':>9}")
    for name, row in rows.items():
        print(f"{name:24} {row['top1']:7.4f} {row['drop']:+7.4f} {row['logit_rel_rms_error']:9.4f} "
              f"{'bit-exact' if row['check_bit_exact'] else 'MISMATCH':>9}")
    result = {"dataset": "sklearn load_digits, 30% stratified held-out split",
              "test_samples": len(y_test), "calibration_samples": CALIB_SAMPLES,
              "float_top1": round(base, 4), "settings": rows}
    write_result("quantize_digits.json", result,
                 {f"{name}: check bit-exact": row["check_bit_exact"] for name, row in rows.items()}, indent=2)
    return result


if __name__ == "__main__":
    main()
