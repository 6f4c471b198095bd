# amaranth: UnusedElaboratable=no
"""The chaining compute unit (``compute_chain``; hw/compute.py ``_chain``) in amaranth.sim on
a chaining ``tiny``: runs of consecutive CONV/SPCONV/VEC instructions of compiled programs
that share the on-chip memories, offered back to back (with NOPs between some), leave the
output buffer bit for bit as ``sim.machine`` does, and every accept and ``done`` falls in the
cycle the cycle model says (``ir.timeline.chain_back`` / ``chain_start``)."""

import dataclasses

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ShiftflowError
from shiftflow.hw.compute import ComputeUnit
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.hw.tb.rtlsim import rtlsim
from shiftflow.hw.ppu import PPU
from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import INSTR, Opcode, Unit, encode
from shiftflow.ir.timeline import chain_back, chain_start, instruction_cycles, schedule
from shiftflow.zoo import zoo_model
from tests.backend.models import vec_model
from tests.hw.test_compute import SPLIT, WIDE, sim_load_state
from tests.hw.streams import simulate
from tests.hw.test_compute_spconv import pruned_program
from tests.hw.test_top import assert_exact
from tests.hw.trace import trace
from tests.modelgen import conv_layer_model

def chaining(cfg, **change):
    cfg = dataclasses.replace(cfg, **change)
    return dataclasses.replace(cfg, name=f"{cfg.name}-chain", compute_chain=True,
                               chain_front=cfg.pe_latency - PPU.LATENCY, chain_retire_single=True)


CHAIN = chaining(TINY)
#: the shortest pipeline: no extra register stage (hw/compute.py's unstaged paths), and a
#: back pipeline as long as the front: a start is held when a group has fewer steps than
#: slots (``chain_start``).
SHORT = chaining(TINY, pe_latency=8)


def model_times(cfg, instrs):
    """``(accepts, dones)`` of ``instrs`` offered back to back (each from the cycle after the
    previous accept), by the cycle model's compute-unit rule."""
    accepts, dones, held = [], [], 0
    free = last_end = 0
    for ins in instrs:
        back = chain_back(cfg, ins)
        s = max(accepts[-1] + 1 if accepts else 0, free if back is not None else last_end)  # NOP: nothing in flight
        c = instruction_cycles(cfg, ins)
        if back is not None:
            c += chain_start(cfg, ins, s, last_end) - s
            held += chain_start(cfg, ins, s, last_end) > s
        e = s + c
        free, last_end = (e - back if back is not None else e), e
        accepts.append(s)
        dones.append(e)
    return accepts, dones, held


def runs_of(snaps, n):
    """The first run of ``n`` consecutive snapshots over the same line buffer, weights and
    parameters (each the next one's predecessor in the program's compute order)."""
    for i in range(len(snaps) - n + 1):
        run = snaps[i:i + n]
        if all(np.array_equal(getattr(a, k), getattr(b, k)) and np.array_equal(a.obuf_after, b.obuf_before)
               for a, b in zip(run, run[1:]) for k in ("lb", "wbuf", "pbuf")):
            return run
    raise AssertionError(f"no run of {n} chainable instructions")


def run_chain(cfg, run, nops=(), prefix=()):
    """Offer ``run``'s words back to back (a NOP before the ones at positions ``nops``),
    after running ``prefix``'s one at a time;
    returns ``(instrs, accepts, dones, obuf)`` observed."""
    words, instrs = [], []
    for k, snap in enumerate(run):
        if k in nops:
            words.append(encode(Opcode.NOP))
            instrs.append(None)
        words.append(snap.word)
        instrs.append(snap.ins)
    dut = ComputeUnit(cfg)
    accepts, dones, out = [], [], []

    async def bench(ctx):
        for snap in prefix:  # one at a time: the partial-sum buffer's state for the run
            sim_load_state(ctx, dut, snap, snap.obuf_before)
            ctx.set(dut.instr.payload, INSTR.from_bits(int.from_bytes(snap.word, "little")))
            ctx.set(dut.instr.valid, 1)
            await ctx.tick()
            ctx.set(dut.instr.valid, 0)
            while not ctx.get(dut.done):
                await ctx.tick()
            await ctx.tick()
        sim_load_state(ctx, dut, run[0], run[0].obuf_before)
        cycle = 0
        for word in words:
            ctx.set(dut.instr.payload, INSTR.from_bits(int.from_bytes(word, "little")))
            ctx.set(dut.instr.valid, 1)
            while True:
                ready = ctx.get(dut.instr.ready)
                if ctx.get(dut.done):
                    dones.append(cycle)
                await ctx.tick()
                cycle += 1
                if ready:
                    accepts.append(cycle - 1)
                    break
        ctx.set(dut.instr.valid, 0)
        while len(dones) < len(words):
            if ctx.get(dut.done):
                dones.append(cycle)
            await ctx.tick()
            cycle += 1
        for _ in range(1 + dut.ob.write_reg):
            await ctx.tick()
        out.append(dut.ob.sim_dump(ctx))

    deadline = sum(instruction_cycles(cfg, s.ins) + 100 for s in [*run, *prefix]) + 100 * len(words)
    simulate(dut, bench, deadline=deadline)
    return instrs, accepts, dones, out[0]


