"""Pass ``schedule``: program order, dependencies and dependency tokens.

Program order software-pipelines the steps of a segment: the loads of step t+1 are issued before the compute of step t (unless they read what
steps t-1 or t store, or overwrite ring rows step t still reads), and a weight group's
LOAD_WGTs are issued as soon as the bank they overwrite has been released, so weights and the
next band load while the PE array works.

Dependencies come from the regions each instruction touches (``emit.Ins``): read after
write, write after read and write after write, on the line buffer, weight and parameter
banks and output buffer at word granularity, and in DRAM on (block, row, column) boxes,
including the reuse of a dead tensor's bytes by a later one.

Tokens are assigned with vector clocks: for every unit we know the latest instruction of
each other unit that is guaranteed complete when it starts (in-order units, plus the tokens
it pops). A dependency not yet implied becomes a token from the producer to the consumer
(neighbouring units), or a NOP on the compute unit that relays it (load <-> store). Every
pop therefore has an earlier push in program order and pushes and pops pair up in FIFO
order, so no program deadlocks and every token is consumed.
"""

from __future__ import annotations

import numpy as np

from ..ir.isa import UNIT_OF, Opcode, Unit
from .emit import Ins, Step

LOAD, COMPUTE, STORE = Unit.LOAD.value, Unit.COMPUTE.value, Unit.STORE.value


def step_needs(steps: list[Step], grids: dict[str, tuple[int, int, int]]) -> list[int]:
    """Per step, the last earlier step whose stores its loads read, or -1."""
    marks = {name: np.full(shape, -1, dtype=np.int64) for name, shape in grids.items()}
    need = []
    for i, st in enumerate(steps):
        n = -1
        for ins in st.loads:
            for buf, (b0, b1, y0, y1, x0, x1), _ in ins.dram:
                region = marks[buf][b0:b1, y0:y1, x0:x1]
                if region.size:
                    n = max(n, int(region.max()))
        need.append(n)
        for ins in st.work:
            for buf, (b0, b1, y0, y1, x0, x1), write in ins.dram:
                if write:
                    marks[buf][b0:b1, y0:y1, x0:x1] = i
    return need


def program_order(steps: list[Step], need: list[int]) -> list[Ins]:
    """The instructions of a segment's steps, software-pipelined (see module docstring).
    ``need[t]`` is the last step whose stores step t loads (-1: none, see ``step_needs``)."""
    n = len(steps)
    last_bank_use: dict[int, int] = {}
    early_w: dict[int, list[int]] = {}
    for t, st in enumerate(steps):
        if st.wloads:
            free = last_bank_use.get(st.bank, -2) + 1
            if free < t - 1:
                early_w.setdefault(free, []).append(t)
        if st.bank is not None:
            last_bank_use[st.bank] = t
    done_w: set[int] = set()
    out: list[Ins] = []

    def weights(t: int):
        if t not in done_w:
            done_w.add(t)
            out.extend(steps[t].wloads)

    def loads(t: int):
        weights(t)
        out.extend(steps[t].loads)

    for t in early_w.get(-1, []):
        weights(t)
    if n:
        loads(0)
    for t in range(n):
        nxt = t + 1
        early = nxt < n and need[nxt] < max(0, t - 1) and not _clobbers(steps[nxt], steps[t], nxt in done_w)
        if early:
            loads(nxt)
        out.extend(steps[t].work)
        for s in early_w.get(t, []):
            weights(s)
        if nxt < n and not early:
            loads(nxt)
    return out


def _clobbers(nxt: Step, cur: Step, weights_done: bool) -> bool:
    """Whether the loads of ``nxt`` overwrite on-chip words the work of ``cur`` still reads
    (a single-buffered ring): they must then follow that work in program order."""
    writes = [r for ins in nxt.loads + ([] if weights_done else nxt.wloads) for r in ins.onchip]
    reads = [r for ins in cur.work for r in ins.onchip if not r[4]]
    return any(w[0] == r[0] and w[1] == r[1] and w[2] < r[3] and r[2] < w[3] for w in writes for r in reads)


