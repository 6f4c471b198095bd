"""Benchmark: where the 512×512 detector's cycles go on zu3eg, against the compute bound.

    python benchmarks/bench_detector_gap.py [--target zu3eg] [--variant w8a8]

Compiles the zoo detector (``dataflow=auto``) three times — without the ``overlap`` pass (the
compiler before it, ``without_overlap``), with it (the default, ``with_overlap``;
docs/backend.md "Layer overlap"), and with it but without the space-to-depth stem
(``without_s2d``; docs/backend.md "Space-to-depth stem") — and runs the shared cycle model (``ir/timeline.py``, which the simulator and the RTL equal) over it. Two what-ifs of the
cycle model alone reschedule the default program (same instructions): ``chained``, a compute
unit that starts the next CONV/VEC while the previous one's last group drains
(``compute_chain``, ``ir.timeline.chain_window``; docs/backend.md "Chaining"; no RTL builds
it); ``chained_cheap``, the rule hw/compute.py builds (the next instruction is taken when the
front pipeline — the line-buffer read to the MAC array's sums, ``pe_latency - PPU.LATENCY``
cycles — has emptied, and retire takes one instruction at a time: ``chain_front``,
``chain_retire_single``; ``ir.timeline.chain_back``); and ``chained_two_lb_copies``, full chaining with a
second line-buffer copy too (a depthwise group's two channel blocks read together: 9 steps
instead of 18). Then the SPCONV program (``sparse``, compiled with ``sparse=True``), rescheduled
with the built chaining rule (``sparse_chained_cheap``), both simulated; and on that one,
what-ifs of instruction *costs* (``ir.timeline.schedule``'s ``what_if``; machines not built, so
not simulated; docs/backend.md "Reaching 29.5 fps"): ``sparse_chained_dma_free`` (every
DMA one cycle: the compute unit's floor), ``*_stride2`` (a stride-2 depthwise step in one
cycle, ``stride2_costs``), ``*_handoff_r<r>`` (every tensor between a depthwise layer and its
neighbour kept on chip, moved from the output buffer into the line buffer at ``r`` words a
cycle, ``handoff_costs``), ``*_two_lb_copies_*``; ``goal`` says which runs reach 29.5 fps and
0.90. Per
accelerator layer (each instruction counted for the layer the compiler emitted it for):

- ``cycles`` (the simulator's completion-front attribution) and the ideal ``macs / (tm*tn)``;
- ``read_cycles`` / ``write_cycles`` / ``compute_cycles``: the busy cycles of the load unit
  (the AXI read channel: LOAD_ACT + LOAD_WGT), the store unit (write channel) and the compute
  unit for the layer's instructions; ``read_bytes`` / ``write_bytes`` the bytes moved
  (LOAD_ACT boxes and weights, STORE boxes), and ``input_bytes`` the bytes of the layer's
  input tensors once each, so ``read_bytes / input_bytes`` shows re-reads (halo, weight
  groups);
- ``bound``: which of the three is largest — the resource the layer waits on;
- ``compute_fixed_cycles``: the part of ``compute_cycles`` that is each compute
  instruction's fixed start, last drain and pipeline latency (not streaming pixel groups),
  which the compute unit cannot overlap with the next instruction.

Then the per-class gap table (stem, depthwise, pointwise, heads, vector ops, and depthwise
and pointwise together — with overlap, a pair's cycles do not split between its two
layers): cycles, ideal, gap and share of the whole gap. Writes ``benchmarks/results/detector_gap_<target>.json``.
The cycle model is deterministic, so one run is the figure. Verdicts: each program's simulated
outputs equal the integer interpreter's and its simulated cycles the analysis's total.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from guard import write_result
from shiftflow.backend.assemble import manifest
from shiftflow.backend.compile import PASS_NAMES, run_backend
from shiftflow.backend.estimate import segment_timelines
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.interpreter import Interpreter
from shiftflow.hw.ppu import PPU
from shiftflow.ir.config import load_target
from shiftflow.ir.program import Program
from shiftflow.ir.isa import Opcode
from shiftflow.ir import cost
from shiftflow.ir.decode import decode_program
from shiftflow.ir.timeline import instruction_cycles, layer_cycles
from shiftflow.sim.check import compare_outputs
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model

CLASSES = ("stem", "depthwise", "pointwise", "heads", "vector")


def layer_class(op, first_conv: bool) -> str:
    """The gap-table class of a graph op."""
    if op.kind != "conv":
        return "vector"
    if first_conv:
        return "stem"
    if "head" in op.name:
        return "heads"
    return "depthwise" if op.attrs["groups"] > 1 else "pointwise"


def _streaming_cycles(cfg, ins) -> int:
    """Cycles of a compute instruction spent streaming pixel groups (a CONV's
    ``rows*groups*max(steps, slots)``, a VEC's words): its cost less the fixed start, last
    drain and pipeline latency that the compute unit does not overlap with the next one."""
    f = ins.f
    if ins.opcode == Opcode.CONV:
        args = (cfg, bool(f["dataflow"]), bool(f["depthwise"]), f["inp.chans"], f["win.kh"], f["win.kw"])
        tail = dict(sw=f["win.sw"], planes=1 << f["wide"])
        return (cost.conv_cycles(*args, f["tile.rows"], f["tile.cols"], **tail)
                - cost.conv_cycles(*args, 0, f["tile.cols"], **tail))
    if ins.opcode == Opcode.VEC:
        return instruction_cycles(cfg, ins) - cost.vec_cycles(cfg, 1, 1, 0, 0)
    return 0


def _box_bytes(f: dict, p: str, tn: int) -> int:
    return f[p + "nblk"] * f[p + "nrows"] * f[p + "ncols"] * tn


def compile_detector(variant: str, target: str, overlap: bool, s2d: bool = True, sparse: bool = False):
    """The compiled detector and, per instruction, the index of its manifest layer."""
    graph = import_onnx(zoo_model("detector", variant, "qcdq"))
    plan = run_backend(graph, load_target(target), overlap=overlap, s2d=s2d, sparse=sparse)
    program = Program(plan.config, plan.program.code, plan.weights, plan.graph, manifest(plan, PASS_NAMES))
    owner, base = [], 0
    for seg in plan.program.segments:
        if seg["kind"] != "accel":
            continue
        code = plan.program.instructions[seg["start"]:seg["start"] + seg["count"]]
        owner += [base + ins.layer for ins in code]
        base += 1 + max(ins.layer for ins in code)
    return program, owner


#: cycles from a handoff move's accept to its first word (the store unit's start and its output
#: buffer read, as a STORE's ``DMA_START + 1``, without DRAM latency): a what-if figure
MOVE_START = 3


def _decoded(program):
    for seg in program.manifest["segments"]:
        if seg["kind"] == "accel":
            yield from decode_program(program.instructions, seg["start"], seg["count"])


def depthwise_links(program) -> list[tuple[int, int, bool]]:
    """``(producer, consumer, only)`` manifest-layer indices of every accelerator layer that
    reads another's output where either one is a depthwise conv; ``only``: the consumer is
    the tensor's only reader (and it is no graph output), so it need not reach DRAM."""
    layers, g = program.manifest["layers"], program.graph
    idx = {x["name"]: i for i, x in enumerate(layers)}
    writer = {t: op for op in g.ops for t in op.outputs}
    readers: dict[str, list[str]] = {}
    for op in g.ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op.name)
    dw = lambda op: op.kind == "conv" and op.attrs["groups"] > 1  # noqa: E731
    out = []
    for c, x in enumerate(layers):
        b = next((op for op in g.ops if op.name == x["name"]), None)
        for t in b.inputs if b else ():
            a = writer.get(t)
            if a is not None and a.name in idx and (dw(a) or dw(b)):
                out.append((idx[a.name], c, readers.get(t) == [b.name] and t not in g.outputs))
    return out


