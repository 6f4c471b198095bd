"""Reduction blocking (backend/reduction.py): convolutions and fully connected layers too deep
for a weight bank, the line buffer or ``inp.chans`` are split over input-channel chunks with
partial sums on chip, on every target, bit-exact through the simulator."""

from dataclasses import replace

import onnx
import pytest

from shiftflow.backend.compile import compile_model, run_backend
from shiftflow.backend.reduction import chunk_ranges
from shiftflow.errors import ResourceError
from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TARGETS
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode
from shiftflow.sim.check import check_simulation
from tests.backend.conftest import SMALL
from tests.backend.models import _conv, gemm_model
from tests.modelgen import QDQBuilder, conv_layer_model

TINY, ZU3EG = TARGETS["tiny"], TARGETS["zu3eg"]


def _split_layer(path, cfg, dataflow="auto"):
    plan = run_backend(import_onnx(str(path)), cfg, dataflow)
    (layer,) = plan.layers
    return layer


def _psum_flags(program):
    return [(i.f["psum_in"], i.f["psum_out"]) for i in decode_program(program.instructions)
            if i.opcode == Opcode.CONV]


def test_chunk_ranges_are_whole_blocks_balanced_and_cover_the_channels():
    assert chunk_ranges(300, 4, 3) == ((0, 100), (100, 200), (200, 300))
    assert chunk_ranges(10, 4, 2) == ((0, 4), (4, 10))
    assert chunk_ranges(10, 4, 5) == ((0, 4), (4, 8), (8, 10))  # at most one chunk a block
    for cin, tn, n in [(16384, 16, 7), (5, 4, 2), (4095, 4, 9)]:
        chunks = chunk_ranges(cin, tn, n)
        assert chunks[0][0] == 0 and chunks[-1][1] == cin
        assert all(a[1] == b[0] and a[0] % tn == 0 for a, b in zip(chunks, chunks[1:]))


@pytest.mark.parametrize("cfg", [TINY, ZU3EG], ids=lambda c: c.name)
def test_fully_connected_layer_wider_than_any_bank_runs_on_the_accelerator(cfg, tmp_path):
    """8192 -> 128: more input channels than ``inp.chans`` holds, weights of one output
    block larger than a weight bank on both targets."""
    onnx.save(gemm_model(8192, 128), tmp_path / "fc.onnx")
    program = compile_model(tmp_path / "fc.onnx", cfg)
    (layer,) = program.manifest["layers"]
    assert layer["op"] == "conv" and layer["name"] not in program.manifest["host_reasons"]
    assert len(layer["chunks"]) >= 2 and sum(layer["chunks"]) == 8192
    flags = _psum_flags(program)
    assert flags[0] == (0, 1) and flags[-1] == (1, 0) and (1, 1) in flags
    result = check_simulation(program, seed=1)
    assert result.bit_exact, result.checks


@pytest.mark.parametrize("dataflow, pow2, stride, pool", [
    ("channel", False, 1, False), ("pixel", False, 1, False), ("pixel", True, 2, False), ("channel", True, 3, False),
    ("channel", False, 1, True), ("pixel", False, 1, True)])
def test_deep_conv_splits_its_reduction_bit_exactly(dataflow, pow2, stride, pool, tmp_path):
    """A 3x3 conv over 300 channels (9 KiB of weights a block on tiny, whose bank holds 8),
    on a map of several strips and bands, in both dataflows, with pow2 weights, strides and
    a fused max-pool."""
    if pool:
        model = _conv_maxpool_model(300, 6, (12, 26), stride, seed=3)
    else:
        model = conv_layer_model(cin=300, cout=6, hw=(11, 26), k=3, stride=stride, pow2=pow2, seed=3)
    onnx.save(model, tmp_path / "deep.onnx")
    layer = _split_layer(tmp_path / "deep.onnx", TINY, dataflow)
    assert len(layer.tiling.chunks) >= 2 and layer.tiling.strips * layer.tiling.bands > 1
    assert layer.dataflow == (dataflow if stride <= 2 else "channel")
    assert bool(layer.pool) == pool
    result = check_simulation(compile_model(tmp_path / "deep.onnx", TINY, dataflow=dataflow), seed=2)
    assert result.bit_exact, result.checks


def _conv_maxpool_model(cin: int, cout: int, hw, stride: int, seed: int) -> onnx.ModelProto:
    """conv3x3 + ReLU -> 2x2 max-pool (fused into the CONV)."""
    b = QDQBuilder((1, cin) + tuple(hw), seed=seed)
    x = _conv(b, b.cur, cin, cout, stride=stride, frac=2)
    return b.model(b.quant(b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2]), 2, 8, signed=False))


def test_a_tiny_partial_sum_buffer_takes_more_bands(tmp_path):
    """With two partial-sum entries a band holds two pixels: many bands, still bit-exact."""
    cfg = replace(SMALL, name="psum2", psum_entries=2, weight_bank_bytes=2048)
    onnx.save(conv_layer_model(cin=40, cout=10, hw=(5, 6), k=3, seed=4), tmp_path / "m.onnx")
    layer = _split_layer(tmp_path / "m.onnx", cfg, "channel")
    t = layer.tiling
    assert len(t.chunks) >= 2 and t.br * t.sc <= 2
    result = check_simulation(compile_model(tmp_path / "m.onnx", cfg, dataflow="channel"), seed=0)
    assert result.bit_exact, result.checks


def test_a_layer_no_split_fits_names_the_buffer_and_by_how_much(tmp_path):
    onnx.save(conv_layer_model(cin=400, cout=4, hw=(5, 5), k=3), tmp_path / "wide.onnx")
    cfg = replace(SMALL, name="cramped", line_buffer_bytes=64)
    with pytest.raises(ResourceError, match=r"^layer '.*Conv.*': two rings of one input-channel block for one band of "
                                            r"the narrowest strip \(1 columns\) need 0.0703 KiB of line buffer, which "
                                            r"holds 0.0625 KiB \(target cramped\)$"):
        compile_model(tmp_path / "wide.onnx", cfg)


def test_weights_of_one_block_larger_than_a_bank_name_both_sizes(tmp_path):
    onnx.save(conv_layer_model(cin=40, cout=4, hw=(7, 7), k=5, pad=2), tmp_path / "m.onnx")
    cfg = replace(SMALL, name="cramped", weight_bank_bytes=512)
    with pytest.raises(ResourceError, match=r"^layer '.*Conv.*': one output block's weights for one input-channel "
                                            r"block take 0.781 KiB, the weight bank holds 0.5 KiB \(target cramped\)$"):
        compile_model(tmp_path / "m.onnx", cfg)
