"""`shiftflow check` is bit-exact on every zoo model, both export forms, at full size."""

import pytest

from shiftflow.frontend.check import check_model
from shiftflow.frontend.importer import import_onnx
from shiftflow.zoo import FORMS, NETWORKS, VARIANTS, zoo_model


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NETWORKS)
def test_zoo_model_is_bit_exact(name, variant, form):
    path = zoo_model(name, variant, form)  # default sizes: the detector is 512x512
    graph = import_onnx(path)
    assert not [op for op in graph.ops if op.kind == "cpu"], "zoo models run entirely as integer ops"
    for seed in (0, 1):
        report = check_model(path, seed=seed, graph=graph)
        assert report.bit_exact, report.outputs
        assert report.max_abs_diff == 0.0
