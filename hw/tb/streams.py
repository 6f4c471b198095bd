"""cocotb helpers for Amaranth ``stream`` ports of a Verilator model.

Amaranth names a stream port ``<name>__valid``, ``<name>__ready`` and ``<name>__payload``
(the payload flattened to one vector; pack it with the layout's ``const(...).as_bits()``).

Timing convention of every bench here: inputs are driven just after the falling clock edge;
after ``ReadOnly`` in that half cycle the handshake is decided (``valid & ready`` means the
beat transfers on the next rising edge). So each helper costs nothing extra per beat and the
benches can count cycles exactly.
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, ReadOnly


def value(sig) -> int:
    """A signal's value as an unsigned int (any width)."""
    return int(sig.value)


async def wait_high(clk, sig) -> int:
    """Called just after a falling edge: returns (in ``ReadOnly``) in the first cycle in which
    ``sig`` is 1, and how many cycles later than the calling one that is."""
    waited = 0
    await ReadOnly()
    while not value(sig):
        await FallingEdge(clk)
        await ReadOnly()
        waited += 1
    return waited


async def send(dut, name: str, payloads, *, clk=None, stall: float = 0.0, rng: random.Random | None = None):
    """Send integer ``payloads`` on stream ``name``; idle before each beat with probability
    ``stall``."""
    clk = clk or dut.clk
    rng = rng or random.Random(0)
    valid, ready, payload = (getattr(dut, f"{name}__{s}") for s in ("valid", "ready", "payload"))
    for p in payloads:
        await FallingEdge(clk)
        while rng.random() < stall:
            valid.value = 0
            await FallingEdge(clk)
        valid.value = 1
        payload.value = p
        await wait_high(clk, ready)
    await FallingEdge(clk)
    valid.value = 0


async def recv(dut, name: str, n: int, *, clk=None, stall: float = 0.0, rng: random.Random | None = None) -> list[int]:
    """Receive ``n`` beats from stream ``name``, withholding ready with probability ``stall``."""
    clk = clk or dut.clk
    rng = rng or random.Random(1)
    valid, ready, payload = (getattr(dut, f"{name}__{s}") for s in ("valid", "ready", "payload"))
    out = []
    while len(out) < n:
        await FallingEdge(clk)
        ready.value = int(rng.random() >= stall)
        await ReadOnly()
        if value(valid) and value(ready):
            out.append(value(payload))
    await FallingEdge(clk)
    ready.value = 0
    return out


async def issue(dut, name: str, payload: int, *, done: str = "done", clk=None) -> int:
    """Send one beat on stream ``name`` and wait for the one-cycle ``done`` output: returns the
    cycle in which ``done`` is seen, counted from the cycle the beat was accepted (0)."""
    clk = clk or dut.clk
    valid, ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
    await FallingEdge(clk)
    valid.value = 1
    getattr(dut, f"{name}__payload").value = payload
    await wait_high(clk, ready)
    await FallingEdge(clk)
    valid.value = 0
    return 1 + await wait_high(clk, getattr(dut, done))
