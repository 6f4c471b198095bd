# amaranth: UnusedElaboratable=no
"""hw/compute.py in amaranth.sim on the ``tiny`` target: single CONV/VEC instructions of real
compiled programs, replayed from the simulator's machine state, must leave the output buffer
bit for bit as ``sim.machine`` does and take exactly the documented cycles
(``hw.compute.conv_unit_cycles`` / ``vec_unit_cycles``: ``ir.cost`` plus the last drain)."""

import dataclasses

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ShiftflowError
from shiftflow.hw.compute import ComputeUnit, check_config
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.cost import DMA_START, conv_cycles, conv_inner_steps
from shiftflow.ir.isa import INSTR, Opcode, encode
from shiftflow.sim.machine import Machine
from shiftflow.zoo import zoo_model
from tests.backend.models import _conv, vec_model
from tests.hw.replay import expected_cycles, replay
from tests.hw.streams import simulate
from tests.hw.trace import trace, variant
from tests.modelgen import QDQBuilder, conv_layer_model
from tests.strategies import conv_layers


def first_of_each(kinds: dict):
    """A trace selector taking the first ``kinds[opcode]`` instructions of each opcode."""
    seen = {}

    def select(ins):
        seen[ins.opcode] = seen.get(ins.opcode, 0) + 1
        return seen[ins.opcode] <= kinds.get(ins.opcode, 0)
    return select


def check_replay(program, kinds, cfg=TINY, feature=None):
    """Trace ``program``, replay the selected instructions on ``cfg``, compare; ``feature`` (a
    predicate on the fields) must hold for at least one of them. Returns the snapshots."""
    snaps = trace(program, first_of_each(kinds))
    assert snaps, "nothing selected"
    for snap, got in zip(snaps, replay(cfg, snaps)):
        where = f"{snap.ins.where()} {snap.ins.f}"
        assert got.cycles == expected_cycles(cfg, snap.ins), where
        bad = np.argwhere(got.obuf != snap.obuf_after)
        assert not len(bad), f"{where}: {len(bad)} bytes differ, first (half, word, lane) {bad[0].tolist()}"
    assert feature is None or any(feature(s.ins.f) for s in snaps), "the case does not exercise its feature"
    return snaps


def compiled(tmp_path, model, dataflow="auto", cfg=TINY):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, cfg, dataflow=dataflow)


