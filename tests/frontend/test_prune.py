"""`shiftflow prune`: 1×tm block magnitude pruning (frontend/prune.py) — the masks' structure
and counts on random weights, float and QDQ models pruned into QDQ models that check
bit-exactly with zeros exactly in whole blocks, and one-line errors."""

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from shiftflow.cli import main
from shiftflow.errors import UsageError
from shiftflow.frontend.check import check_model
from shiftflow.frontend.prune import block_mask, pattern_mask, prune_model
from tests.cli_errors import one_line_exit_2
from tests.modelgen import QDQBuilder


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20), c=st.integers(1, 5), k=st.sampled_from([1, 3]), tm=st.sampled_from([1, 4, 8]),
       density=st.floats(0.01, 1.0), seed=st.integers(0, 99), ties=st.booleans())
def test_block_mask_keeps_whole_blocks_of_largest_norm(m, c, k, tm, density, seed, ties):
    rng = np.random.default_rng(seed)
    w = rng.integers(-2, 3, (m, c, k, k)).astype(float) if ties else rng.normal(size=(m, c, k, k))
    mask = block_mask(w, tm, density)
    blocks = -(-m // tm)
    padded = np.zeros((blocks * tm, c, k, k), bool)
    padded[:m] = mask
    per_block = padded.reshape(blocks, tm, c, k, k)
    for b in range(blocks):  # every row of a block (that exists) agrees
        rows = mask[b * tm:min(m, (b + 1) * tm)]
        assert (rows == rows[:1]).all()
    kept = per_block[:, 0]
    assert kept.sum() == max(1, round(density * kept.size))
    norms = np.zeros((blocks * tm, c, k, k))
    norms[:m] = np.abs(w)
    norms = norms.reshape(blocks, tm, c, k, k).sum(1)
    if kept.sum() < kept.size:
        assert norms[kept].min() >= norms[~kept].max()


def test_other_patterns_count_weights_and_filters():
    w = np.random.default_rng(0).normal(size=(10, 3, 3, 3))
    assert pattern_mask(w, "unstructured", 4, 0.25).sum() == round(0.25 * w.size)
    f = pattern_mask(w, "filter", 4, 0.5).reshape(10, -1)
    assert (f.all(1) | ~f.any(1)).all() and f.all(1).sum() == 5
    with pytest.raises(UsageError, match="--pattern must be one of"):
        pattern_mask(w, "rows", 4, 0.5)


def qdq_chain(path):
    """conv 3→8 (stem) → conv 8→12 → depthwise 12 → conv 12→8, int8 weights (one per-channel)."""
    b = QDQBuilder((1, 3, 8, 8), in_frac=5, seed=1)
    r = b.rng
    y = b.quant(b.op("Conv", [b.cur, b.weight(r.integers(-60, 60, (8, 3, 3, 3)), 7)], pads=[1] * 4), 4)
    y = b.quant(b.op("Relu", [b.op("Conv", [y, b.weight(r.integers(-60, 60, (12, 8, 3, 3)), [7] * 6 + [8] * 6)],
                                   pads=[1] * 4)]), 4, signed=False)
    y = b.quant(b.op("Conv", [y, b.weight(r.integers(-60, 60, (12, 1, 3, 3)), 6)], pads=[1] * 4, group=12), 4)
    y = b.quant(b.op("Conv", [y, b.weight(r.integers(-60, 60, (8, 12, 1, 1)), 6)]), 4)
    onnx.save(b.model(y), path)
    return path


def _conv_codes(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return [inits[producer[n.input[1]].input[0]] for n in model.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize("density", [0.75, 0.5, 0.25])
def test_a_qdq_model_is_pruned_on_its_grid_in_blocks_and_checks(tmp_path, density):
    path = qdq_chain(tmp_path / "m.onnx")
    before = onnx.load(path)
    model, layers = prune_model(path, density, "tiny")
    assert [x.kept_blocks for x in layers] == [max(1, round(density * x.blocks)) for x in layers]
    old, new = _conv_codes(before), _conv_codes(model)
    np.testing.assert_array_equal(old[0], new[0])  # the stem stays dense
    for o, n in zip(old[1:], new[1:]):
        assert ((n == o) | (n == 0)).all()  # kept codes unchanged: the grid is the model's own
        padded = np.zeros((-(-n.shape[0] // 4) * 4,) + n.shape[1:], n.dtype)
        padded[:n.shape[0]] = n
        nonzero_blocks = (padded.reshape(-1, 4, *n.shape[1:]) != 0).any(1)
        assert nonzero_blocks.sum() <= max(1, round(density * nonzero_blocks.size))
    out = tmp_path / "p.onnx"
    onnx.save(model, out)
    assert check_model(out).bit_exact


def test_a_float_model_is_pruned_then_quantized(tmp_path, capsys):
    from shiftflow.zoo.digits import CALIB_PATH, MODEL_PATH

    out = tmp_path / "d.onnx"
    assert main(["prune", str(MODEL_PATH), "-o", str(out), "--density", "0.5", "--calib", str(CALIB_PATH),
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    (layer,) = rep["layers"]  # the second conv; the first is the stem
    assert layer["kept_blocks"] == layer["blocks"] // 2 and rep["block_density"] == 0.5
    codes = _conv_codes(onnx.load(out))[1]
    assert (codes.reshape(-1, 4, *codes.shape[1:]) != 0).any(1).sum() <= layer["kept_blocks"]
    assert check_model(out).bit_exact


def test_bad_arguments_are_one_line(tmp_path, capsys):
    path = str(qdq_chain(tmp_path / "m.onnx"))
    out = str(tmp_path / "o.onnx")
    one_line_exit_2(["prune", path, "-o", out, "--density", "0"], capsys, "--density must be in (0, 1]")
    one_line_exit_2(["prune", path, "-o", out, "--density", "0.5", "--calib-random", "4"], capsys,
                     "already quantized")
    one_line_exit_2(["prune", path, "-o", out, "--density", "0.5", "--dense", "nope"], capsys, "--dense names no conv")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    one_line_exit_2(["prune", str(tmp_path / "bad.onnx"), "-o", out, "--density", "0.5"], capsys, "cannot read")
