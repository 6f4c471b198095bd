"""Column-prior tiling: every output word is produced exactly once, rings and tiles fit the
target whatever the map size, nothing is overwritten before it is read, and the results are
bit-exact (random layers on a cramped target)."""

import onnx
import pytest
from dataclasses import replace
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.backend.geometry import Geom
from shiftflow.backend.partition import partition
from shiftflow.backend.plan import Plan
from shiftflow.backend.geometry import layer_shape
from shiftflow.backend.tiling import slots_for, split_units, tile_shape
from shiftflow.errors import ResourceError
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TARGETS
from shiftflow.sim.check import check_simulation
from tests.backend.conftest import SMALL
from tests.backend.hazards import check_program, stored_pixels
from tests.modelgen import conv_layer_model

LAYERS = st.fixed_dictionaries({
    "cin": st.integers(1, 13), "cout": st.integers(1, 19), "hw": st.tuples(st.integers(1, 23), st.integers(1, 29)),
    "k": st.integers(1, 7), "stride": st.integers(1, 2), "dilation": st.integers(1, 2),
    "pad": st.integers(0, 3), "act": st.sampled_from(["none", "relu", "leaky"]), "pow2": st.booleans(),
    "depthwise": st.booleans(), "seed": st.integers(0, 999)})


def _layer(case, tmp_path):
    case = dict(case)
    if case.pop("depthwise"):
        case.update(groups=case["cin"], cout=case["cin"])
    span = case["dilation"] * (case["k"] - 1) + 1
    case["hw"] = tuple(max(h, span - 2 * case["pad"], 1) for h in case["hw"])
    path = tmp_path / "layer.onnx"
    onnx.save(conv_layer_model(**case), path)
    return path


@pytest.mark.parametrize("cfg", [SMALL, TARGETS["tiny"]], ids=lambda c: c.name)
@pytest.mark.parametrize("dataflow", ["auto", "channel", "pixel"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=LAYERS)
def test_random_conv_layers(cfg, dataflow, case, tmp_path):
    path = _layer(case, tmp_path)
    try:
        program = compile_model(path, cfg, dataflow=dataflow)
    except ResourceError as exc:  # a legitimate refusal on the cramped target only, saying what
        assert cfg is SMALL and ("line buffer" in str(exc) or "weight bank" in str(exc)), exc
        reject()  # not an example: every one hypothesis counts is checked below
    words = check_program(program)
    out = program.graph.outputs[0]
    assert (stored_pixels(program, words, out) == 1).all()
    result = check_simulation(program, seed=case["seed"])
    assert result.bit_exact, result.checks


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), k=st.integers(1, 7), s=st.integers(1, 2),
       d=st.integers(1, 2), chans=st.integers(1, 40), pixel=st.booleans(), pool=st.booleans())
def test_on_chip_memory_does_not_grow_with_the_map(h, w, k, s, d, chans, pixel, pool, tmp_path_factory):
    """Any H x W tiles within the buffers: the ring holds a band of a strip, never the map."""
    cfg = TARGETS["tiny"]
    path = tmp_path_factory.mktemp("m") / "l.onnx"
    span = d * (k - 1) + 1
    onnx.save(conv_layer_model(cin=chans, cout=chans, hw=(span + 4, span + 4), k=k, stride=s, dilation=d, pad=k // 2),
              path)
    plan = partition(Plan(import_onnx(path), cfg))
    layer = replace(plan.layers[0], dataflow="pixel" if pixel else "channel", pool=2 if pool else 0)
    shape = layer_shape(layer, plan)
    hi, wi = h * s + span, w * s + span  # an input that gives an h x w output (before the pool)
    shape = replace(shape, geom=replace(shape.geom, in_h=hi, in_w=wi), out_h=max(2, h // 2 * 2), out_w=max(2, w // 2 * 2))
    t, est = tile_shape(layer, shape, cfg)
    blocks = max(shape.ring_blocks(g) for g in t.groups)
    assert t.slots * blocks * t.ring_cols <= cfg.line_buffer_words
    p = shape.pool or 1
    assert (t.br // p) * (t.sc // p) * max(shape.obuf_blk(g) for g in t.groups) <= cfg.output_half_words
    assert t.slots <= 2 * shape.geom.window_rows(t.br) + shape.geom.advance_rows(t.br)
    assert t.ring_cols == shape.geom.span_cols(t.sc) and t.strips * t.sc >= t.out_w and t.bands * t.br >= t.out_h
    assert est["cycles"] > 0


def test_slots_cover_the_band_and_the_next_loads():
    g = Geom(100, 100, 3, 3, 1, 1, 1, 1, 1, 1)
    from shiftflow.backend.geometry import LayerShape

    shape = LayerShape(g, 100, 100, 0, 1, 1, 1, 1, 1, 0, 0, lambda *a: 1, 1)
    assert slots_for(shape, 4, True) == 6 + 6  # span 6 rows; the next strip's first band needs 6 more
    assert slots_for(shape, 4, False) == 6
    assert split_units(10, 4) == ((0, 1, 2), (3, 4, 5), (6, 7, 8, 9))
    assert split_units(10, 4, (3,)) == ((0, 1, 2), (3, 4, 5), (6, 7, 8, 9))


def test_line_buffer_overflow_names_layer_and_buffer(tmp_path):
    path = tmp_path / "wide.onnx"
    onnx.save(conv_layer_model(cin=4, cout=4, hw=(5, 5), k=3), path)  # one channel block: nothing to split
    cfg = replace(SMALL, name="cramped", line_buffer_bytes=32)
    with pytest.raises(ResourceError, match=r"^layer '.*Conv.*': one band of the narrowest strip \(1 columns, 1 channel "
                                            r"blocks\) needs 0.0352 KiB of line buffer, the line buffer holds 0.0312 KiB "
                                            r"\(target cramped\)$"):
        compile_model(path, cfg)
