"""Verilator + cocotb tier: each leaf component built once (cached) and run under cocotb."""

import pytest

from shiftflow.hw.axi import AxiDma
from shiftflow.hw.ppu import PPU
from shiftflow.hw.tb.runner import CocotbFailure, build_model, run_cocotb
from shiftflow.hw.verilog import write_verilog
from tests.hw import cocotb_dma, cocotb_ppu
from tests.hw.test_dma import BB, TN

pytestmark = pytest.mark.slow


def test_ppu_under_cocotb(tmp_path):
    model = build_model(write_verilog(PPU(lanes=3), "ppu3", tmp_path))
    run_cocotb(model, cocotb_ppu.__name__, env={"PPU_LANES": "3"}, test_dir=tmp_path / "run")


def test_failures_surface_as_assertions(tmp_path):
    """A bench run with the wrong lane count must fail with the cocotb test named."""
    model = build_model(write_verilog(PPU(lanes=3), "ppu3", tmp_path))
    with pytest.raises(CocotbFailure, match="random_beats_with_stalls"):
        run_cocotb(model, cocotb_ppu.__name__, env={"PPU_LANES": "2"}, test_dir=tmp_path / "run")


@pytest.mark.parametrize("modules, testcase", [(cocotb_ppu.__name__, "no_such_test"), ("tests.hw.streams", None)])
def test_a_run_without_tests_fails(tmp_path, modules, testcase):
    """A filter that matches nothing, a module without cocotb tests: nothing ran, not a pass
    (cocotb writes empty results for the first and none for the second)."""
    model = build_model(write_verilog(PPU(lanes=3), "ppu3", tmp_path))
    with pytest.raises(CocotbFailure, match="no cocotb test ran on ppu3|of ppu3 wrote no results"):
        run_cocotb(model, modules, testcase=testcase, env={"PPU_LANES": "3"}, test_dir=tmp_path / "run")


def test_axi_dma_under_cocotb(tmp_path):
    model = build_model(write_verilog(AxiDma(beat_bytes=BB, word_bytes=TN), "axi_dma", tmp_path))
    run_cocotb(model, cocotb_dma.__name__, test_dir=tmp_path / "run")


def test_a_chaining_target_is_refused():
    # compute_chain's full rule is a what-if of the cycle model (ir/timeline.chain_window): the
    # RTL bench refuses it before building anything rather than report unequal cycles (the
    # built rule: tests/hw/test_compute_chain.py).
    import dataclasses

    from shiftflow.errors import UnsupportedError
    from shiftflow.hw.tb.rtl_accel import bench_model
    from shiftflow.ir.config import TINY
    with pytest.raises(UnsupportedError, match="compute_chain"):
        bench_model(dataclasses.replace(TINY, compute_chain=True))