CONVS = {
    "channel-3x3": (dict(cin=6, cout=5, hw=(6, 7)), "channel", lambda f: f["dataflow"] == 0),
    "channel-1x1-one-step": (dict(cin=3, cout=5, hw=(5, 6), k=1, pad=0), "channel",  # groups of 1 step < drain
                             lambda f: f["dataflow"] == 0 and f["win.kh"] == 1 and f["inp.chans"] <= 4),
    "pixel-partial-group": (dict(cin=3, cout=4, hw=(6, 7)), "pixel", lambda f: f["dataflow"] and f["tile.cols"] % 4),
    "depthwise": (dict(cin=4, cout=4, groups=4, hw=(7, 9)), "pixel", lambda f: f["depthwise"]),
    "stride2-leaky": (dict(cin=5, cout=6, hw=(9, 11), stride=2, act="leaky"), "channel",
                      lambda f: f["win.sh"] == 2 and f["post.act"] == 2),
    "stride2-pixel-none": (dict(cin=2, cout=4, hw=(9, 11), stride=2, act="none"), "pixel",
                           lambda f: f["win.sw"] == 2 and f["dataflow"]),
    "dilation-pow2": (dict(cin=3, cout=4, hw=(9, 9), dilation=2, pad=2, pow2=True), "pixel",
                      lambda f: f["pow2"] and f["win.dw"] == 2),
    "asym-pad-clamp": (dict(cin=6, cout=5, hw=(8, 9), dilation=2, pad=(1, 2, 0, 1), pow2=True, abits=4, in_bits=5),
                       "channel", lambda f: f["win.dh"] == 2 and f["post.hi"] == 15),
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv(case, tmp_path):
    kw, dataflow, feature = CONVS[case]
    check_replay(compiled(tmp_path, conv_layer_model(**kw), dataflow), {Opcode.CONV: 3}, feature=feature)


#: Convs whose output has no quantizer: the exact sums as 2 or 4 byte planes (docs/isa.md
#: "Wide outputs"), in both dataflows, with the drain held a cycle a plane.
WIDE_OUTPUTS = {
    "channel-32bit": (dict(cin=6, cout=5, hw=(5, 6), act="none"), "channel", 2),
    "channel-1x1-16bit-relu": (dict(cin=4, cout=4, hw=(4, 5), k=1, pad=0, wbits=4, in_bits=6, bias=False), "channel", 1),
    "pixel-32bit-relu": (dict(cin=3, cout=4, hw=(6, 7)), "pixel", 2),
    "pixel-16bit": (dict(cin=4, cout=4, hw=(5, 6), k=1, pad=0, wbits=4, in_bits=6, bias=False, act="none"), "pixel", 1),
}


@pytest.mark.parametrize("cfg", [TINY, WIDE := dataclasses.replace(TINY, name="wide", tm=8, ppu_lanes=8, pe_latency=11,
                                                                    acc_bits=24)], ids=lambda c: c.name)
@pytest.mark.parametrize("case", sorted(WIDE_OUTPUTS))
def test_wide_outputs(case, cfg, tmp_path):
    kw, dataflow, wide = WIDE_OUTPUTS[case]
    check_replay(compiled(tmp_path, conv_layer_model(**kw, out_quant=False), dataflow, cfg), {Opcode.CONV: 3}, cfg,
                 feature=lambda f: f["wide"] == wide)


@pytest.mark.parametrize("model,dataflow,pool", [
    (dict(kind="maxpool", k=2, s=2, p=0), "channel", 2),
    (dict(kind="maxpool", k=3, s=3, p=0, hw=(9, 15)), "pixel", 3),  # windows straddle pixel groups
])
def test_fused_pool(model, dataflow, pool, tmp_path):
    check_replay(compiled(tmp_path, vec_model(**model), dataflow), {Opcode.CONV: 3},
                 feature=lambda f: f["post.pool"] == pool)


#: tm = 2*tn (depthwise reads two line-buffer copies), ppu_lanes = tm (one pixel per chunk,
#: drain 4), pe_latency 11 (every kind of extra register stage, as zu3eg), 24-bit accumulators (as zu3eg).
#: WIDE1: the same with one line-buffer copy (as zu3eg): depthwise reads its two channel
#: blocks one after the other, VEC ADD its operand b after a; its pool loop, its decoder's
#: row-step products, its lane mask and its sequencer's start as zu3eg's (``pool_loop_reg``,
#: ``decode_shift_add``, ``seq_lane_bounds``, ``seq_idle_hold`` off).
WIDE1 = dataclasses.replace(WIDE, name="wide-1copy", lb_copies=1, pool_loop_reg=False, decode_shift_add=False,
                            seq_lane_bounds=False, seq_idle_hold=False)
#: ... and with pe_latency 10 (zu3eg's before it staged them): the sequencer's address sums
#: not staged.
WIDE1_UNSTAGED = dataclasses.replace(WIDE1, name="wide-1copy-unstaged", pe_latency=10)


def pool_1x1_model(cin, hw, k):
    """``conv 1x1 (cin -> 6) -> MaxPool k x k, stride k``: groups one step long, so chunks
    that write and read one pooled row come 1-3 cycles apart (every scratch forwarding)."""
    b = QDQBuilder((1, cin) + tuple(hw), seed=cin)
    x = _conv(b, b.cur, cin, 6, k=1, pad=0)
    y = b.op("MaxPool", [x], kernel_shape=[k, k], strides=[k, k], pads=[0] * 4)
    return b.model(b.quant(y, 3, 8, signed=False))


@pytest.mark.parametrize("cfg", [TINY, WIDE1], ids=lambda c: c.name)
@pytest.mark.parametrize("cin,hw,k,dataflow", [(3, (4, 4), 2, "channel"), (3, (6, 6), 3, "channel"),
                                               (3, (6, 8), 2, "pixel"), (3, (4, 6), 2, "pixel")])
def test_fused_pool_back_to_back(cfg, cin, hw, k, dataflow, tmp_path):
    """The pool's scratch rows read back 1, 2 and 3 cycles after they are written (the writes
    the read misses are forwarded: hw/retire.py, both ``pool_loop_reg`` forms)."""
    check_replay(compiled(tmp_path, pool_1x1_model(cin, hw, k), dataflow, cfg), {Opcode.CONV: 2}, cfg,
                 feature=lambda f: f["post.pool"] == k)


@pytest.mark.parametrize("cfg", [WIDE, WIDE1], ids=lambda c: c.name)
@pytest.mark.parametrize("model,dataflow,feature", [
    (conv_layer_model(cin=6, cout=6, groups=6, hw=(7, 9), stride=2), "pixel", lambda f: f["depthwise"]),
    (vec_model("maxpool", k=3, s=3, p=0, hw=(9, 15)), "pixel", lambda f: f["post.pool"] == 3),
    (conv_layer_model(cin=5, cout=7, hw=(6, 7), act="leaky"), "channel", lambda f: f["dataflow"] == 0),
    (conv_layer_model(cin=3, cout=8, hw=(5, 6), k=1, pad=0), "channel", lambda f: f["dataflow"] == 0),
], ids=["depthwise-two-blocks", "pooled-pixel", "channel", "channel-1x1-one-step"])
def test_wide_array(model, dataflow, feature, cfg, tmp_path):
    check_replay(compiled(tmp_path, model, dataflow, cfg), {Opcode.CONV: 2}, cfg, feature)


@pytest.mark.parametrize("model,feature", [
    (conv_layer_model(cin=8, cout=8, groups=8, hw=(6, 7)), lambda f: f["depthwise"] and f["inp.chans"] > 4),
    (conv_layer_model(cin=3, cout=3, groups=3, hw=(6, 7), stride=2), lambda f: f["depthwise"] and f["inp.chans"] <= 4),
    (conv_layer_model(cin=8, cout=8, groups=8, hw=(7, 9), stride=2), lambda f: f["depthwise"] and f["win.sw"] == 2),
], ids=["depthwise-stride1", "depthwise-one-block", "depthwise-stride2"])
@pytest.mark.parametrize("cfg", [WIDE1, WIDE1_UNSTAGED], ids=lambda c: c.name)
def test_one_copy_depthwise(model, feature, cfg, tmp_path):
    """One line-buffer copy: a depthwise group of more than tn channels takes twice the steps
    (its blocks one after the other), one of at most tn channels the same as with two."""
    snaps = check_replay(compiled(tmp_path, model, "pixel", cfg), {Opcode.CONV: 2}, cfg, feature)
    for s in snaps:
        f = s.ins.f
        args = (True, True, f["inp.chans"], f["win.kh"], f["win.kw"], f["win.sw"])
        assert conv_inner_steps(cfg, *args) == conv_inner_steps(WIDE, *args) * (2 if f["inp.chans"] > 4 else 1)


def test_one_copy_vec_add_unstaged(tmp_path):
    """VEC ADD reading b a slot after a, with the unstaged sequencer (one copy, pe_latency 10)."""
    check_replay(compiled(tmp_path, vec_model("add"), cfg=WIDE1_UNSTAGED), {Opcode.VEC: 2}, WIDE1_UNSTAGED)


@pytest.mark.parametrize("cfg", [WIDE, WIDE1], ids=lambda c: c.name)
@pytest.mark.parametrize("kind", ["add", "maxpool", "avgpool"])
def test_wide_array_vec(kind, cfg, tmp_path):
    snaps = check_replay(compiled(tmp_path, vec_model(kind), cfg=cfg), {Opcode.VEC: 2}, cfg)
    assert {s.ins.opcode for s in snaps} == {Opcode.VEC}


#: Weight banks of 16 words: a 3x3 conv over 12 channels (27 words a block) is split into
#: three chunks of one channel block, whose CONVs meet in the partial-sum buffer.
SPLIT, WIDE_SPLIT = (dataclasses.replace(c, name=f"{c.name}-split", weight_bank_bytes=16 * c.tm * c.tn)
                     for c in (TINY, WIDE))


@pytest.mark.parametrize("cfg", [SPLIT, WIDE_SPLIT], ids=lambda c: c.name)
@pytest.mark.parametrize("dataflow,kw", [
    ("channel", dict(act="leaky")), ("pixel", dict(act="relu")), ("pixel", dict(pow2=True, act="none")),
    ("channel", dict(stride=2, act="relu"))])
def test_split_reduction(cfg, dataflow, kw, tmp_path):
    """A band's chunk CONVs in order: the first writes acc + bias to the partial-sum buffer
    (no output-buffer write), the middle one adds to it, the last adds it and post-processes;
    each takes the cycle model's cycles and the output buffer ends as the simulator's."""
    program = compiled(tmp_path, conv_layer_model(cin=12, cout=cfg.tm + 1, hw=(5, 7), **kw), dataflow, cfg)
    snaps = check_replay(program, {Opcode.CONV: 6}, cfg)
    assert [(s.ins.f["psum_in"], s.ins.f["psum_out"]) for s in snaps[:3]] == [(0, 1), (1, 1), (1, 0)]


@pytest.mark.parametrize("kind,kw", [("maxpool", {}), ("avgpool", {}), ("add", {}), ("resize", {"f": 3}),
                                     ("requant", {})])
def test_vec(kind, kw, tmp_path):
    snaps = check_replay(compiled(tmp_path, vec_model(kind, **kw)), {Opcode.VEC: 4})
    assert {s.ins.opcode for s in snaps} == {Opcode.VEC}


def test_fields_the_compiler_leaves_alone(tmp_path):
    """Instructions of compiled programs with fields changed where the ISA allows more than the
    compiler uses: a fused pool on VEC results, parameters from another row than the compiler's
    (p_addr is a multiple of tm); the simulator's machine gives the expected output."""
    vec = trace(compiled(tmp_path, vec_model("requant", hw=(8, 12))), first_of_each({Opcode.VEC: 1}))[0]
    f = vec.ins.f
    assert f["tile.rows"] % 2 == 0 and f["tile.cols"] % 2 == 0, f
    conv = trace(compiled(tmp_path, conv_layer_model(cin=5, cout=6, hw=(5, 6)), "pixel"),
                 first_of_each({Opcode.CONV: 1}))[0]
    snaps = [variant(TINY, vec, post__pool=2, tile__obuf_cols=f["tile.cols"] // 2),
             variant(TINY, conv, p_addr=conv.ins.f["p_addr"] + TINY.tm)]
    for snap, got in zip(snaps, replay(TINY, snaps)):
        assert got.cycles == expected_cycles(TINY, snap.ins)
        np.testing.assert_array_equal(got.obuf, snap.obuf_after)


def test_mnist_zoo_model():
    """Pixel- and channel-parallel convs with a fused 2x2 pool from a zoo model."""
    program = compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny")
    check_replay(program, {Opcode.CONV: 4}, feature=lambda f: f["post.pool"] == 2)


def sim_load_state(ctx, dut: ComputeUnit, snap, obuf: np.ndarray) -> None:
    """Testbench: ``snap``'s line buffer, weight and parameter banks and ``obuf`` into ``dut``."""
    dut.lb.sim_load(ctx, snap.lb)
    dut.wb.sim_load(ctx, snap.wbuf)
    dut.pb.sim_load(ctx, snap.pbuf)
    dut.ob.sim_load(ctx, obuf)


def test_back_to_back_and_nop(tmp_path):
    """A CONV accepted in the cycle the previous instruction's done pulses (NOP: 1 cycle)."""
    program = compiled(tmp_path, conv_layer_model(cin=6, cout=8, hw=(4, 5)), "channel")
    a, b = trace(program, first_of_each({Opcode.CONV: 2}))
    assert all(np.array_equal(x, y) for x, y in ((a.lb, b.lb), (a.wbuf, b.wbuf), (a.pbuf, b.pbuf)))
    words = [a.word, encode(Opcode.NOP), b.word]
    dut = ComputeUnit(TINY)
    dones = []

    async def bench(ctx):
        sim_load_state(ctx, dut, a, a.obuf_before)
        for word in words:
            ctx.set(dut.instr.payload, INSTR.from_bits(int.from_bytes(word, "little")))
            ctx.set(dut.instr.valid, 1)
            await ctx.tick().until(dut.instr.ready)
        ctx.set(dut.instr.valid, 0)
        while len(dones) < len(words):
            await ctx.tick()
        for _ in range(1 + dut.ob.write_reg):
            await ctx.tick()
        np.testing.assert_array_equal(dut.ob.sim_dump(ctx), b.obuf_after)

    async def monitor(ctx):
        cycle = 0
        async for _clk, _rst, done in ctx.tick().sample(dut.done):
            if done:
                dones.append(cycle)
            cycle += 1

    simulate(dut, bench, background=[monitor], deadline=5000)
    ca, cb = expected_cycles(TINY, a.ins), expected_cycles(TINY, b.ins)
    assert dones == [ca, ca + 1, ca + 1 + cb]


def test_store_reads_the_last_words_after_the_done_cycle(tmp_path):
    """A STORE started in the compute unit's done cycle (the controller's token bypass) reads
    its first output-buffer words ``ir.cost.DMA_START`` cycles later, at the earliest (no
    read slice); the CONV offers its last words in the done cycle and, through tiny's
    per-copy write registers, they land a cycle later: the read must see them, not the
    buffer's old contents (a 1x1 layer stored the previous program's word:
    tests/hw/test_top.py test_onchip_state_of_a_previous_program_does_not_leak)."""
    model = conv_layer_model(cin=1, cout=1, hw=(1, 1), k=1, pad=0, wbits=2, abits=2, in_bits=2, act="none",
                             bias=False)
    snap = trace(compiled(tmp_path, model, "channel"), first_of_each({Opcode.CONV: 1}))[0]
    f = snap.ins.f
    stale = np.full_like(snap.obuf_before, 0xA5)  # what a previous program left
    mach = Machine(TINY, 1)
    mach.lb[:], mach.wbuf[:], mach.pbuf[:], mach.obuf[:] = snap.lb, snap.wbuf, snap.pbuf, stale
    mach.execute(snap.ins)
    half, addr = f["tile.half"], f["tile.obuf_addr"]
    per_beat = TINY.dram_bytes_per_cycle // TINY.tn
    want = mach.obuf[half, addr:addr + per_beat]
    assert not np.array_equal(want[0], stale[half, addr]), "the CONV must change the word"
    dut = ComputeUnit(TINY)
    got = []

    async def bench(ctx):
        sim_load_state(ctx, dut, snap, stale)
        ctx.set(dut.instr.payload, INSTR.from_bits(int.from_bytes(snap.word, "little")))
        ctx.set(dut.instr.valid, 1)
        await ctx.tick()
        ctx.set(dut.instr.valid, 0)
        while not ctx.get(dut.done):
            await ctx.tick()
        for _ in range(DMA_START):  # from the done cycle (the STORE's accept) to its first read
            await ctx.tick()
        ctx.set(dut.ob_r.payload, {"half": half, "addr": addr, "stride": 1})
        ctx.set(dut.ob_r.valid, 1)
        ctx.set(dut.ob_rdata.ready, 1)
        assert ctx.get(dut.ob_r.ready)
        await ctx.tick()
        ctx.set(dut.ob_r.valid, 0)
        assert ctx.get(dut.ob_rdata.valid)
        got.append(int(ctx.get(dut.ob_rdata.payload)))

    simulate(dut, bench, deadline=1000)
    assert got[0].to_bytes(TINY.dram_bytes_per_cycle, "little") == want.tobytes()


def test_cycle_model_counts_the_last_drain():
    # tiny: drain = ceil(16/8) = 2 in both dataflows (channel-parallel adds a row's 4 sums
    # over the 2 chunks); pe_latency 11; 1 to start (the accept register)
    assert conv_cycles(TINY, True, False, 3, 3, 3, 2, 8) == 1 + 2 * 2 * 27 + 2 + 11
    assert conv_cycles(TINY, True, True, 4, 1, 1, 2, 8) == 1 + 2 * 2 * 2 + 1 + 11
    assert conv_cycles(TINY, False, False, 3, 3, 3, 2, 8) == 1 + 2 * 8 * 9 + 2 + 11
    assert conv_cycles(TINY, False, False, 4, 1, 1, 2, 8) == 1 + 2 * 8 * 2 + 1 + 11  # 1 step, 2-cycle groups


@pytest.mark.parametrize("change,match", [
    ({"tm": 12}, "powers of two"),
    ({"ppu_lanes": 2}, "ppu_lanes"),
    ({"pe_latency": 6}, "pe_latency"),
])
def test_config_errors(change, match):
    cfg = dataclasses.replace(TINY, **change)
    with pytest.raises(ShiftflowError, match=match) as err:
        ComputeUnit(cfg)
    assert "\n" not in str(err.value)


def test_named_targets_are_buildable():
    for cfg in (TINY, ZU3EG):
        check_config(cfg)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_layers(max_hw=10), dataflow=st.sampled_from(["channel", "pixel"]))
def test_random_conv_layers(case, dataflow, tmp_path):
    check_replay(compiled(tmp_path, conv_layer_model(**case), dataflow), {Opcode.CONV: 2})
