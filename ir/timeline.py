"""The cycle model (verification level L3), defined once: the fetch / dispatch / start / end
timeline of ``docs/isa.md`` for one accelerator segment, with instruction costs from
``ir/cost.py``. The simulator reports it, the compiler estimates with it, and the RTL must
reproduce it exactly.

The timeline depends only on the instruction words, never on data, so it is computed in one
pass in program order. Readings of the contract that the text leaves open are stated in
``docs/simulator.md`` ("Cycle model"); the ones that matter here:

- the token FIFOs start empty at each segment (FINISH drains the machine; tokens still queued
  then are dropped) and hold ``token_depth`` tokens; a program that would ever hold more in
  one FIFO is rejected (``ProgramError``), so the hardware's counters never overflow;
- a pop must be matched by an earlier push in program order (the compiler's promise); a pop
  with none is a token deadlock and raises ``ProgramError`` naming the instruction.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from . import cost
from .config import AcceleratorConfig
from .decode import Instr
from .isa import Opcode, Unit, VecOp
from .program import ProgramError

# Units by value: hashing amaranth enums costs more than the rest of the timeline.
_PREV = {Unit.COMPUTE.value: Unit.LOAD.value, Unit.STORE.value: Unit.COMPUTE.value}
_NEXT = {Unit.LOAD.value: Unit.COMPUTE.value, Unit.COMPUTE.value: Unit.STORE.value}
_UNIT_NAMES = {u.value: u.name.lower() for u in Unit}
_POOLS = (VecOp.MAXPOOL.value, VecOp.AVGPOOL.value)


def instruction_cycles(cfg: AcceleratorConfig, ins: Instr, measured: dict[int, int] | None = None) -> int:
    """Cycles instruction ``ins`` occupies its unit (the cost table of docs/isa.md). An NMS
    instruction's cycles depend on the score maps (``ir.nms.nms_cycles``): they are taken
    from ``measured`` (by instruction index, as the functional model ran it), else 1 (an
    estimate before the data exists)."""
    f, op = ins.f, ins.opcode
    if op == Opcode.NMS:
        return (measured or {}).get(ins.index, 1)
    if op in (Opcode.LOAD_ACT, Opcode.STORE):
        p, box = ("src.", cost.dma_box_cycles) if op == Opcode.LOAD_ACT else ("dst.", cost.dma_store_cycles)
        return box(cfg, f[p + "dram_addr"], f[p + "blk_stride"], f[p + "row_stride"], f[p + "nblk"], f[p + "nrows"],
                   f[p + "ncols"])
    if op == Opcode.LOAD_WGT:
        return cost.dma_linear_cycles(cfg, f["dram_addr"], f["nbytes"])
    if op == Opcode.CONV or op == Opcode.SPCONV:
        return cost.conv_cycles(cfg, bool(f["dataflow"]), bool(f["depthwise"]), f["inp.chans"],
                                f["win.kh"], f["win.kw"], f["tile.rows"], f["tile.cols"], f["win.sw"],
                                1 << f["wide"], f.get("kept"))
    if op == Opcode.VEC:
        taps = cost.vec_taps(cfg, f["op"] in _POOLS, f["op"] == VecOp.ADD.value, f["win.kh"], f["win.kw"])
        return cost.vec_cycles(cfg, taps, cost.ceil_div(f["inp.chans"], cfg.tn), f["tile.rows"], f["tile.cols"])
    return 1


def chain_window(cfg: AcceleratorConfig, ins: Instr) -> tuple[int, int] | None:
    """``(tail, lead)`` of a CONV, SPCONV or VEC for a compute unit that chains its
    instructions (``cfg.compute_chain``), else ``None``. ``tail``: the cycles at the end of
    its cost the next one overlaps — its last group's drain, ``min(steps, drain)``, and the
    pipeline latency — so the unit takes the next instruction ``cost - tail`` cycles after
    the start, when the sequencer would start one more group. ``lead``: the cycles from its
    start to its first group's drain (start cycles and one group's steps); the retire stage
    drains groups in order, so no first drain begins before the previous instruction's last
    drain ends (its end less ``pe_latency``). Under that rule a chained CONV's groups follow
    the previous instruction's at the same cadence as its own (docs/backend.md "Chaining").
    ``cfg.chain_front`` cycles come off ``tail`` (the next one waits for a front pipeline to
    empty). This full rule is a what-if (no RTL); with ``cfg.chain_retire_single`` the
    schedule uses the built rule, ``chain_back``."""
    f, op = ins.f, ins.opcode
    if op == Opcode.CONV or op == Opcode.SPCONV:
        kept = f.get("kept")
        steps = cost.conv_inner_steps(cfg, bool(f["dataflow"]), bool(f["depthwise"]), f["inp.chans"], f["win.kh"],
                                      f["win.kw"], f["win.sw"], kept)
        drain = cost.conv_slots(cfg, bool(f["dataflow"]), 1 << f["wide"])
        start = cost.COMPUTE_START + (cost.SPCONV_START if kept is not None else 0)
        last, lead = min(steps, drain), start + steps
    elif op == Opcode.VEC:
        taps = cost.vec_taps(cfg, f["op"] in _POOLS, f["op"] == VecOp.ADD.value, f["win.kh"], f["win.kw"])
        last, lead = 1, cost.COMPUTE_START + max(1, taps)
    else:
        return None
    return last + cfg.pe_latency - cfg.chain_front, lead


def chain_back(cfg: AcceleratorConfig, ins: Instr) -> int | None:
    """The built chaining compute unit (``cfg.compute_chain`` with ``cfg.chain_retire_single``;
    hw/compute.py): cycles from its final group's sums reaching retire to its end — its slots
    (``ir.cost.conv_slots``; a VEC's: 1) and the back pipeline, ``pe_latency - chain_front``.
    The unit takes the next CONV/SPCONV/VEC that many cycles before an instruction's end (its
    front pipeline is then empty), and holds its start so that its first sums reach retire
    after the end (``chain_start``). ``None`` for the other opcodes."""
    f, op = ins.f, ins.opcode
    if op == Opcode.CONV or op == Opcode.SPCONV:
        slots = cost.conv_slots(cfg, bool(f["dataflow"]), 1 << f["wide"])
    elif op == Opcode.VEC:
        slots = 1
    else:
        return None
    return slots + cfg.pe_latency - cfg.chain_front


def chain_start(cfg: AcceleratorConfig, ins: Instr, accept: int, prev_end: int) -> int:
    """The built chaining unit: ``ins`` accepted in ``accept`` behaves as if accepted in the
    returned cycle (its sequencer start is held), ``prev_end`` the end of the unit's previous
    instruction: its first sums (``lead + chain_front`` cycles after that cycle; ``lead`` of
    ``chain_window``) reach retire after ``prev_end``. Its end is that cycle plus its cost."""
    return max(accept, prev_end + 1 - chain_window(cfg, ins)[1] - cfg.chain_front)


@dataclass(frozen=True)
class Timeline:
    """Per-instruction times of one segment (lists indexed by position in the segment).
    ``stall[i] = start[i] - max(dispatch[i] + 1 + dispatch_stage, end of the unit's previous
    instruction)``: cycles the instruction waited for tokens (or, for FINISH, for the other
    units)."""

    instrs: list[Instr]
    fetch: list[int]
    dispatch: list[int]
    start: list[int]
    end: list[int]
    cost: list[int]
    stall: list[int]

    @property
    def cycles(self) -> int:
        """The segment's cycle count: the end of its FINISH."""
        return self.end[-1]

    def unit_totals(self) -> dict[str, dict[str, int]]:
        """``{unit: {"busy": cycles, "stall": cycles}}`` over the segment."""
        out = {name: {"busy": 0, "stall": 0} for name in _UNIT_NAMES.values()}
        for ins, c, s in zip(self.instrs, self.cost, self.stall):
            totals = out[_UNIT_NAMES[ins.unit.value]]
            totals["busy"] += c
            totals["stall"] += s
        return out


