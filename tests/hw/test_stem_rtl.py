"""Slow tier: the space-to-depth stem (backend/stem.py) on tiny's RTL under Verilator — a
1-channel 3×3 stride-2 stem compiled as the host's rearrangement plus a 2×2 conv with pads
(1, 1, 0, 0): outputs bit for bit and every segment's cycles as the simulator's."""

import onnx
import pytest

from shiftflow.backend.compile import compile_model
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.hw.tb.rtlsim import rtlsim
from tests.backend.test_stem import stem_spec
from tests.graphgen import build_model
from tests.hw.test_top import assert_exact

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("h, w", [(16, 12), (32, 20)])
def test_space_to_depth_stem_exact_on_the_rtl(tmp_path, h, w):
    path = tmp_path / "stem.onnx"
    onnx.save(build_model(stem_spec(1, h=h, w=w)), path)
    program = compile_model(path, "tiny")
    assert any(op.name.endswith("/s2d_pack") for op in program.graph.ops)
    with RtlAccelerator(fresh=True) as acc:
        assert_exact(rtlsim(program, seed=2, accelerator=acc))
