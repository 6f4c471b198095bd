"""The slow endpoints of a nextpnr-ecp5 run, from its JSON timing report (``report.json``, kept by
:func:`hw.fmax.fmax_ecp5_report` with ``log_dir``; ``--report --detailed-timing-report``).

nextpnr's log names one critical path; a design that misses its target has hundreds of endpoints
past it, spread over the units. The report's ``detailed_net_timings`` give, for every net that
reaches a clocked sink (flip-flop, LUT-RAM write port, block RAM), the arrival time at that sink
(ns after the clock edge, without the sink's setup time). Here they are grouped by register: a
flip-flop's cell name without yosys's ``_TRELLIS_FF_Q...`` suffix (the bits of one Amaranth signal
are one row), a LUT RAM's or block RAM's without its slice/bank index. The report lists no
LUT-to-LUT arrivals, so a row names its endpoint, not where its path starts (only the worst
path's start is known: nextpnr's log, :func:`hw.fmax.parse_critical_path`). Nets that nextpnr
times from no clock edge (``"event": "<async>"``: the harness's ``rst`` pin, whose fan-out
reaches every flip-flop's LSR) are left out: their arrivals are not register-to-register
paths and do not bound the clock's Fmax.

    python -m shiftflow.hw.fmax_paths /tmp/hwcache/fmax/report.json [--top 20] [--over 13.33]
"""

import argparse
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

#: the cell-name suffixes yosys / nextpnr add to a signal's name: a flip-flop bit, a LUT-RAM slice,
#: a block RAM's output register or bank
_CELL_SUFFIX = re.compile(r"((_D[IO][AB]\d+)?_TRELLIS_FF.*|\.\d+\.\d+\$DPRAM_COMB\d*|\.\d+\.\d+)$")


@dataclass(frozen=True)
class Endpoint:
    """One register's slowest input: the arrival (ns, without setup), the register's name, its
    port (``DI`` data, ``CE`` enable, ``LSR`` synchronous reset, ``M`` data bypassing the LUT,
    ``WRE`` / ``WAD`` / ``WD`` a LUT RAM's write, ``AD*`` / ``DI*`` a block RAM's), and how many
    of its bits (cells) have an input past the threshold."""
    ns: float
    register: str
    port: str
    cells_over: int


def register_name(cell: str) -> str:
    """``dut.controller.store_queue.level_TRELLIS_FF_Q_1`` -> ``dut.controller.store_queue.level``."""
    return _CELL_SUFFIX.sub("", cell)


def slow_endpoints(report: dict, over_ns: float = 0.0) -> list[Endpoint]:
    """Every register with an input arriving later than ``over_ns``, slowest first."""
    worst = defaultdict(lambda: (0.0, "", ""))            # cell -> (arrival, port)
    for n in report["detailed_net_timings"]:
        if n.get("event") == "<async>":  # launched by no clock (an input pin)
            continue
        for e in n["endpoints"]:
            worst[e["cell"]] = max(worst[e["cell"]], (e["delay"][1], e["port"]))
    rows, cells = {}, defaultdict(int)
    for cell, (ns, port) in worst.items():
        if ns <= over_ns:
            continue
        reg = register_name(cell)
        cells[reg] += 1
        if reg not in rows or ns > rows[reg][0]:
            rows[reg] = (ns, port)
    return sorted((Endpoint(round(ns, 2), reg, port, cells[reg]) for reg, (ns, port) in rows.items()),
                  key=lambda e: -e.ns)


def unit_of(register: str, depth: int = 3) -> str:
    """The unit a register belongs to: up to ``depth`` levels of its hierarchy, without its own name
    (``dut.compute.seq``, ``dut.controller.store_queue``, ``dut.load.dma``)."""
    parts = register.split(".")
    return ".".join(parts[:max(1, min(depth, len(parts) - 1))])


def format_endpoints(rows: list[Endpoint], over_ns: float, top: int = 20, per_unit: int = 3) -> str:
    """The ``top`` slowest registers, then each unit's count and its ``per_unit`` slowest."""
    n_cells = sum(e.cells_over for e in rows)
    lines = [f"{len(rows)} registers ({n_cells} cells) with an input later than {over_ns:.2f} ns "
             f"(arrival, without setup); the {min(top, len(rows))} slowest:"]
    lines += [f"  {e.ns:6.2f} ns  {e.register} ({e.port}, {e.cells_over} cells)" for e in rows[:top]]
    units = defaultdict(list)
    for e in rows:
        units[unit_of(e.register)].append(e)
    lines.append("per unit (registers late; the slowest):")
    for unit, es in sorted(units.items(), key=lambda kv: -kv[1][0].ns):
        lines.append(f"  {unit}: {len(es)} registers, {sum(e.cells_over for e in es)} cells")
        lines += [f"    {e.ns:6.2f} ns  {e.register} ({e.port}, {e.cells_over} cells)" for e in es[:per_unit]]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--per-unit", type=int, default=3)
    p.add_argument("--over", type=float, default=1000 / 75, help="ns (default: 75 MHz's period)")
    args = p.parse_args(argv)
    report = json.loads(args.report.read_text())
    print("fmax:", {clk: round(v["achieved"], 2) for clk, v in report.get("fmax", {}).items()})
    print(format_endpoints(slow_endpoints(report, args.over), args.over, args.top, args.per_unit))


if __name__ == "__main__":
    main()
