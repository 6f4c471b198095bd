"""runtime/nms_core_decode.py: the candidates' boxes and scores equal ``decode``'s bit for bit
(hypothesis-drawn heads, wide and narrow codes, every map kind), and nothing else is filled."""

import numpy as np
from hypothesis import given, settings

from shiftflow.runtime.decode import decode
from shiftflow.runtime.nms_core import code_threshold
from shiftflow.runtime.nms_core_decode import decode_candidates
from shiftflow.runtime.nms_pool import _keys
from tests.sim.nms_host import head, outputs
from tests.sim.test_nms_core import scenes


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_candidates_decode_like_decode(sc):
    rng = np.random.default_rng(sc["seed"])
    sp = head(sc["levels"], sc["classes"])
    codes, exps = outputs(sp, sc["maps"], sc["planes"], rng)
    full = decode(sp, codes, exps)
    keys, thr = _keys(full, sc["threshold"])
    low = full.levels[0].code_exponent
    assert thr == code_threshold(sc["threshold"], low)
    cand, got_keys = decode_candidates(sp, codes, exps, low, thr)
    np.testing.assert_array_equal(got_keys, keys)
    idx, c = np.nonzero(keys > thr)
    rows = np.unique(idx)
    assert cand.boxes[rows].tobytes() == full.boxes[rows].tobytes()
    assert cand.scores[idx, c].tobytes() == full.scores[idx, c].tobytes()
    others = np.ones(len(keys), bool)
    others[rows] = False
    assert not cand.boxes[others].any()
    assert [(lv.level, lv.start) for lv in cand.levels] == [(lm.level, lm.start) for lm in full.levels]
