"""Passes ``buffers`` and ``dram``: on-chip placement and the DRAM plan.

On chip, consecutive layers put their rings at opposite ends of the line buffer (so the
next layer's first rows can load while the current layer finishes), and weight groups
alternate between the two weight banks (and the matching parameter banks) across the whole
program, so the next group's weights load while the current group computes. Output tiles
rotate through the buffers of both output-buffer halves as they are emitted (``emit.py``).

In DRAM the constants image (every weight group's words and parameter entries, 64-byte
aligned) sits at ``const_base``; activation buffers follow, allocated first-fit with their
liveness: a buffer is born when its first tensor is produced and dies after its last
reader, and a dead buffer's bytes are reused by buffers born later. Concat slices share
their concat's buffer.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir.cost import ceil_div
from .plan import HostOp, Layer, Plan
from .tiling import ring_plan
from .sparse import pack_conv  # weights.pack_conv with SPCONV blocks compacted

ALIGN = 64


def _align(n: int) -> int:
    return ceil_div(n, ALIGN) * ALIGN


def place_buffers(plan: Plan) -> Plan:
    """The buffers pass: ring bases and weight banks per layer. A layer that runs overlapped
    with the one before (``params["overlap"]``, backend/overlap.py) gets the line-buffer words
    next to that layer's rings, on the side away from its end, so the two never touch the
    same words (their weights are in different banks: groups alternate)."""
    cfg = plan.config
    buffers = {}
    bank = 0
    prev = None  # (first ring word, words, growing up from the bottom) of the previous layer
    for layer in plan.layers:
        t = layer.tiling
        count, ring = ring_plan(layer, plan)
        words = ring * count
        if "overlap" in layer.params and prev is not None:
            lo, n, bottom = prev
            base = lo + n if bottom else lo - words
        else:  # the end away from the previous layer's rings, whose last rows may still load
            bottom = prev is None or 2 * prev[0] + prev[1] >= cfg.line_buffer_words
            base = 0 if bottom else cfg.line_buffer_words - words
        prev = (base, words, bottom)
        rings = [base + i * ring for i in range(count)]
        banks = []
        if layer.is_conv:
            # one weight load per group; a split conv loads per (block, strip, band, chunk)
            loads = len(t.groups) * (t.strips * t.bands * len(t.chunks) if t.chunks else 1)
            for _ in range(loads):
                banks.append(bank)
                bank ^= 1
        buffers[layer.name] = {"rings": rings, "banks": banks}
    return replace(plan, buffers=buffers)


def plan_dram(plan: Plan) -> Plan:
    """The dram pass: constants image, activation addresses, DRAM size."""
    cfg = plan.config
    image = bytearray()
    buffers = {name: dict(v) for name, v in plan.buffers.items()}
    for layer in plan.layers:
        if not layer.is_conv:
            continue
        groups = []
        params_at: dict[bytes, int] = {}  # a split conv's chunks share their block's parameters
        for wbytes, pbytes in pack_conv(plan, layer):
            w_off = len(image)
            image += wbytes + bytes(_align(len(wbytes)) - len(wbytes))
            if pbytes not in params_at:
                params_at[pbytes] = len(image)
                image += pbytes + bytes(_align(len(pbytes)) - len(pbytes))
            groups.append((w_off, len(wbytes), params_at[pbytes], len(pbytes)))
        buffers[layer.name]["wgt"] = groups
    const_base = 0
    const_size = len(image)
    live = _liveness(plan)
    sizes = {}
    for t in plan.tensors.values():
        if t.buffer == t.name:
            _, c, h, w = t.shape
            sizes[t.name] = (t.blocks * t.planes * h * w * cfg.tn, h, w)
    addr, overlaps = _allocate(sizes, live, _align(const_base + const_size))
    tensors = {}
    for name, t in plan.tensors.items():
        _, h, w = sizes[t.buffer]
        row, blk = w * cfg.tn, h * w * cfg.tn
        tensors[name] = replace(t, addr=addr[t.buffer] + t.block_offset * blk, row_stride=row, blk_stride=blk)
    end = max([const_base + const_size] + [addr[b] + s for b, (s, _, _) in sizes.items()])
    dram = {"size": _align(end), "const_base": const_base, "const_size": const_size, "live": live,
            "overlaps": overlaps}
    if dram["size"] > cfg.dram_bytes:
        from ..errors import ResourceError

        raise ResourceError(f"the program needs {dram['size']} bytes of DRAM, target {cfg.name} allows {cfg.dram_bytes}")
    return replace(plan, tensors=tensors, buffers=buffers, dram=dram, weights=bytes(image))


def _liveness(plan: Plan) -> dict[str, tuple[int, int]]:
    """Per DRAM buffer: (position of its first producer, position of its last reader) in
    ``plan.order``; graph inputs are born at -1, graph outputs live to the end. A concat
    stored in place has no producer of its own: its buffer lives from its first slice's
    producer to the last reader of the concat or of any slice."""
    live: dict[str, list[int]] = {}
    end = len(plan.order)

    def buffer(t: str) -> str | None:
        return plan.tensors[t].buffer if t in plan.tensors else None

    for name in plan.graph.inputs:
        if name in plan.tensors:
            live[buffer(name)] = [-1, -1]
    for pos, item in enumerate(plan.order):
        if isinstance(item, HostOp):
            op = plan.graph.op(item.name)
            reads, writes = op.inputs, op.outputs
        else:
            reads, writes = item.inputs, (item.output,) + ((item.op.outputs[0],) if item.kind == "copy" else ())
        for buf in filter(None, map(buffer, writes)):
            live.setdefault(buf, [pos, pos])
        for buf in filter(None, map(buffer, reads)):
            if buf in live:
                live[buf][1] = pos
    for buf in filter(None, map(buffer, plan.graph.outputs)):
        if buf in live:
            live[buf][1] = end
    # Layers run overlapped (backend/overlap.py) read until the last of their run ends.
    run_end = list(range(len(plan.order)))
    for pos in range(len(plan.order) - 2, -1, -1):
        nxt = plan.order[pos + 1]
        if isinstance(nxt, Layer) and "overlap" in nxt.params:
            run_end[pos] = run_end[pos + 1]
    for span in live.values():
        if 0 <= span[1] < end:
            span[1] = run_end[span[1]]
    return {buf: (a, b) for buf, (a, b) in live.items()}


def _allocate(sizes: dict, live: dict, base: int) -> tuple[dict[str, int], dict[str, list[str]]]:
    """First-fit addresses; ``overlaps[b]`` lists the earlier (dead) buffers sharing b's bytes."""
    addr: dict[str, int] = {}
    active: list[tuple[int, int, str]] = []
    overlaps: dict[str, list[str]] = {}
    placed: list[tuple[int, int, str]] = []
    for name in sorted(sizes, key=lambda b: (live[b][0], b)):
        born = live[name][0]
        active = [(a, e, n) for a, e, n in active if live[n][1] >= born]
        size = _align(sizes[name][0])
        at = base
        for a, e, _ in sorted(active):
            if at + size <= a:
                break
            at = max(at, e)
        addr[name] = at
        overlaps[name] = [n for a, e, n in placed if a < at + size and at < e]
        active.append((at, at + size, name))
        placed.append((at, at + size, name))
    return addr, overlaps