def check_chain(cfg, run, nops=(), prefix=()):
    instrs, accepts, dones, obuf = run_chain(cfg, run, nops, prefix)
    model = [ins if ins is not None else decode_program(encode(Opcode.NOP))[0] for ins in instrs]
    want = model_times(cfg, model)
    where = [f"{ins.opcode.name}" for ins in model]
    assert (accepts, dones) == want[:2], where
    bad = np.argwhere(obuf != run[-1].obuf_after)
    assert not len(bad), f"{len(bad)} bytes differ, first (half, word, lane) {bad[0].tolist()}"
    return accepts, dones, want[2]


def compiled(tmp_path, model, dataflow="auto", cfg=TINY):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, cfg, dataflow=dataflow)


CASES = {
    "channel-3x3": (lambda: conv_layer_model(cin=6, cout=8, hw=(4, 5)), "channel"),
    "channel-wide32": (lambda: conv_layer_model(cin=6, cout=9, hw=(4, 5), act="none", out_quant=False), "channel"),
    "pixel-wide32": (lambda: conv_layer_model(cin=3, cout=8, hw=(4, 6), out_quant=False), "pixel"),
    # 3 steps a group, 4 slots (16-bit): SHORT holds the next start
    "pixel-wide32-1x1": (lambda: conv_layer_model(cin=3, cout=8, hw=(4, 6), k=1, pad=0, out_quant=False), "pixel"),
    "pool2-channel": (lambda: vec_model(kind="maxpool", k=2, s=2, p=0, c=8), "channel"),
    "pool3-pixel": (lambda: vec_model(kind="maxpool", k=3, s=3, p=0, c=8, hw=(9, 15)), "pixel"),
    "pixel-3x3": (lambda: conv_layer_model(cin=3, cout=8, hw=(5, 6)), "pixel"),
    "channel-1x1-one-step": (lambda: conv_layer_model(cin=3, cout=9, hw=(3, 5), k=1, pad=0), "channel"),
    "depthwise": (lambda: conv_layer_model(cin=8, cout=8, groups=8, hw=(5, 6)), "pixel"),
    "add": (lambda: vec_model("add", c=8, hw=(5, 6)), "auto"),
    "maxpool": (lambda: vec_model("maxpool", c=8, hw=(6, 6)), "auto"),
}


@pytest.mark.parametrize("cfg", [CHAIN, SHORT], ids=lambda c: c.name)
@pytest.mark.parametrize("case", sorted(CASES))
def test_back_to_back(case, cfg, tmp_path):
    make, dataflow = CASES[case]
    snaps = trace(compiled(tmp_path, make(), dataflow))
    run = runs_of(snaps, 2)
    accepts, dones, held = check_chain(cfg, run)
    assert accepts[1] < dones[0], "the second instruction must be taken before the first ends"
    if cfg is SHORT and case in ("pixel-wide32-1x1", "channel-1x1-one-step"):
        assert held, "a group of fewer steps than slots: the start is held"


def test_nop_between(tmp_path):
    make, dataflow = CASES["channel-3x3"]
    run = runs_of(trace(compiled(tmp_path, make(), dataflow)), 2)
    check_chain(CHAIN, run, nops=(1,))


@pytest.mark.parametrize("dataflow", ["channel", "pixel"])
def test_split_reduction(dataflow, tmp_path):
    """A band's chunk CONVs back to back: they meet in the partial-sum buffer."""
    cfg = dataclasses.replace(SPLIT, compute_chain=True, chain_front=CHAIN.chain_front, chain_retire_single=True)
    program = compiled(tmp_path, conv_layer_model(cin=12, cout=5, hw=(5, 7)), dataflow, SPLIT)
    snaps = trace(program)
    run = runs_of([s for s in snaps if s.ins.f["psum_in"] or s.ins.f["psum_out"]], 2)
    assert run[0].ins.f["psum_out"] and run[1].ins.f["psum_in"], "the second must read what the first wrote"
    # The band's chunks before the run, one at a time (their memories differ).
    k = snaps.index(run[0])
    first = max(i for i in range(k + 1) if not snaps[i].ins.f["psum_in"])
    check_chain(cfg, run, prefix=snaps[first:k])