def handoff_costs(program, owner: list[int], links, rate: int) -> dict[int, int]:
    """What-if costs of handing each link's tensor on chip (docs/backend.md "Reaching 29.5
    fps"): the consumer's LOAD_ACTs of it take one cycle (the words are already in its ring);
    the producer's STOREs of it become moves from the output buffer into the line buffer at
    ``rate`` words a cycle (``MOVE_START`` + words/rate) when the consumer is its only
    reader, else stay DRAM stores that also copy into the ring (cost unchanged). Program
    order, tiles and tokens are the compiled program's: the line-buffer room such a schedule
    needs is not checked here (the design section sizes it)."""
    tensors, layers, g = program.manifest["tensors"], program.manifest["layers"], program.graph
    out_of = {op.name: op.outputs[0] for op in g.ops}
    costs, code = {}, list(_decoded(program))
    for p, c, only in links:
        t = tensors[out_of[layers[p]["name"]]]
        lo, hi = t["addr"], t["addr"] + t["blocks"] * t["blk_stride"]
        for ins in code:
            f, k = ins.f, owner[ins.index]
            if only and k == p and ins.opcode == Opcode.STORE and lo <= f["dst.dram_addr"] < hi:
                costs[ins.index] = MOVE_START + cost.ceil_div(f["dst.nblk"] * f["dst.nrows"] * f["dst.ncols"], rate)
            elif k == c and ins.opcode == Opcode.LOAD_ACT and lo <= f["src.dram_addr"] < hi:
                costs[ins.index] = 1
    return costs


