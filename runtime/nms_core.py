"""The CPU's half of the NMS instruction (docs/nms_core.md): what the compiler writes and what
the runtime does around the core.

Compile (``attach_nms``): a detector compiled with ``--nms psrr`` gets a second accelerator
program part after its own, ``NMS`` then ``FINISH``, and ``manifest["nms"]``: where the
parameter table, the patch list and the survivor list are in DRAM (past the model's DRAM),
the ``NmsParams`` as JSON (the loader checks them, the runtime writes the table from them),
the score threshold, ``alpha`` and ``reach`` the kernels and pairs were computed with. That
part is not one of ``manifest["segments"]``: it needs the CPU's Relationship Recovery first,
which only a runtime that knows the head spec can do (``CoreNms``).

Run (``CoreNms``), per frame, after the model's segments: decode the boxes and scores of the
candidates only (score above the threshold: the recovery needs their regressed boxes, the
survivors are candidates; ``nms_core_decode``), form the
patch list (``recovery_patches``), write it and the table, run the NMS part, read the
survivor list, and turn the survivors into ``Detections`` (``to_detections``: the order and
``max_per_class`` of ``make_detections``). The result is ``psrr_nms``'s on integer codes,
bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UsageError
from ..ir.config import AcceleratorConfig
from ..ir.isa import Opcode, encode
from ..ir.nms import (
    HEADER_DTYPE,
    PATCH_DTYPE,
    SURVIVOR_DTYPE,
    NmsCore,
    NmsError,
    NmsLevel,
    NmsParams,
    encode_table,
    params_from_json,
    params_json,
    table_bytes,
)
from ..ir.program import Program
from .decode import Decoded, decode
from .heads import HeadSpec
from .nms import Detections, make_detections
from .nms_core_decode import decode_candidates
from .nms_pool import (
    ALPHA,
    REACH,
    _length,
    _pairs,
    _recover,
    kernel_size,
    psrr_nms,
)

METHODS = ("psrr",)
INT33_MIN = -(1 << 32)  # the lowest ``thr`` field value: every code takes part


def spec_channels(spec: HeadSpec) -> list[tuple]:
    """(level, anchor, stride, grid, anchor w, anchor h) of every anchor channel, in box-index
    order (``nms_pool._channels`` of a decode of ``spec``)."""
    return [(li, a, lv.stride, lv.grid, aw, ah) for li, lv in enumerate(spec.levels)
            for a, (aw, ah) in enumerate(lv.anchors)]


def pool_tables(chans, alpha: float, reach: float | None, shifted: bool = True, kernel_by: str = "size"):
    """Per channel its kernel and shift, and the pair table (``K``, ``K_s``; 0: the channels
    do not compete) of ``psrr_nms`` with these arguments."""
    kernels = [kernel_size(alpha, _length(ch, kernel_by), ch[2]) for ch in chans]
    n = len(chans)
    pk, ps = [[0] * n for _ in range(n)], [[0] * n for _ in range(n)]
    for a, b in _pairs(chans, list(range(n)), reach):
        common = max(chans[a][2], chans[b][2])
        k = kernel_size(alpha, max(_length(chans[a], kernel_by), _length(chans[b], kernel_by)), common)
        pk[a][b] = pk[b][a] = k
        ps[a][b] = ps[b][a] = k // 2 if shifted else 0
    shifts = tuple(k // 2 if shifted else 0 for k in kernels)
    return tuple(kernels), shifts, tuple(map(tuple, pk)), tuple(map(tuple, ps))


def code_threshold(score: float, exponent: int) -> int:
    """The key a candidate's code (at po2 ``exponent``) must exceed for its score to exceed
    ``score`` (``nms_pool._keys``), clamped to the ``thr`` field."""
    if score == 0:
        return INT33_MIN
    logit = float(np.log(score / (1.0 - score)))
    return max(int(np.floor(logit / 2.0 ** exponent)), INT33_MIN)


def recovery_patches(decoded: Decoded, chans, keys: np.ndarray, thr, lanes: int) -> np.ndarray:
    """The cells where the recovered maps (``nms_pool._recover``) differ from the thresholded
    raw maps, in the stream order of a core of ``lanes``: a recovered cell's key and box
    index, or empty."""
    first = np.cumsum([0] + [len(lm.level.anchors) for lm in decoded.levels])
    level_of = np.repeat(np.arange(len(decoded.levels)), np.diff(first))
    classes = keys.shape[1]
    idx, c = np.nonzero(keys > thr)
    starts = np.array([lm.start for lm in decoded.levels])
    li = np.searchsorted(starts, idx, side="right") - 1
    na = np.array([len(lm.level.anchors) for lm in decoded.levels])[li]
    w = np.array([lm.level.grid[1] for lm in decoded.levels])[li]
    local = idx - starts[li]
    span = 1 << 15  # above every grid side and channel count (as nms_pool._group's columns)

    def pos(ch, y, x, cls):
        return ((np.asarray(ch, np.int64) * span + y) * span + x) * classes + cls

    raw_pos = pos(first[li] + local % na, local // na // w, local // na % w, c)
    cand = _recover(decoded, chans, keys, thr)
    rec_pos = pos(cand.ch, cand.y, cand.x, cand.c)
    every = np.union1d(raw_pos, rec_pos)

    def lookup(keys_at, values):
        order = np.argsort(keys_at)
        at = np.minimum(np.searchsorted(keys_at[order], every), max(len(keys_at) - 1, 0))
        has = (keys_at[order][at] == every) if len(keys_at) else np.zeros(len(every), bool)
        return has, [v[order][at] if len(keys_at) else np.zeros(len(every), np.int64) for v in values]

    raw_has, (raw_key, raw_idx) = lookup(raw_pos, (keys[idx, c].astype(np.int64), idx))
    rec_has, (rec_key, rec_idx) = lookup(rec_pos, (cand.key.astype(np.int64), cand.idx))
    differ = (raw_has != rec_has) | (rec_has & ((raw_key != rec_key) | (raw_idx != rec_idx)))
    p, ok = every[differ], rec_has[differ]
    cls, rest = p % classes, p // classes
    x, rest = rest % span, rest // span
    y, ch = rest % span, rest // span
    lv = level_of[ch]
    patches = np.zeros(len(p), PATCH_DTYPE)
    patches["level"], patches["empty"], patches["channel"] = lv, ~ok, (ch - first[lv]) * classes + cls
    patches["y"], patches["x"] = y, x
    patches["key"], patches["index"] = np.where(ok, rec_key[differ], 0), np.where(ok, rec_idx[differ], 0)
    chan = patches["channel"].astype(np.int64)
    return patches[np.lexsort((chan % lanes, patches["x"], patches["y"], chan // lanes, patches["level"]))]


def to_detections(decoded: Decoded, entries: np.ndarray, max_per_class: int | None) -> Detections:
    """The core's survivors as the CPU reports them: ``make_detections``' order and limit."""
    return make_detections(decoded.boxes, decoded.scores, entries["index"].astype(np.int64),
                           entries["cls"].astype(np.int64), max_per_class)


# --- compile: the NMS part of a program -----------------------------------------------------

def _align(n: int, to: int = 64) -> int:
    return -(-n // to) * to


def _score_maps(program: Program, spec: HeadSpec) -> list[dict]:
    """The DRAM tensor of every level's score map, checked to be what the core reads: an
    ``ssd`` head's (1, A·C, H, W) integer map that the accelerator stores, all levels with
    the same bytes a code; ``UsageError`` naming what does not hold."""
    if spec.decoder != "ssd":
        raise UsageError(f"--nms psrr on the accelerator needs an 'ssd' head spec (score maps per anchor), "
                         f"found decoder {spec.decoder!r}")
    tensors, graph = program.manifest["tensors"], program.graph
    maps = []
    for i, lv in enumerate(spec.levels):
        ref = lv.scores
        name = ref.output
        if ref.layout != "nchw":
            raise UsageError(f"--nms psrr: level {i}'s scores must be an nchw map, found layout {ref.layout!r}")
        want = [1, len(lv.anchors) * spec.num_classes, *lv.grid]
        if name not in tensors:
            raise UsageError(f"--nms psrr: level {i}'s score map {name!r} is not in the accelerator's DRAM "
                             f"(it is computed on the host)")
        t, ty = tensors[name], graph.types[name]
        if list(t["shape"]) != want or not ty.is_int or isinstance(ty.frac, tuple) or not t["signed"]:
            raise UsageError(f"--nms psrr: level {i}'s score map {name!r} must be signed integer codes of "
                             f"shape {want} with one exponent, found {t['shape']}")
        maps.append({"name": name, "exponent": -int(ty.frac), **t, "bits": int(ty.bits)})
    if len({m.get("planes", 1) for m in maps}) != 1:
        raise UsageError(f"--nms psrr: the score maps must have the same bytes a code, found "
                         f"{[m.get('planes', 1) for m in maps]}")
    return maps


def nms_params(program: Program, spec: HeadSpec, score: float, alpha: float, reach: float | None,
               capacity: int) -> NmsParams:
    """The ``NmsParams`` of ``psrr_nms(score, alpha, reach)`` on ``program``'s score maps."""
    maps = _score_maps(program, spec)
    low = min(m["exponent"] for m in maps)
    levels, start = [], 0
    for lv, m in zip(spec.levels, maps):
        h, w = lv.grid
        levels.append(NmsLevel(h, w, len(lv.anchors), lv.stride, m["exponent"] - low, start, m["addr"],
                               m["row_stride"], m["blk_stride"], m.get("blocks", 0), m["bits"]))
        start += lv.size
    kernels, shifts, pk, ps = pool_tables(spec_channels(spec), alpha, reach)
    return NmsParams(tuple(levels), kernels, shifts, pk, ps, spec.num_classes, code_threshold(score, low),
                     capacity, maps[0].get("planes", 1))


