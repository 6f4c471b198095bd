"""hw/spconv_walk.py against ir/sparse.py's decoding, in amaranth.sim: random kernels, channel
counts and kept lists (length 1, random, and every dense step), random port grants and
consumer stalls, with and without the spare step register; the stream repeats the list, a
new ``start`` drops the old one; under the sequencer's schedule (kept steps a pixel group of
``max(kept, drain)`` slots, the port taken by the weight stream once a weight word), every
step on time from ``PRIMING`` on."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shiftflow.hw.spconv_walk import PRIMING, SpconvWalk, chunk_entries
from shiftflow.ir import sparse
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.cost import conv_slots

CFGS = {"tiny": TINY, "zu3eg": ZU3EG}


def _list(cfg, kh, kw, chans, depthwise, kept, base, seed):
    """A job: its kept dense steps (sorted, random), the bank holding its index at row base."""
    rng = np.random.default_rng(seed)
    dense = int(sparse.dense_steps(depthwise, chans, kh, kw))
    steps = np.sort(rng.choice(dense, min(kept, dense), replace=False))
    bank = rng.integers(0, 256, (2 * cfg.weight_bank_words, cfg.tm * cfg.tn), dtype=np.uint8)
    raw = np.frombuffer(sparse.index_bytes(sparse.pack_index(steps, kh, kw)), np.uint8)
    flat = bank.reshape(-1)
    flat[base * cfg.tm * cfg.tn:base * cfg.tm * cfg.tn + raw.size] = raw
    return {"kh": kh, "kw": kw, "steps": steps, "bank": bank, "base": base}


def _expected(job, n):
    c, y, x = sparse.unpack_index(sparse.pack_index(job["steps"], job["kh"], job["kw"]), job["kh"], job["kw"])
    k = len(job["steps"])
    return [(int(c[i % k]), int(y[i % k]), int(x[i % k]), int(i % k == k - 1)) for i in range(n)]


def _run(cfg, jobs, outs, grant, ready, depth=4, limit=None, spare=None):
    """Start each job in turn, the next one once ``outs[i]`` steps were accepted; per job the
    steps accepted, the cycle (from its start) of its first valid step, the cycles it ran and
    its bubbles (cycles from ``PRIMING`` on with ``ready`` and no step)."""
    dut = SpconvWalk(cfg, depth, spare)
    got = [[] for _ in jobs]
    first, ran, bubbles = [None] * len(jobs), [0] * len(jobs), [0] * len(jobs)
    limit = limit or 20 * sum(outs) + 100

    async def bench(ctx):
        pending, cycle = None, 0
        rng = np.random.default_rng(1)
        for n, (job, want) in enumerate(zip(jobs, outs)):
            ctx.set(dut.start, 1)
            ctx.set(dut.kept, len(job["steps"]))
            ctx.set(dut.base, job["base"])
            ctx.set(dut.kh, job["kh"])
            ctx.set(dut.kw, job["kw"])
            t0 = cycle
            while True:
                g, r = grant(cycle), ready(cycle)
                ctx.set(dut.rd_grant, g)
                ctx.set(dut.o.ready, r)
                word = job["bank"][pending] if pending is not None else rng.integers(0, 256, cfg.tm * cfg.tn, np.uint8)
                ctx.set(dut.rd_data.as_value(), int.from_bytes(word.tobytes(), "little"))
                bubbles[n] += cycle - t0 >= PRIMING and r and not ctx.get(dut.o.valid)
                if ctx.get(dut.o.valid):
                    if first[n] is None:
                        first[n] = cycle - t0
                    if r and cycle > t0:
                        p = ctx.get(dut.o.payload)
                        got[n].append((p.c, p.y, p.x, p.last))
                pending = ctx.get(dut.rd_addr) if ctx.get(dut.rd_en) and g else None
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycle += 1
                if len(got[n]) >= want or cycle - t0 > limit:
                    ran[n] = cycle - t0
                    break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, first, ran, bubbles


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(sorted(CFGS)), kh=st.integers(1, 4), kw=st.integers(1, 4), chans=st.integers(1, 12),
       depthwise=st.booleans(), length=st.sampled_from(["one", "all", "some"]), seed=st.integers(0, 2 ** 31),
       p_grant=st.sampled_from([1.0, 0.6, 0.3]), p_ready=st.sampled_from([1.0, 0.7, 0.3]),
       depth=st.sampled_from([2, 4]), cut=st.integers(0, 30), spare=st.booleans())
def test_the_stream_is_the_decoded_list(target, kh, kw, chans, depthwise, length, seed, p_grant, p_ready, depth, cut,
                                        spare):
    cfg = CFGS[target]
    rng = np.random.default_rng(seed)
    dense = int(sparse.dense_steps(depthwise, chans, kh, kw))
    kept = {"one": 1, "all": dense, "some": int(rng.integers(1, dense + 1))}[length]
    words = -(-kept * sparse.INDEX_BYTES // (cfg.tm * cfg.tn))
    base = int(rng.integers(0, 2 * cfg.weight_bank_words - words + 1))
    # The second job (started after ``cut`` steps of the first): another kernel, half the list.
    jobs = [_list(cfg, kh, kw, chans, depthwise, kept, base, seed),
            _list(cfg, kh + 1, kw, chans, depthwise, max(1, kept // 2), base, seed + 7)]
    grants = rng.random(100_000) < p_grant
    readies = rng.random(100_000) < p_ready
    n = 2 * kept + 3
    got, _, _, _ = _run(cfg, jobs, [cut, n], lambda c: bool(grants[c]), lambda c: bool(readies[c]), depth,
                        spare=spare)
    assert got[0] == _expected(jobs[0], cut)
    assert got[1] == _expected(jobs[1], n)[:len(got[1])] and len(got[1]) == n


def _sequencer(cfg, kept):
    """The consumer the sequencer is, from ``PRIMING`` on: pixel groups of ``max(kept, drain)``
    slots, ready in the first ``kept``; the port busy (weights) the cycle before each step
    that starts a weight word (``j % tn == 0``)."""
    group = max(kept, conv_slots(cfg, True, 1))

    def step(c):  # the step the consumer takes in cycle c, or None
        return None if c < PRIMING or (c - PRIMING) % group >= kept else (c - PRIMING) % group

    def ready(c):
        return step(c) is not None

    def grant(c):
        return step(c + 1) is None or step(c + 1) % cfg.tn != 0

    return grant, ready


@pytest.mark.parametrize("spare", [False, True])
@pytest.mark.parametrize("target", sorted(CFGS))
def test_no_bubble_under_the_sequencer(target, spare):
    """Lists of 1 entry, around a chunk and two, and longer, each run for three pixel groups
    against the sequencer's schedule, with and without the spare step register: every step
    on time, the first at PRIMING."""
    cfg = CFGS[target]
    per = chunk_entries(cfg)
    for kept in (1, 2, per - 1, per, per + 1, 2 * per + 1, 3 * per - 1, 37, 300):
        job = _list(cfg, 3, 3, 64, False, kept, 5, kept)
        grant, ready = _sequencer(cfg, kept)
        got, first, _, bubbles = _run(cfg, [job], [3 * kept], grant, ready, spare=spare)
        assert got[0] == _expected(job, 3 * kept) and first[0] == PRIMING and bubbles[0] == 0, kept


def test_a_long_list_at_zu3eg_streams_without_a_bubble():
    """A whole 512-channel 3x3 conv's steps at zu3eg (4,608 entries, 18 index words) under the
    sequencer's schedule: one step a cycle after priming."""
    job = _list(ZU3EG, 3, 3, 512, False, 4608, 100, 3)
    grant, ready = _sequencer(ZU3EG, 4608)
    got, first, ran, bubbles = _run(ZU3EG, [job], [4608 + 50], grant, ready)
    assert got[0] == _expected(job, 4608 + 50) and first[0] == PRIMING and bubbles[0] == 0
    assert ran[0] == PRIMING + 4608 + 50


@pytest.mark.parametrize("target", sorted(CFGS))
def test_the_walker_is_lint_clean(target, tmp_path):
    """Verilator -Wall under the project's waivers (hw.verilog.lint): the whole accelerator
    builds with the walker in it."""
    from shiftflow.hw.verilog import lint, write_verilog

    lint(write_verilog(SpconvWalk(CFGS[target]), "spconv_walk", tmp_path))
