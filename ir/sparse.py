"""SPCONV's weight-bank format and its checks, defined once (docs/sparsity.md, docs/isa.md).

An SPCONV is a pixel-parallel CONV whose accumulation steps are a list. Of the dense steps
``s = (c*kh + y)*kw + x`` (``s = y*kw + x`` depthwise) it runs the ``kept`` listed ones:

- weights: kept step ``j`` in word ``w_addr + j // tn``, lane ``j % tn`` (rows: the ``tm``
  output channels), exactly as a dense CONV packs step ``j``;
- index list: from word ``w_addr + ceil(kept/tn)`` on, entry ``j`` (the dense step number of
  kept step ``j``) is the little-endian ``INDEX_BYTES``-byte integer at byte ``INDEX_BYTES*j``
  of those words; entries strictly increase and are below the dense step count.

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

INDEX_BYTES = 2  # one index entry (a dense step number), little endian
MAX_DENSE_STEPS = 1 << (8 * INDEX_BYTES)  # dense steps an index entry can name


def dense_steps(depthwise, chans, kh, kw):
    """Accumulation steps of the dense pixel-parallel CONV with these fields (elementwise on
    numpy arrays as on ints)."""
    return np.where(depthwise != 0, 1, chans) * kh * kw


def weight_words(cfg: AcceleratorConfig, kept):
    """Words of the kept steps' weights (``tn`` steps a word)."""
    return ceil_div(kept, cfg.tn)


def index_words(cfg: AcceleratorConfig, kept):
    """Words of the index list (``tm*tn // INDEX_BYTES`` entries a word)."""
    return ceil_div(kept * INDEX_BYTES, cfg.tm * cfg.tn)


def bank_words(cfg: AcceleratorConfig, kept):
    """Weight-bank words an SPCONV reads from ``w_addr`` on: its weights, then its index list."""
    return weight_words(cfg, kept) + index_words(cfg, kept)


def index_bytes(index) -> bytes:
    """The index list of ``index`` (dense step numbers) in the bank's byte format."""
    return np.asarray(index, f"<u{INDEX_BYTES}").tobytes()


def read_index(cfg: AcceleratorConfig, bank: np.ndarray, w_addr: int, kept: int) -> np.ndarray:
    """The index list of an SPCONV from a weight bank's bytes (int64)."""
    start = (w_addr + weight_words(cfg, kept)) * cfg.tm * cfg.tn
    raw = bank[start:start + kept * INDEX_BYTES]
    return np.frombuffer(raw.tobytes(), f"<u{INDEX_BYTES}").astype(np.int64)


def index_problem(index: np.ndarray, dense: int) -> str | None:
    """Why an index list is malformed for a conv of ``dense`` steps (one line), or None."""
    if len(index) > dense:
        return f"the index list has {len(index)} entries, more than the {dense} dense steps"
    out = np.flatnonzero(index >= dense)
    if out.size:
        j = int(out[0])
        return f"index entry {j} is step {int(index[j])}, outside the {dense} dense steps"
    down = np.flatnonzero(np.diff(index) <= 0)
    if down.size:
        j = int(down[0]) + 1
        return (f"index entry {j} (step {int(index[j])}) does not follow entry {j - 1} (step {int(index[j - 1])}): "
                f"the list must strictly increase")
    return None


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
                                    int(dense_steps(f["depthwise"], f["inp.chans"], f["win.kh"], f["win.kw"])))
            if problem:
                raise ProgramError(f"program.bin {ins.where()}: {problem}")
