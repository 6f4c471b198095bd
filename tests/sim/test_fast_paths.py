"""The functional model's speed machinery changes no result (docs/simulator.md "Speed"):
cached plans and weights, gathered inputs reused across instructions, and the float32 fast
path against the exact one at the accumulator bound."""

import math

import numpy as np
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import PARAM_BYTES, Dataflow, Opcode, WgtTarget
from shiftflow.ir.program import ProgramError
from shiftflow.sim import conv
from shiftflow.sim.machine import Machine
from shiftflow.sim.run import simulate
from shiftflow.zoo import zoo_model
from tests.hw.trace import patch
from tests.sim.asm import (Asm, blocked, conv_asm, dram_box, geom, load_image, pack_params, pack_weights, post,
                           ref_conv, requant, run_conv, unblocked)


def test_run_equals_one_instruction_at_a_time(monkeypatch):
    """A whole network: ``Machine.run`` (gathered inputs reused between instructions) gives
    the outputs of executing each instruction on its own (nothing reused)."""
    program = compile_model(zoo_model("detector", "w8a8", "qcdq", input_hw=(64, 64)), "zu3eg")
    fast = simulate(program, seed=3).outputs
    run = Machine.run

    def one_by_one(self, instrs, progress=None):
        for ins in instrs:
            run(self, (ins,), progress)

    monkeypatch.setattr(Machine, "run", one_by_one)
    alone = simulate(program, seed=3).outputs
    assert all(np.array_equal(fast[k], alone[k]) for k in fast)


def _conv_body(cfg, rg, x, w_addr, half, k=3):
    c, h, w = x.shape
    return {"dataflow": Dataflow.CHANNEL, "depthwise": 0, "pow2": 0,
            "win": {"kh": k, "kw": k, "sh": 1, "sw": 1, "dh": 1, "dw": 1},
            "inp": geom(rg, h, w, c, True, y_first=-1, x_first=-1),
            "tile": {"rows": h, "cols": w, "obuf_addr": 0, "obuf_cols": w, "obuf_blk": cfg.tm // cfg.tn,
                     "half": half},
            "post": post(), "wbank": 0, "w_addr": w_addr, "p_addr": 0, "cout": cfg.tm, "psum_in": 0, "psum_out": 0}


def test_load_act_between_two_identical_convs_is_seen():
    """The same CONV word twice, with a LOAD_ACT rewriting one image row of its ring in between:
    the second reads the new row (the gathered copy of the first is dropped)."""
    cfg, rng = TINY, np.random.default_rng(5)
    c, h, wd = 5, 6, 7
    a, b = rng.integers(-128, 128, (c, h, wd)), rng.integers(-128, 128, (c, h, wd))
    w, bias, shift = rng.integers(-128, 128, (cfg.tm, c, 3, 3)), rng.integers(-999, 999, cfg.tm), np.full(cfg.tm, 9)
    asm = Asm()
    asm.put(0, blocked(a, cfg.tn))
    asm.put(0x20000, blocked(b, cfg.tn))
    wbytes, _ = pack_weights(w, cfg.tm, cfg.tn, "channel", False, False)
    asm.emit(Opcode.LOAD_WGT, {"dram_addr": asm.put(0x40000, wbytes), "nbytes": len(wbytes),
                               "target": WgtTarget.WEIGHTS, "sram_addr": 0})
    asm.emit(Opcode.LOAD_WGT, {"dram_addr": asm.put(0x60000, pack_params(bias, shift, cfg.tm)),
                               "nbytes": cfg.tm * PARAM_BYTES, "target": WgtTarget.PARAMS, "sram_addr": 0})
    rg = load_image(asm, cfg, a, 0, 0, push_next=1)
    nb, row = math.ceil(c / cfg.tn), 4  # rewrite image row 4 (slot 4) from b
    blk, out, n = cfg.tm // cfg.tn, 0x80000, h * wd * cfg.tm
    for k, half in enumerate((0, 1)):
        asm.emit(Opcode.CONV, _conv_body(cfg, rg, a, 0, half), pop_prev=1, push_next=1, push_prev=int(k == 0))
        asm.emit(Opcode.STORE, {"dst": dram_box(out + k * n, blk, h, wd, wd * cfg.tn, h * wd * cfg.tn),
                                "obuf_addr": 0, "half": half}, pop_prev=1)
        if k == 0:
            asm.emit(Opcode.LOAD_ACT, {"src": dram_box(0x20000 + row * wd * cfg.tn, nb, 1, wd, wd * cfg.tn,
                                                       h * wd * cfg.tn), "ring": rg, "slot0": row},
                     pop_next=1, push_next=1)
    asm.emit(Opcode.FINISH)
    acc, _ = asm.run(cfg)
    mixed = a.copy()
    mixed[:, row] = b[:, row]
    for k, x in enumerate((a, mixed)):
        got = unblocked(acc.read_dram(out + k * n, n), cfg.tm, h, wd, cfg.tn, True)
        assert np.array_equal(got, ref_conv(x, w, bias, shift, pads=(1, 1, 1, 1))), k


