"""The NMS instruction's operands, its DRAM records and its cycle model (docs/nms_core.md).

``NmsParams`` is what one ``NMS`` instruction and its parameter table tell the core: the
levels' score maps (geometry, the left shift of their codes, their first box index), each
anchor channel's kernel ``k`` and grid shift ``s``, the pair table (``K``, ``K_s``; 0: the
channels do not compete), the classes, the code threshold, the survivor list's capacity.
The compiler computes kernels and pairs once from the head spec (docs/nms.md's rules), so
the core holds no anchor sizes. ``NmsCore`` is the core's own size (lanes, memories).

Records in DRAM are little-endian numpy dtypes: ``PATCH_DTYPE`` (the CPU's recovery, one
changed cell), ``SURVIVOR_DTYPE`` (one survivor), after the list's ``HEADER_DTYPE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShiftflowError
from .config import AcceleratorConfig

PATCH_DTYPE = np.dtype([("level", "<u1"), ("empty", "<u1"), ("channel", "<u2"), ("y", "<u2"), ("x", "<u2"),
                        ("key", "<i4"), ("index", "<u4")])
SURVIVOR_DTYPE = np.dtype([("index", "<u4"), ("key", "<i4"), ("cls", "<u2"), ("channel", "<u2"),
                           ("y", "<u2"), ("x", "<u2")])
HEADER_DTYPE = np.dtype([("count", "<u4"), ("flags", "<u4"), ("zero", "<u8")])
assert PATCH_DTYPE.itemsize == SURVIVOR_DTYPE.itemsize == HEADER_DTYPE.itemsize == 16

#: Header flags: more survivors than ``capacity`` (the first ``capacity`` are written); the
#: spatial survivors overflowed the core's buffer, or a patch is out of stream order or out
#: of its map (then the result is invalid and no entry is written).
FLAG_LIST_FULL = 1
FLAG_SPATIAL_FULL = 2
FLAG_BAD_PATCH = 4


class NmsError(ShiftflowError):
    """An NMS instruction the core cannot run (a program error, refused before it runs)."""


@dataclass(frozen=True)
class NmsLevel:
    """One level's score map: ``height × width`` cells of ``anchors · classes`` channels
    (channel ``a·C + c``), stride in input pixels, the left ``shift`` of its codes to the
    common exponent, the box index of its cell (0, 0) anchor 0; where it is in DRAM (the
    activation layout of docs/isa.md: ``dram_addr``, ``row_stride``, ``blk_stride``)."""
    height: int
    width: int
    anchors: int
    stride: int
    shift: int
    start: int
    dram_addr: int = 0
    row_stride: int = 0
    blk_stride: int = 0


@dataclass(frozen=True)
class NmsCore:
    """The core's size: ``lanes`` channels a cycle (a DRAM word: ``tn``), the widest map and
    the largest kernel its memories hold, the spatial survivors and patches it buffers, the
    bits of a key (a code shifted to the common exponent, signed) and of a box index."""
    lanes: int
    max_width: int = 128
    max_kernel: int = 8
    survivors: int = 1024
    patches: int = 1024
    key_bits: int = 32
    index_bits: int = 24

    @staticmethod
    def for_config(cfg: AcceleratorConfig) -> "NmsCore":
        """The core of a target: one lane per channel of a DRAM word (``tn``); the memories'
        sizes are the defaults above (not yet ``AcceleratorConfig`` fields)."""
        return NmsCore(lanes=cfg.tn)


@dataclass(frozen=True)
class NmsParams:
    """One NMS instruction with its parameter table (see the module docstring). Channel ``j``
    is anchor ``j - first(level)`` of its level, levels in order (the box index order)."""
    levels: tuple[NmsLevel, ...]
    kernels: tuple[int, ...]
    shifts: tuple[int, ...]
    pair_k: tuple[tuple[int, ...], ...]
    pair_s: tuple[tuple[int, ...], ...]
    classes: int
    thr: int
    capacity: int
    planes: int = 1

    @property
    def channels(self) -> int:
        return sum(lv.anchors for lv in self.levels)

    def level_of(self) -> np.ndarray:
        """The level of every anchor channel."""
        return np.repeat(np.arange(len(self.levels)), [lv.anchors for lv in self.levels])

    def first_channel(self, level: int) -> int:
        return sum(lv.anchors for lv in self.levels[:level])

    def check(self, core: NmsCore) -> None:
        """Refuse, with one line, an instruction the core cannot run: a kernel larger than its
        map or than the core's line buffers, a map wider than them, a survivor list larger than
        its 16-bit count field allows, keys or box indices wider than the core's, strides of
        competing channels that are not a power-of-two ratio."""
        n = self.channels
        if len(self.kernels) != n or len(self.shifts) != n or len(self.pair_k) != n or len(self.pair_s) != n:
            raise NmsError(f"NMS parameter table must have one kernel, shift and pair row per channel ({n}), "
                           f"found {len(self.kernels)}, {len(self.shifts)}, {len(self.pair_k)}, {len(self.pair_s)}")
        if self.planes not in (1, 2, 4):
            raise NmsError(f"NMS planes must be 1, 2 or 4 bytes a code, found {self.planes}")
        if self.classes < 1:
            raise NmsError(f"NMS needs at least one class, found {self.classes}")
        if not 0 <= self.capacity < 1 << 16:
            raise NmsError(f"NMS survivor capacity must be in [0, 65535], found {self.capacity}")
        level = self.level_of()
        for j, (k, s) in enumerate(zip(self.kernels, self.shifts)):
            lv = self.levels[level[j]]
            if not (1 <= k <= min(core.max_kernel, lv.height, lv.width) and 0 <= s < k):
                raise NmsError(f"NMS channel {j}: kernel {k} (shift {s}) must be in 1..min(core {core.max_kernel}, "
                               f"map {lv.height}x{lv.width}) with 0 <= shift < kernel")
        for i, lv in enumerate(self.levels):
            if lv.width > core.max_width:
                raise NmsError(f"NMS level {i}: map width {lv.width} exceeds the core's {core.max_width}")
            if 8 * self.planes + lv.shift > core.key_bits:
                raise NmsError(f"NMS level {i}: {self.planes}-byte codes shifted by {lv.shift} do not fit "
                               f"the core's {core.key_bits}-bit keys")
        last = self.levels[-1]
        if last.start + last.height * last.width * last.anchors > 1 << core.index_bits:
            raise NmsError(f"NMS box indices must fit the core's {core.index_bits} bits, found "
                           f"{last.start + last.height * last.width * last.anchors} boxes")
        strides = [self.levels[level[j]].stride for j in range(n)]
        for a in range(n):
            for b in range(n):
                kk, ks = self.pair_k[a][b], self.pair_s[a][b]
                if kk != self.pair_k[b][a] or ks != self.pair_s[b][a] or (a == b and kk):
                    raise NmsError(f"NMS pair table must be symmetric with a zero diagonal, found ({a}, {b})")
                ratio = max(strides[a], strides[b]) // min(strides[a], strides[b])
                if kk and (max(strides[a], strides[b]) % min(strides[a], strides[b]) or ratio & (ratio - 1)):
                    raise NmsError(f"NMS channels {a} and {b} compete but their strides {strides[a]} and "
                                   f"{strides[b]} are not a power-of-two ratio")
                if kk and not 0 <= ks < kk:
                    raise NmsError(f"NMS pair ({a}, {b}): shift {ks} must be below its kernel {kk}")


# --- cycle model -------------------------------------------------------------------------

#: Cycles of ``NmsSpatial`` beyond its positions: the accept of ``start`` and the last
#: survivor's cycle in the output register (hw/nms.py).
SPATIAL_LATENCY = 2


def spatial_cycles(decided: np.ndarray) -> int:
    """``NmsSpatial``'s cycles for one block: ``decided`` holds the survivors decided at each
    of its ``(H + max k) · W`` positions in stream order; a position takes one cycle, or one
    per survivor when there are more (the output takes one a cycle)."""
    decided = np.asarray(decided)
    return SPATIAL_LATENCY + int(np.maximum(decided, 1).sum())


def nms_cycles(cfg: AcceleratorConfig, params: NmsParams, core: NmsCore, blocks: list[np.ndarray],
               patches: int, spatial: int, written: int) -> int:
    """The whole instruction (docs/nms_core.md, "Cycle model"): the table and the patch list
    read, per level its latency then per position the larger of its word's read time and its
    survivors (``blocks``: one ``decided`` array per level and block of ``core.lanes``
    channels, as ``spatial_cycles`` takes; a position reads its ``tn``-byte word of each
    plane, drain rows read nothing), the pyramid's ``n · ceil(n / lanes)`` comparisons of the
    ``spatial`` survivors, the header and ``written`` entries written."""
    bw = cfg.dram_bytes_per_cycle
    beats = lambda nbytes: -(-nbytes // bw)  # noqa: E731
    n = params.channels
    table = 16 * (len(params.levels) + n + n * n)
    total = 1 + cfg.dram_latency + beats(table)
    if patches:
        total += cfg.dram_latency + beats(16 * patches)
    read = max(1, beats(params.planes * cfg.tn))  # a position reads its DRAM word of every plane
    it = iter(blocks)
    for lv in params.levels:
        total += cfg.dram_latency
        for _ in range(-(-lv.anchors * params.classes // core.lanes)):
            decided = np.asarray(next(it)).reshape(-1, lv.width)
            cost = np.maximum(decided, 1)
            cost[:lv.height] = np.maximum(decided[:lv.height], read)
            total += int(cost.sum())
    total += spatial * -(-spatial // core.lanes)
    return total + cfg.dram_latency + beats(16 * (1 + written))
