"""Partition, fusion and dataflow choice: what runs where, and the reasons recorded."""

import numpy as np
import onnx
import pytest
from dataclasses import replace

from shiftflow.backend.compile import compile_graph, run_backend
from shiftflow.backend.partition import partition
from shiftflow.backend.plan import Plan
from shiftflow.errors import UnsupportedError
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TARGETS
from shiftflow.ir.graph import Graph, Op
from shiftflow.ir.types import TensorType
from tests.backend.models import vec_model
from tests.modelgen import conv_layer_model

TINY = TARGETS["tiny"]


def _conv_graph(bias_frac=11, out=TensorType((1, 4, 5, 5), "int", 8, True, 3), strides=(1, 1)):
    x = TensorType((1, 4, 5, 5), "int", 8, True, 4)
    w = TensorType((4, 4, 3, 3), "int", 8, True, 7)
    b = TensorType((4,), "int", 16, True, bias_frac)
    attrs = {"strides": strides, "pads": (1, 1, 1, 1), "dilations": (1, 1), "groups": 1, "act": "none", "wenc": "int"}
    ho = (5 + 2 - 3) // strides[0] + 1
    out = out.with_shape((1, 4, ho, ho))
    q = Op("q", "quantize", ("in",), ("x",), {})
    conv = Op("conv", "conv", ("x", "w", "b"), ("y",), attrs)
    types = {"in": TensorType.float32(x.shape), "x": x, "w": w, "b": b, "y": out}
    consts = {"w": np.ones(w.shape, np.int8), "b": np.arange(4, dtype=np.int16)}
    return Graph("g", ("in",), ("y",), (q, conv), types, consts)


def test_bias_finer_than_the_accumulator_is_refused():
    with pytest.raises(UnsupportedError, match=r"layer 'conv': bias of channel 0 has frac 12, finer than the "
                                               r"accumulator's 11"):
        compile_graph(_conv_graph(bias_frac=12), TINY)


@pytest.mark.parametrize("bits, planes", [(12, 2), (16, 2), (20, 4)])
def test_wide_conv_outputs_run_on_the_accelerator(bits, planes):
    """A conv whose output has no quantizer (the exact sum, frac of the accumulator) is
    stored as 2 or 4 byte planes (docs/isa.md "Wide outputs")."""
    g = _conv_graph(out=TensorType((1, 4, 5, 5), "int", bits, True, 11))
    plan = partition(Plan(g, TINY))
    assert plan.host_reasons == {"q": "graph input quantization runs on the host"}
    assert plan.tensors["y"].planes == planes
    program = compile_graph(g, TINY)
    assert program.manifest["tensors"]["y"]["planes"] == planes
    assert [s["kind"] for s in program.manifest["segments"]] == ["host", "accel"]


def test_wide_outputs_that_are_not_the_exact_sum_go_to_the_host():
    g = _conv_graph(out=TensorType((1, 4, 5, 5), "int", 20, True, 10))
    assert partition(Plan(g, TINY)).host_reasons["conv"] == ("a wide output that is not the exact sum (requant "
                                                            "shift is not 0)")
    g = _conv_graph(out=TensorType((1, 4, 5, 5), "int", 40, True, 11))
    assert partition(Plan(g, TINY)).host_reasons["conv"] == "output is 40-bit (a conv stores at most 32 bits)"


def test_maps_wider_than_the_isa_go_to_the_host(tmp_path):
    """Found by fuzzing: a 5x2147483647 input made the tiling estimate loop over its strips for
    hours; rows or columns beyond the ISA's image fields (InGeom) keep a layer on the host."""
    onnx.save(conv_layer_model(hw=(5, 70000)), tmp_path / "wide.onnx")
    program = compile_graph(import_onnx(tmp_path / "wide.onnx"), TINY)
    assert program.manifest["host_reasons"]["Conv18"] == "input 0 is 5x70000, more rows or columns than the ISA's 32767"
    # 32768 columns fit the 16-bit width but not the signed tap coordinates (x_first): the
    # encoder's assertion fired
    onnx.save(conv_layer_model(hw=(5, 32768)), tmp_path / "wide.onnx")
    program = compile_graph(import_onnx(tmp_path / "wide.onnx"), TINY)
    assert program.manifest["host_reasons"]["Conv18"] == "input 0 is 5x32768, more rows or columns than the ISA's 32767"


def test_stride_three_cannot_be_pixel_parallel():
    plan = run_backend(_conv_graph(strides=(3, 3)), TINY, dataflow="pixel")
    (layer,) = plan.layers
    assert layer.dataflow == "channel" and "stride <= 2" in layer.note


def test_depthwise_pixel_parallel_on_square_and_wide_pe_arrays(tmp_path):
    onnx.save(conv_layer_model(cin=8, cout=8, groups=8, hw=(6, 6)), tmp_path / "dw.onnx")
    graph = import_onnx(tmp_path / "dw.onnx")
    assert run_backend(graph, TINY, dataflow="pixel").layers[0].dataflow == "pixel"
    wide = replace(TINY, name="wide", tm=8)  # PE row i reads ring block i // tn, lane i % tn
    assert run_backend(graph, wide, dataflow="pixel").layers[0].dataflow == "pixel"


@pytest.mark.parametrize("kw, fused", [({"k": 2, "s": 2, "p": 0}, True), ({"k": 3, "s": 2, "p": 1}, False),
                                       ({"k": 2, "s": 2, "p": 0, "out_frac": 2}, False)])
def test_maxpool_fusion(kw, fused, tmp_path):
    onnx.save(vec_model("maxpool", **kw), tmp_path / "m.onnx")
    plan = run_backend(import_onnx(tmp_path / "m.onnx"), TINY)
    kinds = [x.kind for x in plan.layers]
    assert kinds == (["conv"] if fused else ["conv", "maxpool"])
    assert (plan.layers[0].pool == 2) == fused


def test_execution_order_keeps_accelerator_ops_together(tmp_path):
    onnx.save(vec_model("add"), tmp_path / "a.onnx")
    program = compile_graph(import_onnx(tmp_path / "a.onnx"), TINY)
    assert [s["kind"] for s in program.manifest["segments"]] == ["host", "accel"]