def dma_free_costs(program) -> dict[int, int]:
    """What-if: every LOAD_ACT, LOAD_WGT and STORE takes one cycle (the compute unit's floor)."""
    return {ins.index: 1 for ins in _decoded(program)
            if ins.opcode in (Opcode.LOAD_ACT, Opcode.LOAD_WGT, Opcode.STORE)}


def stride2_costs(program) -> dict[int, int]:
    """What-if: a pixel-parallel depthwise CONV/SPCONV at column stride 2 takes one cycle a
    step, not two (a column-phase ring layout: the ring row's even columns, then its odd
    ones, so the ``tn`` pixels of a stride-2 group lie in ``tn`` banks); every other term of
    ``ir.cost.conv_cycles`` as built (one line-buffer copy: two channel blocks a step)."""
    cfg, costs = program.config, {}
    for ins in _decoded(program):
        f = ins.f
        if ins.opcode in (Opcode.CONV, Opcode.SPCONV) and f["depthwise"] and f["dataflow"] and f["win.sw"] >= 2:
            kept = f.get("kept")
            inner = (f["win.kh"] * f["win.kw"] if kept is None else kept) * (
                2 if cfg.lb_copies == 1 and f["inp.chans"] > cfg.tn else 1)
            drain = cost.conv_slots(cfg, True, 1 << f["wide"])
            start = cost.COMPUTE_START + (cost.SPCONV_START if kept is not None else 0)
            costs[ins.index] = (start + f["tile.rows"] * cost.ceil_div(f["tile.cols"], cfg.tn) * max(inner, drain)
                                + min(inner, drain) + cfg.pe_latency)
    return costs


