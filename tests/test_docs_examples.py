"""The worked examples of the docs, recomputed with the code.

Each number is parsed out of the page's text, so editing either the page or the code
without the other fails here: docs/simulator.md's timeline table (``ir.timeline``),
docs/isa.md's misaligned DMA segment (``ir.cost``), docs/quantize.md's scale and pow2-level
examples (``frontend``) and docs/backend.md's 3×3 conv (compiled for ``tiny`` with a 1 KiB
line buffer, simulated)."""

import dataclasses
import re
from pathlib import Path

import onnx
import pytest

from shiftflow.backend.compile import compile_graph
from shiftflow.frontend.calibrate import fit_frac
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.quantize import pow2_levels
from shiftflow.ir import cost
from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Dataflow, Opcode, WgtTarget, encode
from shiftflow.ir.timeline import schedule
from shiftflow.sim.run import simulate
from tests.modelgen import conv_layer_model

DOCS = Path(__file__).resolve().parents[1] / "docs"


def section(page: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level."""
    text = (DOCS / page).read_text()
    level = heading.split(" ", 1)[0]
    start = text.index("\n" + heading + "\n")
    end = re.compile(rf"\n{level} ").search(text, start + 1)
    return text[start:end.start() if end else len(text)]


def numbers(text: str, pattern: str) -> tuple:
    """The groups of ``pattern`` (whitespace in it matches any run of whitespace, so the
    page may rewrap) in ``text``, as ints or floats."""
    m = re.search(r"\s+".join(pattern.split()), text)
    assert m, f"the worked example no longer says {pattern!r}: update the page or this test"
    return tuple(float(g) if "." in g else int(g) for g in m.groups())


def last_int(cell: str) -> int:
    """A timeline table cell's value: the number after its last ``=``, or its only number."""
    return int(re.findall(r"\d+", cell)[-1])


# -- docs/simulator.md, "Worked example" -----------------------------------------------------

def _wgt(nbytes, **flags):
    return encode(Opcode.LOAD_WGT, {"dram_addr": 0, "nbytes": nbytes, "target": WgtTarget.WEIGHTS}, **flags)


def test_simulator_timeline_table():
    text = section("simulator.md", "### Worked example")
    assert numbers(text, r"`dram_latency = (\d+)`, (\d+) bytes/cycle") == (TINY.dram_latency,
                                                                           TINY.dram_bytes_per_cycle)
    assert numbers(text, r"`tm = tn = (\d+)`, `ppu_lanes = (\d+)`, `pe_latency = (\d+)`") == (
        TINY.tm, TINY.ppu_lanes, TINY.pe_latency)
    assert TINY.tn == TINY.tm
    (nbytes,) = numbers(text, r"a LOAD_WGT of (\d+) bytes that pushes a token")
    conv = encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": {"kh": 1, "kw": 1, "sh": 1, "sw": 1},
                                "inp": {"chans": 1}, "tile": {"rows": 1, "cols": 4}}, pop_prev=1)
    tl = schedule(TINY, decode_program(_wgt(nbytes, push_next=1) + conv + encode(Opcode.FINISH)))

    rows = [line.split("|")[1:-1] for line in text.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 3
    for k, row in enumerate(rows):
        f, d, s, c, e, stall = (last_int(cell) for cell in row[2:])
        assert (f, d, s, c, e, stall) == (tl.fetch[k], tl.dispatch[k], tl.start[k], tl.cost[k], tl.end[k],
                                          tl.stall[k]), f"row k = {k}"
    totals = tl.unit_totals()
    assert numbers(text, r"The segment takes (\d+) cycles; load busy (\d+), compute busy (\d+) with (\d+) stall") == (
        tl.cycles, totals["load"]["busy"], totals["compute"]["busy"], totals["compute"]["stall"])


def test_simulator_queue_depth_case():
    text = section("simulator.md", "### Worked example")
    load_cycles, depth, dispatch, fetch, finish = numbers(
        text, r"six (\d+)-cycle loads with `queue_depth = (\d+)` — the sixth dispatches at `S_1 \+ 1 = (\d+)` "
              r"instead of its fetch at (\d+), and the FINISH behind it at (\d+)")
    assert depth == TINY.queue_depth
    nbytes = (load_cycles - cost.DMA_START - TINY.dram_latency) * TINY.dram_bytes_per_cycle
    tl = schedule(TINY, decode_program(b"".join([_wgt(nbytes)] * 6 + [encode(Opcode.FINISH)])))
    assert tl.cost[:6] == [load_cycles] * 6
    assert (tl.dispatch[5], tl.start[1] + 1, tl.fetch[5], tl.dispatch[6]) == (dispatch, dispatch, fetch, finish)


# -- docs/isa.md, "Cycle model" ----------------------------------------------------------------

def test_isa_misaligned_segment():
    text = section("isa.md", "## Cycle model")
    tn, bw, nbytes, offset, beats = numbers(
        text, r"on `tiny` \(`tn = (\d+)`, `bw = (\d+)`\) a segment of two pixels \((\d+) bytes\) that starts at "
              r"byte (\d+) of a beat takes (\d+) beats")
    assert (tn, bw) == (TINY.tn, TINY.dram_bytes_per_cycle) and nbytes == 2 * tn
    assert cost.dma_segment_beats(TINY, 64 + offset, nbytes) == beats
    assert cost.dma_segment_beats(TINY, 64, nbytes) == 1


# -- docs/quantize.md ---------------------------------------------------------------------------

def test_quantize_half_step_example():
    text = section("quantize.md", "## Activations")
    hi, code, frac, strict = numbers(text, r"int8: a max of ([\d.]+) codes as (\d+) at frac (\d+), where the\s+strict "
                                           r"`≤ 127` would force frac (\d+)")
    assert fit_frac(0.0, hi, -128, 127) == frac and round(hi * 2 ** frac) == code == 127
    assert max(f for f in range(12) if hi * 2 ** f <= 127) == strict


def test_quantize_pow2_levels():
    text = section("quantize.md", "## Weights")
    two, three, four = numbers(text, r"(\d+) level at 2 bits, (\d+) at 3\s+bits, (\d+) from 4 bits up")
    assert (pow2_levels(2), pow2_levels(3)) == (two, three)
    assert {pow2_levels(b) for b in range(4, 9)} == {four}


# -- docs/backend.md, "Worked example" ---------------------------------------------------------

@pytest.fixture(scope="module")
def backend_example(tmp_path_factory):
    """The page's layer (3×3, 8 -> 8, 10×12, stride 1, pad 1, ReLU) compiled for tiny with the
    page's line buffer, its timeline and its simulation."""
    text = section("backend.md", "## Worked example")
    (kib,) = numbers(text, r"on `tiny` with a (\d+) KiB\s+line buffer")
    path = tmp_path_factory.mktemp("example") / "conv.onnx"
    onnx.save(conv_layer_model(cin=8, cout=8, hw=(10, 12), k=3, stride=1, pad=1, act="relu"), path)
    cfg = dataclasses.replace(TINY, line_buffer_bytes=kib * 1024)
    program = compile_graph(import_onnx(path), cfg)
    instrs = decode_program(program.instructions)
    return text, cfg, program, instrs, schedule(cfg, instrs), simulate(program)


def _of(instrs, tl, opcode):
    return [(ins, tl.cost[i], tl.end[i]) for i, ins in enumerate(instrs) if ins.opcode == opcode]


def test_backend_example_program(backend_example):
    text, cfg, program, instrs, tl, _ = backend_example
    (layer,) = program.manifest["layers"]
    assert numbers(text, r"`note: channel ~(\d+) cycles, pixel ~(\d+) cycles`") == \
        tuple(int(v) for v in re.findall(r"~(\d+)", layer["note"]))
    assert layer["dataflow"] == "channel"
    assert numbers(text, r"Program \((\d+) instructions\)") == (program.n_instructions,)
    (weights, w_cycles), (params, p_cycles) = [(ins.f["nbytes"], c) for ins, c, _ in _of(instrs, tl, Opcode.LOAD_WGT)]
    words, nbytes, entries = numbers(text, r"both output blocks \((\d+) words, (\d+) bytes\) and their (\d+) parameter")
    assert (nbytes, words * cfg.tm * cfg.tn, entries * 8) == (weights, weights, params)
    assert numbers(text, r"`LOAD_WGT` weights \((\d+) cycles\) and parameters \((\d+)\)") == (w_cycles, p_cycles)
    loads = _of(instrs, tl, Opcode.LOAD_ACT)
    assert numbers(text, r"rows 0–3 \(band 0; (\d+) cycles\) and rows 4–6 \(band 1, issued early; (\d+) cycles\)") \
        == (loads[0][1], loads[1][1])
    (slots,) = numbers(text, r"`br = 3` needs `5 \+ max\(3, 5\) = (\d+)` slots")
    (ring_cols,) = numbers(text, r"`ring_cols = (\d+)`")
    assert {(ins.f["ring.slots"], ins.f["ring.cols"]) for ins, _, _ in loads} == {(slots, ring_cols)}


def test_backend_example_cycles(backend_example):
    text, cfg, _, instrs, tl, result = backend_example
    convs, stores = _of(instrs, tl, Opcode.CONV), _of(instrs, tl, Opcode.STORE)
    bands = [int(v) for v in re.search(r"Balanced: \d+ bands of ([\d, ]+) rows", text)[1].split(", ")]
    assert [ins.f["tile.rows"] for ins, _, _ in convs] == [rows for rows in bands for _ in range(2)]
    (conv_cycles,) = numbers(text, r"two `CONV`s \((\d+) cycles each")
    assert conv_cycles == convs[0][1] == cost.conv_cycles(cfg, False, False, 8, 3, 3, bands[0], 12)
    assert numbers(text, r"its `STORE` \((\d+) cycles\)") == (stores[0][1],)
    first_conv, last_store, finish, pe_cycles, pct, util = numbers(
        text, r"the first CONV ends at (\d+), the last STORE at (\d+), FINISH at (\d+) cycles: (\d+) PE-array "
              r"cycles \((\d+) %\), utilization (\d+\.\d+)")
    busy = sum(c for _, c, _ in convs)
    assert (first_conv, last_store, finish, pe_cycles) == (convs[0][2], stores[-1][2], tl.cycles, busy)
    assert pct == round(100 * busy / tl.cycles)
    assert result.total_cycles == tl.cycles and util == round(result.mac_utilization, 2)
