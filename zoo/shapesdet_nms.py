"""``shapesdet`` as a detector exported *with* its decode and ONNX ``NonMaxSuppression``.

Many exporters end a detector in its box decoding and NMS. ``append_decode_and_nms`` builds
that form from the exported ``shapesdet`` (its six raw head maps): per level, the maps are
flattened to rows ``(y, x, a)``, the boxes decoded against the anchors exactly as
``runtime/decode.py``'s ``ssd`` decoder does (same float32 operations in the same order), the
scores put through a sigmoid, and one ``NonMaxSuppression`` selects the boxes. The head spec
becomes decoder ``nms`` (box format ``xyxy``, input pixels; docs/heads.md). ``shiftflow
compile`` runs the body on the accelerator (convs) and the host (decode ops) and keeps the
NMS as a CPU tail (docs/nms.md).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .shapesdet import ANCHORS, CLASSES, STRIDES, VARIANCES, anchor_sizes, head_spec

NMS_OUTPUT = "selected"


def nms_head_spec(hw: tuple[int, int]) -> dict:
    """The decoder-``nms`` head spec of the model at input ``hw``."""
    spec = head_spec(hw)
    for key in ("levels", "box"):
        spec.pop(key)
    spec.update(decoder="nms", box={"format": "xyxy", "normalized": False})
    return spec


def append_decode_and_nms(model: onnx.ModelProto, hw: tuple[int, int], iou: float = 0.5, score: float = 0.3,
                          max_per_class: int = 100) -> onnx.ModelProto:
    """A copy of the exported ``shapesdet`` ``model`` (input ``hw``) whose one output is the
    NonMaxSuppression's ``selected`` indices over the decoded boxes (module docstring)."""
    from ..runtime.heads import embed_heads, parse_heads

    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    k = len(CLASSES)
    scores, deltas, centres, sizes = [], [], [], []
    for s in STRIDES:
        gh, gw = hw[0] // s, hw[1] // s
        for what, depth, out in (("cls", k, scores), ("box", 4, deltas)):
            t = op("Transpose", [f"{what}_s{s}"], f"nms_{what}_t{s}", perm=[0, 2, 3, 1])
            out.append(op("Reshape", [t, const(f"nms_{what}_shape{s}", np.array([1, gh * gw * ANCHORS, depth]))],
                          f"nms_{what}_rows{s}"))
        ay, ax = np.meshgrid((np.arange(gh, dtype=np.float32) + 0.5) * s, (np.arange(gw, dtype=np.float32) + 0.5) * s,
                             indexing="ij")
        centres.append(np.broadcast_to(np.stack([ax, ay], -1)[:, :, None, :], (gh, gw, ANCHORS, 2)).reshape(-1, 2))
        sizes.append(np.broadcast_to(np.asarray(anchor_sizes(s), np.float32), (gh * gw, ANCHORS, 2)).reshape(-1, 2))
    logits = op("Concat", scores, "nms_logits", axis=1)  # (1, N, C)
    d = op("Concat", deltas, "nms_deltas", axis=1)  # (1, N, 4): dx, dy, dw, dh

    def channels(name: str, lo: int, hi: int) -> str:  # d[..., lo:hi]
        return op("Slice", [d, const(f"{name}_lo", np.array([lo])), const(f"{name}_hi", np.array([hi])),
                            const(f"{name}_ax", np.array([2]))], name)

    v = np.asarray(VARIANCES, np.float32)
    a_c = const("nms_anchor_centres", np.concatenate(centres)[None].astype(np.float32))
    a_s = const("nms_anchor_sizes", np.concatenate(sizes)[None].astype(np.float32))
    # cx = ax + dx * v0 * aw (as runtime/decode.py: (d * v) * a, then + centre)
    c = op("Add", [a_c, op("Mul", [op("Mul", [channels("nms_dxy", 0, 2), const("nms_v01", v[:2])], "nms_dxy_v"), a_s],
                           "nms_dxy_va")], "nms_cxy")
    wh = op("Mul", [a_s, op("Exp", [op("Mul", [channels("nms_dwh", 2, 4), const("nms_v23", v[2:])], "nms_dwh_v")],
                            "nms_dwh_e")], "nms_wh")
    half = op("Div", [wh, const("nms_two", np.float32(2.0))], "nms_half")
    boxes = op("Concat", [op("Sub", [c, half], "nms_lo"), op("Add", [c, half], "nms_hi")], "nms_boxes", axis=2)
    probs = op("Sigmoid", [op("Transpose", [logits], "nms_logits_t", perm=[0, 2, 1])], "nms_scores")  # (1, C, N)
    nodes.append(helper.make_node(
        "NonMaxSuppression", [boxes, probs, const("nms_max", np.array([max_per_class], np.int64)),
                              const("nms_iou", np.array([iou], np.float32)),
                              const("nms_score", np.array([score], np.float32))],
        [NMS_OUTPUT], name="nms", center_point_box=0))
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(NMS_OUTPUT, TensorProto.INT64, ["K", 3]))
    embed_heads(m, parse_heads(nms_head_spec(hw)))
    onnx.checker.check_model(m)
    return m


def main(argv: list[str] | None = None) -> int:
    """``python -m shiftflow.zoo.shapesdet_nms SHAPESDET.onnx -o OUT.onnx``: write the form
    with decode and NMS (its input size read from the model)."""
    import argparse
    import sys

    from ..errors import ShiftflowError

    p = argparse.ArgumentParser(prog="python -m shiftflow.zoo.shapesdet_nms", description=__doc__.split("\n")[0])
    p.add_argument("model", help="a shapesdet export (shiftflow zoo --only shapesdet)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--score", type=float, default=0.3)
    p.add_argument("--max-per-class", type=int, default=100)
    args = p.parse_args(argv)
    try:
        try:
            model = onnx.load(args.model)
        except Exception as exc:  # noqa: BLE001 - onnx raises OSError, DecodeError and others
            raise ShiftflowError(f"cannot read {args.model!r} as ONNX: {exc}") from None
        dims = model.graph.input[0].type.tensor_type.shape.dim
        hw = (dims[2].dim_value, dims[3].dim_value)
        missing = {f"{k}_s{s}" for s in STRIDES for k in ("cls", "box")} - {o.name for o in model.graph.output}
        if missing:
            raise ShiftflowError(f"{args.model} is not a shapesdet export: no output {', '.join(sorted(missing))}")
        onnx.save(append_decode_and_nms(model, hw, args.iou, args.score, args.max_per_class), args.output)
    except ShiftflowError as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({hw[0]}x{hw[1]}, NonMaxSuppression IoU {args.iou}, score {args.score})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
