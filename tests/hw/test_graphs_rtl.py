"""Slow tier: a fixed sample of whole random graphs (``tests.strategies.graphs``, the ones
``tests/backend/test_graphs.py`` checks on the simulator) on the RTL of ``tiny`` under
Verilator: outputs bit for bit and every segment's cycles exactly as the simulator's."""

import onnx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, reject, seed, settings

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ResourceError, UnsupportedError
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.hw.tb.rtlsim import rtlsim
from tests.graphgen import build_model
from tests.hw.test_top import assert_exact
from tests.strategies import graphs

pytestmark = pytest.mark.slow

SAMPLE = 8


@pytest.fixture(scope="module")
def fresh_rtl():
    """A new simulator process per program (on-chip state at power-on, as the simulator's)."""
    with RtlAccelerator(fresh=True) as acc:
        yield acc


@seed(9)
@settings(max_examples=SAMPLE, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=graphs())
def test_random_graphs_exact_on_the_rtl(fresh_rtl, tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("graph") / "m.onnx"
    try:
        onnx.save(build_model(spec), path)
        program = compile_model(path, "tiny")
    except (UnsupportedError, ResourceError):
        reject()
    assume(program.n_instructions > 0)  # the sample is of graphs the accelerator runs part of
    assert_exact(rtlsim(program, seed=spec.seed, accelerator=fresh_rtl))
