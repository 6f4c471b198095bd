"""SPCONV on the functional model (docs/isa.md "SPCONV", docs/sparsity.md).

An SPCONV is a pixel-parallel CONV whose steps are a list; its result is the dense CONV's
whose left-out steps have zero weights. So its plan is CONV's (``sim/conv.py``) but for the
weights: it reads the ``kept`` steps' words and the index list after them
(``ir/sparse.py``), checks the list, and scatters the kept steps into the dense step order,
from which CONV's ``Weights`` prepares the product as for any CONV.
"""

from __future__ import annotations

import numpy as np

from ..ir import sparse
from ..ir.cost import ceil_div
from ..ir.decode import Instr
from .cache import WEIGHTS
from .conv import ConvPlan, Weights
from .gather import fail


class SparseConvPlan(ConvPlan):
    """CONV's plan with SPCONV's weight words: ``kept`` steps, then the index list."""

    def weight_words(self, ins: Instr, cfg) -> int:
        f = ins.f
        if not self.pixel:
            fail(ins, "SPCONV is pixel-parallel only (dataflow is channel)")
        dense = int(sparse.dense_steps(f["depthwise"], f["inp.chans"], self.kh, self.kw))
        if not 1 <= f["kept"] <= dense:
            fail(ins, f"kept is {f['kept']}, the conv has {dense} dense steps")
        self.dense = dense
        return sparse.weight_words(cfg, f["kept"])

    def weights(self, m, ins: Instr) -> Weights:
        """The prepared weights of the kept steps scattered to their dense steps (cached by
        the banks' bytes, the index list's included)."""
        cfg, f = m.cfg, ins.f
        bank, lo, hi = self.wbytes
        end = hi + sparse.index_words(cfg, f["kept"]) * cfg.tm * cfg.tn
        if end > cfg.weight_bank_bytes:
            fail(ins, f"reads weight and index words {f['w_addr']}..{end // (cfg.tm * cfg.tn) - 1} of a bank "
                      f"of {cfg.weight_bank_words}")
        wraw = m.wbuf[bank, lo:end].tobytes()
        praw = m.pbuf[bank, self.pbytes[1]:self.pbytes[2]].tobytes()
        last = self._weights
        if last is not None and last.wraw == wraw and last.praw == praw:
            return last
        key = (m.target_key, self.key, "sparse", self.dense, f["kept"], wraw, praw)
        w = WEIGHTS.get(key)
        if w is None:
            entries = sparse.read_index(cfg, m.wbuf[bank], f["w_addr"], f["kept"])
            problem = sparse.index_problem(entries, f["depthwise"], f["inp.chans"], self.kh, self.kw)
            if problem:
                fail(ins, problem)
            index = sparse.index_steps(entries, self.kh, self.kw)
            w = WEIGHTS.put(key, Weights(cfg, ins, self, _scatter(cfg, m.wbuf[bank, lo:hi], index, self.dense),
                                         praw))
            w.wraw = wraw  # the bytes it was prepared from, for the check above
        self._weights = w
        return w


def _scatter(cfg, words: np.ndarray, index: np.ndarray, dense: int) -> bytes:
    """Kept steps' weight words (``(words, tm, tn)`` bytes) as the dense CONV's words: kept
    step ``j`` at dense step ``index[j]``, zero bytes (an int 0 and a pow2 code 0) elsewhere."""
    tm, tn = cfg.tm, cfg.tn
    steps = words.reshape(-1, tm, tn).transpose(0, 2, 1).reshape(-1, tm)[:len(index)]
    out = np.zeros((ceil_div(dense, tn) * tn, tm), np.uint8)
    out[index] = steps
    return out.reshape(-1, tn, tm).transpose(0, 2, 1).tobytes()
