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

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import ProgramError, ShiftflowError
from .config import AcceleratorConfig

PATCH_DTYPE = np.dtype([("level", "<u1"), ("empty", "<u1"), ("channel", "<u2"), ("y", "<u2"), ("x", "<u2"),
                        ("key", "<i4"), ("index", "<u4")])
SURVIVOR_DTYPE = np.dtype([("index", "<u4"), ("key", "<i4"), ("cls", "<u2"), ("channel", "<u2"),
                           ("y", "<u2"), ("x", "<u2")])
HEADER_DTYPE = np.dtype([("count", "<u4"), ("flags", "<u4"), ("zero", "<u8")])
assert PATCH_DTYPE.itemsize == SURVIVOR_DTYPE.itemsize == HEADER_DTYPE.itemsize == 16
# The parameter table: one LEVEL_DTYPE a level, then one CHANNEL_DTYPE a channel (kernel,
# shift), then the channels × channels pair table (K, K_s), each part padded to 16 bytes.
LEVEL_DTYPE = np.dtype([("dram_addr", "<u4"), ("row_stride", "<u4"), ("blk_stride", "<u4"), ("start", "<u4"),
                        ("height", "<u2"), ("width", "<u2"), ("stride", "<u2"), ("anchors", "<u1"),
                        ("shift", "<u1"), ("blocks", "<u4"), ("bits", "<u4")])
PAIR_DTYPE = np.dtype([("k", "<u1"), ("s", "<u1")])
assert LEVEL_DTYPE.itemsize == 32

#: Header flags: more survivors than ``capacity`` (the first ``capacity`` are written); the
#: spatial survivors overflowed the core's buffer, or a patch is out of stream order or out
#: of its map, or the instruction's fields or parameter table are ones the core cannot run
#: (``field_fault``, ``NmsParams.fault``: then count 0, this flag alone, nothing pooled);
#: with any of the last three the result is invalid and no entry is written.
FLAG_LIST_FULL = 1
FLAG_SPATIAL_FULL = 2
FLAG_BAD_PATCH = 4
FLAG_BAD_TABLE = 8


class NmsError(ShiftflowError):
    """An NMS instruction the core cannot run (a program error, refused before it runs)."""


@dataclass(frozen=True)
class NmsLevel:
    """One level's score map: ``height × width`` cells of ``anchors · classes`` channels
    (channel ``a·C + c``), stride in input pixels, the left ``shift`` of its codes to the
    common exponent, the box index of its cell (0, 0) anchor 0; where it is in DRAM (the
    activation layout of docs/isa.md: ``dram_addr``, ``row_stride``, ``blk_stride``, and
    ``blocks``, the channel blocks of one byte plane — the stored tensor's, which may be more
    than ``ceil(anchors · classes / tn)`` when the conv wrote whole ``tm``-channel blocks;
    0 means that many), and ``bits``, the significant bits of its codes (the graph's type of
    the score map; 0: all of ``8 · planes``) — only the key check uses it: the core
    sign-extends whole codes, and a code within ``bits`` shifts exactly."""
    height: int
    width: int
    anchors: int
    stride: int
    shift: int
    start: int
    dram_addr: int = 0
    row_stride: int = 0
    blk_stride: int = 0
    blocks: int = 0
    bits: int = 0


@dataclass(frozen=True)
class NmsCore:
    """The core's size: ``lanes`` channels a cycle (a DRAM word: ``tn``), the widest map and
    the largest kernel its memories hold, the spatial survivors and patches it buffers, the
    bits of a key (a code shifted to the common exponent, signed) and of a box index, the
    anchor channels and the competing partners of one channel its pyramid stage holds;
    ``code_bits``, the widest value the accelerator stores (its ``acc_bits``: a wide output
    is the accumulator's sum, so a 4-byte code holds at most that many significant bits)."""
    lanes: int
    max_width: int = 128
    max_kernel: int = 8
    survivors: int = 1024
    patches: int = 1024
    key_bits: int = 32
    index_bits: int = 24
    max_channels: int = 32
    partners: int = 8
    code_bits: int = 32
    #: the spatial stage's verdicts registered: tile-best memories written from a register, the
    #: position before's best kept as its candidates and verdict (``nms_write_reg``)
    write_reg: bool = False
    #: the pyramid stage reads its entries' channels a cycle ahead of their words (``nms_scan_ahead``)
    scan_ahead: bool = False

    @staticmethod
    def for_config(cfg: AcceleratorConfig) -> NmsCore:
        """The core of a target: its ``nms_*`` fields, codes of at most ``acc_bits``;
        ``NmsError`` when the target has none (``nms_lanes`` 0)."""
        core = core_of(cfg)
        if core is None:
            raise NmsError(f"target {cfg.name} has no NMS core (nms_lanes 0)")
        return core


