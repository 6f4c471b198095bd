"""SPCONV's weight-bank format and its checks, defined once (docs/sparsity.md, docs/isa.md).

An SPCONV is a pixel-parallel CONV whose accumulation steps are a list. Of the dense steps
``s = (c*kh + y)*kw + x`` (``s = y*kw + x`` depthwise) it runs the ``kept`` listed ones:

- weights: kept step ``j`` in word ``w_addr + j // tn``, lane ``j % tn`` (rows: the ``tm``
  output channels), exactly as a dense CONV packs step ``j``;
- index list: from word ``w_addr + ceil(kept/tn)`` on, entry ``j`` is the little-endian
  ``INDEX_BYTES``-byte integer at byte ``INDEX_BYTES*j`` of those words: kept step ``j``'s
  input channel ``c``, kernel row ``y`` and column ``x`` packed as
  ``(c << (yb + xb)) | (y << xb) | x`` with ``yb, xb = bits(kh - 1), bits(kw - 1)`` (``c = 0``
  depthwise). The RTL takes the fields apart with two shifts fixed for the instruction (a flat
  step number would need a divider by ``kh*kw``: docs/sparsity.md "The RTL" has the
  measurement). Entries strictly increase (the steps in dense order) and name taps inside the
  conv (``c < chans``, ``y < kh``, ``x < kw``); a conv whose ``(chans or 1) << (yb + xb)``
  exceeds ``INDEX_SPAN`` cannot be an SPCONV.

Field-only constraints (kept count, bank range) are rules in ``ir/rules.py``; the index list
is data, so the program loader checks it by following the LOAD_WGTs that fill the banks
(``check_program``) and the simulator checks it again when it runs an SPCONV.
"""

from __future__ import annotations

import numpy as np

from ..errors import ProgramError
from .config import AcceleratorConfig
from .cost import ceil_div
from .isa import Opcode, WgtTarget

INDEX_BYTES = 2  # one index entry (packed channel, row, column), little endian
INDEX_SPAN = 1 << (8 * INDEX_BYTES)  # packed values an index entry can hold
_BITS = np.array([max(0, (k - 1).bit_length()) for k in range(1 << 8)])  # bits(k - 1), 0 for k <= 1


def dense_steps(depthwise, chans, kh, kw):
    """Accumulation steps of the dense pixel-parallel CONV with these fields (elementwise on
    numpy arrays as on ints)."""
    return np.where(depthwise != 0, 1, chans) * kh * kw


def tap_bits(kh, kw):
    """``(yb, xb)``: the bits of an index entry's row and column fields (elementwise)."""
    return _BITS[kh], _BITS[kw]


def index_span(depthwise, chans, kh, kw):
    """The packed values a conv's index entries range over: ``(chans or 1) << (yb + xb)``
    (elementwise); at most ``INDEX_SPAN`` for an SPCONV."""
    yb, xb = tap_bits(kh, kw)
    return np.where(depthwise != 0, 1, np.asarray(chans, np.int64)) << (yb + xb)


def pack_index(steps, kh: int, kw: int) -> np.ndarray:
    """Index entries of the dense step numbers ``steps`` (``s = (c*kh + y)*kw + x``)."""
    yb, xb = tap_bits(kh, kw)
    c, t = np.divmod(np.asarray(steps, np.int64), kh * kw)
    y, x = np.divmod(t, kw)
    return (c << (yb + xb)) | (y << xb) | x


def unpack_index(entries, kh: int, kw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, y, x)`` of index entries, as the RTL splits them (two shifts and masks)."""
    yb, xb = tap_bits(kh, kw)
    e = np.asarray(entries, np.int64)
    return e >> (yb + xb), (e >> xb) & ((1 << yb) - 1), e & ((1 << xb) - 1)


def weight_words(cfg: AcceleratorConfig, kept):
    """Words of the kept steps' weights (``tn`` steps a word)."""
    return ceil_div(kept, cfg.tn)