def schedule(cfg: AcceleratorConfig, instrs: list[Instr], measured: dict[int, int] | None = None,
             what_if: dict[int, int] | None = None) -> Timeline:
    """The timeline of one segment (``instrs`` ends with its only FINISH). Raises
    ``ProgramError`` for a segment without that FINISH and for a token deadlock. NMS is a
    barrier: it starts when every unit has ended, like FINISH, and the next instruction is
    dispatched no earlier than its end; its cost comes from ``measured``
    (``instruction_cycles``). With ``cfg.compute_chain`` a CONV/SPCONV/VEC may start before
    the previous compute instruction ends (``chain_window``); every other instruction, and
    the tokens, still wait for ends. ``what_if`` (instruction index -> cycles) replaces the cost
    of those instructions: a what-if of the cycle model for benchmarks (a machine whose units
    would take that long; docs/backend.md "Reaching 29.5 fps"), never a built one."""
    if not instrs or instrs[-1].opcode != Opcode.FINISH:
        where = f"instructions {instrs[0].index}..{instrs[-1].index}" if instrs else "an empty segment"
        raise ProgramError(f"accelerator segment ({where}) must end with FINISH")
    fifos: dict[tuple[int, int], deque] = {}
    last_end = {u: 0 for u in _UNIT_NAMES}
    starts: dict[int, list[int]] = {u: [] for u in _UNIT_NAMES}
    fetch, dispatch, start, end, costs, stall = [], [], [], [], [], []
    barrier = 0  # the end of the last NMS: nothing is dispatched before it
    free = dict(last_end)  # when each unit takes its next instruction (before its end only if chained)
    drained = 0  # compute_chain: when the retire stage has drained the last chained instruction
    for k, ins in enumerate(instrs):
        if ins.opcode == Opcode.FINISH and k != len(instrs) - 1:
            raise ProgramError(f"{ins.where()} ends the segment before its last instruction {instrs[-1].index}")
        u = ins.unit.value
        f = cost.fetch_ready(cfg, k, fetch[-1] if k else None,
                             dispatch[k - cfg.fetch_depth] if k >= cfg.fetch_depth else None)
        d = max(f if k == 0 else max(f, dispatch[-1] + 1), barrier)
        queue = starts[u]
        if len(queue) >= cfg.queue_depth:
            d = max(d, queue[-cfg.queue_depth] + 1)
        built = cfg.compute_chain and cfg.chain_retire_single and u == Unit.COMPUTE.value
        back = chain_back(cfg, ins) if built else None
        window = chain_window(cfg, ins) if cfg.compute_chain and not built and u == Unit.COMPUTE.value else None
        head = d + 1 + cfg.dispatch_stage  # the queue shows the word then
        if back is not None:
            ready = max(head, free[u])
        else:
            ready = max(head, free[u], drained - window[1]) if window else max(head, last_end[u])
        s = ready
        for flag, other in ((ins.pop_prev, _PREV.get(u)), (ins.pop_next, _NEXT.get(u))):
            if flag:
                fifo = fifos.get((other, u))
                if not fifo:
                    raise ProgramError(f"{ins.where()} pops a token from the {_UNIT_NAMES[other]} unit that no "
                                       f"earlier instruction pushed: the program would deadlock")
                s = max(s, fifo.popleft())
        if ins.opcode == Opcode.FINISH or ins.opcode == Opcode.NMS:
            s = max(s, *last_end.values())
        c = instruction_cycles(cfg, ins, measured) if what_if is None or ins.index not in what_if else what_if[ins.index]
        if back is not None:  # the held sequencer start counts as the instruction's cycles
            c += chain_start(cfg, ins, s, last_end[u]) - s
        e = s + c
        if ins.opcode == Opcode.NMS:
            barrier = e
        for flag, other in ((ins.push_prev, _PREV.get(u)), (ins.push_next, _NEXT.get(u))):
            if flag:
                fifos.setdefault((u, other), deque()).append(e)
        queue.append(s)
        last_end[u] = free[u] = e
        if window:
            free[u], drained = e - window[0], e - cfg.pe_latency
        elif back is not None:
            free[u] = e - back
        fetch.append(f)
        dispatch.append(d)
        start.append(s)
        end.append(e)
        costs.append(c)
        stall.append(s - ready)
    for src, dst in fifos:
        _check_token_depth(cfg, instrs, start, end, src, dst)
    return Timeline(instrs, fetch, dispatch, start, end, costs, stall)


