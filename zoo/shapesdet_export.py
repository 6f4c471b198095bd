"""Export ``shapesdet`` from its committed weights (no training): ONNX plus head spec.

The zoo's other networks are calibrated from a seeded init (:mod:`shiftflow.zoo.export`);
``shapesdet`` instead loads ``zoo/weights/shapesdet-{variant}.pt`` — trained weights and
learned activation scales — so a build takes seconds. Each exported model carries its head
spec (docs/heads.md) in ``metadata_props`` under ``shiftflow.heads`` and in a file
``MODEL.heads.json`` beside ``MODEL.onnx``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ..errors import UsageError
from . import nets
from .export import OPSET, _finalize
from .nets import quiet, torch
from .shapesdet import OUTPUT_NAMES, ShapesDet, check_hw, head_spec

WEIGHTS_DIR = Path(__file__).parent / "weights"
VARIANTS = ("w8a8", "pow2")


def weights_file(variant: str) -> Path:
    """The committed state_dict of ``variant``; raises UsageError for another variant."""
    if variant not in VARIANTS:
        raise UsageError(f"shapesdet has variants {', '.join(VARIANTS)}, not '{variant}'")
    return WEIGHTS_DIR / f"shapesdet-{variant}.pt"


def load_trained(variant: str, hw: tuple[int, int] = (128, 128)) -> "torch.nn.Module":
    """The trained network in eval mode; ``hw`` only has to suit the strides (fully conv)."""
    check_hw(hw)
    path = weights_file(variant)
    with quiet():
        net = ShapesDet(nets.WEIGHT_QUANT[variant], hw)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()
    return net


def export_shapesdet(net, form: str, hw: tuple[int, int], path: Path) -> None:
    """Export ``net`` in ``form`` to ``path`` with the head spec in its metadata, and write
    ``path``'s ``.heads.json`` beside it; both written atomically."""
    import onnx
    from brevitas.export import export_onnx_qcdq, export_qonnx

    from ..runtime.heads import embed_heads, parse_heads

    fn = export_onnx_qcdq if form == "qcdq" else export_qonnx
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = parse_heads(head_spec(hw))
    tmp = str(path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp"))
    try:
        with quiet(), torch.no_grad():
            fn(net, args=torch.zeros(1, 3, *hw), export_path=tmp, dynamo=False,
               opset_version=OPSET, input_names=["input"], output_names=OUTPUT_NAMES)
        _finalize(tmp)
        model = onnx.load(tmp)
        embed_heads(model, spec)
        onnx.save(model, tmp)
        heads_tmp = tmp + ".json"
        Path(heads_tmp).write_text(spec.to_json())
        os.replace(heads_tmp, path.with_suffix(".heads.json"))
        os.replace(tmp, path)
    finally:
        for t in (tmp, tmp + ".json"):
            if os.path.exists(t):
                os.unlink(t)