@pytest.mark.parametrize("cfg", [CHAIN, SHORT], ids=lambda c: c.name)
def test_spconv(cfg, tmp_path):
    """SPCONV back to back (a held SPCONV start, the walker's too, needs a list shorter than
    slots - SPCONV_START: none on tiny; the held path is the CONV's, tested above)."""
    snaps = trace(pruned_program(tmp_path, TINY, 0.5, cin=6, cout=8, hw=(5, 7)))
    run = runs_of(snaps, 2)
    assert all(s.ins.opcode == Opcode.SPCONV for s in run)
    check_chain(cfg, run)


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(sorted(CASES)), n=st.integers(2, 4), nop_at=st.integers(0, 4),
       wide_array=st.booleans(), short=st.booleans())
def test_random_runs(case, n, nop_at, wide_array, short, tmp_path):
    """Runs of 2-4 instructions, a NOP at a random place, on tiny and on tm = 8, with the
    shortest pipeline or tiny's."""
    cfg = chaining(WIDE if wide_array else TINY, **({"pe_latency": 8} if short else {}))
    make, dataflow = CASES[case]
    snaps = trace(compiled(tmp_path, make(), dataflow, dataclasses.replace(cfg, compute_chain=False)))
    for k in range(n, 1, -1):
        try:
            run = runs_of(snaps, k)
            break
        except AssertionError:
            continue
    else:
        return
    check_chain(cfg, run, nops=(nop_at,) if 0 < nop_at < len(run) else ())


def test_bad_chain_config():
    with pytest.raises(ShiftflowError, match="compute_chain"):
        ComputeUnit(dataclasses.replace(CHAIN, chain_front=1))


def model_totals(program):
    """``(overlaps, units)``: compute instructions the cycle model starts before the previous
    one's end, and its busy/stall cycles per unit, over the program's segments."""
    n, units = 0, {}
    for seg in program.manifest["segments"]:
        if seg.get("kind") != "accel":
            continue
        instrs = decode_program(program.instructions, seg["start"], seg["count"])
        tl = schedule(program.config, instrs)
        ends = [tl.end[k] for k, ins in enumerate(instrs) if ins.unit == Unit.COMPUTE]
        starts = [tl.start[k] for k, ins in enumerate(instrs) if ins.unit == Unit.COMPUTE]
        n += sum(s < e for s, e in zip(starts[1:], ends))
        for u, t in tl.unit_totals().items():
            for k, v in t.items():
                units.setdefault(u, {}).setdefault(k, 0)
                units[u][k] += v
    return n, units


@pytest.mark.slow
def test_programs_on_the_chaining_rtl(tmp_path):
    """The whole accelerator with the chaining compute unit (the controller's in-flight count
    and push-flag FIFO, hw/control.py) under Verilator: compiled programs (both dataflows,
    depthwise, stride 2, pooling, wide outputs, VEC, SPCONV, a zoo network) bit-exact with
    every segment's cycles and unit counters equal to the cycle model's; one with random
    stalls, bit-exact."""
    programs = [compile_model(zoo_model("mnist", "w8a8", "qcdq"), CHAIN)]
    for name in ("channel-3x3", "pixel-3x3", "depthwise", "pool3-pixel", "channel-wide32", "add", "maxpool"):
        make, dataflow = CASES[name]
        (tmp_path / name).mkdir()
        programs.append(compiled(tmp_path / name, make(), dataflow, CHAIN))
    (tmp_path / "s2").mkdir()
    (tmp_path / "sp").mkdir()
    programs.append(compiled(tmp_path / "s2", conv_layer_model(cin=5, cout=6, hw=(9, 11), stride=2), "pixel", CHAIN))
    programs.append(pruned_program(tmp_path / "sp", CHAIN, 0.5, cin=6, cout=8, hw=(5, 7)))
    totals = [model_totals(p) for p in programs]
    assert all(n for n, _ in totals), [n for n, _ in totals]
    with RtlAccelerator(fresh=True) as acc:
        for program, (_, units) in zip(programs, totals):
            report = rtlsim(program, seed=1, accelerator=acc)
            assert_exact(report)
            assert report["counters"]["units"] == units
        report = rtlsim(programs[0], seed=2, stalls=True, accelerator=acc)
        assert report["completed"] and report["bit_exact"] and report["max_abs_diff"] == 0
