"""End to end: compiled programs are bit-exact against the interpreter (through the simulator),
on every zoo model and every accelerator op kind, for every target."""

import onnx
import pytest
from onnx import numpy_helper

from shiftflow.backend.compile import PASS_NAMES, compile_graph, compile_model
from shiftflow.errors import UsageError
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TARGETS
from shiftflow.sim.check import check_simulation
from shiftflow.zoo import zoo_model
from tests.backend.conftest import SMALL
from tests.backend.hazards import check_program, stored_pixels
from tests.backend.models import two_branch_concat_model, vec_model
from tests.modelgen import conv_layer_model

CONFIGS = [TARGETS["tiny"], TARGETS["zu3eg"], SMALL]
ZOO = [("mnist", None), ("resnet", None), ("mobilenet", None), ("detector", (64, 64))]


def assert_exact(program, seed=0):
    result = check_simulation(program, seed=seed)
    assert result.bit_exact, result.checks


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("name, hw", ZOO)
def test_zoo_models(name, hw, cfg):
    program = compile_model(zoo_model(name, "w8a8", "qcdq", input_hw=hw), cfg)
    assert_exact(program)
    if name == "mnist":
        check_program(program)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("kind, kw", [
    ("maxpool", {}), ("maxpool", {"k": 2, "s": 2, "p": 0}), ("maxpool", {"k": 3, "s": 2, "p": 0, "ceil": 1}),
    ("avgpool", {}), ("avgpool", {"k": 4, "s": 2}), ("add", {}), ("resize", {}), ("resize", {"f": 3}),
    ("concat", {}), ("concat", {"c2": 8, "out_frac": 4}), ("requant", {})])
def test_vector_ops(kind, kw, cfg, tmp_path):
    onnx.save(vec_model(kind, **kw), tmp_path / "m.onnx")
    graph = import_onnx(tmp_path / "m.onnx")
    program = compile_graph(graph, cfg)
    assert_exact(program, seed=len(kind))
    words = check_program(program)
    for out in graph.outputs:
        if out in program.manifest["tensors"]:
            assert (stored_pixels(program, words, out) == 1).all()
        else:
            assert program.manifest["host_reasons"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("groups", [1, 6])
def test_pow2_weights_with_exponent_7(cfg, groups, tmp_path):
    """-128 = -2**7, the int8 weight with the largest pow2 exponent, compiles to code 0xC7 and
    simulates bit-exactly (both dataflows through auto, depthwise too)."""
    model = conv_layer_model(cin=6, cout=6, groups=groups, hw=(7, 9), pow2=True, seed=3)
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    w = numpy_helper.to_array(init).copy()
    w.reshape(-1)[::5] = -128
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, tmp_path / "p.onnx")
    program = compile_model(tmp_path / "p.onnx", cfg)
    conv = next(op for op in program.graph.ops if op.kind == "conv")
    assert conv.attrs["wenc"] == "pow2" and conv.name not in program.manifest.get("host_reasons", {})
    assert 0xC7 in program.weights
    assert_exact(program, seed=groups)


@pytest.mark.parametrize("cfg", [TARGETS["tiny"], SMALL], ids=lambda c: c.name)
@pytest.mark.parametrize("cin, cout, groups", [(6, 4, 2), (5, 10, 5), (8, 8, 8)])
def test_grouped_and_depthwise_multiplier(cin, cout, groups, cfg, tmp_path):
    onnx.save(conv_layer_model(cin=cin, cout=cout, groups=groups, hw=(7, 9), seed=cin), tmp_path / "g.onnx")
    program = compile_model(tmp_path / "g.onnx", cfg)
    assert_exact(program, seed=groups)
    check_program(program)


def test_depthwise_on_a_wide_pe_array_is_pixel_parallel_and_bit_exact():
    program = compile_model(zoo_model("detector", "w8a8", "qcdq", input_hw=(64, 64)), "zu3eg")
    layers = program.manifest["layers"]
    assert any(x["dataflow"] == "pixel" and "c3.0.0.0" in x["name"] for x in layers)
    assert_exact(program)


def test_fused_maxpool_and_in_place_concat(tmp_path):
    onnx.save(vec_model("maxpool", k=2, s=2, p=0), tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", "tiny")
    assert [x["op"] for x in program.manifest["layers"]] == ["conv"]
    assert program.manifest["layers"][0]["fused"]
    onnx.save(vec_model("concat", c2=8, out_frac=3), tmp_path / "c.onnx")
    program = compile_model(tmp_path / "c.onnx", "tiny")
    assert "concat" not in [x["op"] for x in program.manifest["layers"]]
    assert_exact(program)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("size", [4, 7, 16, 32])
def test_in_place_concat_read_by_a_conv(size, cfg, tmp_path):
    """Two convs of one input stored straight into their concat's slices, the concat read by a
    1x1 conv: the concat has no layer of its own, yet its output is produced (once its last
    slice is stored) and stays live until the conv has read it."""
    onnx.save(two_branch_concat_model(size), tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", cfg)
    if cfg.tm == 4:  # 12 channels end on a block boundary of the producer's writes
        assert "concat stored in place by its producers" in program.manifest["fused"].values()
    assert_exact(program)


def test_print_after_every_pass(capsys):
    path = zoo_model("mnist", "w8a8", "qcdq")
    compile_model(path, "tiny", print_after="all")
    out = capsys.readouterr().out
    for name in PASS_NAMES:
        assert f"// plan after {name}" in out
    with pytest.raises(UsageError, match="unknown pass 'nope'"):
        compile_model(path, "tiny", print_after="nope")


def test_manifest_segments_and_layers():
    program = compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny")
    m = program.manifest
    assert m["segments"][0] == {"kind": "host", "ops": [program.graph.ops[0].name]}
    kinds = [s["kind"] for s in m["segments"]]
    assert kinds.count("accel") >= 1 and "reshape" in str(m["host_reasons"].values())
    for seg in m["segments"]:
        if seg["kind"] == "accel":
            last = program.instruction(seg["start"] + seg["count"] - 1)
            assert last[0] & 15 == 6  # FINISH
    for layer in m["layers"]:
        seg = m["segments"][layer["segment"]]
        assert seg["start"] <= layer["first"] <= layer["last"] < seg["start"] + seg["count"]
        assert layer["tiles"] > 0