def core_of(cfg: AcceleratorConfig) -> NmsCore | None:
    """The NMS core of ``cfg`` (its ``nms_*`` fields), None when it has none."""
    if not cfg.nms_lanes:
        return None
    return NmsCore(lanes=cfg.nms_lanes, max_width=cfg.nms_max_width, max_kernel=cfg.nms_max_kernel,
                   survivors=cfg.nms_survivors, patches=cfg.nms_patches, key_bits=cfg.nms_key_bits,
                   index_bits=cfg.nms_index_bits, max_channels=cfg.nms_max_channels, partners=cfg.nms_partners,
                   code_bits=cfg.acc_bits, write_reg=cfg.nms_write_reg,
                   scan_ahead=cfg.nms_scan_ahead)


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
        """Refuse, with one line, an instruction the core cannot run: ``fault`` (what the
        hardware flags too), a survivor list larger than its 16-bit count field allows, a pair
        table that is not symmetric (the hardware reads each pair once and does not check it)."""
        fault = self.fault(core)
        if fault:
            raise NmsError(fault)
        if not 0 <= self.capacity < 1 << 16:
            raise NmsError(f"NMS survivor capacity must be in [0, 65535], found {self.capacity}")
        n = self.channels
        for a in range(n):
            for b in range(a):
                if self.pair_k[a][b] != self.pair_k[b][a] or self.pair_s[a][b] != self.pair_s[b][a]:
                    raise NmsError(f"NMS pair table must be symmetric with a zero diagonal, found ({a}, {b})")

    def fault(self, core: NmsCore) -> str:
        """Why the core cannot run this table ('' when it can): exactly what ``NmsUnit``
        checks as the table streams in and flags (FLAG_BAD_TABLE, docs/nms_core.md "A table
        the core cannot run"): per level, an anchor, a stride, its map no wider than the core,
        its keys within the core's bits, its box indices below ``2**index_bits``; the anchors
        summing to the channels; per channel a kernel in 1..min(core, map) above its shift;
        per competing pair (``K > 0``) not on the diagonal, ``K`` and the stride ratio (a power
        of two) within the slot's fields, ``K_s < K``, at most ``core.partners`` a channel."""
        n = self.channels
        if not self.levels:
            return "NMS needs at least one level, found 0"
        if len(self.kernels) != n or len(self.shifts) != n or len(self.pair_k) != n or len(self.pair_s) != n:
            return (f"NMS parameter table must have one kernel, shift and pair row per channel ({n}), "
                    f"found {len(self.kernels)}, {len(self.shifts)}, {len(self.pair_k)}, {len(self.pair_s)}")
        if self.planes not in (1, 2, 4):
            return f"NMS planes must be 1, 2 or 4 bytes a code, found {self.planes}"
        if self.classes < 1:
            return f"NMS needs at least one class, found {self.classes}"
        for i, lv in enumerate(self.levels):
            if lv.anchors < 1 or lv.stride < 1:
                return f"NMS level {i}: needs an anchor and a stride, found {lv.anchors} and {lv.stride}"
            if lv.width > core.max_width:
                return f"NMS level {i}: map width {lv.width} exceeds the core's {core.max_width}"
            bits = min(8 * self.planes, core.code_bits, lv.bits or 32)
            if bits + lv.shift > core.key_bits:
                return (f"NMS level {i}: {bits}-bit codes shifted by {lv.shift} do not fit "
                        f"the core's {core.key_bits}-bit keys")
            if lv.start + lv.height * lv.width * lv.anchors > 1 << core.index_bits:
                return (f"NMS box indices must fit the core's {core.index_bits} bits, found "
                        f"{lv.start + lv.height * lv.width * lv.anchors} boxes")
        level = self.level_of()
        for j, (k, s) in enumerate(zip(self.kernels, self.shifts)):
            lv = self.levels[level[j]]
            if not (1 <= k <= min(core.max_kernel, lv.height, lv.width) and 0 <= s < k):
                return (f"NMS channel {j}: kernel {k} (shift {s}) must be in 1..min(core {core.max_kernel}, "
                        f"map {lv.height}x{lv.width}) with 0 <= shift < kernel")
        strides = [self.levels[level[j]].stride for j in range(n)]
        for a in range(n):
            if sum(1 for kk in self.pair_k[a] if kk) > core.partners:
                return (f"NMS channel {a} competes with {sum(1 for kk in self.pair_k[a] if kk)} channels, "
                        f"more than the core's {core.partners}")
            for b in range(n):
                kk, ks = self.pair_k[a][b], self.pair_s[a][b]
                if not kk:
                    continue
                hi, lo = max(strides[a], strides[b]), min(strides[a], strides[b])
                if a == b:
                    return f"NMS pair table must be symmetric with a zero diagonal, found ({a}, {b})"
                if hi % lo or (hi // lo) & (hi // lo - 1) or hi // lo >= 1 << (1 << SLOT_RATIO_BITS):
                    return (f"NMS channels {a} and {b} compete but their strides {strides[a]} and "
                            f"{strides[b]} are not a power-of-two ratio below 2**{1 << SLOT_RATIO_BITS}")
                if kk >= 1 << SLOT_KERNEL_BITS or not 0 <= ks < kk:
                    return (f"NMS pair ({a}, {b}): kernel {kk} must be below {1 << SLOT_KERNEL_BITS} and its "
                            f"shift {ks} below it")
        return ""


def _pad16(n: int) -> int:
    return -(-n // 16) * 16


def table_bytes(levels: int, channels: int) -> int:
    """Size of the parameter table of ``levels`` levels and ``channels`` channels."""
    return 32 * levels + _pad16(2 * channels) + _pad16(2 * channels * channels)


def encode_table(params: NmsParams) -> bytes:
    """The parameter table of ``params`` (the compiler writes it; the core reads it first)."""
    lv = np.zeros(len(params.levels), LEVEL_DTYPE)
    for i, level in enumerate(params.levels):
        for name in LEVEL_DTYPE.names:
            lv[i][name] = getattr(level, name)
    ch = np.zeros(params.channels, PAIR_DTYPE)
    ch["k"], ch["s"] = params.kernels, params.shifts
    pairs = np.zeros((params.channels, params.channels), PAIR_DTYPE)
    pairs["k"], pairs["s"] = params.pair_k, params.pair_s
    parts = [lv.tobytes(), ch.tobytes(), pairs.tobytes()]
    return b"".join(p + bytes(_pad16(len(p)) - len(p)) for p in parts)


def decode_table(table: bytes, levels: int, channels: int, classes: int, thr: int, capacity: int,
                 planes: int) -> NmsParams:
    """``NmsParams`` from a parameter table and the instruction's fields (``planes``: bytes)."""
    lv = np.frombuffer(table[:32 * levels], LEVEL_DTYPE)
    at = 32 * levels
    ch = np.frombuffer(table[at:at + 2 * channels], PAIR_DTYPE)
    at += _pad16(2 * channels)
    pairs = np.frombuffer(table[at:at + 2 * channels * channels], PAIR_DTYPE).reshape(channels, channels)
    return NmsParams(tuple(NmsLevel(**{n: int(r[n]) for n in LEVEL_DTYPE.names}) for r in lv),
                     tuple(int(k) for k in ch["k"]), tuple(int(k) for k in ch["s"]),
                     tuple(tuple(int(k) for k in row) for row in pairs["k"]),
                     tuple(tuple(int(k) for k in row) for row in pairs["s"]), classes, thr, capacity, planes)


def params_json(params: NmsParams) -> dict:
    """``params`` as JSON (the manifest's ``nms.params``)."""
    return dataclasses.asdict(params)


def params_from_json(doc) -> NmsParams:
    """``NmsParams`` from ``params_json``; ``NmsError`` when the document is not one."""
    try:
        levels = tuple(NmsLevel(**lv) for lv in doc["levels"])
        tables = {k: tuple(tuple(r) if isinstance(r, list) else r for r in doc[k])
                  for k in ("kernels", "shifts", "pair_k", "pair_s")}
        return NmsParams(levels, **tables, **{k: doc[k] for k in ("classes", "thr", "capacity", "planes")})
    except (KeyError, TypeError) as exc:
        raise NmsError(f"manifest nms.params is not an NMS parameter table ({exc})") from None


def check_program(cfg: AcceleratorConfig, fields: list[tuple[int, dict]], manifest: dict) -> None:
    """The program loader's check of its NMS instructions (``(index, body fields)``): the
    parameter table the compiler wrote (``manifest["nms"]``: its address and ``params``) is
    the one each instruction names, with the instruction's levels, channels, classes,
    threshold, capacity and code bytes, and the core runs it (``NmsParams.check``, the
    pyramid's ``slot_table``). ``ProgramError`` naming the instruction otherwise."""
    core = NmsCore.for_config(cfg)
    for i, f in fields:
        try:
            nms = manifest.get("nms")
            if not isinstance(nms, dict) or "params" not in nms:
                raise NmsError("needs its parameter table in manifest.json nms.params; recompile the model")
            params = params_from_json(nms["params"])
            given = {"table_addr": nms.get("table_addr"), "levels": len(params.levels),
                     "channels": params.channels, "classes": params.classes, "thr": params.thr,
                     "capacity": params.capacity, "planes": params.planes.bit_length() - 1}
            for name, v in given.items():
                if f[name] != v:
                    raise NmsError(f"field {name} is {f[name]}, its parameter table (manifest nms) says {v}")
            params.check(core)
            slot_table(params, core)
        except NmsError as exc:
            raise ProgramError(f"program.bin instruction {i} (NMS): {exc}") from None


def _aligned(name: str):
    return (name, f"`{name}` is a multiple of 16 and of the DRAM beat",
            lambda f, c: f[name] % max(16, c.dram_bytes_per_cycle) == 0,
            lambda f, c: f"{name} {f[name]} is not a multiple of {max(16, c.dram_bytes_per_cycle)}")


def field_rules() -> list[tuple]:
    """The NMS field rules, as ``(field, rule, ok, message)`` for ``ir.rules.Rule`` (whose
    ``ok`` takes field columns and the target, ``message`` one instruction's fields): what
    the fields alone must keep. The table's own rules (kernels against the maps) are
    ``NmsParams.check``, run on the table as the program is loaded."""
    core = lambda c: core_of(c) or NmsCore(lanes=1, survivors=0, patches=0)
    return [
        ("channels", "the target has an NMS core (`nms_lanes` > 0)",
         lambda f, c: (f["channels"] >= 0) & (c.nms_lanes > 0),
         lambda f, c: f"target {c.name} has no NMS core to pool {f['channels']} channels (nms_lanes 0)"),
        _aligned("table_addr"), _aligned("patch_addr"), _aligned("out_addr"),
        ("planes", "a code is 1, 2 or 4 bytes: `planes` <= 2", lambda f, c: f["planes"] <= 2,
         lambda f, c: f"planes {f['planes']} must be 0, 1 or 2 (1, 2 or 4 bytes a code)"),
        ("levels", "at least one level, and a channel for each", lambda f, c: (f["levels"] >= 1)
         & (f["channels"] >= f["levels"]), lambda f, c: f"needs levels >= 1 and channels >= levels, found "
                                                         f"{f['levels']} levels, {f['channels']} channels"),
        ("classes", "at least one class", lambda f, c: f["classes"] >= 1, lambda f, c: "classes must be >= 1, found 0"),
        ("patches", "`patches` (the most entries the patch list may hold) fits the core's patch buffer",
         lambda f, c: f["patches"] <= core(c).patches,
         lambda f, c: f"patches {f['patches']} exceed the core's patch buffer of {core(c).patches}"),
        ("capacity", "the survivor list fits the core's survivor buffer",
         lambda f, c: f["capacity"] <= core(c).survivors,
         lambda f, c: f"capacity {f['capacity']} exceeds the core's survivor buffer of {core(c).survivors}"),
    ]


def field_fault(fields: dict, core: NmsCore) -> str:
    """Why the core cannot run an instruction with these fields ('' when it can): what
    ``NmsUnit`` checks on the fields and flags (FLAG_BAD_TABLE, with only the table and the
    patch list's header read): ``field_rules``' levels, channels, classes, planes, patches and
    capacity, and no more channels than the core's. (The addresses' alignment stays the
    loader's alone: the flag itself is written at ``out_addr``.)"""
    f = fields
    if not 1 <= f["levels"] <= f["channels"] <= core.max_channels:
        return (f"NMS needs 1 <= levels <= channels <= the core's {core.max_channels}, found {f['levels']} levels, "
                f"{f['channels']} channels")
    if f["classes"] < 1 or f["planes"] > 2:
        return f"NMS needs classes >= 1 and planes <= 2, found {f['classes']} and {f['planes']}"
    if f["patches"] > core.patches or f["capacity"] > core.survivors:
        return (f"NMS patches {f['patches']} and capacity {f['capacity']} must fit the core's {core.patches} "
                f"and {core.survivors}")
    return ""


# The pyramid stage's slot table (hw/nms_pyramid.py): per channel, ``partners`` slots, each
# a competing channel with the pair's kernel K, its shift K_s and the two channels' stride
# ratios to the coarser stride (as shifts); coordinates up to COORD_BITS, divided by K in
# DIV_STEPS restoring steps.
SLOT_KERNEL_BITS = 4
SLOT_RATIO_BITS = 3
COORD_BITS = 16
DIV_STEPS = COORD_BITS + 1
#: ``NmsPyramid``'s scan pipeline beyond the banks' read: t and its slot registered, then
#: each lane's hit registered, before the or into ``beaten`` (timing, hw/nms_pyramid.py).
SCAN_PIPE = 2


def slot_table(params: NmsParams, core: NmsCore) -> list[dict]:
    """The pyramid stage's slot table of ``params`` (``channels · core.partners`` entries,
    unused slots invalid); ``NmsError`` when a channel has more partners than slots, a pair
    kernel or stride ratio exceeds its field, or there are more channels than the core's."""
    n = params.channels
    if n > core.max_channels:
        raise NmsError(f"NMS needs {n} channels, more than the core's {core.max_channels}")
    strides = [params.levels[lv].stride for lv in params.level_of()]
    table = [{"valid": 0, "partner": 0, "k": 0, "ks": 0, "rho_a": 0, "rho_b": 0} for _ in range(n * core.partners)]
    for a in range(n):
        partners = [b for b in range(n) if params.pair_k[a][b]]
        if len(partners) > core.partners:
            raise NmsError(f"NMS channel {a} competes with {len(partners)} channels, more than the core's "
                           f"{core.partners}")
        for z, b in enumerate(partners):
            k, common = params.pair_k[a][b], max(strides[a], strides[b])
            rho_a, rho_b = (common // strides[a]).bit_length() - 1, (common // strides[b]).bit_length() - 1
            if k >= 1 << SLOT_KERNEL_BITS or max(rho_a, rho_b) >= 1 << SLOT_RATIO_BITS:
                raise NmsError(f"NMS pair ({a}, {b}): kernel {k} or stride ratio 2**{max(rho_a, rho_b)} "
                               f"exceeds the core's fields")
            table[a * core.partners + z] = {"valid": 1, "partner": b, "k": k, "ks": params.pair_s[a][b],
                                            "rho_a": rho_a, "rho_b": rho_b}
    return table


def pyramid_cycles(n: int, core: NmsCore) -> int:
    """``NmsPyramid``'s cycles from ``start`` to ``done`` for ``n`` buffered survivors (its
    output always ready): per survivor, its read (2), per slot the slot read, the divisions
    and the bounds (``DIV_STEPS + 2``), the scan (1 + ``ceil(n / lanes)`` + ``SCAN_PIPE``)
    and the result (1); then two cycles a survivor to send the kept ones; 4 cycles of start
    and end."""
    per = 2 + core.partners * (DIV_STEPS + 2) + 1 + -(-n // core.lanes) + SCAN_PIPE + 1
    return 4 + n * (per + 2)


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


#: ``NmsUnit``'s fixed steps (hw/nms_dma.py): from the instruction's acceptance to the table's
#: first request (the table size n·n by the shift-add multiplier), a level's setup (its entry
#: read and latched, A·C and the plane step multiplied) to its first lane, per channel the
#: slot table's fixed cycles beyond its n pairs and unused slots.
MUL_STEPS = 16  # a product's steps (hw/nms_walk.py ``Multiplier``: a 16-bit multiplier)
UNIT_START = MUL_STEPS + 2  # accept, the product, the table read's start
LEVEL_SETUP = 2 * (MUL_STEPS + 1) + 2  # read, latch, A·C, the plane step (the walkers start with the last)
SCAN_FIXED = 3  # the pair memory read, its registered output, the last pair
MAX_BURST = 16  # beats of one read request (hw/nms_walk.py ``LinearReader``)


def _bursts(addr: int, nbytes: int, bw: int) -> int:
    """Read requests of ``nbytes`` from ``addr``: at most ``MAX_BURST`` beats, never across 4 KiB."""
    n, left = 0, nbytes // bw
    while left:
        beats = min(left, MAX_BURST, (4096 - addr % 4096) // bw)
        addr, left, n = addr + beats * bw, left - beats, n + 1
    return n


def nms_cycles(cfg: AcceleratorConfig, params: NmsParams, core: NmsCore, blocks: list[np.ndarray],
               patches: np.ndarray, spatial: int, kept: int, *, table_addr: int = 0,
               count: int | None = None, bad: bool = False, merged: np.ndarray | None = None) -> int:
    """``NmsUnit``'s cycles from taking the instruction to ``done`` (docs/nms_core.md, "Cycle
    model"), with a memory that answers a read's first beat ``dram_latency`` cycles after its
    request and a write's response as long after its last beat, and never stalls:

    - the table size, then the table and the patch list's header read back to back, then (when
      the header's ``count`` is in 1..``patches``) the entries;
    - two cycles a level (strides), per channel its ``n`` pairs, ``SCAN_FIXED`` and its unused
      partner slots (the pyramid's slot table);
    - per level ``LEVEL_SETUP``, the first word ``dram_latency`` after its walker starts; per
      block ``lanes`` cycles (its lanes' fields), ``block_start``, then position ``q`` of the
      ``H·W`` leaves the cell former ``planes + patches merged at q`` after ``q - 1`` did, but
      not before the cycle after the spatial stage took ``q - 2`` from the two-entry buffer
      between them; the stage takes ``q`` a cycle after it left the cell former and
      ``max(survivors decided at q - 1, 1)`` after it took ``q - 1`` (the spatial stage holds
      a position one cycle a survivor),
      the drain positions ``max(survivors, 1)`` each (``blocks``: the survivors decided at each
      position, as ``spatial_cycles`` takes), and a cycle for the stage's end;
    - the pyramid stage on the ``spatial`` survivors (none when ``bad``, when there are none or
      more than ``core.survivors``), its ``kept`` survivors' writes overlapped, then the header
      written and its response.

    ``patches``: the entries read (PATCH_DTYPE), ``count`` the header's (default their number;
    more than the entries when the list was over ``patches``: then none read), ``merged`` those
    of them the cell former merges (default all; of an illegal list its prefix
    ``sim.nms_core.merged_patches``, with ``blocks`` decided on the stream it patched)."""
    bw, lat, lanes = cfg.dram_bytes_per_cycle, cfg.dram_latency, core.lanes
    beats = lambda nbytes: -(-nbytes // bw)
    planes = params.planes
    patches = np.asarray(patches, PATCH_DTYPE)
    count = len(patches) if count is None else count
    t = _front_cycles(cfg, core, len(params.levels), params.pair_k, table_addr, count, len(patches))
    # The levels' blocks.
    at = {}
    for p in np.asarray(patches if merged is None else merged, PATCH_DTYPE):
        key = (int(p["level"]), int(p["channel"]) // lanes)
        at.setdefault(key, []).append((int(p["y"]), int(p["x"])))
    it = iter(blocks)
    for li, lv in enumerate(params.levels):
        lanes_at = t + LEVEL_SETUP
        x_end = None
        for bi in range(-(-lv.anchors * params.classes // lanes)):
            decided = np.asarray(next(it)).reshape(-1)
            hw = lv.height * lv.width
            npq = np.zeros(hw, np.int64)
            for y, x in at.get((li, bi), ()):
                if y < lv.height and x < lv.width:  # (``merged`` holds only positions in the stream)
                    npq[y * lv.width + x] += 1
            if x_end is None:
                s0 = lanes_at + lanes
                e = max(lanes_at + lat, s0 + 1) + planes + int(npq[0])
            else:
                s0 = x_end + 1 + lanes
                e = s0 + 1 + planes + int(npq[0])
            # e: position 0 leaves the cell former (into NmsBack's two-entry buffer); from
            # there, position q leaves it (a) once its planes and patches are in and the
            # buffer has room (the spatial stage took q - 2 in an earlier cycle), and the
            # spatial stage takes it (b) a cycle after (a), once done with q - 1 (a cycle, or
            # one a survivor).
            p_q = (planes + npq).tolist()
            d_q = np.maximum(decided, 1).tolist()
            a, b, b2 = e, e + 1, -1
            for q in range(1, hw):
                a = max(a + p_q[q], b2 + 1)
                b2, b = b, max(a + 1, b + d_q[q - 1])
            x_end = b + int(sum(d_q[hw - 1:])) + 1
        t = x_end + 1
    # FIN at t; the back end, the header's write and its response.
    header_only = bad or spatial == 0 or spatial > core.survivors
    t += 1 if header_only else PYRAMID_TAIL + pyramid_cycles(spatial, core)
    return t + 2 + beats(16) + lat


def _front_cycles(cfg: AcceleratorConfig, core: NmsCore, levels: int, pair_k, table_addr: int, count: int,
                  read: int | None, *, fields_bad: bool = False) -> int:
    """``NmsUnit``'s cycle at which its first level's setup begins (``nms_cycles``), or with
    ``fields_bad`` its FIN (right after the patch list's header): the table (``levels``, the
    ``n × n`` pairs ``pair_k``) and the header read, the ``read`` patch entries when the
    header's ``count`` is in 1..``patches`` (``read == count``), the strides, the slot table."""
    bw, lat = cfg.dram_bytes_per_cycle, cfg.dram_latency
    beats = lambda nbytes: -(-nbytes // bw)
    n = len(pair_k)
    # Table and header: requests from UNIT_START, data back to back from UNIT_START + lat.
    tlen = table_bytes(levels, n)
    r1 = _bursts(table_addr, tlen, bw)
    first = max(UNIT_START + 1 + r1 + lat, UNIT_START + lat + beats(tlen))
    t = first + beats(16) - 1 + 2  # the header's last beat, its count seen, the next state
    if fields_bad:
        return t
    if 0 < count == read:
        t += 1 + lat + beats(16 * count)
    t += 2 * levels
    for a in range(n):
        found = sum(1 for b in range(n) if pair_k[a][b])
        t += n + SCAN_FIXED + core.partners - min(found, core.partners)
    return t


def fault_cycles(cfg: AcceleratorConfig, core: NmsCore, fields: dict, pair_k, count: int) -> int:
    """``NmsUnit``'s cycles for an instruction it flags FLAG_BAD_TABLE: fields the core cannot
    run (``field_fault``: ``pair_k`` unused) end right after the patch list's header; a table it
    cannot run (``NmsParams.fault``, ``pair_k`` its ``n × n`` pair kernels) after the strides
    and the slot table, with the patch entries read before them when ``count`` is in
    1..``patches``; then only the header is written (``nms_cycles``' header-only tail)."""
    fields_bad = bool(field_fault(fields, core))
    n = fields["channels"]
    t = _front_cycles(cfg, core, fields["levels"], pair_k if not fields_bad else [[0] * n] * n,
                      fields["table_addr"], count, count if count <= fields["patches"] else None,
                      fields_bad=fields_bad)
    return t + 1 + 2 + -(-16 // cfg.dram_bytes_per_cycle) + cfg.dram_latency


#: Cycles from ``finish`` to the header's write beyond ``pyramid_cycles``.
PYRAMID_TAIL = 0
