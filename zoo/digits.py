"""The bundled default model: a small float CNN trained on scikit-learn's digits.

``data/digits_cnn.onnx`` (float, with BatchNorm) and ``data/digits_calib.npz`` (calibration
images) ship with shiftflow so the main job runs offline. Regenerate them with
``python -m shiftflow.zoo.digits`` (seeded: the same bytes every time on one machine).
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import numpy as np
import onnx

SEED = 0
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MODEL_PATH = DATA_DIR / "digits_cnn.onnx"
CALIB_PATH = DATA_DIR / "digits_calib.npz"


def load_data():
    """Digits as float32 (N, 1, 8, 8) images in [0, 1]; a stratified 70/30 split
    ``(x_train, x_test, y_train, y_test)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return tuple(train_test_split(x, digits.target, test_size=0.3, random_state=SEED, stratify=digits.target))


def make_net():
    """Conv-BN-ReLU-MaxPool twice, then a linear classifier (BN folding and activation fusion
    are both exercised by quantization)."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return DigitsCNN()


def train(x: np.ndarray, y: np.ndarray, epochs: int = 40, net=None, lr: float = 3e-3, after_step=None):
    """Seeded Adam training on one thread (reproducible): a new net, or further training of
    ``net`` (fine-tuning); ``after_step(net)`` runs after every optimizer step (e.g. to
    re-apply a pruning mask)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    net = make_net() if net is None else net
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
            if after_step is not None:
                after_step(net)
    return net.eval()


def export(net) -> onnx.ModelProto:
    """Float ONNX with a static batch of 1 (the accelerator's shape), IR 10 / opset 13."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation notices
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), buf, dynamo=False, opset_version=13,
                          input_names=["image"], output_names=["logits"])
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = 10
    return model


def calibration_images(x_train: np.ndarray, n: int = 256) -> np.ndarray:
    return x_train[np.random.default_rng(SEED).choice(len(x_train), n, replace=False)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="regenerate the bundled digits model and calibration data")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_data()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(export(train(x_train, y_train)), args.out / MODEL_PATH.name)
    np.savez_compressed(args.out / CALIB_PATH.name, image=calibration_images(x_train, 64))
    print(f"wrote {args.out / MODEL_PATH.name} and {args.out / CALIB_PATH.name}")


if __name__ == "__main__":
    main()