def attach_nms(program: Program, spec: HeadSpec, method: str = "psrr", score: float = 0.3, alpha: float = ALPHA,
               reach: float | None = REACH) -> Program:
    """``program`` with the NMS part (``NMS``, ``FINISH``) appended and ``manifest["nms"]``
    (module docstring); its DRAM grows by the table, the patch buffer and the survivor list.
    ``UsageError`` when the core cannot run this detector's NMS (``NmsParams.check``)."""
    if method not in METHODS:
        raise UsageError(f"--nms on the accelerator must be one of {', '.join(METHODS)}, not {method!r}")
    if not 0.0 <= score < 1.0:
        raise UsageError(f"--score must be in [0, 1), found {score}")
    cfg = program.config
    core = NmsCore.for_config(cfg)
    params = nms_params(program, spec, score, alpha, reach, core.survivors)
    try:
        params.check(core)
    except NmsError as exc:
        raise UsageError(f"--nms psrr: the NMS core cannot run this detector's NMS: {exc}") from None
    m = dict(program.manifest)
    table_addr = _align(m["dram"]["size"])
    patch_addr = _align(table_addr + table_bytes(len(params.levels), params.channels))
    out_addr = _align(patch_addr + 16 * (1 + core.patches))
    size = _align(out_addr + 16 * (1 + params.capacity))
    if size > cfg.dram_bytes:
        raise UsageError(f"--nms psrr: the NMS buffers need DRAM up to {size} bytes, the target has {cfg.dram_bytes}")
    start = program.n_instructions
    body = {"table_addr": table_addr, "levels": len(params.levels), "channels": params.channels,
            "classes": params.classes, "planes": params.planes.bit_length() - 1, "thr": params.thr,
            "patch_addr": patch_addr, "patches": core.patches, "out_addr": out_addr, "capacity": params.capacity}
    code = program.instructions + encode(Opcode.NMS, body) + encode(Opcode.FINISH)
    m["dram"] = {**m["dram"], "size": size}
    m["nms"] = {"method": method, "score": score, "alpha": alpha, "reach": reach, "start": start, "count": 2,
                "table_addr": table_addr, "patch_addr": patch_addr, "patch_capacity": core.patches,
                "out_addr": out_addr, "params": params_json(params)}
    return dataclasses.replace(program, instructions=code, manifest=m)


