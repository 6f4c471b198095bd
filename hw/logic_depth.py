"""Logic depth of a mapped netlist: its longest path in LUT levels (UltraScale+ cells).

yosys has a pass for this, ``ltp -noff``, but it does not fit a mapped Xilinx netlist: its
``-noff`` knows only yosys's internal flip-flop types (``$dff``, ``$_DFF_P_``...), not
``FDRE``, so registers do not end its paths (the path runs on through them until a loop
warning), and it counts every cell on a path alike — ``CARRY4``, ``DSP48E2``, ``RAMB36E2``
included. Here :func:`module_graph` cuts yosys's ``write_json`` netlist into a timing graph
and :func:`graph_depth` computes the same longest topological path on it, each cell type
given a role:

============================================  ====================================================
cell                                          role on a path
============================================  ====================================================
``LUT1..LUT6``                                one LUT level, one logic level
``CARRY4/8``, ``MUXF7/8/9``, ``INV``          passed through: no LUT level, one logic level (an
                                              inverter yosys leaves folds into a LUT beside it)
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
crosses the module boundary, and a module alone does not see its continuation in the
neighbouring one. :func:`flatten` joins the split flow's per-module graphs (``hw/synth.py``)
into the design's, where such paths are whole.

Simplifications: a ``DSP48E2`` with any of ``AREG/BREG/MREG/PREG`` set counts as registered
(a DSP registered on its inputs only would still be combinational from its C port to P),
and a block RAM is a register whether or not its output register is used (its clock-to-out
is slower without, but it adds no LUT level). Only the ``xilinx`` family has a cell table.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .tools import SynthError

_LUT = {**{f"LUT{i}": (1, 1) for i in range(1, 7)},
        **{t: (0, 1) for t in ("CARRY4", "CARRY8", "MUXF7", "MUXF8", "MUXF9", "INV")}}
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


@dataclass
class Graph:
    """One module's timing graph, cut from its netlist: ``comb`` cells as ``(type, LUT weight,
    logic weight, input bits, output bits)``, the register-like cells' output (``sources``) and
    input (``sinks``) bits, its black-box ``children`` as ``(instance, type, {port: bits},
    {port: direction})``,
    its ``ports`` as ``{name: (direction, bits)}`` and a net name per bit. Bits are ints;
    constants are strings (``"0"``, ``"1"``, ``"x"``), as in yosys's JSON."""
    comb: list
    sources: list
    sinks: list
    children: list
    ports: dict
    names: dict

    def as_dict(self) -> dict:
        return {"comb": self.comb, "sources": self.sources, "sinks": self.sinks, "children": self.children,
                "ports": self.ports, "names": list(self.names.items())}

    @classmethod
    def from_dict(cls, d: dict) -> Graph:
        return cls(d["comb"], d["sources"], d["sinks"], d["children"], d["ports"], dict(d["names"]))


