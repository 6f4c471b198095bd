"""Functional model of the NMS instruction (docs/nms_core.md): PSRR-MaxpoolNMS after the
CPU's Relationship Recovery, on the integer codes the accelerator stored, bit for bit what
the core computes.

``execute`` reads each level's score map from DRAM (activation layout, 1/2/4-byte codes),
applies the patch list, pools (aligned and shifted tiles per channel, then the pyramid's
competing channels) and writes the survivor list to DRAM. ``spatial_block`` is the streaming
stage alone, one block of ``lanes`` channels, in the order ``NmsSpatial`` (hw/nms.py) emits
its survivors: the oracle of the RTL's tests. Decisions compare keys, then box indices (the
lower wins); a cell survives a tile when its box index is the tile winner's, as the hardware
compares it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ProgramError
from ..ir.config import AcceleratorConfig
from ..ir.nms import (
    FLAG_BAD_PATCH,
    FLAG_BAD_TABLE,
    FLAG_LIST_FULL,
    FLAG_SPATIAL_FULL,
    HEADER_DTYPE,
    PATCH_DTYPE,
    SURVIVOR_DTYPE,
    NmsCore,
    NmsError,
    NmsParams,
    decode_table,
    fault_cycles,
    field_fault,
    nms_cycles,
    table_bytes,
)

_NONE = np.iinfo(np.int64).min
_LOW32 = np.int64(0xFFFFFFFF)


def read_scores(dram: np.ndarray, addr: int, row_stride: int, blk_stride: int, height: int, width: int,
                channels: int, planes: int, tn: int, blocks: int = 0) -> np.ndarray:
    """The (H, W, channels) int64 codes of a map in the activation layout: byte ``k`` of block
    ``b`` in block ``k·B + b`` (``B = blocks``, or ``ceil(channels / tn)`` when 0), sign-extended from
    ``8·planes`` bits."""
    nblk = -(-channels // tn)
    c = np.arange(nblk * tn)
    plane = blocks or nblk
    y, x = np.arange(height)[:, None, None], np.arange(width)[None, :, None]
    value = np.zeros((height, width, nblk * tn), np.int64)
    for k in range(planes):
        at = addr + (k * plane + c // tn) * blk_stride + y * row_stride + x * tn + c % tn
        value |= dram[at].astype(np.int64) << (8 * k)
    half = np.int64(1) << (8 * planes - 1)
    return ((value ^ half) - half)[:, :, :channels]


def _tile_winner(valid, key, index, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, whether its k × k tile (grid shifted by ``s``) has a candidate and that
    winner's box index."""
    h, w = key.shape
    ty, tx = (np.arange(h) + s) // k, (np.arange(w) + s) // k
    tile = (ty[:, None] * (tx[-1] + 1) + tx[None, :]).ravel()
    comp = np.where(valid, (key << 32) | (_LOW32 - index), _NONE).ravel()
    best = np.full(tile.max() + 1, _NONE)
    np.maximum.at(best, tile[valid.ravel()], comp[valid.ravel()])
    has = np.zeros(tile.max() + 1, bool)
    has[tile[valid.ravel()]] = True
    return has[tile].reshape(h, w), (_LOW32 - (best[tile] & _LOW32)).reshape(h, w)