def analyse(program, owner: list[int], costs: dict[int, int] | None = None) -> dict:
    """Per-layer bounds and the per-class gap table of one compiled program; ``owner[k]`` is
    instruction ``k``'s manifest layer; ``costs``: a what-if's replaced instruction costs
    (``ir.timeline.schedule``)."""
    cfg = program.config
    layers = program.manifest["layers"]
    ops = {op.name: op for op in program.graph.ops}
    rows = [{"name": x["name"], "op": x["op"], "dataflow": x["dataflow"], "macs": x["macs"], "cycles": 0,
             "ideal": x["macs"] / cfg.macs_per_cycle, "read_cycles": 0, "write_cycles": 0, "compute_cycles": 0,
             "read_bytes": 0, "weight_bytes": 0, "write_bytes": 0, "compute_fixed_cycles": 0,
             "compute_instructions": 0} for x in layers]
    total = 0
    for tl in segment_timelines(program, costs):
        total += tl.cycles
        for i, c in layer_cycles(layers, tl).items():
            rows[i]["cycles"] += c
        for ins, c in zip(tl.instrs, tl.cost):
            if ins.opcode in (Opcode.FINISH, Opcode.NOP):
                continue
            r, f = rows[owner[ins.index]], ins.f
            if ins.opcode == Opcode.LOAD_ACT:
                r["read_cycles"] += c
                r["read_bytes"] += _box_bytes(f, "src.", cfg.tn)
            elif ins.opcode == Opcode.LOAD_WGT:
                r["read_cycles"] += c
                r["weight_bytes"] += f["nbytes"]
            elif ins.opcode == Opcode.STORE:
                r["write_cycles"] += c
                r["write_bytes"] += _box_bytes(f, "dst.", cfg.tn)
            else:
                r["compute_cycles"] += c
                r["compute_fixed_cycles"] += c - _streaming_cycles(cfg, ins)
                r["compute_instructions"] += 1
    tensors = program.manifest["tensors"]
    first_conv = True
    classes = {k: {"layers": 0, "cycles": 0, "ideal": 0.0} for k in CLASSES}
    for r in rows:
        op = ops.get(r["name"])
        r["class"] = layer_class(op, first_conv and r["op"] == "conv") if op else "vector"
        first_conv = first_conv and r["op"] != "conv"
        r["input_bytes"] = sum(_tensor_bytes(tensors[t], cfg.tn) for t in (op.inputs[:1] if op else ()) if t in tensors)
        r["bound"] = max(("read", r["read_cycles"]), ("write", r["write_cycles"]), ("compute", r["compute_cycles"]),
                         key=lambda kv: kv[1])[0]
        r["utilization"] = r["ideal"] / r["cycles"] if r["cycles"] else 0.0
        c = classes[r["class"]]
        c["layers"] += 1
        c["cycles"] += r["cycles"]
        c["ideal"] += r["ideal"]
    ideal = sum(r["ideal"] for r in rows)
    gap = total - ideal
    # an overlapped pair's cycles do not split meaningfully between its depthwise and
    # pointwise layer (completion-front rule), so the two classes are also given together
    classes["depthwise+pointwise"] = {k: classes["depthwise"][k] + classes["pointwise"][k]
                                      for k in ("layers", "cycles", "ideal")}
    for c in classes.values():
        c["gap"] = c["cycles"] - c["ideal"]
        c["share_of_gap"] = round(c["gap"] / gap, 4) if gap else 0.0
        c["ideal"] = round(c["ideal"])
        c["gap"] = round(c["gap"])
    for r in rows:
        r["ideal"] = round(r["ideal"])
        r["utilization"] = round(r["utilization"], 4)
    convs = [r for r in rows if r["op"] == "conv"]
    weighted = sum(r["macs"] for r in convs) / (cfg.macs_per_cycle * sum(r["cycles"] for r in convs))
    return {"total_cycles": total, "fps": round(cfg.clock_mhz * 1e6 / total, 2), "clock": "nominal",
            "ideal_cycles": round(ideal), "gap_cycles": round(gap), "conv_utilization_weighted": round(weighted, 4),
            "classes": classes, "layers": rows}


def _tensor_bytes(t: dict, tn: int) -> int:
    h, w = t["shape"][2], t["shape"][3]
    return t["blocks"] * h * w * tn


