"""Logic depth of a mapped netlist: its longest path in LUT levels (UltraScale+ cells).

yosys has a pass for this, ``ltp -noff``, but it does not fit a mapped Xilinx netlist: its
``-noff`` knows only yosys's internal flip-flop types (``$dff``, ``$_DFF_P_``...), not
``FDRE``, so registers do not end its paths (the path runs on through them until a loop
warning), and it counts every cell on a path alike — ``CARRY4``, ``DSP48E2``, ``RAMB36E2``
included. :func:`netlist_depth` computes the same longest topological path on yosys's
``write_json`` netlist, with each cell type given a role:

============================================  ====================================================
cell                                          role on a path
============================================  ====================================================
``LUT1..LUT6``, ``INV``                       one LUT level, one logic level
``CARRY4/8``, ``MUXF7/8/9``                   passed through: no LUT level, one logic level
LUTRAM (``RAM64M8``...), ``SRL16E/SRLC32E``   read address → data out: one LUT level (the read is
                                              a LUT); the write pins (data, enable) end paths
``DSP48E2`` with no pipeline register         passed through: no LUT level, one logic level
(``AREG=BREG=MREG=PREG=0``)
any other cell: ``FD*``, ``RAMB*``, a         a path's start (its outputs) and end (its inputs)
registered ``DSP48E2``, a black-box child
============================================  ====================================================

A path starts at a register-like cell's output or a module input port and ends at a
register-like cell's input or a module output port (constants start nothing).
``lut_levels`` counts the LUTs on the path with the most LUTs — the issue's "LUT levels" —
and ``logic_levels`` the cells on the path with the most LUT + carry + mux cells (Vivado's
"logic levels"; a carry chain or combinational DSP is fast per cell but not free).
``reg_levels`` is ``lut_levels`` over the paths that start and end at this module's own
cells, not at its ports or children: where it is below ``lut_levels`` the longest path
crosses the module boundary, and in the split flow (``hw/synth.py``) its continuation in
the neighbouring module is not seen. Only the ``xilinx`` family has a cell table here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .tools import SynthError

_LUT = {**{f"LUT{i}": (1, 1) for i in range(1, 7)}, "INV": (1, 1),
        **{t: (0, 1) for t in ("CARRY4", "CARRY8", "MUXF7", "MUXF8", "MUXF9")}}
_ADDRESSED = ("RAM", "SRL")  # LUTRAM and shift registers: combinational read only
_DSP_REGS = ("AREG", "BREG", "MREG", "PREG")
_NONE = -1 << 30  # "no path": below any level


@dataclass(frozen=True)
class Depth:
    """The longest path of one module (see the module docstring): LUT levels, logic levels,
    LUT levels between the module's own cells, and the longest path's ends (net names, or a
    port's) and the cell types along it."""
    lut_levels: int
    logic_levels: int
    reg_levels: int
    start: str
    end: str
    cells: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"lut_levels": self.lut_levels, "logic_levels": self.logic_levels,
                "reg_levels": self.reg_levels, "from": self.start, "to": self.end, "cells": list(self.cells)}

    @classmethod
    def from_dict(cls, d: dict) -> Depth:
        return cls(d["lut_levels"], d["logic_levels"], d["reg_levels"], d["from"], d["to"], tuple(d["cells"]))


def _comb_pins(cell: dict) -> tuple[tuple[int, int], set[str]] | None:
    """``((lut weight, logic weight), input pins through which the cell is combinational)``,
    or ``None`` for a register-like cell."""
    kind = cell["type"]
    if kind in _LUT:
        return _LUT[kind], {p for p, d in cell["port_directions"].items() if d == "input"}
    if kind.startswith(_ADDRESSED) and not kind.startswith("RAMB"):
        return (1, 1), {p for p, d in cell["port_directions"].items()
                        if d == "input" and (p.startswith(("A", "DPRA")))}
    if kind == "DSP48E2" and not any(int(str(cell["parameters"].get(r, "0")), 2) for r in _DSP_REGS):
        return (0, 1), {p for p, d in cell["port_directions"].items() if d == "input" and p != "CLK"}
    return None


