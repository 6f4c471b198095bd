# amaranth: UnusedElaboratable=no
"""SPCONV on hw/compute.py in amaranth.sim (docs/sparsity.md "The RTL"): single SPCONVs of
real compiled programs (conv layers pruned in 1×tm blocks, compiled with ``sparse=True``),
replayed from the simulator's machine state, leave the output buffer bit for bit as
``sim.machine`` does and take exactly the cycle model's cycles (``ir.cost.conv_cycles`` with
``kept``, plus ``SPCONV_START``)."""

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.ir.config import TINY
from shiftflow.ir.isa import Opcode
from tests.backend.test_spconv import prune_all
from tests.hw.test_compute import WIDE, WIDE1, check_replay  # WIDE: tiny with tm 8; WIDE1 one line-buffer copy
from tests.modelgen import conv_layer_model


def pruned_program(tmp_path, cfg, density, **layer):
    model = conv_layer_model(**layer)
    prune_all(model, density, cfg.tm)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return compile_model(path, cfg, dataflow="pixel", sparse=True)


CASES = {
    "3x3": (dict(cin=6, cout=4, hw=(7, 9)), 0.5),
    "3x3-few-steps": (dict(cin=2, cout=4, hw=(6, 7)), 0.25),  # kept < drain: padded groups
    "1x1-many-steps": (dict(cin=40, cout=4, hw=(5, 6), k=1, pad=0), 0.5),  # a list of several chunks
    "stride2": (dict(cin=5, cout=4, hw=(9, 11), stride=2), 0.5),
    "depthwise": (dict(cin=4, cout=4, groups=4, hw=(7, 9)), 0.5),
    "dilation-pow2": (dict(cin=3, cout=4, hw=(9, 9), dilation=2, pad=2, pow2=True), 0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_spconv(case, tmp_path):
    layer, density = CASES[case]
    program = pruned_program(tmp_path, TINY, density, **layer)
    check_replay(program, {Opcode.SPCONV: 3}, TINY, feature=lambda f: f.get("kept", 0) > 0)


def test_spconv_depthwise_one_copy(tmp_path):
    """A depthwise SPCONV of two channel blocks with one line-buffer copy: each listed step
    reads its blocks one after the other (hw/seq.py)."""
    program = pruned_program(tmp_path, WIDE1, 0.5, cin=8, cout=8, groups=8, hw=(6, 7))
    check_replay(program, {Opcode.SPCONV: 2}, WIDE1, feature=lambda f: f["depthwise"] and f["inp.chans"] > 4)


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cin=st.integers(1, 24), k=st.sampled_from([1, 3]), density=st.sampled_from([0.125, 0.25, 0.5, 0.75]),
       cols=st.integers(3, 11))
def test_random_spconv_layers_on_a_wide_array(cin, k, density, cols, tmp_path):
    program = pruned_program(tmp_path, WIDE, density, cin=cin, cout=8, hw=(5, cols), k=k, pad=k // 2)
    try:
        check_replay(program, {Opcode.SPCONV: 2}, WIDE)
    except AssertionError as e:
        if "nothing selected" in str(e):  # the compiler kept every conv dense (not faster)
            return
        raise
