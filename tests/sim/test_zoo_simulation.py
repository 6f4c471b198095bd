"""Every zoo model on both targets: compile, simulate, and check L2 == L1 == L0. The detector
runs at its full 512×512 on zu3eg; on tiny (about 10x more instructions per frame) at 128×128
to keep the tier's time sane.

The QONNX form of each model compiles to exactly the QCDQ form's program (instructions and
weights, byte for byte), so it is compiled and compared, not simulated again; its own
import is checked against onnxruntime in ``tests/frontend/test_zoo_check.py``."""

import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.sim.check import check_simulation
from shiftflow.zoo import NETWORKS, VARIANTS, zoo_model


def _hw(name: str, target: str):
    return (128, 128) if name == "detector" and target == "tiny" else None


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tiny", "zu3eg"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NETWORKS)
def test_zoo_model_simulates_bit_exactly(name, variant, target):
    path = zoo_model(name, variant, "qcdq", input_hw=_hw(name, target))
    program = compile_model(path, target)
    result = check_simulation(program, path, seed=0)
    assert result.bit_exact, result.checks
    assert set(result.checks) == {"L2_vs_L1", "L1_vs_L0"}
    qonnx = compile_model(zoo_model(name, variant, "qonnx", input_hw=_hw(name, target)), target)
    assert qonnx.instructions == program.instructions and qonnx.weights == program.weights
