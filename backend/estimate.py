"""The cycle model of docs/isa.md replayed over a compiled program (the compiler's own L3).

``timeline`` evaluates fetch / dispatch / start / end for one segment exactly as the doc
states them, with costs from ``ir/cost.py``; ``estimate_program`` runs it over every
accelerator segment of a ``Program`` and attributes cycles to layers the way
docs/simulator.md does (the completion front), so its numbers are the simulator's.
"""

from __future__ import annotations

from collections import deque

from ..ir import cost
from ..ir.config import AcceleratorConfig
from ..ir.isa import UNIT_OF, Opcode, Unit, VecOp, opcode_of
from ..ir.program import Program
from .encode import Encoder

LOAD, COMPUTE, STORE = Unit.LOAD.value, Unit.COMPUTE.value, Unit.STORE.value
_PREV = {COMPUTE: LOAD, STORE: COMPUTE}
_NEXT = {LOAD: COMPUTE, COMPUTE: STORE}
_POOLS = (VecOp.MAXPOOL.value, VecOp.AVGPOOL.value)


def instruction_cycles(cfg: AcceleratorConfig, op: Opcode, f: dict) -> int:
    """Cycles an instruction occupies its unit; ``f`` maps dotted field names to ints."""
    if op == Opcode.LOAD_ACT:
        return cost.dma_box_cycles(cfg, f["src.nblk"], f["src.nrows"], f["src.ncols"])
    if op == Opcode.STORE:
        return cost.dma_box_cycles(cfg, f["dst.nblk"], f["dst.nrows"], f["dst.ncols"])
    if op == Opcode.LOAD_WGT:
        return cost.dma_linear_cycles(cfg, f["nbytes"])
    if op == Opcode.CONV:
        return cost.conv_cycles(cfg, f["dataflow"] == 1, f["depthwise"] == 1, f["inp.chans"], f["win.kh"],
                                f["win.kw"], f["tile.rows"], f["tile.cols"])
    if op == Opcode.VEC:
        taps = f["win.kh"] * f["win.kw"] if f["op"] in _POOLS else 1
        return cost.vec_cycles(cfg, taps, cost.ceil_div(f["inp.chans"], cfg.tn), f["tile.rows"], f["tile.cols"])
    return 1


def timeline(cfg: AcceleratorConfig, seg: list[tuple[Opcode, dict, tuple[int, int, int, int]]]) -> list[int]:
    """End cycle of every instruction of one segment: ``(opcode, fields, (pop_prev, pop_next,
    push_prev, push_next))`` in program order, ending with FINISH."""
    fifos: dict[tuple[int, int], deque] = {}
    last_end = [0, 0, 0]
    starts: list[list[int]] = [[], [], []]
    ends = []
    d_prev = None
    for k, (op, f, (pop_prev, pop_next, push_prev, push_next)) in enumerate(seg):
        u = UNIT_OF[op].value
        d = cost.fetch_ready(cfg, k)
        if d_prev is not None:
            d = max(d, d_prev + 1)
        if len(starts[u]) >= cfg.queue_depth:
            d = max(d, starts[u][-cfg.queue_depth] + 1)
        s = max(d + 1, last_end[u])
        for flag, other in ((pop_prev, _PREV.get(u)), (pop_next, _NEXT.get(u))):
            if flag:
                s = max(s, fifos[(other, u)].popleft())
        if op == Opcode.FINISH:
            s = max(s, *last_end)
        e = s + instruction_cycles(cfg, op, f)
        for flag, other in ((push_prev, _PREV.get(u)), (push_next, _NEXT.get(u))):
            if flag:
                fifos.setdefault((u, other), deque()).append(e)
        starts[u].append(s)
        last_end[u] = e
        ends.append(e)
        d_prev = d
    return ends


def decode_fields(program: Program) -> list[tuple[Opcode, dict, tuple[int, int, int, int]]]:
    """Every instruction's opcode, body fields (dotted names) and token flags, decoded with the
    same layout-derived units the encoder uses."""
    enc = Encoder()
    out = []
    for i in range(program.n_instructions):
        word = program.instruction(i)
        op = opcode_of(word)
        out.append((op,) + enc.fields(op, int.from_bytes(word, "little")))
    return out


def estimate_program(program: Program) -> dict:
    """Total cycles, fps, MAC utilization and per-layer rows (docs/simulator.md attribution)."""
    cfg = program.config
    decoded = decode_fields(program)
    layers = program.manifest["layers"]
    rows = [{"name": x["name"], "op": x["op"], "dataflow": x["dataflow"], "macs": x["macs"], "cycles": 0}
            for x in layers]
    total = 0
    for seg in program.manifest["segments"]:
        if seg["kind"] != "accel":
            continue
        first, n = seg["start"], seg["count"]
        ends = timeline(cfg, decoded[first:first + n])
        total += ends[-1]
        mine = sorted((i for i, x in enumerate(layers) if first <= x["first"] < first + n), key=lambda i: layers[i]["last"])
        front, best = [], 0
        for e in ends:
            best = max(best, e)
            front.append(best)
        reached = 0
        for j, i in enumerate(mine):
            upto = ends[-1] if j == len(mine) - 1 else front[layers[i]["last"] - first]
            rows[i]["cycles"] += max(0, upto - reached)
            reached = max(reached, upto)
    macs = sum(r["macs"] for r in rows)
    for r in rows:
        r["utilization"] = r["macs"] / (cfg.macs_per_cycle * r["cycles"]) if r["cycles"] else 0.0
    convs = [r for r in rows if r["op"] == "conv"]
    conv_cycles = sum(r["cycles"] for r in convs)
    return {"total_cycles": total, "fps": cfg.clock_mhz * 1e6 / total if total else None,
            "mac_utilization": macs / (cfg.macs_per_cycle * total) if total else 0.0,
            "conv_mean_utilization": sum(r["utilization"] for r in convs) / len(convs) if convs else 0.0,
            "conv_weighted_utilization": sum(r["macs"] for r in convs) / (cfg.macs_per_cycle * conv_cycles)
            if conv_cycles else 0.0,
            "layers": rows}


def format_estimate(est: dict, clock_mhz: float) -> str:
    """A per-layer table and the frame summary."""
    width = max([5] + [len(r["name"]) for r in est["layers"]])
    lines = [f"{'layer':<{width}}  {'op':<8} {'dataflow':<8} {'cycles':>10} {'MMAC':>8} {'util':>6}"]
    for r in est["layers"]:
        lines.append(f"{r['name']:<{width}}  {r['op']:<8} {r['dataflow'] or '-':<8} {r['cycles']:>10} "
                     f"{r['macs'] / 1e6:>8.2f} {r['utilization']:>6.2f}")
    lines.append(f"total {est['total_cycles']} cycles = {est['total_cycles'] / clock_mhz / 1e3:.3f} ms at "
                 f"{clock_mhz:g} MHz: {est['fps']:.1f} fps, MAC utilization {est['mac_utilization']:.3f}, conv layers "
                 f"mean {est['conv_mean_utilization']:.3f} / MAC-weighted {est['conv_weighted_utilization']:.3f}")
    return "\n".join(lines)
