"""SPCONV in the compiler and the simulator (docs/sparsity.md): whole random graphs, pruned
in 1×tm blocks by ``shiftflow prune``'s magnitude rule, compile to SPCONVs wherever the cycle model says
they are faster, and simulate bit-exactly at every level (L2 = L1 = L0, max |diff| 0); each
SPCONV costs the CONV rule with its kept steps, and less than the dense CONV of its fields."""

from collections import Counter

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from shiftflow.backend.compile import compile_model
from shiftflow.errors import ResourceError, UnsupportedError
from shiftflow.frontend.prune import _weight_sources, block_mask
from shiftflow.ir import cost
from shiftflow.ir.config import load_target
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode
from shiftflow.ir.timeline import instruction_cycles
from shiftflow.sim.check import check_simulation

from tests.graphgen import build_model
from tests.strategies import graphs

TARGETS = ("tiny", "zu3eg")
STATS = {t: Counter() for t in TARGETS}


def prune_all(model: onnx.ModelProto, density: float, tm: int) -> None:
    """``shiftflow prune``'s block rule on every conv, the stems too (drawn graphs are small:
    most convs are stems, which ``prune`` keeps dense for accuracy, not for correctness)."""
    for _, init, _, _ in _weight_sources(model):
        codes = numpy_helper.to_array(init)
        if codes.ndim == 4:
            mask = block_mask(codes.astype(float), tm, density)
            init.CopyFrom(numpy_helper.from_array(np.where(mask, codes, np.zeros_like(codes)), init.name))


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=graphs(), density=st.sampled_from([0.1, 0.25, 0.5]))
def test_pruned_graphs_bit_exact_with_spconv(target, spec, density, tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "m.onnx"
    model = build_model(spec)
    try:
        prune_all(model, density, load_target(target).tm)
        onnx.save(model, path)
        program = compile_model(path, target, sparse=True)
    except (UnsupportedError, ResourceError):
        STATS[target]["refused"] += 1
        return
    try:
        result = check_simulation(program, path, seed=spec.seed)
    except UnsupportedError:  # onnxruntime failing on the model itself (L0), as with some ceil-mode pools
        STATS[target]["refused"] += 1
        return
    for level, check in result.checks.items():
        if level.startswith("L"):
            assert check["bit_exact"] and check["max_abs_diff"] == 0, (level, check)
    cfg = program.config
    n = 0
    for ins in decode_program(program.instructions, config=cfg):
        if ins.opcode != Opcode.SPCONV:
            continue
        f = ins.f
        args = (cfg, True, bool(f["depthwise"]), f["inp.chans"], f["win.kh"], f["win.kw"], f["tile.rows"],
                f["tile.cols"], f["win.sw"], 1 << f["wide"])
        assert instruction_cycles(cfg, ins) == cost.conv_cycles(*args, kept=f["kept"]) < cost.conv_cycles(*args)
        n += 1
    listed = sum(x.get("sparse", {}).get("spconv_units", 0) > 0 for x in program.manifest["layers"])
    assert (n > 0) == (listed > 0)
    STATS[target]["examples"] += 1
    STATS[target]["with spconv"] += n > 0


@pytest.mark.parametrize("target", TARGETS)
def test_spconv_was_exercised(target):
    """Runs after the property test (file order): some pruned graphs did compile to SPCONV."""
    stats = STATS[target]
    if not stats["examples"]:
        pytest.skip("the property test did not run")
    print(target, dict(stats))
    assert stats["with spconv"] >= 2, stats