def core_of(cfg: AcceleratorConfig) -> NmsCore:
    return NmsCore.for_config(cfg)


# --- run: the CPU's half around the core, per frame ---------------------------------------

class CoreNms:
    """PSRR-MaxpoolNMS of a program compiled with ``--nms psrr``, on its accelerator: ``run``
    takes one frame's head outputs (integer codes, as the accelerator stored them; the score
    maps are still in its DRAM) and returns ``psrr_nms``'s detections and the NMS part's
    cycles. ``fallbacks`` counts frames whose patch or survivor list did not fit the core:
    their NMS ran on the CPU (``psrr_nms``), so the result is the same."""

    def __init__(self, program: Program, spec: HeadSpec, score: float, max_per_class: int | None = 100):
        nms = program.manifest.get("nms")
        if not isinstance(nms, dict):
            raise UsageError("this build has no NMS core part (compile it with `shiftflow compile --nms psrr`)")
        if score != nms["score"]:
            raise UsageError(f"--score {score}: this build's NMS core was compiled for score {nms['score']} "
                             f"(recompile with `shiftflow compile --nms psrr --score {score}`)")
        self.nms, self.spec, self.score, self.max_per_class = nms, spec, score, max_per_class
        self.params = params_from_json(nms["params"])
        self.table = encode_table(self.params)
        self.chans = spec_channels(spec)
        self.lanes = core_of(program.config).lanes
        g = program.graph
        self.outputs = sorted({ref.output for lv in spec.levels for ref in (lv.scores, lv.boxes)})
        self.exponents = {t: -int(g.types[t].frac) for t in self.outputs}
        self.score_exponent = min(self.exponents[lv.scores.output] for lv in spec.levels)
        self.fallbacks = 0

    def run(self, acc, outputs: dict[str, np.ndarray]) -> tuple[Detections, int]:
        """Detections of one frame whose model segments just ran on ``acc``, and the cycles of
        the NMS part (0 when it fell back to the CPU)."""
        nms = self.nms
        thr = self.params.thr
        decoded, keys = decode_candidates(self.spec, outputs, self.exponents, self.score_exponent, thr)
        patches = recovery_patches(decoded, self.chans, keys, thr, self.lanes)
        if len(patches) > nms["patch_capacity"]:
            return self._fallback(outputs), 0
        header = np.zeros(1, HEADER_DTYPE)
        header["count"] = len(patches)
        acc.write_dram(nms["table_addr"], self.table)
        acc.write_dram(nms["patch_addr"], header.tobytes() + patches.tobytes())
        cycles = acc.run_segment(nms["start"], nms["count"])
        n = self.params.capacity
        raw = acc.read_dram(nms["out_addr"], 16 * (1 + n))
        head = np.frombuffer(raw[:16], HEADER_DTYPE)[0]
        if head["flags"]:
            return self._fallback(outputs), cycles
        entries = np.frombuffer(raw[16:16 * (1 + int(head["count"]))], SURVIVOR_DTYPE)
        return to_detections(decoded, entries, self.max_per_class), cycles

    def _fallback(self, outputs: dict[str, np.ndarray]) -> Detections:
        self.fallbacks += 1
        return psrr_nms(decode(self.spec, outputs, self.exponents), self.score, self.nms["alpha"], self.max_per_class, self.nms["reach"])


