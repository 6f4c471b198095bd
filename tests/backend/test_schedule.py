"""Scheduling: tokens balance (every pop has an earlier push, none is left over), no program
deadlocks, DMA overlaps compute, and the cycle model (``ir.timeline.schedule``, which the
estimate and the simulator both report) equals an independent event-driven run of the
machine of docs/isa.md ("Cycle model") on every compiled segment."""

from collections import Counter, deque
from dataclasses import replace

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.backend.estimate import estimate_program
from shiftflow.ir.decode import decode_program
from shiftflow.ir.config import TARGETS
from shiftflow.ir.isa import Dataflow, Opcode, Unit, WgtTarget, encode, to_dict
from shiftflow.ir.program import ProgramError
from shiftflow.ir.timeline import instruction_cycles, schedule
from shiftflow.sim.run import simulate
from shiftflow.zoo import zoo_model
from tests.backend.hazards import clocks, decode, segments
from tests.modelgen import conv_layer_model

ZOO = [("mnist", None), ("resnet", None), ("mobilenet", None), ("detector", (64, 64))]
LOAD, COMPUTE, STORE = Unit.LOAD.value, Unit.COMPUTE.value, Unit.STORE.value
NEIGHBOURS = {LOAD: (None, COMPUTE), COMPUTE: (LOAD, STORE), STORE: (COMPUTE, None)}  # (prev, next)


def event_driven(cfg, instrs) -> tuple[list[int], list[int]]:
    """Start and end cycle of every instruction of one segment, found by running the machine
    from event to event: a fetch port that requests one word a cycle while its buffer of
    ``fetch_depth`` words has room and returns beats in order, an in-order dispatcher, three
    in-order units each behind a queue of ``queue_depth`` (a head visible ``1 + dispatch_stage``
    cycles after its dispatch), and token FIFOs whose tokens exist
    from the end of the pushing instruction. Only the per-instruction costs come from
    ``ir.timeline`` (the cost table); no recurrence of the cycle model is used."""
    n, nb, lat = len(instrs), cfg.instr_bytes // cfg.dram_bytes_per_cycle, cfg.dram_latency
    cost = [instruction_cycles(cfg, ins) for ins in instrs]
    ready, disp, start, end = [None] * n, [None] * n, [None] * n, [None] * n
    queue = {u: deque() for u in NEIGHBOURS}
    free_at = dict.fromkeys(NEIGHBOURS, 0)  # the unit's last instruction ends then
    pushes = {}  # (from, to) -> pushing instructions, in push order
    pops = {}    # (from, to) -> tokens taken
    requested = dispatched = started = 0
    beats_free = last_end = 0
    t = 0
    while end[-1] is None:
        busy, now = False, set()  # units that started an instruction in cycle t
        for u, q in queue.items():
            i = q[0] if q else None
            if i is None or disp[i] + 1 + cfg.dispatch_stage > t or free_at[u] > t:  # head visible from then
                continue
            ins, fifos = instrs[i], []
            for flag, other in ((ins.pop_prev, NEIGHBOURS[u][0]), (ins.pop_next, NEIGHBOURS[u][1])):
                if flag:
                    fifos.append((other, u))
            tokens = all(len(pushes.get(f, ())) > pops.get(f, 0) and end[pushes[f][pops.get(f, 0)]] <= t
                         for f in fifos)
            last = ins.opcode == Opcode.FINISH and (started < n - 1 or last_end > t)
            if not tokens or last:
                continue
            q.popleft()
            start[i], end[i] = t, t + cost[i]
            free_at[u], last_end, started, busy = end[i], max(last_end, end[i]), started + 1, True
            now.add(u)
            for f in fifos:
                pops[f] = pops.get(f, 0) + 1
            for flag, other in ((ins.push_prev, NEIGHBOURS[u][0]), (ins.push_next, NEIGHBOURS[u][1])):
                if flag:
                    pushes.setdefault((u, other), []).append(i)
        if dispatched < n and ready[dispatched] is not None and ready[dispatched] <= t and (
                dispatched == 0 or disp[dispatched - 1] < t):
            u = instrs[dispatched].unit.value
            if len(queue[u]) + (u in now) < cfg.queue_depth:  # a queue entry frees the cycle after its start
                disp[dispatched] = t
                queue[u].append(dispatched)
                dispatched, busy = dispatched + 1, True
        gone = dispatched - (dispatched > 0 and disp[dispatched - 1] == t)  # a slot frees the cycle after dispatch
        if requested < n and requested - gone < cfg.fetch_depth:
            first_beat = max(t + lat, beats_free)
            ready[requested] = beats_free = first_beat + nb  # dispatchable the cycle after its last beat
            requested, busy = requested + 1, True
        if busy:
            t += 1
            continue
        later = [e for e in free_at.values() if e > t] + [last_end] * (last_end > t)
        later += [disp[q[0]] + 1 + cfg.dispatch_stage for q in queue.values() if q]  # a staged head
        later = [e for e in later if e > t]
        if dispatched < n and ready[dispatched] is not None and ready[dispatched] > t:
            later.append(ready[dispatched])
        assert later, f"the machine stops at cycle {t} with instruction {start.index(None)} not started"
        t = min(later)
    return start, end