def module_graph(netlist: dict, top: str, children: tuple[str, ...] = ()) -> Graph:
    """The :class:`Graph` of module ``top`` in a yosys ``write_json`` netlist of mapped xilinx
    cells; cells whose type is in ``children`` are its black-box child modules."""
    module = netlist["modules"][top]
    names: dict[int, str] = {}
    for name, net in sorted(module["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0), kv[0])):
        for k, bit in enumerate(net["bits"]):
            if isinstance(bit, int):
                names.setdefault(bit, (f"{name}[{k}]" if len(net["bits"]) > 1 else name).lstrip("\\"))
    g = Graph([], [], [], [], {n: (p["direction"], p["bits"]) for n, p in module["ports"].items()}, names)
    for inst, cell in module["cells"].items():
        dirs = cell.get("port_directions")
        if dirs is None:
            raise SynthError(f"cell {cell['type']} has no port directions in the netlist")
        if cell["type"] in children:
            g.children.append((inst.lstrip("\\"), cell["type"], cell["connections"], dirs))
            continue
        role = _comb_pins(cell)
        ins, outs = [], []
        for pin, bits in cell["connections"].items():
            if dirs[pin] == "output":
                outs += [b for b in bits if isinstance(b, int)]
            elif role is not None and pin in role[1]:
                ins += bits
            else:
                g.sinks.extend(bits)
        if role is None:
            g.sources.extend(outs)
        else:
            g.comb.append((cell["type"], *role[0], ins, outs))
    return g


def netlist_depth(netlist: dict, top: str, children: tuple[str, ...] = ()) -> Depth:
    """The longest path of module ``top`` (:func:`module_graph`; its ports and children end
    paths). A combinational loop is a :class:`SynthError`."""
    return graph_depth(module_graph(netlist, top, children), top)


def graph_depth(g: Graph, top: str) -> Depth:
    """The longest path of ``g`` (module docstring); its ports and children end paths."""
    kid_ins = [b for _, _, conns, dirs in g.children for p, bits in conns.items() if dirs[p] != "output" for b in bits]
    outs = [b for d, bits in g.ports.values() if d != "input" for b in bits]
    return _longest(g.comb, set(g.sources), g.sinks, kid_ins + outs, g.names, top)


def flatten(graphs: dict[str, Graph], top: str) -> Graph:
    """The whole design's :class:`Graph`: each child instance's graph (``graphs`` by module
    type) inlined into its parent, its port bits joined to the parent's nets on them. This is
    the split flow's netlist as one: exact for its implementation, with nothing optimized
    across module boundaries. Net names gain the instance path."""
    root: list[int] = []

    def find(x):
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    flat = Graph([], [], [], [], {}, {})

    def inline(key: str, path: str, binding: dict | None) -> None:
        g = graphs[key]
        if binding is not None and not set(binding) <= set(g.ports):
            raise SynthError(f"instance {path.rstrip('.')} of {key} connects ports its module does not "
                             f"have: {sorted(set(binding) - set(g.ports))}")
        local: dict[int, int | str] = {}
        for port, (_, bits) in g.ports.items():
            for b, outer in zip(bits, binding.get(port, ()) if binding is not None else ()):
                if not isinstance(b, int):
                    continue
                if b in local and isinstance(local[b], int) and isinstance(outer, int):
                    root[find(local[b])] = find(outer)  # a port wired straight to another
                else:
                    local.setdefault(b, outer)  # a constant outside is a constant inside

        def gid(b):
            if not isinstance(b, int):
                return b
            if b not in local:
                local[b] = len(root)
                root.append(len(root))
            if isinstance(local[b], int) and b in g.names:
                flat.names.setdefault(local[b], path + g.names[b])
            return local[b]

        if binding is None:
            flat.ports = {n: (d, [gid(b) for b in bits]) for n, (d, bits) in g.ports.items()}
        flat.comb.extend((t, wl, wg, [gid(b) for b in ins], [gid(b) for b in outs]) for t, wl, wg, ins, outs in g.comb)
        flat.sources.extend(gid(b) for b in g.sources)
        flat.sinks.extend(gid(b) for b in g.sinks)
        for inst, kind, conns, _ in g.children:
            inline(kind, f"{path}{inst}.", {p: [gid(b) for b in bits] for p, bits in conns.items()})

    inline(top, "", None)

    def res(bits):
        return [find(b) if isinstance(b, int) else b for b in bits]

    names: dict[int, str] = {}
    for b, n in flat.names.items():
        names.setdefault(find(b), n)
    return Graph([(t, wl, wg, res(i), res(o)) for t, wl, wg, i, o in flat.comb], res(flat.sources),
                 res(flat.sinks), [], {n: (d, res(bits)) for n, (d, bits) in flat.ports.items()}, names)


def _longest(comb: list, own_sources: set, own_sinks: list, boundary_sinks: list, names: dict, top: str) -> Depth:
    """Longest paths over ``comb`` cells in Kahn's order: a cell's level is its inputs' best
    plus its weight; a bit no cell drives is a start (level 0) unless it is a constant."""
    driver = {b: i for i, c in enumerate(comb) for b in c[4]}
    users: list[list[int]] = [[] for _ in comb]
    pending = [0] * len(comb)
    for i, c in enumerate(comb):
        for b in {b for b in c[3] if b in driver}:
            users[driver[b]].append(i)
            pending[i] += 1
    ready = deque(i for i, n in enumerate(pending) if n == 0)
    lut, logic, reg = [_NONE] * len(comb), [_NONE] * len(comb), [_NONE] * len(comb)
    back: list = [None] * len(comb)  # the input bit the LUT-level path came by

    def at(b, levels: list[int], own_only: bool = False) -> int:
        if not isinstance(b, int):
            return _NONE  # a constant starts no path
        if b in driver:
            return levels[driver[b]]
        return 0 if not own_only or b in own_sources else _NONE

    done = 0
    while ready:
        i = ready.popleft()
        done += 1
        _, w_lut, w_logic, ins, _ = comb[i]
        best = max(ins, key=lambda b: at(b, lut), default=None)
        if best is not None and at(best, lut) > _NONE:
            lut[i], back[i] = at(best, lut) + w_lut, best
        logic[i] = max((at(b, logic) for b in ins), default=_NONE) + w_logic
        reg[i] = max((at(b, reg, True) for b in ins), default=_NONE) + w_lut
        for j in users[i]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    if done < len(comb):
        stuck = comb[next(i for i, n in enumerate(pending) if n)]
        raise SynthError(f"combinational loop in {top} through a {stuck[0]} driving "
                         f"{names.get(stuck[4][0], '?') if stuck[4] else '?'}")
    sinks = own_sinks + boundary_sinks
    end = max(sinks, key=lambda b: at(b, lut), default=None)
    cells, b = [], end
    while isinstance(b, int) and b in driver and back[driver[b]] is not None:
        cells.append(comb[driver[b]][0])
        b = back[driver[b]]

    def name(x) -> str:  # no path through logic has no ends worth naming
        return "" if x is None or not cells else names.get(x, str(x)) if isinstance(x, int) else "const"

    return Depth(lut_levels=max(0, at(end, lut)) if end is not None else 0,
                 logic_levels=max([0] + [at(b, logic) for b in sinks]),
                 reg_levels=max([0] + [at(b, reg, True) for b in own_sinks]),
                 start=name(b), end=name(end), cells=tuple(reversed(cells)))