def _check_token_depth(cfg: AcceleratorConfig, instrs: list[Instr], start: list[int], end: list[int],
                       src: int, dst: int) -> None:
    """Raise ``ProgramError`` if the FIFO of tokens from unit ``src`` to ``dst`` ever holds more
    than ``token_depth``: a token is in it from its push (the end of the pushing instruction)
    to its pop (the start of the popping one; a pop in the push's cycle never counts it)."""
    def pushes(ins):
        return ins.push_next if _NEXT.get(src) == dst else ins.push_prev

    def pops(ins):
        return ins.pop_prev if _PREV.get(dst) == src else ins.pop_next

    events = sorted([(end[k], 1, k) for k, ins in enumerate(instrs) if ins.unit.value == src and pushes(ins)]
                    + [(start[k], -1, k) for k, ins in enumerate(instrs) if ins.unit.value == dst and pops(ins)])
    level = 0
    for _, delta, k in events:  # a pop sorts before a push of the same cycle, which it may take
        level += delta
        if level > cfg.token_depth:
            raise ProgramError(f"{instrs[k].where()} pushes a token that would be number {level} waiting in the "
                               f"{_UNIT_NAMES[src]}->{_UNIT_NAMES[dst]} FIFO, deeper than token_depth "
                               f"({cfg.token_depth})")


def layer_cycles(layers: list[dict], tl: Timeline) -> dict[int, int]:
    """Cycles of one segment per manifest layer (by index into ``layers``; only layers whose
    ``first`` instruction lies in the segment), by the completion-front rule of
    docs/simulator.md: the front after instruction ``k`` is the latest end of instructions
    ``0..k``; layers, ordered by ``last``, own the cycles by which the front advances up to
    their last instruction, and the final one owns the tail to the end of FINISH. The values
    add up to ``tl.cycles`` (an empty dict when no layer starts in the segment)."""
    first, last = tl.instrs[0].index, tl.instrs[-1].index
    mine = sorted((i for i, layer in enumerate(layers) if first <= layer["first"] <= last),
                  key=lambda i: layers[i]["last"])
    front = list(itertools.accumulate(tl.end, max))
    out, reached = {}, 0
    for n, i in enumerate(mine):
        upto = tl.cycles if n == len(mine) - 1 else front[min(layers[i]["last"], last) - first]
        out[i] = max(0, upto - reached)
        reached = max(reached, upto)
    return out
