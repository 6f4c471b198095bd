"""Models quantized by onnxruntime's own `quantize_static`, forced to po2 scales, import
bit-exactly (docs/design.md, "Environment facts": TensorQuantOverrides + QDQDisableWeightAdjustForInt32Bias)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from shiftflow.zoo.digits import CALIB_PATH, MODEL_PATH


class _Reader(CalibrationDataReader):
    def __init__(self, images):
        self.it = iter([{"image": img[None]} for img in images])

    def get_next(self):
        return next(self.it, None)


def _po2(max_abs: float, qmax: int = 127) -> np.ndarray:
    return np.array(2.0 ** np.ceil(np.log2(max(max_abs, 1e-8) / qmax)), np.float32)


def _po2_overrides(model: onnx.ModelProto, images: np.ndarray) -> dict:
    """Per-tensor po2 scales for every float tensor: activations from calibration ranges,
    weights from their values (zero points 0)."""
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    names = [o for n in probe.graph.node for o in n.output]
    for name in names:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [sess.run(names, {"image": img[None]}) for img in images]
    overrides = {"image": [{"scale": _po2(float(np.abs(images).max())), "zero_point": np.array(0, np.int8)}]}
    for i, name in enumerate(names):
        overrides[name] = [{"scale": _po2(max(float(np.abs(o[i]).max()) for o in outs)), "zero_point": np.array(0, np.int8)}]
    for init in model.graph.initializer:
        w = onnx.numpy_helper.to_array(init)
        if w.ndim >= 2:
            overrides[init.name] = [{"scale": _po2(float(np.abs(w).max())), "zero_point": np.array(0, np.int8)}]
    return overrides


def test_quantize_static_with_po2_overrides_is_bit_exact(tmp_path):
    model = onnx.load(MODEL_PATH)
    images = np.load(CALIB_PATH)["image"][:16]
    out = tmp_path / "ort_q.onnx"
    quantize_static(model, str(out), _Reader(images), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"TensorQuantOverrides": _po2_overrides(model, images),
                                   "QDQDisableWeightAdjustForInt32Bias": True})
    graph = import_onnx(out)
    assert [op.kind for op in graph.ops].count("conv") == 3
    assert not [op for op in graph.ops if op.kind == "cpu"]
    for img in images[:4]:
        assert check_model(out, img[None], graph=graph).bit_exact