def spatial_block(valid: np.ndarray, key: np.ndarray, index: np.ndarray, kernels, shifts):
    """The spatial stage on one block: ``valid``, ``key``, ``index`` are (H, W, lanes); lane
    ``l`` pools with ``kernels[l]``, ``shifts[l]``. Returns the survivors as (row, x, lane)
    int arrays in emission order — a lane decides row ``y`` while row ``y + k`` streams,
    rows ``H .. H + max k - 1`` being the drain — and the survivors decided at each of the
    ``(H + max k) · W`` positions, (H + max k, W)."""
    h, w, lanes = key.shape
    drain = max(kernels)
    rows, cols, lane_of = [], [], []
    for lane in range(lanes):
        v = valid[:, :, lane]
        if not v.any():
            continue
        k, s = kernels[lane], shifts[lane]
        ha, wa = _tile_winner(v, key[:, :, lane], index[:, :, lane], k, 0)
        hs, ws = _tile_winner(v, key[:, :, lane], index[:, :, lane], k, s)
        idx = index[:, :, lane]
        y, x = np.nonzero(v & ha & hs & (idx == wa) & (idx == ws))
        rows.append(y)
        cols.append(x)
        lane_of.append(np.full(len(y), lane))
    if not rows:
        return (np.zeros(0, np.int64),) * 3 + (np.zeros((h + drain, w), np.int64),)
    y, x, lane = (np.concatenate(a) for a in (rows, cols, lane_of))
    when = y + np.asarray(kernels)[lane]
    order = np.lexsort((lane, x, when))
    decided = np.zeros((h + drain, w), np.int64)
    np.add.at(decided, (when, x), 1)
    return y[order], x[order], lane[order], decided


@dataclass
class NmsResult:
    """What one NMS instruction did: the list's ``count`` and ``flags``, the ``entries`` it
    wrote, the ``spatial`` survivors (before the pyramid) and, per level and block, the
    survivors decided at each position (``ir.nms.nms_cycles``' ``blocks``)."""
    count: int
    flags: int
    entries: np.ndarray
    spatial: np.ndarray
    decided: list[np.ndarray]
    cycles: int = 0  # the cycle model's (set by ``run_instruction``)
    fault: str = ""  # why the table or the fields were flagged FLAG_BAD_TABLE
    merged: np.ndarray | None = None  # the patches merged into the stream (``merged_patches``)


def _lanes(a: np.ndarray, lanes: int) -> np.ndarray:
    """A block's (H, W, n) maps padded with empty lanes to ``lanes``."""
    return np.concatenate([a, np.zeros(a.shape[:2] + (lanes - a.shape[2],), a.dtype)], 2)


def _patched(params: NmsParams, level: int, key: np.ndarray, index: np.ndarray, valid: np.ndarray,
             patches: np.ndarray) -> None:
    """Apply the level's patches (in place): a patch sets its cell's key and box index, or
    empties it; the threshold applies to every cell alike."""
    for p in patches[patches["level"] == level]:
        y, x, ch = int(p["y"]), int(p["x"]), int(p["channel"])
        key[y, x, ch], index[y, x, ch] = int(p["key"]), int(p["index"])
        valid[y, x, ch] = not p["empty"] and int(p["key"]) > params.thr