def test_same_words_new_weights_and_inputs():
    """Identical instruction words with other weight bytes and inputs (the plan is reused, the
    prepared weights are not)."""
    rng = np.random.default_rng(6)
    for _ in range(3):
        case = dict(x=rng.integers(-128, 128, (9, 5, 6)), w=rng.integers(-128, 128, (7, 9, 3, 3)),
                    bias=rng.integers(-999, 999, 7), shift=rng.integers(4, 12, 7), pads=(1, 1, 1, 1),
                    dataflow="pixel", act="leaky", leaky_exp=-2)
        got, _ = run_conv(ZU3EG, **case)
        assert np.array_equal(got, ref_conv(**case))


@pytest.mark.parametrize("chans,bias,fast", [(512, 0, False),   # the accumulator reaches 2**23: it wraps
                                             (512, -1, False),  # 2**23 - 1: no wrap, but past the bound
                                             (511, 0, True)])   # within the bound: the float32 path
def test_fast_path_bound(monkeypatch, chans, bias, fast):
    """zu3eg (24-bit accumulators), x = w = -128 over ``chans`` channels: ``chans * 2**14``."""
    calls = []
    post_fast = conv._post_fast
    monkeypatch.setattr(conv, "_post_fast", lambda *a: calls.append(1) or post_fast(*a))
    x = np.full((chans, 2, 3), -128)
    w = np.full((ZU3EG.tm, chans, 1, 1), -128)
    got, _ = run_conv(ZU3EG, x, w, bias=np.full(ZU3EG.tm, bias), shift=np.full(ZU3EG.tm, 16))
    half = 1 << (ZU3EG.acc_bits - 1)
    wrapped = (chans * 2**14 + bias + half) % (2 * half) - half
    assert np.all(got == requant(wrapped, 16)) and got.flat[0] == (-128 if chans * 2**14 + bias == half else 127)
    assert bool(calls) == fast


def test_plans_are_checked_per_dram_size():
    """A LOAD_ACT's plan from a machine with a large DRAM does not admit it on a small one."""
    asm = Asm()
    load_image(asm, TINY, np.zeros((4, 4, 4), np.int64), 4096, 0)
    ins = decode_program(b"".join(asm.words))[0]
    Machine(TINY, 1 << 16).execute(ins)
    with pytest.raises(ProgramError, match="outside the DRAM of 1024 bytes"):
        Machine(TINY, 1024).execute(ins)


@pytest.mark.parametrize("dataflow,depthwise", [("channel", False), ("pixel", False), ("pixel", True)])
@pytest.mark.parametrize("empty", ["tile__rows", "tile__cols"])
def test_empty_tiles_write_nothing(dataflow, depthwise, empty):
    rng = np.random.default_rng(7)
    m = 5 if depthwise else 6
    asm, *_ = conv_asm(ZU3EG, rng.integers(-128, 128, (5, 4, 5)), rng.integers(-128, 128, (m, 1 if depthwise else 5, 3, 3)),
                       rng.integers(-9, 9, m), np.full(m, 8), dataflow=dataflow, depthwise=depthwise, pads=(1, 1, 1, 1))
    word = next(w for w in asm.words if decode_program(w)[0].opcode == Opcode.CONV)
    machine = Machine(ZU3EG, 1 << 20)
    machine.execute(decode_program(patch(word, Opcode.CONV, **{empty: 0}))[0])
    assert not machine.obuf.any()
