"""Turn a zoo network into calibrated, exported ONNX files.

Steps: seeded init → (pow2 variant) projection of the float weights onto powers of two →
activation calibration on seeded synthetic data → Brevitas QCDQ / QONNX export →
normalisation of the ONNX file (IR version, opset check, shape inference, checker).
"""

import math
import os
import uuid
import zlib
from pathlib import Path

from . import nets
from .nets import calibration_mode, quiet, torch
from .spec import WEIGHT_STORAGE_BITS

# Exported opset: Clip on int8 needs ≥ 13; onnxruntime here accepts ≤ 26, the frontend ≤ 21.
OPSET = 17
# onnx 1.23 would stamp IR 14, which this onnxruntime refuses; IR 10 covers opset 21.
IR_VERSION = 10
MAX_OPSET = 21
# pow2 weights: 0 or ±2^k for k in a window of this many exponents below the largest. The
# pow2 quantizer puts the top exponent on integer 64, so the exported integers are
# {0, ±1, ±2, ..., ±64}: a sign and a 3-bit exponent code.
POW2_WINDOW = 7
CALIB_BATCHES = 4
CALIB_BATCH = {"detector": 1}  # 512×512 images are costly; 4 of them calibrate fine
CALIB_BATCH_DEFAULT = 8


def seed_for(name: str) -> int:
    """Fixed per-network seed; all variants of a network share one set of float weights.

    Seeding is all determinism needs: CPU kernels are deterministic for a given thread count,
    and ``torch.use_deterministic_algorithms`` makes 2-thread convolutions ~100× slower.
    """
    return zlib.crc32(name.encode())


def project_pow2(w: "torch.Tensor", window: int = POW2_WINDOW) -> "torch.Tensor":
    """Nearest value (linear distance) in {0} ∪ {±2^e : e_max-window < e ≤ e_max}.

    ``e_max`` is the exponent of the power of two nearest to max|w|, so the largest weights
    keep their magnitude; max|w| of the result is exactly 2^e_max.
    """
    m = float(w.abs().max())
    if m == 0.0:
        return w.clone()
    e_max = math.floor(math.log2(m))
    if m >= 1.5 * 2.0**e_max:
        e_max += 1
    levels = torch.tensor([0.0] + [2.0**e for e in range(e_max - window + 1, e_max + 1)],
                          dtype=w.dtype)
    nearest = (w.abs().unsqueeze(-1) - levels).abs().argmin(dim=-1)
    return torch.sign(w) * levels[nearest]


def calibration_inputs(name: str, hw, seed: int):
    """Seeded synthetic images, uniform in [-1, 1): the range the input quantizer learns."""
    gen = torch.Generator().manual_seed(seed + 1)
    batch = CALIB_BATCH.get(name, CALIB_BATCH_DEFAULT)
    shape = (batch, nets.in_channels(name), *hw)
    return [torch.rand(shape, generator=gen) * 2 - 1 for _ in range(CALIB_BATCHES)]


def build_calibrated(name: str, variant: str, hw) -> "torch.nn.Module":
    """The network ``name`` in ``variant``, initialised from its seed and calibrated.

    The caller's global torch RNG state is left as it was.
    """
    seed = seed_for(name)
    with quiet(), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nets.build_net(name, variant, hw)
        if variant == "pow2":
            for layer in nets.weight_layers(net):
                layer.weight.copy_(project_pow2(layer.weight))
        with calibration_mode(net):
            for x in calibration_inputs(name, hw, seed):
                net(x)
        net.eval()
    return net


def weight_bytes(net, variant: str) -> int:
    """Packed parameter size: weights at their storage width, biases as int32."""
    bits = WEIGHT_STORAGE_BITS[variant]
    layers = nets.weight_layers(net)
    return sum((m.weight.numel() * bits + 7) // 8 + m.bias.numel() * 4 for m in layers)


def export(net, name: str, form: str, hw, path: Path) -> None:
    """Export ``net`` in ``form`` ("qcdq" or "qonnx") to ``path``, written atomically."""
    from brevitas.export import export_onnx_qcdq, export_qonnx

    fn = export_onnx_qcdq if form == "qcdq" else export_qonnx
    example = torch.zeros(1, nets.in_channels(name), *hw)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name no other writer uses (the exporter creates the file, with the usual umask).
    tmp = str(path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp"))
    try:
        with quiet():
            # dynamo=False: the torch.export path cannot carry a quantized (int32) bias.
            fn(net, args=example, export_path=tmp, dynamo=False, opset_version=OPSET,
               input_names=["input"], output_names=nets.OUTPUT_NAMES[name])
        _finalize(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finalize(path: str) -> None:
    """Stamp IR/opset, infer every intermediate shape, check, and save in place."""
    import onnx

    model = onnx.load(path)
    model.ir_version = IR_VERSION
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version > MAX_OPSET:
            raise AssertionError(f"exported opset {op.version} exceeds {MAX_OPSET}")
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    _require_shapes(model)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _require_shapes(model) -> None:
    """Every tensor a node produces must have a static shape after inference.

    QONNX ``Quant`` nodes are outside onnx's schemas; their shapes come from the exporter's
    own value_info, so this catches an exporter that stops providing them.
    """
    g = model.graph
    known = {v.name: v for v in [*g.value_info, *g.output, *g.input]}
    for node in g.node:
        for out in node.output:
            v = known.get(out)
            if v is None or not v.type.tensor_type.HasField("shape"):
                raise AssertionError(f"no inferred shape for '{out}' of {node.op_type} node")
            if any(not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim):
                raise AssertionError(f"non-static shape for '{out}' of {node.op_type} node")
