"""Pass ``partition``: which IR ops run on the accelerator, which on the host, and in what order.

An op runs on the accelerator when the ISA can express it exactly (docs/isa.md); anything
else goes to the host with a one-line reason (``Plan.host_reasons``, copied into the
manifest). The execution order is a topological order that keeps accelerator ops together,
so a model becomes few accelerator segments. Every tensor an accelerator layer reads or
writes gets a DRAM placement; a concat whose inputs start on channel-block boundaries and
already have its type is free (producers store straight into their slice), otherwise its
misfit inputs are copied by requantizing vector ops.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UnsupportedError
from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div
from ..ir.graph import Graph, Op
from ..ir.isa import InGeom, Vec, Window, field_max
from ..ir.types import TensorType
from . import numerics
from .dataflow import pixel_stride_reason
from .plan import DramTensor, HostOp, Layer, Plan

HOST_KINDS = {"quantize": "graph input quantization runs on the host",
              "cpu": "not an integer op (runs in onnxruntime)",
              "reshape": "reshape permutes the channel-blocked layout",
              "transpose": "transpose permutes the channel-blocked layout"}
MAX_KERNEL, MAX_STRIDE, MAX_DILATION = (field_max(Window, f) for f in ("kh", "sh", "dh"))
MAX_CHANS = field_max(Vec, "inp.chans")
# rows and columns an image may have: its size and its signed tap coordinates must fit InGeom
MAX_SIDE = min(field_max(InGeom, f) for f in ("width", "height", "x0", "y_first", "x_first"))


def is_depthwise(graph: Graph, op: Op) -> bool:
    """Depthwise with channel multiplier 1: one input channel per output channel."""
    x, w = graph.types[op.inputs[0]].shape, graph.types[op.inputs[1]].shape
    return op.attrs["groups"] == x[1] == w[0] > 1 and w[1] == 1


def planes(t: TensorType) -> int:
    """Bytes a value of ``t`` takes in DRAM: 1 up to 8 bits, else 2 or 4 (a wide conv output
    stored as byte planes, docs/isa.md "Wide outputs")."""
    return 1 if t.bits <= 8 else 2 if t.bits <= 16 else 4


def _activation_ok(t: TensorType, what: str, wide: bool = False) -> str | None:
    """Why the accelerator cannot read (or, with ``wide``, write) tensor ``t``, or None."""
    if not t.is_int:
        return f"{what} is float"
    if len(t.shape) != 4:
        return f"{what} has rank {len(t.shape)}, not 4"
    if t.shape[0] != 1:
        return f"{what} has batch {t.shape[0]}, not 1"
    if t.bits > (32 if wide else 8):
        return (f"{what} is {t.bits}-bit (a conv stores at most 32 bits)" if wide
                else f"{what} is {t.bits}-bit (the accelerator reads at most 8 bits)")
    if t.per_channel:
        return f"{what} has per-channel scales"
    if max(t.shape[2:]) > MAX_SIDE:
        return f"{what} is {t.shape[2]}x{t.shape[3]}, more rows or columns than the ISA's {MAX_SIDE}"
    return None


def _window_ok(op: Op, kernel) -> str | None:
    if max(kernel) > MAX_KERNEL:
        return f"kernel {tuple(kernel)} exceeds {MAX_KERNEL}"
    if max(op.attrs["strides"]) > MAX_STRIDE:
        return f"stride {tuple(op.attrs['strides'])} exceeds {MAX_STRIDE}"
    if max(op.attrs["dilations"]) > MAX_DILATION:
        return f"dilation {tuple(op.attrs['dilations'])} exceeds {MAX_DILATION}"
    return None


def host_reason(graph: Graph, op: Op, cfg: AcceleratorConfig) -> str | None:
    """Why ``op`` must run on the host, or None when the accelerator runs it exactly."""
    if op.kind == "quantize" and op.inputs[0] not in graph.inputs:
        return "quantizing a float tensor (a CPU op's output) runs on the host"
    if op.kind in HOST_KINDS:
        return HOST_KINDS[op.kind]
    if op.kind == "concat":
        return _concat_reason(graph, op, cfg)
    if op.kind == "conv":
        numerics.aligned_bias(graph, op)  # refused outright, not sent to the host
    acts = [op.inputs[0]] if op.kind == "conv" else list(op.inputs)
    for i, t in enumerate(acts):
        why = _activation_ok(graph.types[t], f"input {i}")
        if why:
            return why
    why = _activation_ok(graph.types[op.outputs[0]], "output", wide=op.kind == "conv")
    if why:
        return why
    try:
        if op.kind == "conv":
            return _conv_reason(graph, op, cfg)
        if op.kind == "add" and len({graph.types[t].shape for t in op.inputs + op.outputs}) != 1:
            return "broadcasting add"
        if op.kind in ("maxpool", "avgpool"):
            why = _window_ok(op, op.attrs["kernel"])
            if why:
                return why
        if op.kind == "resize" and max(op.attrs["scales"]) > MAX_KERNEL:
            return f"resize factors {op.attrs['scales']} exceed {MAX_KERNEL}"
        if graph.types[op.inputs[0]].shape[1] > MAX_CHANS:
            return f"more than {MAX_CHANS} channels"
        numerics.vec_shifts(graph, op, cfg.acc_bits)
    except UnsupportedError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def host_reasons(graph: Graph, cfg: AcceleratorConfig) -> dict[str, str | None]:
    """``host_reason`` of every op: the placement ``partition`` makes (and ``inspect`` shows)."""
    return {op.name: host_reason(graph, op, cfg) for op in graph.ops}


def _conv_reason(graph: Graph, op: Op, cfg: AcceleratorConfig) -> str | None:
    w = graph.types[op.inputs[1]]
    why = _window_ok(op, w.shape[2:])
    if why:
        return why
    wenc = op.attrs.get("wenc", "int")
    if wenc == "int" and "int" not in cfg.weight_encodings:
        return f"int weights, target {cfg.name!r} implements only {cfg.weight_encodings}"
    no_pixel = pixel_stride_reason(op.attrs["strides"])
    if wenc == "pow2" and "int" not in cfg.weight_encodings and no_pixel:
        return f"pow2 weights take the pixel-parallel dataflow on target {cfg.name!r} (no int weights): {no_pixel}"
    _, shift = numerics.conv_params(graph, op, cfg.acc_bits)
    if graph.types[op.outputs[0]].bits > 8:
        return _wide_reason(op, shift)
    return None


def _wide_reason(op: Op, shift) -> str | None:
    """Why a conv's wide output (more than 8 bits) cannot be stored as the exact sum after the
    activation (docs/isa.md "Wide outputs"), or None."""
    act, _ = numerics.act_fields(op)
    if act == "leaky":
        return "a wide output with a leaky activation (its slope is a shift)"
    if "clip" in op.attrs:
        return "a wide output with a clip (wide outputs are not clamped)"
    if int(abs(shift).max(initial=0)):
        return "a wide output that is not the exact sum (requant shift is not 0)"
    return None


def _concat_reason(graph: Graph, op: Op, cfg: AcceleratorConfig) -> str | None:
    out = graph.types[op.outputs[0]]
    why = _activation_ok(out, "output")
    if why:
        return why
    if op.attrs["axis"] % 4 != 1:
        return f"concat along axis {op.attrs['axis']} (only channels are blocked)"
    for i, t in enumerate(op.inputs):
        why = _activation_ok(graph.types[t], f"input {i}")
        if why:
            return why
        if i < len(op.inputs) - 1 and graph.types[t].shape[1] % cfg.tn:
            return f"input {i} has {graph.types[t].shape[1]} channels, so the next does not start on a {cfg.tn}-channel block"
    try:
        for t in op.inputs:
            numerics.copy_shift(graph.types[t], op, out)
    except UnsupportedError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def execution_order(graph: Graph, on_accel: dict[str, bool]) -> list[Op]:
    """A topological order of the ops that runs as few host/accelerator switches as it can:
    among the ready ops it keeps to the current side, then to graph order."""
    producer = graph.producer()
    deps = {op.name: {producer[t].name for t in op.inputs if t in producer} for op in graph.ops}
    done: set[str] = set()
    remaining = list(graph.ops)
    order: list[Op] = []
    side = None
    while remaining:
        ready = [op for op in remaining if deps[op.name] <= done]
        pick = next((op for op in ready if on_accel[op.name] == side), ready[0])
        side = on_accel[pick.name]
        order.append(pick)
        done.add(pick.name)
        remaining.remove(pick)
    return order


def _dram_tensor(graph: Graph, name: str, cfg: AcceleratorConfig, whole_tm: bool = False) -> DramTensor:
    t = graph.types[name]
    c = t.shape[1]
    blocks = ceil_div(c, cfg.tm) * (cfg.tm // cfg.tn) if whole_tm else ceil_div(c, cfg.tn)
    return DramTensor(name, tuple(t.shape), t.bits, t.signed, int(t.frac), blocks, name, planes=planes(t))


def _in_place(graph: Graph, op: Op, i: int, tensors: dict, taken: set[str], offsets: list[int]) -> bool:
    """Whether concat input ``i`` can be stored straight into its slice of the output."""
    name = op.inputs[i]
    src, out = graph.types[name], graph.types[op.outputs[0]]
    if (src.bits, src.signed, src.frac) != (out.bits, out.signed, out.frac) or name in taken:
        return False
    if op.inputs.count(name) > 1 or name in graph.inputs:
        return False
    act = op.attrs.get("act", "none")
    if act == "leaky" and src.signed or act == "relu" and src.signed:
        return False
    lo, hi = numerics.post_range(op, out)
    if not (lo <= src.qmin and src.qmax <= hi):
        return False
    t = tensors.get(name)
    return t is None or t.buffer == name and offsets[i] + t.blocks <= offsets[i + 1]


def partition(plan: Plan) -> Plan:
    """The partition pass: fills in the execution order, host reasons and DRAM tensors of a
    fresh plan (``Plan.start``)."""
    graph, cfg = plan.graph, plan.config
    reasons = host_reasons(graph, cfg)
    on_accel = {k: v is None for k, v in reasons.items()}
    order = execution_order(graph, on_accel)
    tensors: dict[str, DramTensor] = {}
    taken: set[str] = set()
    fused: dict[str, str] = {}
    items: list = []
    for op in order:
        if not on_accel[op.name]:
            items.append(HostOp(op.name, reasons[op.name]))
            continue
        if op.kind == "concat":
            layer = _plan_concat(graph, op, cfg, tensors, taken, fused)
            if layer is not None:
                items.append(layer)
            continue
        acts = [op.inputs[0]] if op.kind == "conv" else list(op.inputs)
        for t in acts:
            tensors.setdefault(t, _dram_tensor(graph, t, cfg))
        out = op.outputs[0]
        if out not in tensors:
            tensors[out] = _dram_tensor(graph, out, cfg, whole_tm=op.kind == "conv")
        depthwise = op.kind == "conv" and is_depthwise(graph, op)
        items.append(Layer(op.name, op.kind, op, tuple(acts), out, depthwise=depthwise))
    # Ops that read tensors an accelerator layer wrote, or that feed one, exchange them
    # through DRAM: make sure every such tensor a host op reads is placed.
    accel_out = {x.output for x in items if isinstance(x, Layer)}
    for op in graph.ops:
        if not on_accel[op.name]:
            for t in op.inputs:
                if t in accel_out:
                    tensors.setdefault(t, _dram_tensor(graph, t, cfg))
    host = {x.name: x.reason for x in items if isinstance(x, HostOp)}
    return replace(plan, order=tuple(items), tensors=tensors, host_reasons=host, fused=fused)


def _plan_concat(graph: Graph, op: Op, cfg: AcceleratorConfig, tensors: dict, taken: set, fused: dict):
    """Place a concat: aliased inputs in their slices, a copy layer for the others (or None)."""
    out = op.outputs[0]
    offsets = [0]
    for t in op.inputs:
        offsets.append(offsets[-1] + ceil_div(graph.types[t].shape[1], cfg.tn))
    tensors[out] = _dram_tensor(graph, out, cfg)
    copies = []
    for i, name in enumerate(op.inputs):
        if _in_place(graph, op, i, tensors, taken, offsets):
            base = _dram_tensor(graph, name, cfg)
            blocks = tensors[name].blocks if name in tensors else base.blocks
            tensors[name] = DramTensor(name, base.shape, base.bits, base.signed, base.frac, blocks, out, offsets[i])
            taken.add(name)
            # A concat stored in place here takes the slices stored in place in it along.
            for k, t in list(tensors.items()):
                if t.buffer == name and k != name:
                    tensors[k] = replace(t, buffer=out, block_offset=offsets[i] + t.block_offset)
        else:
            tensors.setdefault(name, _dram_tensor(graph, name, cfg))
            copies.append((name, offsets[i]))
    if not copies:
        fused[op.name] = "concat stored in place by its producers"
        return None
    return Layer(op.name, "copy", op, tuple(c[0] for c in copies), out, copies=tuple(copies),
                 note=f"{len(op.inputs) - len(copies)} of {len(op.inputs)} inputs in place")
