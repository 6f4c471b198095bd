"""Pass ``dataflow``: channel- or pixel-parallel for every convolution.

Channel-parallel (``tn`` input channels of one pixel per cycle) suits deep layers and 1x1
convolutions; pixel-parallel (``tn`` neighbouring output pixels, one input channel per
cycle) suits shallow inputs and depthwise layers. ``auto`` tiles the layer both ways and
keeps the one the shared cost model (``ir/cost.py``, via the tiler's estimate) finds
faster; ``channel``/``pixel`` force one wherever it is legal. Pixel-parallel needs stride
<= 2; depthwise pixel-parallel has PE row i read ring channel i (block i // tn, lane
i % tn, docs/isa.md), so a ``tm = k*tn`` array reads k words per pixel and cycle. A layer
that cannot take the requested dataflow falls back and its note says why.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ResourceError, UsageError
from .plan import Layer, Plan
from .tiling import choose_tiling

DATAFLOWS = ("auto", "channel", "pixel")


def pixel_stride_reason(strides) -> str | None:
    """Why a conv of these strides cannot be pixel-parallel (the line buffer reads column
    stride 1 or 2, docs/isa.md), or None."""
    if max(strides) > 2:
        return f"pixel-parallel needs stride <= 2, layer has {tuple(strides)}"
    return None


def pixel_illegal(layer: Layer, plan: Plan) -> str | None:
    """Why pixel-parallel cannot run ``layer``, or None."""
    return pixel_stride_reason(layer.op.attrs["strides"])


def channel_illegal(layer: Layer, plan: Plan) -> str | None:
    """Why channel-parallel cannot run ``layer``, or None: it takes int weights (pow2 codes are
    pixel-parallel only, docs/isa.md), so a pow2 layer on a target without int weights cannot."""
    if layer.op.attrs.get("wenc", "int") == "pow2" and "int" not in plan.config.weight_encodings:
        return f"channel-parallel takes int weights, target {plan.config.name!r} has only pow2"
    return None


def choose_dataflow(layer: Layer, plan: Plan) -> Layer:
    why = pixel_illegal(layer, plan)
    want = plan.dataflow_request
    no_channel = channel_illegal(layer, plan)
    if no_channel is not None and why is None:
        return replace(layer, dataflow="pixel", note=no_channel if want == "channel" else "")
    if want == "channel" or why is not None:
        note = why if want == "pixel" else ""
        return replace(layer, dataflow="channel", note=note)
    costs, errors = {}, {}
    for flow in ("channel", "pixel"):
        try:
            costs[flow] = choose_tiling(replace(layer, dataflow=flow), plan)[1]["cycles"]
        except ResourceError as exc:
            errors[flow] = exc
    if not costs:
        raise errors["channel"]
    if want == "pixel":
        if "pixel" in costs:
            return replace(layer, dataflow="pixel")
        return replace(layer, dataflow="channel", note=f"pixel-parallel does not fit: {errors['pixel']}")
    pick = min(costs, key=lambda f: (costs[f], f != "channel"))
    note = ", ".join(f"{f} ~{c} cycles" for f, c in sorted(costs.items()))
    return replace(layer, dataflow=pick, note=note)


def choose_dataflows(plan: Plan) -> Plan:
    """The dataflow pass."""
    if plan.dataflow_request not in DATAFLOWS:
        raise UsageError(f"unknown dataflow {plan.dataflow_request!r}; choose from {', '.join(DATAFLOWS)}")
    order = tuple(choose_dataflow(x, plan) if isinstance(x, Layer) and x.is_conv else x for x in plan.order)
    return replace(plan, order=order)