class CoreAccelStage:
    """The pipeline's accel stage with the NMS core: the model's segments (``inner``, an
    ``AcceleratorStage``), then ``CoreNms`` on the head outputs it carries out; the frame
    gets ``core_rows`` (model-input pixels) and the NMS part's cycles in ``cycles``."""
    name = "accel"

    def __init__(self, inner, core: CoreNms):
        self.inner, self.core = inner, core
        missing = [t for t in core.outputs if t not in inner.carried]
        if missing:
            raise UsageError(f"--nms psrr on the accelerator needs the head outputs in its DRAM; "
                             f"{', '.join(missing)} are computed on the host")

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, frame: dict) -> dict:
        frame = self.inner(frame)
        dets, cycles = self.core.run(self.inner.acc, {t: frame["carry"][t] for t in self.core.outputs})
        frame["core_rows"] = dets.rows
        frame["cycles"] += cycles
        self.inner.cycles = frame["cycles"]
        return frame


class CorePostStage:
    """The pipeline's post stage with the NMS core: the core's rows mapped to the original
    image's pixels (the raw outputs are not decoded again)."""
    name = "post"

    def __call__(self, frame: dict) -> dict:
        frame.pop("outputs", None)
        frame.pop("exponents", None)
        rows = frame.pop("core_rows").astype(np.float64)
        rows[:, :4] = frame["geometry"].to_image(rows[:, :4])
        frame["rows"] = rows
        return frame


def with_core(stages: list, program: Program, spec: HeadSpec, score: float) -> list:
    """``make_stages``' (pre, accel, host, post) with the accel and post stages using the
    program's NMS core."""
    pre, accel, host, _post = stages
    return [pre, CoreAccelStage(accel, CoreNms(program, spec, score)), host, CorePostStage()]