def index_words(cfg: AcceleratorConfig, kept):
    """Words of the index list (``tm*tn // INDEX_BYTES`` entries a word)."""
    return ceil_div(kept * INDEX_BYTES, cfg.tm * cfg.tn)


def bank_words(cfg: AcceleratorConfig, kept):
    """Weight-bank words an SPCONV reads from ``w_addr`` on: its weights, then its index list."""
    return weight_words(cfg, kept) + index_words(cfg, kept)


def index_bytes(entries) -> bytes:
    """Index entries (``pack_index``'s) in the bank's byte format."""
    return np.asarray(entries, f"<u{INDEX_BYTES}").tobytes()


def read_index(cfg: AcceleratorConfig, bank: np.ndarray, w_addr: int, kept: int) -> np.ndarray:
    """The index entries of an SPCONV from a weight bank's bytes (packed, int64)."""
    start = (w_addr + weight_words(cfg, kept)) * cfg.tm * cfg.tn
    raw = bank[start:start + kept * INDEX_BYTES]
    return np.frombuffer(raw.tobytes(), f"<u{INDEX_BYTES}").astype(np.int64)


def index_problem(entries: np.ndarray, depthwise, chans: int, kh: int, kw: int) -> str | None:
    """Why an index list is malformed for this conv (one line), or None; a list that passes
    names its steps by ``index_steps``."""
    chans = 1 if depthwise else chans
    dense = chans * kh * kw
    if len(entries) > dense:
        return f"the index list has {len(entries)} entries, more than the {dense} dense steps"
    c, y, x = unpack_index(entries, kh, kw)
    out = np.flatnonzero((c >= chans) | (y >= kh) | (x >= kw))
    if out.size:
        j = int(out[0])
        return (f"index entry {j} is channel {int(c[j])} row {int(y[j])} column {int(x[j])}, outside the "
                f"{chans}x{kh}x{kw} dense steps")
    down = np.flatnonzero(np.diff(entries) <= 0)
    if down.size:
        j = int(down[0]) + 1
        return (f"index entry {j} ({int(entries[j])}) does not follow entry {j - 1} ({int(entries[j - 1])}): "
                f"the list must strictly increase")
    return None


def index_steps(entries: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """The dense step numbers of a well-formed index list."""
    c, y, x = unpack_index(entries, kh, kw)
    return (c * kh + y) * kw + x


def check_program(cfg: AcceleratorConfig, instrs: list, weights: bytes, const_base: int) -> None:
    """Follow the program's LOAD_WGTs (``instrs``: the decoded program) into two model weight
    banks, in program order, and check every SPCONV's index list against what its bank then
    holds; ``ProgramError`` naming the first malformed one. Weights come from the constant
    image (``weights.bin`` at ``const_base``); bytes loaded from elsewhere read as zero here and
    are checked by the simulator when it runs."""
    banks = np.zeros((2, cfg.weight_bank_bytes), np.uint8)
    const = np.frombuffer(weights, np.uint8)
    for ins in instrs:
        if ins is None:
            continue
        f = ins.f
        if ins.opcode is Opcode.LOAD_WGT and f["target"] == WgtTarget.WEIGHTS.value:
            n, sram, src = f["nbytes"], f["sram_addr"], f["dram_addr"] - const_base
            part = const[max(src, 0):max(src + n, 0)]
            banks[f["bank"], sram:sram + n] = 0
            if src >= 0:
                banks[f["bank"], sram:sram + len(part)] = part
        elif ins.opcode is Opcode.SPCONV:
            problem = index_problem(read_index(cfg, banks[f["wbank"]], f["w_addr"], f["kept"]),
                                    f["depthwise"], f["inp.chans"], f["win.kh"], f["win.kw"])
            if problem:
                raise ProgramError(f"program.bin {ins.where()}: {problem}")