def show(res: dict) -> None:
    print(f"{res['total_cycles']} cycles, {res['fps']} fps (nominal clock), ideal {res['ideal_cycles']}, "
          f"gap {res['gap_cycles']}, conv MAC-weighted utilization {res['conv_utilization_weighted']}")
    print(f"{'layer':32} {'class':9} {'cycles':>8} {'ideal':>8} {'read':>8} {'write':>8} {'compute':>8} "
          f"{'rd MB':>6} {'in MB':>6} {'wr MB':>6} bound")
    for r in res["layers"]:
        print(f"{r['name'][-32:]:32} {r['class']:9} {r['cycles']:8d} {r['ideal']:8d} {r['read_cycles']:8d} "
              f"{r['write_cycles']:8d} {r['compute_cycles']:8d} {r['read_bytes'] / 1e6:6.2f} "
              f"{r['input_bytes'] / 1e6:6.2f} {r['write_bytes'] / 1e6:6.2f} {r['bound']}")
    print(f"{'class':10} {'layers':>6} {'cycles':>10} {'ideal':>10} {'gap':>10} {'share':>6}")
    for k, c in res["classes"].items():
        print(f"{k:10} {c['layers']:6d} {c['cycles']:10d} {c['ideal']:10d} {c['gap']:10d} {c['share_of_gap']:6.3f}")
    units = {k: sum(r[k] for r in res["layers"]) for k in ("read_cycles", "write_cycles", "compute_cycles",
                                                            "compute_fixed_cycles", "compute_instructions")}
    print("unit busy cycles over the frame: " + ", ".join(f"{k} {v}" for k, v in units.items()) + "\n")


#: issue 13's goal for the detector on zu3eg: frames a second at the nominal clock, and the
#: conv layers' MAC-weighted utilization
GOAL_FPS, GOAL_UTIL = 29.5, 0.90