@pytest.mark.parametrize("target", ["tiny", "zu3eg"])
@pytest.mark.parametrize("name, hw", ZOO)
def test_tokens_balance_and_cycle_model_matches_the_machine(name, hw, target):
    program = compile_model(zoo_model(name, "w8a8", "qcdq", input_hw=hw), target)
    words = decode(program)
    for _, seg in segments(program, words):
        clocks(seg)  # raises on a pop without an earlier push
        counts = {f: sum(d[f] for d in seg) for f in ("pop_prev", "pop_next", "push_prev", "push_next")}
        assert counts["push_next"] == counts["pop_prev"] and counts["push_prev"] == counts["pop_next"], counts
    total = 0
    for seg in program.manifest["segments"]:
        if seg["kind"] == "accel":
            instrs = decode_program(program.instructions, seg["start"], seg["count"])
            tl = schedule(program.config, instrs)
            assert (tl.start, tl.end) == event_driven(program.config, instrs)
            total += tl.end[-1]
    est, sim = estimate_program(program), simulate(program)
    assert est["total_cycles"] == sim.total_cycles == total
    assert [r["cycles"] for r in est["layers"]] == [r["cycles"] for r in sim.layers][:len(est["layers"])]


@st.composite
def random_segments(draw):
    """Encoded segments of loads, stores, convs and NOPs with random costs and token flags
    (every pop after a matching push in program order, as the compiler promises)."""
    tokens = Counter()
    words = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from([Opcode.LOAD_WGT, Opcode.STORE, Opcode.CONV, Opcode.NOP]))
        u = {Opcode.LOAD_WGT: LOAD, Opcode.STORE: STORE}.get(kind, COMPUTE)
        flags = {}
        for flag, other in (("pop_prev", NEIGHBOURS[u][0]), ("pop_next", NEIGHBOURS[u][1])):
            if other is not None and tokens[other, u] and draw(st.booleans()):
                flags[flag] = 1
                tokens[other, u] -= 1
        for flag, other in (("push_prev", NEIGHBOURS[u][0]), ("push_next", NEIGHBOURS[u][1])):
            if other is not None and draw(st.integers(0, 2)) == 0:
                flags[flag] = 1
                tokens[u, other] += 1
        n = st.integers
        if kind == Opcode.LOAD_WGT:
            body = {"dram_addr": draw(n(0, 63)), "nbytes": draw(n(0, 600)), "target": WgtTarget.WEIGHTS}
        elif kind == Opcode.STORE:
            body = {"dst": {"dram_addr": draw(n(0, 63)), "row_stride": 64, "blk_stride": 256, "nblk": draw(n(1, 2)),
                            "nrows": draw(n(1, 3)), "ncols": draw(n(0, 8))}}
        elif kind == Opcode.CONV:
            body = {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1},
                    "inp": {"chans": draw(n(1, 8))}, "tile": {"rows": draw(n(1, 4)), "cols": draw(n(1, 8))}}
        else:
            body = None
        words.append(encode(kind, body, **flags) if body is not None else encode(kind, **flags))
    words.append(encode(Opcode.FINISH))
    return b"".join(words)


# Shallow fetch buffers and queues make fetch and dispatch the bottleneck, not only tokens.
CRAMPED = replace(TARGETS["tiny"], name="cramped", fetch_depth=2, queue_depth=1)


@pytest.mark.parametrize("cfg", [TARGETS["tiny"], TARGETS["zu3eg"], CRAMPED], ids=lambda c: c.name)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(code=random_segments())
def test_cycle_model_matches_the_machine_on_random_segments(cfg, code):
    instrs = decode_program(code)
    try:
        tl = schedule(cfg, instrs)
    except ProgramError as exc:  # a token FIFO deeper than token_depth: not a compiled program
        assume("token_depth" not in str(exc))
        raise
    assert (tl.start, tl.end) == event_driven(cfg, instrs)


def test_dma_overlaps_compute(tmp_path):
    """A compute-bound layer runs within a few percent of its PE-array time: loads of the next
    band and the stores of the previous tile hide under the current tile."""
    path = tmp_path / "pw.onnx"
    onnx.save(conv_layer_model(cin=64, cout=64, hw=(48, 40), k=3, pad=1), path)
    program = compile_model(path, "tiny")
    est = estimate_program(program)
    seg = [x for x in program.manifest["segments"] if x["kind"] == "accel"][0]
    from tests.backend.hazards import decode as dec
    from shiftflow.ir.cost import conv_cycles
    words = dec(program)[seg["start"]:seg["start"] + seg["count"]]
    busy = sum(conv_cycles(program.config, w["conv"]["dataflow"] == "pixel", False, w["conv"]["inp"]["chans"], 3, 3,
                           w["conv"]["tile"]["rows"], w["conv"]["tile"]["cols"]) for w in words if w["opcode"] == "CONV")
    assert busy <= est["total_cycles"] <= 1.05 * busy


def test_relay_nops_only_hand_over_between_load_and_store():
    program = compile_model(zoo_model("resnet", "w8a8", "qcdq"), "tiny")
    words = decode(program)
    for d in words:
        if d["opcode"] == "NOP":
            assert d["pop_next"] or d["pop_prev"] and d["push_next"] or d["push_prev"]
    assert np.mean([d["opcode"] == "NOP" for d in words]) < 0.05


def test_decode_agrees_with_to_dict():
    program = compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny")
    words = decode(program)
    for i in range(0, program.n_instructions, 7):
        assert words[i] == to_dict(program.instruction(i))
