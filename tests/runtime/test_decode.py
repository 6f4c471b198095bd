"""Box decoding: ssd (nchw and rows) and grid math on hand-set values, the box index order,
integer codes, and refused inputs."""

import numpy as np
import pytest

from shiftflow.runtime.decode import DetectionInputError, decode, sigmoid
from shiftflow.runtime.heads import HeadSpecError, parse_heads
from tests.runtime.test_heads import blazeface_doc


def ssd_spec(size="exp"):
    return parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "x", "height": 64, "width": 64},
                        "classes": ["a", "b", "c"], "decoder": "ssd",
                        "box": {"variances": [0.1, 0.1, 0.2, 0.2], "size": size},
                        "levels": [{"stride": 16, "grid": [4, 4], "anchors": [[24, 24], [34, 17]],
                                    "scores": {"output": "cls"}, "boxes": {"output": "box"}},
                                   {"stride": 32, "grid": [2, 2], "anchors": [[48, 48]],
                                    "scores": {"output": "cls2"}, "boxes": {"output": "box2"}}]})


def ssd_outputs(rng):
    return {"cls": rng.normal(size=(1, 6, 4, 4)).astype(np.float32),
            "box": rng.normal(size=(1, 8, 4, 4)).astype(np.float32),
            "cls2": rng.normal(size=(1, 3, 2, 2)).astype(np.float32),
            "box2": rng.normal(size=(1, 4, 2, 2)).astype(np.float32)}


def test_ssd_nchw_centre_size_and_the_box_index():
    out = ssd_outputs(np.random.default_rng(0))
    d = decode(ssd_spec(), out)
    assert d.boxes.shape == (36, 4) and d.scores.shape == (36, 3)
    # level 0, cell (y=2, x=1), anchor 1 (34 x 17): index (2*4 + 1)*2 + 1
    i = (2 * 4 + 1) * 2 + 1
    dx, dy, dw, dh = out["box"][0, 4:8, 2, 1]
    cx, cy = 24 + dx * 0.1 * 34, 40 + dy * 0.1 * 17
    w, h = 34 * np.exp(dw * 0.2), 17 * np.exp(dh * 0.2)
    np.testing.assert_allclose(d.boxes[i], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-6)
    np.testing.assert_array_equal(d.logits[i], out["cls"][0, 3:6, 2, 1])
    np.testing.assert_allclose(d.scores[i], 1 / (1 + np.exp(-out["cls"][0, 3:6, 2, 1])), rtol=1e-6)
    # level 1 starts after 4*4*2 boxes; cell (1, 0)
    j = 32 + 1 * 2 + 0
    assert d.levels[1].start == 32
    np.testing.assert_array_equal(d.logits[j], out["cls2"][0, :, 1, 0])
    assert d.levels[0].logits.shape == (4, 4, 2, 3) and d.levels[0].boxes.shape == (4, 4, 2, 4)


def test_blazeface_rows_linear_sizes_are_pixels():
    spec = parse_heads(blazeface_doc())
    rng = np.random.default_rng(1)
    reg = rng.normal(0, 10, size=(1, 896, 16)).astype(np.float32)
    scores = rng.normal(size=(1, 896, 1)).astype(np.float32)
    d = decode(spec, {"regressors": reg, "scores": scores})
    # row 512 + (3*8 + 5)*6 + 4: level 1, cell (y=3, x=5), anchor 4; centre (5.5*16, 3.5*16)
    r = 512 + (3 * 8 + 5) * 6 + 4
    dx, dy, dw, dh = reg[0, r, :4]
    np.testing.assert_allclose(d.boxes[r], [88 + dx - dw / 2, 56 + dy - dh / 2, 88 + dx + dw / 2,
                                            56 + dy + dh / 2], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(d.logits[:, 0], scores[0, :, 0])


def test_grid_math():
    spec = parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "x", "height": 32, "width": 32},
                        "classes": ["a", "b"], "decoder": "grid",
                        "levels": [{"stride": 16, "grid": [2, 2], "anchors": [[20, 10]],
                                    "head": {"output": "h"}}]})
    t = np.random.default_rng(2).normal(size=(1, 7, 2, 2)).astype(np.float32)
    t[0, 4, 1, 0], t[0, 5, 1, 0] = 30.0, 25.0  # a confident cell keeps a finite logit
    d = decode(spec, {"h": t})
    tx, ty, tw, th, obj, c0, c1 = t[0, :, 1, 0].astype(np.float64)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    cx, cy, w, h = (sig(tx) + 0) * 16, (sig(ty) + 1) * 16, 20 * np.exp(tw), 10 * np.exp(th)
    np.testing.assert_allclose(d.boxes[2], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    np.testing.assert_allclose(d.scores[2], [sig(obj) * sig(c0), sig(obj) * sig(c1)], rtol=1e-5)
    assert np.isfinite(d.logits).all()
    y, x = 0, 1
    np.testing.assert_allclose(d.scores[x], sig(t[0, 4, y, x]) * sig(t[0, 5:, y, x]), rtol=1e-5)


def test_integer_codes_decode_like_their_dequantized_floats():
    rng = np.random.default_rng(3)
    codes = {k: rng.integers(-100, 100, size=v.shape).astype(np.int32) for k, v in ssd_outputs(rng).items()}
    exps = {"cls": -4, "box": -5, "cls2": -3, "box2": -5}
    d_int = decode(ssd_spec(), codes, exps)
    d_flt = decode(ssd_spec(), {k: (v * 2.0 ** exps[k]).astype(np.float32) for k, v in codes.items()})
    np.testing.assert_array_equal(d_int.boxes, d_flt.boxes)
    np.testing.assert_array_equal(d_int.logits, d_flt.logits)
    assert d_int.integer and not d_flt.integer
    # score codes shifted to the smallest exponent (-4): level 1's codes doubled, exactly
    assert {lm.code_exponent for lm in d_int.levels} == {-4}
    flat = np.concatenate([lm.codes.reshape(-1, 3) for lm in d_int.levels])
    np.testing.assert_array_equal(flat * 2.0 ** -4, d_int.logits)


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(4)
    out = ssd_outputs(rng)
    out["cls"][0, 0, 0, 0] = np.nan
    with pytest.raises(DetectionInputError, match="output 'cls' .* must be finite, found 1 NaN"):
        decode(ssd_spec(), out)
    ints = {k: v.astype(np.int32) for k, v in ssd_outputs(rng).items()}
    with pytest.raises(DetectionInputError, match="must be float"):
        decode(ssd_spec(), ints)
    with pytest.raises(DetectionInputError, match="no po2 exponent given for integer output 'box2'"):
        decode(ssd_spec(), ints, {"cls": 0, "box": 0, "cls2": 0})
    out = ssd_outputs(rng)
    out["box"] = out["box"][:, :6]
    with pytest.raises(HeadSpecError, match=r"levels\[0\].boxes"):
        decode(ssd_spec(), out)


def test_sigmoid_is_stable():
    x = np.array([-1000, -20, 0, 20, 1000], np.float32)
    s = sigmoid(x)
    assert np.isfinite(s).all() and s[2] == 0.5 and s[0] == 0 and s[-1] == 1