def netlist_depth(netlist: dict, top: str, children: tuple[str, ...] = ()) -> Depth:
    """The longest path of module ``top`` in a yosys ``write_json`` netlist of mapped xilinx
    cells; cells whose type is in ``children`` are its black-box child modules. A
    combinational loop is a :class:`SynthError`."""
    module = netlist["modules"][top]
    names: dict[int, str] = {}
    for name, net in sorted(module["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0), kv[0])):
        for k, bit in enumerate(net["bits"]):
            if isinstance(bit, int):
                names.setdefault(bit, (f"{name}[{k}]" if len(net["bits"]) > 1 else name).lstrip("\\"))
    port_out = [b for p in module["ports"].values() if p["direction"] != "input" for b in p["bits"]]
    comb: list[tuple[str, tuple[int, int], list, list]] = []  # (type, weights, input bits, output bits)
    driver: dict[int, int] = {}  # bit -> index into comb
    own_sinks: list = []  # input bits of this module's register-like cells
    child_sinks: list = []  # input bits of black-box children
    own_sources: set[int] = set()
    for cell in module["cells"].values():
        dirs = cell.get("port_directions")
        if dirs is None:
            raise SynthError(f"cell {cell['type']} has no port directions in the netlist")
        role = _comb_pins(cell)
        child = cell["type"] in children
        ins, outs = [], []
        for pin, bits in cell["connections"].items():
            if dirs[pin] == "output":
                outs += [b for b in bits if isinstance(b, int)]
            elif role is not None and pin in role[1]:
                ins += bits
            else:
                (child_sinks if child else own_sinks).extend(bits)
        if role is None:
            if not child:
                own_sources.update(outs)
            continue
        for b in outs:
            driver[b] = len(comb)
        comb.append((cell["type"], role[0], ins, outs))
    # Kahn's order over the combinational cells; a cell's level is its inputs' best plus its weight.
    users: list[list[int]] = [[] for _ in comb]
    pending = [0] * len(comb)
    for i, (_, _, ins, _) in enumerate(comb):
        for b in {b for b in ins if b in driver}:
            users[driver[b]].append(i)
            pending[i] += 1
    ready = deque(i for i, n in enumerate(pending) if n == 0)
    lut, logic, reg = [_NONE] * len(comb), [_NONE] * len(comb), [_NONE] * len(comb)
    back: list[int | str | None] = [None] * len(comb)  # the input bit the LUT-level path came by

    def at(b, levels: list[int], own_only: bool) -> int:
        if not isinstance(b, int):
            return _NONE  # a constant starts no path
        if b in driver:
            return levels[driver[b]]
        return 0 if not own_only or b in own_sources else _NONE

    done = 0
    while ready:
        i = ready.popleft()
        done += 1
        _, (w_lut, w_logic), ins, _ = comb[i]
        best = max(ins, key=lambda b: at(b, lut, False), default=None)
        if best is not None and at(best, lut, False) > _NONE:
            lut[i], back[i] = at(best, lut, False) + w_lut, best
        logic[i] = max((at(b, logic, False) for b in ins), default=_NONE) + w_logic
        reg[i] = max((at(b, reg, True) for b in ins), default=_NONE) + w_lut
        for j in users[i]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    if done < len(comb):
        stuck = next(i for i, n in enumerate(pending) if n)
        raise SynthError(f"combinational loop in {top} through a {comb[stuck][0]} driving "
                         f"{names.get(comb[stuck][3][0], '?') if comb[stuck][3] else '?'}")
    sinks = own_sinks + child_sinks + port_out
    end = max(sinks, key=lambda b: at(b, lut, False), default=None)
    lut_levels = max(0, at(end, lut, False)) if end is not None else 0
    cells, b = [], end
    while isinstance(b, int) and b in driver and back[driver[b]] is not None:
        cells.append(comb[driver[b]][0])
        b = back[driver[b]]
    name = (lambda x: names.get(x, str(x)) if isinstance(x, int) else "const")
    return Depth(lut_levels=lut_levels,
                 logic_levels=max([0] + [at(b, logic, False) for b in sinks]),
                 reg_levels=max([0] + [at(b, reg, True) for b in own_sinks]),
                 start=name(b) if end is not None else "", end=name(end) if end is not None else "",
                 cells=tuple(reversed(cells)))
