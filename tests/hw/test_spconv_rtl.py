"""SPCONV on ``tiny``'s whole accelerator under Verilator (docs/sparsity.md "The RTL"):
programs compiled with ``sparse=True`` from models pruned in 1×tm blocks run bit for bit
as the simulator runs them, every segment in exactly the cycle model's cycles; with random
AXI stalls, still bit-exact."""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, reject, seed, settings
from onnx import numpy_helper

from shiftflow.backend.compile import compile_model
from shiftflow.errors import ResourceError, UnsupportedError
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.hw.tb.rtlsim import rtlsim
from shiftflow.ir.config import TINY
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode
from tests.backend.test_spconv import prune_all
from tests.graphgen import build_model
from tests.hw.test_top import assert_counted, assert_exact
from tests.modelgen import conv_layer_model
from tests.strategies import graphs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_rtl():
    with RtlAccelerator(fresh=True) as acc:
        yield acc


def spconvs(program) -> int:
    return sum(i.opcode == Opcode.SPCONV for i in decode_program(program.instructions, config=program.config))


def sparse_program(tmp_path, density, **layer):
    model = conv_layer_model(**layer)
    prune_all(model, density, TINY.tm)
    onnx.save(model, tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", "tiny", dataflow="pixel", sparse=True)
    assert spconvs(program), "the compiler kept every conv dense"
    return program


LAYERS = [
    (dict(cin=6, cout=5, hw=(9, 11)), 0.5),
    (dict(cin=40, cout=4, hw=(6, 7), k=1, pad=0), 0.25),  # an index list of several chunks
    (dict(cin=5, cout=8, hw=(9, 11), stride=2), 0.5),
    (dict(cin=8, cout=8, groups=8, hw=(9, 9)), 0.5),  # depthwise
]


@pytest.mark.parametrize("k", range(len(LAYERS)))
def test_spconv_layers_exact(fresh_rtl, tmp_path, k):
    layer, density = LAYERS[k]
    assert_exact(rtlsim(sparse_program(tmp_path, density, **layer), seed=k, accelerator=fresh_rtl))


def test_spconv_with_stalls_stays_bit_exact(fresh_rtl, tmp_path):
    report = rtlsim(sparse_program(tmp_path, 0.5, cin=6, cout=5, hw=(9, 11)), seed=6, stalls=True,
                    accelerator=fresh_rtl)
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0
    assert report["rtl_cycles"] > report["sim_cycles"]
    assert_counted(report)


SEEN = []


@seed(12)
@settings(max_examples=4, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=graphs())
def test_pruned_random_graphs_exact_on_the_rtl(fresh_rtl, tmp_path_factory, spec):
    """Whole random graphs, every conv pruned at 0.25, with SPCONV where it is faster."""
    path = tmp_path_factory.mktemp("graph") / "m.onnx"
    model = build_model(spec)
    try:
        prune_all(model, 0.25, TINY.tm)
        onnx.save(model, path)
        program = compile_model(path, "tiny", sparse=True)
    except (UnsupportedError, ResourceError):
        reject()
    if not spconvs(program):
        reject()
    SEEN.append(spconvs(program))
    assert_exact(rtlsim(program, seed=spec.seed, accelerator=fresh_rtl))


def test_random_graphs_ran_spconvs():
    """After the property test (file order): its sample did run SPCONVs."""
    if not SEEN:
        pytest.skip("the property test did not run")
    assert len(SEEN) >= 2 and sum(SEEN) > 0, SEEN