class Tracker:
    """Last writer / reader of every on-chip word and DRAM box, as program indices."""

    def __init__(self, cfg, buffers: dict, overlaps: dict[str, list[str]]):
        words = {"lb": (1, cfg.line_buffer_words), "wb": (2, cfg.weight_bank_words), "pb": (2, cfg.param_entries),
                 "ob": (2, cfg.output_half_words)}
        self.w = {k: np.full(shape, -1, dtype=np.int64) for k, shape in words.items()}
        self.r = {k: np.full(shape, -1, dtype=np.int64) for k, shape in words.items()}
        self.grids = {name: np.full(shape, -1, dtype=np.int64) for name, shape in buffers.items()}
        self.loaded = {name: -1 for name in buffers}
        self.overlaps = overlaps
        self.clobbered: set[str] = set()

    def deps(self, ins: Ins) -> list[int]:
        """Program indices this instruction must wait for."""
        out = []
        for space, i, lo, hi, write in ins.onchip:
            if hi <= lo:
                continue
            out.append(int(self.w[space][i, lo:hi].max()))
            if write:
                out.append(int(self.r[space][i, lo:hi].max()))
        for buf, (b0, b1, y0, y1, x0, x1), write in ins.dram:
            if write:
                out += [self.loaded[o] for o in self.overlaps.get(buf, ())]
            else:
                if buf in self.clobbered:
                    raise AssertionError(f"DRAM buffer {buf!r} read after its bytes were reused")
                out.append(int(self.grids[buf][b0:b1, y0:y1, x0:x1].max()))
        return [d for d in out if d >= 0]

    def commit(self, ins: Ins, idx: int) -> None:
        for space, i, lo, hi, write in ins.onchip:
            (self.w if write else self.r)[space][i, lo:hi] = idx
        for buf, (b0, b1, y0, y1, x0, x1), write in ins.dram:
            if write:
                self.grids[buf][b0:b1, y0:y1, x0:x1] = idx
                self.clobbered.update(self.overlaps.get(buf, ()))
            else:
                self.loaded[buf] = idx


def _pair(out: list[Ins], units: list[int], src: int, dst: Ins, dst_unit: int) -> None:
    """Token from instruction ``src`` to ``dst`` (neighbouring units)."""
    p = out[src]
    if units[src] < dst_unit:
        assert not p.push_next and not dst.pop_prev
        p.push_next, dst.pop_prev = 1, 1
    else:
        assert not p.push_prev and not dst.pop_next
        p.push_prev, dst.pop_next = 1, 1


def assign_tokens(ordered: list[Ins], tracker: Tracker) -> list[Ins]:
    """The program with token flags set and relay NOPs inserted; ends with FINISH."""
    out: list[Ins] = []
    units: list[int] = []
    known: list[tuple[int, int, int]] = []
    last = [-1, -1, -1]

    def clock(u: int) -> list[int]:
        return list(known[last[u]]) if last[u] >= 0 else [-1, -1, -1]

    def merge(k: list[int], j: int) -> list[int]:
        return [max(a, b) for a, b in zip(k, known[j])]

    def append(ins: Ins, u: int, k: list[int]) -> None:
        idx = len(out)
        k[u] = idx
        out.append(ins)
        units.append(u)
        known.append(tuple(k))
        last[u] = idx

    for ins in ordered:
        u = UNIT_OF[ins.opcode].value
        need = [-1, -1, -1]
        for d in tracker.deps(ins):
            need[units[d]] = max(need[units[d]], d)
        k = clock(u)
        if u == COMPUTE:
            for v in (LOAD, STORE):
                if need[v] > k[v]:
                    _pair(out, units, need[v], ins, u)
                    k = merge(k, need[v])
        else:
            far = STORE if u == LOAD else LOAD
            trial = merge(k, need[COMPUTE]) if need[COMPUTE] > k[COMPUTE] else k
            if need[far] > trial[far]:
                nop = Ins(Opcode.NOP, None, ins.layer)
                kn = clock(COMPUTE)
                if need[far] > kn[far]:
                    _pair(out, units, need[far], nop, COMPUTE)
                    kn = merge(kn, need[far])
                append(nop, COMPUTE, kn)
                need[COMPUTE] = len(out) - 1
            if need[COMPUTE] > k[COMPUTE]:
                _pair(out, units, need[COMPUTE], ins, u)
                k = merge(k, need[COMPUTE])
        append(ins, u, k)
        tracker.commit(ins, len(out) - 1)
    layer = out[-1].layer if out else -1
    out.append(Ins(Opcode.FINISH, None, layer))
    return out
