"""amaranth.sim helpers shared by the hw unit tests: stream drivers/monitors with random
stalls, and a one-call simulation runner with a cycle deadline."""

from __future__ import annotations

import random

from amaranth.sim import Simulator


async def put(ctx, port, payloads, *, stall: float = 0.0, rng: random.Random | None = None):
    """Send ``payloads`` on stream ``port`` (valid/ready), idling before a beat with
    probability ``stall``."""
    rng = rng or random.Random(0)
    for p in payloads:
        while rng.random() < stall:
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload, p)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def get(ctx, port, n: int, *, stall: float = 0.0, rng: random.Random | None = None) -> list:
    """Receive ``n`` beats from stream ``port``, dropping ready with probability ``stall``.
    Returns the payloads as ``ctx.get`` gives them."""
    rng = rng or random.Random(1)
    out = []
    while len(out) < n:
        ready = rng.random() >= stall
        ctx.set(port.ready, ready)
        _clk, _rst, payload, valid = await ctx.tick().sample(port.payload, port.valid)
        if ready and valid:
            out.append(payload)
    ctx.set(port.ready, 0)
    return out


def simulate(dut, *testbenches, background=(), deadline: int = 100_000) -> None:
    """Run ``testbenches`` (async functions of ``ctx``) against ``dut`` until they all return;
    ``background`` testbenches (models that never return) run alongside. Fails when that takes
    more than about ``deadline`` clock cycles."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    # A clock cycle is a few simulator steps (two edges plus testbench wake-ups).
    for _ in range(8 * deadline):
        if not sim.advance():
            return
    raise AssertionError(f"simulation did not finish within {deadline} cycles")
