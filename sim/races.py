"""Races: memory hazards between units that the dependency tokens leave unordered.

The functional model executes in program order; the hardware overlaps its three units and
only tokens order them. The two agree exactly when every pair of instructions on different
units that touch the same memory (at least one writing) runs in program order in the cycle
model: the earlier one ends before the later one starts. ``find_race`` checks that on a
segment's timeline and names the first pair that does not — a compiler bug that would make
the RTL (L4) differ from the simulator (L2) even though both follow the contract.

Footprints are exact for the output buffer, the banks and DRAM (strided boxes row by row),
and per slot for rings (a ring access covers the whole slot span of the blocks it uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div
from ..ir.decode import Instr
from ..ir.isa import PARAM_BYTES, Opcode, Unit, VecOp, WgtTarget
from ..ir.sparse import bank_words
from ..ir.timeline import Timeline


@dataclass(frozen=True)
class _Access:
    space: str  # "line buffer", "weight bank 0", "output buffer half 1", "DRAM", ...
    starts: np.ndarray  # sorted interval starts (words or bytes of the space)
    length: int  # every interval's length
    write: bool

    def overlaps(self, other: "_Access") -> tuple[int, int] | None:
        """The first overlapping (start, end) of the two interval sets, if any."""
        if self.space != other.space or not (self.write or other.write) or not self.length or not other.length:
            return None
        if not len(self.starts) or not len(other.starts):
            return None
        a, b = (self, other) if len(self.starts) <= len(other.starts) else (other, self)
        # interval [s, s+la) of a meets one of b iff some b start lies in (s - lb, s + la)
        i = np.searchsorted(b.starts, a.starts - b.length, side="right")
        hit = (i < len(b.starts)) & (b.starts[np.minimum(i, len(b.starts) - 1)] < a.starts + a.length)
        if not hit.any():
            return None
        k = int(np.argmax(hit))
        lo = max(int(a.starts[k]), int(b.starts[i[k]]))
        return lo, min(int(a.starts[k]) + a.length, int(b.starts[i[k]]) + b.length)


def _box(f: dict, p: str, tn: int, write: bool) -> _Access:
    b, r = np.meshgrid(np.arange(f[p + "nblk"]), np.arange(f[p + "nrows"]), indexing="ij")
    starts = np.sort((f[p + "dram_addr"] + b * f[p + "blk_stride"] + r * f[p + "row_stride"]).ravel())
    return _Access("DRAM", starts, f[p + "ncols"] * tn if f[p + "ncols"] else 0, write)


def _span(space: str, lo: int, n: int, write: bool) -> _Access:
    return _Access(space, np.array([lo] if n > 0 else [], np.int64), n, write)


def _ring_slots(f: dict, p: str, slots_used: np.ndarray, nblk: int, write: bool) -> _Access:
    slots, sw = f[p + "slots"], f[p + "slot_words"]
    starts = np.unique(f[p + "base"] + (slots_used % max(slots, 1)) * sw)
    return _Access("line buffer", starts, nblk * f[p + "cols"], write)


def footprint(cfg: AcceleratorConfig, ins: Instr) -> list[_Access]:
    """The memory an instruction reads and writes (valid instructions only)."""
    f, tn, op = ins.f, cfg.tn, ins.opcode
    if op == Opcode.LOAD_ACT:
        rows = f["slot0"] + np.arange(f["src.nrows"])
        return [_box(f, "src.", tn, False), _ring_slots(f, "ring.", rows, f["src.nblk"], True)]
    if op == Opcode.LOAD_WGT:
        kind = "weight" if f["target"] == WgtTarget.WEIGHTS.value else "parameter"
        return [_span("DRAM", f["dram_addr"], f["nbytes"], False),
                _span(f"{kind} bank {f['bank']}", f["sram_addr"], f["nbytes"], True)]
    if op == Opcode.STORE:
        n = f["dst.nblk"] * f["dst.nrows"] * f["dst.ncols"]
        return [_span(f"output buffer half {f['half']}", f["obuf_addr"], n, False), _box(f, "dst.", tn, True)]
    if op not in (Opcode.CONV, Opcode.VEC, Opcode.SPCONV):
        return []
    conv = op != Opcode.VEC
    p = f["post.pool"] or 1
    rows, cols = f["tile.rows"], f["tile.cols"]
    blk = f["tile.obuf_blk"]
    out = (rows // p - 1) * f["tile.obuf_cols"] * blk + cols // p * blk if rows and cols else 0
    if conv and f["wide"] and out:  # byte planes, plane_words apart (docs/isa.md "Wide outputs")
        out += ((1 << f["wide"]) - 1) * f["plane_words"]
    accesses = [_span(f"output buffer half {f['tile.half']}", f["tile.obuf_addr"], out, True)]
    if conv:
        chans, kh, kw = f["inp.chans"], f["win.kh"], f["win.kw"]
        if op == Opcode.SPCONV:  # kept weights, then the index list (ir/sparse.py)
            words, nblk = bank_words(cfg, f["kept"]), ceil_div(min(chans, cfg.tm) if f["depthwise"] else chans, tn)
        elif f["depthwise"]:
            words, nblk = ceil_div(kh * kw, tn), ceil_div(min(chans, cfg.tm), tn)
        elif f["dataflow"]:
            words, nblk = ceil_div(chans * kh * kw, tn), ceil_div(chans, tn)
        else:
            words, nblk = ceil_div(chans, tn) * kh * kw, ceil_div(chans, tn)
        wbytes = cfg.tm * cfg.tn
        accesses += [_span(f"weight bank {f['wbank']}", f["w_addr"] * wbytes, words * wbytes, False),
                     _span(f"parameter bank {f['wbank']}", f["p_addr"] * PARAM_BYTES, cfg.tm * PARAM_BYTES, False)]
        dy = np.add.outer(np.arange(rows) * f["win.sh"], np.arange(kh) * f["win.dh"]).ravel()
        inputs = [("inp.", dy)]
    else:
        nblk = ceil_div(f["inp.chans"], tn)
        r = np.arange(rows)
        if f["op"] in (VecOp.MAXPOOL.value, VecOp.AVGPOOL.value):
            dy = np.add.outer(r * f["win.sh"], np.arange(f["win.kh"]) * f["win.dh"]).ravel()
        else:
            dy = r // max(f["win.kh"], 1) if f["op"] == VecOp.RESIZE.value else r * f["win.sh"]
        inputs = [("inp.", dy)] + ([("inp_b.", dy)] if f["op"] == VecOp.ADD.value else [])
    for g, d in inputs:
        iy = f[g + "y_first"] + d
        used = f[g + "slot_first"] + d[(iy >= 0) & (iy < f[g + "height"])]
        accesses.append(_ring_slots(f, g + "ring.", used, nblk, False))
    return accesses


def find_race(cfg: AcceleratorConfig, tl: Timeline) -> str | None:
    """A one-line description of the first race in the segment, or None."""
    by_unit: dict[Unit, list[int]] = {u: [] for u in Unit}
    prints: list[list[_Access]] = []
    for k, ins in enumerate(tl.instrs):
        prints.append(footprint(cfg, ins))
        for unit, earlier in by_unit.items():
            if unit == ins.unit:
                continue
            # ends grow along a unit's queue: walk back over those still running at our start
            for j in reversed(earlier):
                if tl.end[j] <= tl.start[k]:
                    break
                for a in prints[j]:
                    for b in prints[k]:
                        hit = a.overlaps(b)
                        if hit:
                            first, later = tl.instrs[j], ins
                            return (f"{first.where()} and {later.where()} race on {a.space} "
                                    f"{hit[0]}..{hit[1] - 1}: the later one starts at cycle {tl.start[k]}, before "
                                    f"the earlier one ends at cycle {tl.end[j]}; no token orders them")
        by_unit[ins.unit].append(k)
    return None
