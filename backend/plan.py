"""The back end's plan: what every pass reads and refines, its verifier and its text form.

A ``Plan`` is immutable; passes return a new one with ``dataclasses.replace``. It holds the
execution order (host ops and accelerator layers), the DRAM tensors the accelerator touches,
and, as passes run, each layer's dataflow, tiling, on-chip buffers and finally instructions.
``format_plan`` is what ``--print-after PASS`` prints; ``backend/verify.py`` checks the
invariants that hold after each pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div
from ..ir.graph import Graph, Op



@dataclass(frozen=True)
class DramTensor:
    """An integer activation tensor in DRAM, channel-blocked (docs/isa.md "Activation layout").

    ``buffer`` names the DRAM allocation holding it: itself, or a concat output when the tensor
    is stored straight into its slice (starting at block ``block_offset``). ``blocks`` may
    exceed ``ceil(C/tn)`` when a producer writes whole ``tm``-channel blocks.
    """

    name: str
    shape: tuple[int, int, int, int]
    bits: int
    signed: bool
    frac: int
    blocks: int
    buffer: str
    block_offset: int = 0
    addr: int = -1
    row_stride: int = 0
    blk_stride: int = 0
    #: bytes a value: 1, or 2 and 4 for a wide conv output stored as byte planes (docs/isa.md
    #: "Wide outputs"; byte ``k`` of block ``b`` is DRAM block ``k*blocks + b``)
    planes: int = 1


@dataclass(frozen=True)
class Tiling:
    """Column-prior tiling of one layer (output coordinates before any fused pool).

    The computed output region ``out_h x out_w`` is cut into strips of ``sc`` columns and each
    strip into bands of ``br`` rows; every band is one compute instruction per output block.
    Inputs sit in rings of ``slots`` row slots of ``ring_cols`` words per channel block.
    ``groups`` lists, per weight group (conv) or channel chunk (vector ops), the output
    blocks it computes, in units of the layer's output block (``tm`` channels for conv,
    ``tn`` for vector ops). A split conv (``chunks``) has one output block per group.
    """

    out_h: int
    out_w: int
    sc: int
    br: int
    slots: int
    ring_cols: int
    groups: tuple[tuple[int, ...], ...]
    obuf_bufs: int = 2
    double: bool = True  # the ring holds the next band's rows too (loads overlap compute)
    #: reduction split (backend/reduction.py): input-channel ranges ``(c0, c1)``, one CONV
    #: each per tile, meeting in the partial-sum buffer; empty for a layer that is not split
    chunks: tuple[tuple[int, int], ...] = ()

    @property
    def strips(self) -> int:
        return ceil_div(self.out_w, self.sc)

    @property
    def bands(self) -> int:
        return ceil_div(self.out_h, self.br)


@dataclass(frozen=True)
class Layer:
    """One accelerator layer: an IR op (plus the ops fused into it) and how it runs.

    ``kind`` is the IR op kind, or ``copy`` for the requantizing copies of a concat (``op`` is
    then the concat and ``copies`` lists (source tensor, first destination block)).
    """

    name: str
    kind: str
    op: Op
    inputs: tuple[str, ...]
    output: str
    fused: tuple[str, ...] = ()
    depthwise: bool = False
    pool: int = 0
    dataflow: str | None = None
    note: str = ""
    copies: tuple[tuple[str, int], ...] = ()
    tiling: Tiling | None = None
    params: dict = field(default_factory=dict, compare=False)

    @property
    def is_conv(self) -> bool:
        return self.kind == "conv"


@dataclass(frozen=True)
class HostOp:
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """The back end's state between passes. ``order`` is the execution order of host ops and
    accelerator layers; ``tensors`` the DRAM tensors; later passes fill ``buffers`` (on-chip
    placement per layer), ``dram`` (sizes, constants image) and ``program`` (scheduled
    instructions, segments)."""

    graph: Graph
    config: AcceleratorConfig
    dataflow_request: str = "auto"
    order: tuple[HostOp | Layer, ...] = ()
    tensors: dict = field(default_factory=dict)
    host_reasons: dict = field(default_factory=dict)
    fused: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    dram: dict = field(default_factory=dict)
    weights: bytes = b""
    program: object = None
    #: interleave consecutive layers' steps (backend/overlap.py); DRAM buffers then live one
    #: layer longer, since the next layer's stores may run before this one's last loads
    overlap: bool = True
    #: emit SPCONV for pixel-parallel blocks with zero steps where faster (backend/sparse.py);
    #: off by default while the RTL does not execute SPCONV
    sparse: bool = False

    @property
    def layers(self) -> list[Layer]:
        return [x for x in self.order if isinstance(x, Layer)]


def format_plan(plan: Plan) -> str:
    """Human-readable plan: one line per host op / layer, with what the passes decided."""
    lines = [f"// plan for target {plan.config.name}"]
    for item in plan.order:
        if isinstance(item, HostOp):
            lines.append(f"host  {item.name}  ({item.reason})")
            continue
        layer = item
        bits = [f"accel {layer.kind:<8} {layer.name}"]
        if layer.fused:
            bits.append(f"fused={list(layer.fused)}")
        if layer.depthwise:
            bits.append("depthwise")
        if layer.pool:
            bits.append(f"pool={layer.pool}")
        if layer.dataflow:
            bits.append(f"dataflow={layer.dataflow}")
        if layer.copies:
            bits.append(f"copies={[c for c in layer.copies]}")
        t = layer.tiling
        if t is not None:
            bits.append(f"tile={t.br}x{t.sc} strips={t.strips} bands={t.bands} slots={t.slots} "
                        f"ring_cols={t.ring_cols} groups={[len(g) for g in t.groups]}")
            if t.chunks:
                bits.append(f"chunks={[c1 - c0 for c0, c1 in t.chunks]}")
        buf = plan.buffers.get(layer.name)
        if buf:
            bits.append(" ".join(f"{k}={v}" for k, v in buf.items()))
        if layer.note:
            bits.append(f"note: {layer.note}")
        lines.append("  ".join(bits))
    for t in plan.tensors.values():
        where = f"@{t.addr:#x}" if t.addr >= 0 else ""
        alias = f" in {t.buffer}+{t.block_offset}blk" if t.buffer != t.name else ""
        lines.append(f"dram  {t.name}  {list(t.shape)} blocks={t.blocks}{alias} {where}")
    if plan.dram:
        lines.append(f"dram  size={plan.dram['size']} const_base={plan.dram['const_base']} "
                     f"const_size={plan.dram['const_size']}")
    if plan.program is not None:
        lines.append(f"program  {plan.program.summary()}")
    return "\n".join(lines) + "\n"