def _patches_ok(params: NmsParams, patches: np.ndarray, lanes: int) -> bool:
    """Patches must lie in their maps and come in strictly increasing stream order (level,
    block, y, x, lane): the core merges them into the stream as it passes."""
    if len(patches) == 0:
        return True
    lv = patches["level"].astype(np.int64)
    if (lv >= len(params.levels)).any():
        return False
    h = np.array([lv_.height for lv_ in params.levels])[lv]
    w = np.array([lv_.width for lv_ in params.levels])[lv]
    ch = np.array([lv_.anchors * params.classes for lv_ in params.levels])[lv]
    c = patches["channel"].astype(np.int64)
    if ((c >= ch) | (patches["y"] >= h) | (patches["x"] >= w)).any():
        return False
    pos = np.stack([lv, c // lanes, patches["y"], patches["x"], c % lanes], 1).astype(np.int64)
    step = pos[1:] - pos[:-1]
    first = np.argmax(step != 0, axis=1)
    return bool((step[np.arange(len(step)), first] > 0).all())


def _pyramid(params: NmsParams, sv: np.ndarray) -> np.ndarray:
    """Mask of the spatial survivors a survivor of a competing channel and the same class
    beats in a common tile (aligned or shifted) at the coarser stride."""
    st = np.array([params.levels[lv].stride for lv in params.level_of()])
    pk, ps = np.array(params.pair_k), np.array(params.pair_s)
    a, b = sv["channel"].astype(np.int64)[:, None], sv["channel"].astype(np.int64)[None, :]
    kk, ks = pk[a, b], ps[a, b]
    k1 = np.maximum(kk, 1)
    common = np.maximum(st[a], st[b])
    ra, rb = common // st[a], common // st[b]
    ya, xa = sv["y"].astype(np.int64)[:, None] // ra, sv["x"].astype(np.int64)[:, None] // ra
    yb, xb = sv["y"].astype(np.int64)[None, :] // rb, sv["x"].astype(np.int64)[None, :] // rb
    same = np.zeros(kk.shape, bool)
    for sh in (0, ks):
        same |= ((ya + sh) // k1 == (yb + sh) // k1) & ((xa + sh) // k1 == (xb + sh) // k1)
    key, idx = sv["key"].astype(np.int64), sv["index"].astype(np.int64)
    beats = (key[None, :] > key[:, None]) | ((key[None, :] == key[:, None]) & (idx[None, :] < idx[:, None]))
    cls = sv["cls"][:, None] == sv["cls"][None, :]
    return ((kk > 0) & cls & same & beats).any(axis=1)


def stream_blocks(dram: np.ndarray, params: NmsParams, lanes: int, patches: np.ndarray, tn: int):
    """The spatial stage's inputs, block by block in stream order: ``(level, first channel
    of the block, valid, key, index, kernels, shifts)`` with (H, W, lanes) maps — the maps
    read from DRAM, thresholded and patched (``patches`` already checked), empty lanes
    padded with kernel 1."""
    for li, lv in enumerate(params.levels):
        nch = lv.anchors * params.classes
        key = read_scores(dram, lv.dram_addr, lv.row_stride, lv.blk_stride, lv.height, lv.width, nch,
                          params.planes, tn, lv.blocks) << lv.shift
        cell = (np.arange(lv.height)[:, None, None] * lv.width + np.arange(lv.width)[None, :, None])
        index = lv.start + cell * lv.anchors + np.arange(nch)[None, None, :] // params.classes
        valid = key > params.thr
        _patched(params, li, key, index, valid, patches)
        first = params.first_channel(li)
        for b0 in range(0, nch, lanes):
            ch = np.arange(b0, b0 + lanes)
            chan = np.where(ch < nch, first + ch // params.classes, -1)
            ks = [params.kernels[j] if j >= 0 else 1 for j in chan]
            ss = [params.shifts[j] if j >= 0 else 0 for j in chan]
            sl = slice(b0, min(b0 + lanes, nch))
            yield (li, b0, *(_lanes(a[:, :, sl], lanes) for a in (valid, key, index)), ks, ss)


def execute(dram: np.ndarray, params: NmsParams, core: NmsCore, patches: np.ndarray, out_addr: int,
            tn: int | None = None, patch_overflow: bool = False) -> NmsResult:
    """Run one NMS instruction on ``dram`` (uint8, written in place): read the levels' maps
    (DRAM words of ``tn`` channels, default ``core.lanes``), pool them ``core.lanes``
    channels at a time, write the list's header and entries at ``out_addr``.
    ``params.check(core)`` must hold (the program loader refuses the instruction otherwise)."""
    patches = np.asarray(patches, PATCH_DTYPE)
    lanes = core.lanes
    parts, decided = [], []
    bad = patch_overflow or not _patches_ok(params, patches, lanes)
    merged = patches[:0] if patch_overflow else merged_patches(params, patches, lanes) if bad else patches
    blocks = stream_blocks(dram, params, lanes, patches[:0] if bad else patches, tn or lanes)
    for li, b0, valid, key, index, ks, ss in blocks:
        if bad:  # the part of an illegal list the cell former merges (the result is flagged)
            for p in merged[(merged["level"] == li) & (merged["channel"] // lanes == b0 // lanes)]:
                y, x, lane = int(p["y"]), int(p["x"]), int(p["channel"]) - b0
                key[y, x, lane], index[y, x, lane] = int(p["key"]), int(p["index"])
                valid[y, x, lane] = not p["empty"] and int(p["key"]) > params.thr
        y, x, lane, dec = spatial_block(valid, key, index, ks, ss)
        decided.append(dec)
        rec = np.zeros(len(y), SURVIVOR_DTYPE)
        p = b0 + lane
        rec["index"], rec["key"] = index[y, x, lane], key[y, x, lane]
        rec["cls"], rec["channel"] = p % params.classes, params.first_channel(li) + p // params.classes
        rec["y"], rec["x"] = y, x
        parts.append(rec)
    spatial = np.concatenate(parts) if parts else np.zeros(0, SURVIVOR_DTYPE)
    flags, final = 0, np.zeros(0, SURVIVOR_DTYPE)
    if bad:
        flags = FLAG_BAD_PATCH
    elif len(spatial) > core.survivors:
        flags = FLAG_SPATIAL_FULL
    else:
        final = spatial[~_pyramid(params, spatial)]
        flags = FLAG_LIST_FULL if len(final) > params.capacity else 0
    entries = final[:params.capacity]
    header = np.zeros(1, HEADER_DTYPE)
    header["count"], header["flags"] = len(final), flags
    blob = header.tobytes() + entries.tobytes()
    dram[out_addr:out_addr + len(blob)] = np.frombuffer(blob, np.uint8)
    return NmsResult(len(final), flags, entries, spatial, decided, merged=merged)


def merged_patches(params: NmsParams, patches: np.ndarray, lanes: int) -> np.ndarray:
    """The patches of a list the cell former (``NmsCells``) merges into the stream, in order:
    a patch merges at its position (level, block, y, x) when that position is in the stream
    and not before the previous patch's (the position in front of the cell former only moves
    on); the first that does not merge blocks all after it. All of a legal list."""
    prev, n = None, 0
    for p in patches:
        li = int(p["level"])
        if li >= len(params.levels):
            break
        lv, blk = params.levels[li], int(p["channel"]) // lanes
        pos = (li, blk, int(p["y"]), int(p["x"]))
        if blk >= -(-lv.anchors * params.classes // lanes) or pos[2] >= lv.height or pos[3] >= lv.width \
                or (prev is not None and pos < prev):
            break
        prev, n = pos, n + 1
    return patches[:n]


def run_instruction(dram: np.ndarray, fields: dict, core: NmsCore, cfg: AcceleratorConfig) -> NmsResult:
    """One NMS instruction from its body's fields (``ir.isa.Nms`` names, ints) and DRAM, as
    ``NmsUnit`` runs it: fields or a parameter table the core cannot run (``field_fault``,
    ``NmsParams.fault``) give a header alone, count 0 and ``FLAG_BAD_TABLE``, in
    ``fault_cycles``; else the patch list — a 16-byte header whose ``count`` must not exceed
    the field ``patches`` (else the result is flagged ``FLAG_BAD_PATCH``), then its entries —
    then ``execute`` with DRAM words of ``cfg.tn`` channels; ``cycles`` of the result is
    ``ir.nms.nms_cycles``. ``NmsError`` when a DRAM range it reads or writes is outside
    ``dram`` (the table, the patch list, the list; the maps of a table it runs)."""
    levels, channels = fields["levels"], fields["channels"]
    at, pat = fields["table_addr"], fields["patch_addr"]
    for what, addr, n in (("parameter table", at, table_bytes(levels, channels)), ("patch list", pat, 16),
                          ("survivor list", fields["out_addr"], 16)):
        if addr + n > dram.size:
            raise NmsError(f"the {what} at {addr}..{addr + n - 1} is outside the DRAM of {dram.size} bytes")
    count = int(np.frombuffer(dram[pat:pat + 16].tobytes(), HEADER_DTYPE)[0]["count"])
    fault = field_fault(fields, core)
    if not fault:
        params = decode_table(dram[at:at + table_bytes(levels, channels)].tobytes(), levels, channels,
                              fields["classes"], fields["thr"], fields["capacity"], 1 << fields["planes"])
        fault = params.fault(core)
    if fault:
        header = np.zeros(1, HEADER_DTYPE)
        header["flags"] = FLAG_BAD_TABLE
        dram[fields["out_addr"]:fields["out_addr"] + 16] = np.frombuffer(header.tobytes(), np.uint8)
        none = np.zeros(0, SURVIVOR_DTYPE)
        pair_k = None if field_fault(fields, core) else params.pair_k
        return NmsResult(0, FLAG_BAD_TABLE, none, none, [],
                         fault_cycles(cfg, core, fields, pair_k, count), fault=fault)
    _check_dram(dram.size, fields, params, cfg.tn)
    at = pat
    over = count > fields["patches"]
    n = 0 if over else count
    patches = np.frombuffer(dram[at + 16:at + 16 * (1 + n)].tobytes(), PATCH_DTYPE)
    res = execute(dram, params, core, patches, fields["out_addr"], cfg.tn, patch_overflow=over)
    bad = bool(res.flags & FLAG_BAD_PATCH)
    res.cycles = nms_cycles(cfg, params, core, res.decided, patches[:0] if over else patches, len(res.spatial),
                            res.count, table_addr=fields["table_addr"], count=count, bad=bad, merged=res.merged)
    return res


def _check_dram(size: int, fields: dict, params: NmsParams, tn: int) -> None:
    """Every DRAM byte the instruction reads or writes is inside the DRAM (``NmsError``)."""
    spans = [("parameter table", fields["table_addr"], table_bytes(len(params.levels), params.channels)),
             ("patch list", fields["patch_addr"], 16 * (1 + fields["patches"])),
             ("survivor list", fields["out_addr"], 16 * (1 + fields["capacity"]))]
    for i, lv in enumerate(params.levels):
        nblk = lv.blocks or -(-lv.anchors * params.classes // tn)
        end = (params.planes * nblk - 1) * lv.blk_stride + (lv.height - 1) * lv.row_stride + lv.width * tn
        spans.append((f"level {i}'s score map", lv.dram_addr, end))
    for what, addr, n in spans:
        if addr + n > size:
            raise NmsError(f"the {what} at {addr}..{addr + n - 1} is outside the DRAM of {size} bytes")


def run_on(machine, ins) -> None:
    """An NMS instruction on the functional model's ``machine`` (sim/machine.py): its DRAM,
    the target's core; its cycles go to ``machine.measured[ins.index]`` (the timeline's cost
    of it). A table or DRAM range the core cannot run raises ``ProgramError`` naming ``ins``."""
    try:
        res = run_instruction(machine.dram, ins.f, NmsCore.for_config(machine.cfg), machine.cfg)
    except NmsError as exc:
        raise ProgramError(f"{ins.where()}: {exc}") from None
    machine.measured[ins.index] = res.cycles


def write_patches(dram: np.ndarray, patch_addr: int, patches: np.ndarray) -> None:
    """The patch list as the NMS instruction reads it: a header (``count``), then the entries."""
    header = np.zeros(1, HEADER_DTYPE)
    header["count"] = len(patches)
    blob = header.tobytes() + np.asarray(patches, PATCH_DTYPE).tobytes()
    dram[patch_addr:patch_addr + len(blob)] = np.frombuffer(blob, np.uint8)


def read_list(dram: np.ndarray, out_addr: int, capacity: int) -> tuple[int, int, np.ndarray]:
    """The survivor list at ``out_addr`` of an instruction with ``capacity``: its count, its
    flags and the entries written (none when the result is invalid)."""
    header = np.frombuffer(dram[out_addr:out_addr + 16].tobytes(), HEADER_DTYPE)[0]
    count, flags = int(header["count"]), int(header["flags"])
    n = 0 if flags & (FLAG_SPATIAL_FULL | FLAG_BAD_PATCH | FLAG_BAD_TABLE) else min(count, capacity)
    entries = np.frombuffer(dram[out_addr + 16:out_addr + 16 * (1 + n)].tobytes(), SURVIVOR_DTYPE)
    return count, flags, entries
