"""DRAM planning: constants at ``const_base``, no two live tensors share bytes, dead tensors'
bytes are reused, concat slices live inside their concat."""

import pytest

from shiftflow.backend.compile import run_backend
from shiftflow.backend.plan import HostOp
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TARGETS
from shiftflow.zoo import zoo_model


def _span(t):
    return t.addr, t.addr + (t.blocks - 1) * t.blk_stride + t.shape[2] * t.row_stride


@pytest.mark.parametrize("name, hw", [("resnet", None), ("detector", (64, 64))])
def test_live_tensors_never_overlap_and_bytes_are_reused(name, hw):
    graph = import_onnx(zoo_model(name, "w8a8", "qcdq", input_hw=hw))
    plan = run_backend(graph, TARGETS["zu3eg"])
    d = plan.dram
    assert d["const_base"] == 0 and len(plan.weights) == d["const_size"]
    live = d["live"]
    tensors = list(plan.tensors.values())
    for t in tensors:
        lo, hi = _span(t)
        assert d["const_base"] + d["const_size"] <= lo and hi <= d["size"]
    for i, a in enumerate(tensors):
        for b in tensors[i + 1:]:
            (a0, a1), (b0, b1) = _span(a), _span(b)
            if a.buffer == b.buffer or a1 <= b0 or b1 <= a0:
                continue
            la, lb = live[a.buffer], live[b.buffer]
            assert la[1] < lb[0] or lb[1] < la[0], (a.name, b.name)
    total = sum(_span(t)[1] - _span(t)[0] for t in tensors if t.buffer == t.name)
    assert d["size"] - d["const_size"] < total  # something was reused


def test_concat_slices_share_the_concat_buffer():
    graph = import_onnx(zoo_model("detector", "w8a8", "qcdq", input_hw=(64, 64)))
    plan = run_backend(graph, TARGETS["tiny"])
    cat = next(op for op in graph.ops if op.kind == "concat")
    out = plan.tensors[cat.outputs[0]]
    sliced = [plan.tensors[t] for t in cat.inputs if plan.tensors[t].buffer == out.name]
    assert sliced
    for t in sliced:
        assert t.addr == out.addr + t.block_offset * out.blk_stride and t.blk_stride == out.blk_stride


def test_host_ops_read_placed_tensors():
    plan = run_backend(import_onnx(zoo_model("mnist", "w8a8", "qcdq")), TARGETS["tiny"])
    produced = {x.output for x in plan.layers}
    for item in plan.order:
        if isinstance(item, HostOp):
            for t in plan.graph.op(item.name).inputs:
                assert t not in produced or t in plan.tensors