def _report(key: str, res: dict, args) -> None:
    res["busy"] = {k: sum(r[k] for r in res["layers"]) for k in (
        "read_cycles", "write_cycles", "compute_cycles", "compute_fixed_cycles", "compute_instructions")}
    print(f"detector {args.variant} on {args.target}, {key.replace('_', ' ')}:")
    show(res)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="zu3eg")
    p.add_argument("--variant", default="w8a8")
    args = p.parse_args(argv)
    runs, checks = {}, {}
    base = dense = None
    cfg0 = load_target(args.target)
    front = cfg0.pe_latency - PPU.LATENCY  # the compute pipeline before the PPU
    built_chain = {"compute_chain": True, "chain_front": front, "chain_retire_single": True}
    for key, overlap, s2d, what_if in (("without_overlap", False, True, {}), ("with_overlap", True, True, {}),
                                       ("without_s2d", True, False, {}),
                                       ("chained", True, True, {"compute_chain": True}),
                                       ("chained_cheap", True, True, built_chain),
                                       ("chained_two_lb_copies", True, True, {"compute_chain": True, "lb_copies": 2}),
                                       ("sparse", True, True, None),
                                       ("sparse_chained_cheap", True, True, built_chain)):
        if what_if:  # the default program rescheduled on a changed target (cycle model only)
            program, owner = base
            program = dataclasses.replace(program, config=dataclasses.replace(program.config, **what_if))
        else:
            program, owner = compile_detector(args.variant, args.target, overlap, s2d, sparse=what_if is None)
            base = (program, owner) if key in ("with_overlap", "sparse") else base
            dense = base if key == "with_overlap" else dense
        runs[key] = res = analyse(program, owner)
        res["what_if"] = what_if if what_if is not None else {"compiled": "sparse (SPCONV where faster)"}
        sim = simulate(program, seed=0)
        reference = Interpreter(program.graph).run(make_feeds(program, None, 0))
        checks[f"{key}: simulator bit-exact with the interpreter"] = \
            compare_outputs(program, sim.outputs, reference)["bit_exact"]
        checks[f"{key}: simulator cycles equal the cycle model's"] = sim.total_cycles == res["total_cycles"]
        _report(key, res, args)
    # what-ifs of instruction costs on the SPCONV program with the built chaining rule:
    # machines not built, so not simulated (docs/backend.md "Reaching 29.5 fps")
    program, owner = base
    chained = dataclasses.replace(program, config=dataclasses.replace(program.config, **built_chain))
    two = dataclasses.replace(program, config=dataclasses.replace(chained.config, lb_copies=2))
    links = depthwise_links(program)
    s2 = stride2_costs(chained)
    dense_chained = dataclasses.replace(dense[0], config=chained.config)
    whatifs = [("sparse_chained_dma_free", chained, dma_free_costs(chained)),
               ("sparse_chained_stride2_dma_free", chained, {**dma_free_costs(chained), **s2}),
               ("sparse_chained_stride2", chained, s2),
               ("sparse_chained_handoff_r1", chained, handoff_costs(chained, owner, links, 1)),
               ("sparse_chained_handoff_r2", chained, handoff_costs(chained, owner, links, 2)),
               ("sparse_chained_handoff_r1_stride2", chained, {**handoff_costs(chained, owner, links, 1), **s2}),
               ("sparse_chained_handoff_r2_stride2", chained, {**handoff_costs(chained, owner, links, 2), **s2}),
               ("sparse_chained_two_lb_copies_handoff_r2", two, handoff_costs(two, owner, links, 2)),
               # the winning set less one of its parts: chaining, then SPCONV
               ("sparse_handoff_r2_stride2", program,
                {**handoff_costs(program, owner, links, 2), **stride2_costs(program)}),
               ("chained_handoff_r2_stride2", dense_chained,
                {**handoff_costs(dense_chained, dense[1], depthwise_links(dense[0]), 2),
                 **stride2_costs(dense_chained)})]
    for key, prog, costs in whatifs:
        runs[key] = res = analyse(prog, dense[1] if prog is dense_chained else owner, costs)
        res["what_if"] = {"compiled": "dense" if prog is dense_chained else "sparse",
                          **{k: getattr(prog.config, k) for k in (*built_chain, "lb_copies")},
                          "replaced_costs": len(costs)}
        _report(key, res, args)
    goal = math.floor(cfg0.clock_mhz * 1e6 / GOAL_FPS)
    # each link's worth in the winning set: the frame with that one link left in DRAM
    full = runs["sparse_chained_handoff_r2_stride2"]["total_cycles"]
    marginals = []
    for i in range(len(links)):
        rest = links[:i] + links[i + 1:]
        frame = analyse(chained, owner, {**handoff_costs(chained, owner, rest, 2), **s2})["total_cycles"]
        marginals.append(frame - full)
    result_goal = {"fps": GOAL_FPS, "cycles": goal, "conv_utilization_weighted": GOAL_UTIL,
                   "handoff_links": [{"producer": program.manifest["layers"][p]["name"],
                                      "consumer": program.manifest["layers"][c]["name"], "only_reader": only,
                                      "cycles_if_in_dram": m} for (p, c, only), m in zip(links, marginals)],
                   "least_link_cycles": min(marginals), "winning_set_margin_cycles": goal - full,
                   "meets": {k: r["total_cycles"] <= goal and r["conv_utilization_weighted"] >= GOAL_UTIL
                             for k, r in runs.items()}}
    result = {"model": "detector", "variant": args.variant, "target": args.target, "statistic": "cycle model (exact)",
              "runs": runs, "speedup": round(runs["without_overlap"]["total_cycles"] / runs["with_overlap"]["total_cycles"], 4),
              "s2d_speedup": round(runs["without_s2d"]["total_cycles"] / runs["with_overlap"]["total_cycles"], 4),
              "chain_speedup": round(runs["with_overlap"]["total_cycles"] / runs["chained"]["total_cycles"], 4),
              "chain_cheap_speedup": round(runs["with_overlap"]["total_cycles"] / runs["chained_cheap"]["total_cycles"],
                                           4),
              "goal": result_goal}
    write_result(f"detector_gap_{load_target(args.target).name}.json", result, checks)
    return result


if __name__ == "__main__":
    main()
