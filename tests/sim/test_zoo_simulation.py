"""Every zoo model, both export forms, both targets: compile, simulate, and check
L2 == L1 == L0. The detector runs at its full 512×512 on zu3eg; on tiny (about 10x more
instructions per frame) at 128×128 to keep the tier's time sane."""

import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.sim.check import check_simulation
from shiftflow.zoo import FORMS, NETWORKS, VARIANTS, zoo_model


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tiny", "zu3eg"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NETWORKS)
def test_zoo_model_simulates_bit_exactly(name, variant, form, target):
    hw = (128, 128) if name == "detector" and target == "tiny" else None
    path = zoo_model(name, variant, form, input_hw=hw)
    result = check_simulation(compile_model(path, target), path, seed=0)
    assert result.bit_exact, result.checks
    assert set(result.checks) == {"L2_vs_L1", "L1_vs_L0"}
