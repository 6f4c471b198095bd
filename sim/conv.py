"""CONV on the functional model (docs/isa.md "CONV"; readings in docs/simulator.md).

A CONV is split into what depends only on its fields — the ``ConvPlan``: every field check,
the output views, the gather regions — and what depends on the weight and parameter banks —
``Weights``, prepared once per distinct content. Both are cached (``sim/cache.py``), so a
frame after the first does per CONV only: gather the input (or reuse the gathered copy when
the line buffer has not changed under it), one matrix product, and the post-processing.

Exactness. All arithmetic is on integers held in floating point, which is exact while every
partial sum stays below 2**24 (float32) or 2**53 (float64), in any summation order. With
``B_c = max|x| * sum_k |w[k, c]|`` the bound of output channel ``c``:

- the *fast* path (no partial sums, one byte plane, right shifts only, and
  ``B_c + |bias_c| < 2**min(24, acc_bits-1)`` — then the accumulator never wraps) folds the
  requantization shift into the weights (``w * 2**-s``: a power-of-two scaling, so every
  partial sum is still exact) and rounds half-to-even with ``rint``, in float32;
- otherwise the *exact* path computes the integer accumulators (float32 when
  ``max B_c < 2**24``, else float64) and post-processes in int64 exactly as the contract
  reads (``Machine.post``).
"""

from __future__ import annotations

import numpy as np

from ..ir.cost import ceil_div
from ..ir.decode import Instr
from ..ir.program import ProgramError
from ..ir.isa import PARAM_BYTES, PARAM_DTYPE, POW2_EXP, POW2_NONZERO, POW2_RESERVED, POW2_SIGN, Act, Dataflow
from .cache import REGIONS, WEIGHTS
from .gather import Region, fail

# Shift amounts are saturated to this range before rounding. Datapath values are below
# 2**acc_bits (<= 2**32) and results are clamped to 16 bits, so no result changes; it keeps
# int64 arithmetic from overflowing on hostile shift fields.
SHIFT_RANGE = (-32, 48)
_CHUNK_ELEMS = 1 << 21  # input values gathered per step of a tile (bounds memory)
_SMALL_DEPTHWISE = 256  # output pixels up to which a depthwise tile is one einsum
# pow2 weight code -> value (docs/isa.md "LOAD_WGT"); codes with reserved bits are rejected first.
_POW2 = np.array([0.0 if not c & POW2_NONZERO else (-1.0 if c & POW2_SIGN else 1.0) * 2.0 ** (c & POW2_EXP)
                  for c in range(256)])


def window(ins: Instr, which: str) -> list[int]:
    """Window fields named by two-letter codes (``"khsw"`` → kh, sw); each must be >= 1."""
    names = [which[i:i + 2] for i in range(0, len(which), 2)]
    values = [ins.f["win." + n] for n in names]
    zero = [n for n, v in zip(names, values) if v == 0]
    if zero:
        fail(ins, f"window field(s) {', '.join('win.' + n for n in zero)} must be at least 1")
    return values


def chunks(ins: Instr, rows: int, per_row: int) -> list[tuple[int, int]]:
    """Row ranges of a tile, each gathering about ``_CHUNK_ELEMS`` input values at most
    (a multiple of the fused-pool window), so memory stays bounded for any tile."""
    p = ins.f["post.pool"] or 1
    step = max(p, _CHUNK_ELEMS // max(1, per_row) // p * p)
    return [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]


class ConvPlan:
    """Everything a CONV instruction's fields determine, checked in the order of the
    contract's reading (window, modes, output views, weight words, parameters, then each
    row chunk's taps). Built against a machine because the pow2 code check, which reads the
    weight bank, comes between the weight-word and the parameter checks."""

    def __init__(self, m, ins: Instr):
        f, cfg = ins.f, m.cfg
        tm, tn = cfg.tm, cfg.tn
        self.kh, self.kw, sh, sw, dh, dw = window(ins, "khkwshswdhdw")
        self.rows, self.cols, chans = f["tile.rows"], f["tile.cols"], f["inp.chans"]
        self.pixel, self.depthwise = f["dataflow"] == Dataflow.PIXEL.value, bool(f["depthwise"])
        if self.depthwise and not self.pixel:
            fail(ins, "the channel-parallel dataflow has no depthwise mode")
        if self.pixel and sw > 2:
            fail(ins, f"pixel-parallel reads column stride 1 or 2, win.sw is {sw}")
        if f["pow2"] and not self.pixel:
            fail(ins, "pow2 weights need the pixel-parallel dataflow (channel-parallel takes int weights)")
        encoding = "pow2" if f["pow2"] else "int"
        if encoding not in cfg.weight_encodings:
            fail(ins, f"target {cfg.name!r} has no {encoding} weights")
        self.psum_in, self.psum_out = bool(f["psum_in"]), bool(f["psum_out"])  # entries checked at load
        self.planes = 1 << f["wide"]  # byte planes of a wide output (docs/isa.md "Wide outputs")
        self.outs = [m.tile_target(ins, self.rows, self.cols, tm // tn, k * f["plane_words"])  # checked even
                     for k in range(self.planes)]                                             # when psum_out
        self.taps = self.kh * self.kw
        self.lanes = min(chans, tm) if self.depthwise else chans
        nblk = ceil_div(self.lanes, tn)
        nwords = self.weight_words(ins, cfg)
        start, bank_words = f["w_addr"], cfg.weight_bank_words
        if start + nwords > bank_words:
            fail(ins, f"reads weight words {start}..{start + nwords - 1} of a bank of {bank_words}")
        word = tm * tn
        self.wbytes = (f["wbank"], start * word, (start + nwords) * word)
        self.pow2 = bool(f["pow2"])
        try:  # the contract checks the pow2 weight codes before the parameter and tap fields
            pstart = f["p_addr"]
            if pstart + tm > cfg.param_entries:
                fail(ins, f"reads parameter entries {pstart}..{pstart + tm - 1} of a bank of {cfg.param_entries}")
            if pstart % tm:
                fail(ins, f"p_addr {pstart} is not a multiple of tm ({tm}): a CONV reads one parameter row")
            self.pbytes = (f["wbank"], pstart * PARAM_BYTES, (pstart + tm) * PARAM_BYTES)
            self.chunks = [(r0, r1, _region(m, ins, r0, r1, nblk))
                           for r0, r1 in chunks(ins, self.rows, self.cols * self.taps * nblk * tn)]
        except ProgramError:
            if self.pow2:
                pow2_values(ins, m.wbuf[self.wbytes[0], self.wbytes[1]:self.wbytes[2]], tm, tn)
            raise
        self.signed = bool(f["inp.signed_"])
        self.act, self.leaky_exp, self.lo, self.hi = (f["post." + n] for n in ("act", "leaky_exp", "lo", "hi"))
        # ReLU before rounding equals a clamp at 0 after it (rint is monotone and keeps 0).
        self.fast_lo = max(self.lo, 0) if self.act == Act.RELU.value else self.lo
        self.fast_ok = not (self.psum_in or self.psum_out) and self.planes == 1
        self.key = (self.depthwise, self.pixel, self.pow2, self.taps, chans, self.lanes, nblk, self.signed,
                    self.act, self.leaky_exp, self.fast_ok)
        self._weights = None

    def weight_words(self, ins: Instr, cfg) -> int:
        """Weight words the CONV reads from ``w_addr`` on (docs/isa.md "LOAD_WGT"); SPCONV's
        plan (``sim/sparse.py``) reads its kept steps' words instead."""
        if self.depthwise:
            return ceil_div(self.taps, cfg.tn)
        if self.pixel:
            return ceil_div(ins.f["inp.chans"] * self.taps, cfg.tn)
        return ceil_div(self.lanes, cfg.tn) * self.taps

    def weights(self, m, ins: Instr) -> "Weights":
        """The prepared weights of the banks' current bytes (cached by content)."""
        bank, lo, hi = self.wbytes
        wraw = m.wbuf[bank, lo:hi].tobytes()
        last = self._weights
        praw = m.pbuf[bank, self.pbytes[1]:self.pbytes[2]].tobytes()
        if last is not None and last.wraw == wraw and last.praw == praw:
            return last
        key = (m.target_key, self.key, wraw, praw)
        w = WEIGHTS.get(key)
        if w is None:
            w = WEIGHTS.put(key, Weights(m.cfg, ins, self, wraw, praw))
        self._weights = w
        return w


def _region(m, ins: Instr, r0: int, r1: int, nblk: int) -> Region:
    f = ins.f
    key = (m.target_key, tuple(v for k, v in f.items() if k.startswith(("inp.", "win.", "tile.r", "tile.c"))),
           r0, r1, nblk)
    region = REGIONS.get(key)
    return region if region is not None else REGIONS.put(key, Region(m.cfg, ins, r0, r1, nblk))


def pow2_values(ins: Instr, codes: np.ndarray, tm: int, tn: int) -> np.ndarray:
    """Weight words of pow2 codes (bytes) as values ``(words, tm, tn)``; ``ProgramError`` for
    a code with reserved bits set."""
    codes = codes.reshape(-1, tm, tn)
    # nonzero (bit 6) with a reserved bit (5..3) set is exactly: masked to those bits, above bit 6
    bad = (codes & (POW2_NONZERO | POW2_RESERVED)) > POW2_NONZERO
    if bad.any():
        word, row, lane = np.unravel_index(np.argmax(bad), bad.shape)
        fail(ins, f"pow2 weight code 0x{codes[word, row, lane]:02x} in weight word {ins.f['w_addr'] + word} "
                  f"(row {row}, lane {lane}) sets reserved bits 5..3")
    return _POW2[codes]


class Weights:
    """A CONV's weights and parameters, prepared for one of the two paths: ``fast`` (scaled
    float32 weights, scaled bias, leaky factor) when it applies, else ``w`` in ``dtype``
    (``(taps*lanes, tm)``; depthwise ``(taps, lanes)``: lane ``i`` feeds PE row ``i``) with
    the integer ``bias`` and ``shift``."""

    def __init__(self, cfg, ins: Instr, plan: ConvPlan, wraw: bytes, praw: bytes):
        tm, tn = cfg.tm, cfg.tn
        self.wraw, self.praw = wraw, praw
        codes = np.frombuffer(wraw, np.uint8)
        words = pow2_values(ins, codes, tm, tn) if plan.pow2 else codes.view(np.int8).reshape(-1, tm, tn) * 1.0
        taps, lanes = plan.taps, plan.lanes
        if plan.depthwise or plan.pixel:  # step s in word s // tn, lane s % tn
            steps = words.transpose(0, 2, 1).reshape(-1, tm)
            if plan.depthwise:
                w = steps[:taps, :lanes]
            else:
                w = steps[:lanes * taps].reshape(lanes, taps, tm).transpose(1, 0, 2)  # step (c*kh + y)*kw + x
        else:
            nb = words.shape[0] // taps
            w = words.reshape(nb, taps, tm, tn).transpose(1, 0, 3, 2).reshape(taps, nb * tn, tm)[:, :lanes]
        params = np.frombuffer(praw, PARAM_DTYPE)
        self.bias, self.shift = params["bias"].astype(np.int64), params["shift"].astype(np.int64)
        absw = np.abs(w).sum(axis=0)
        bound = (128 if plan.signed else 255) * (np.pad(absw, (0, tm - lanes)) if plan.depthwise
                                                 else absw.sum(axis=0))  # (tm,)
        right = np.clip(self.shift, *SHIFT_RANGE)  # right-shift amount per channel (Machine.post)
        neg = np.clip(self.shift - plan.leaky_exp, *SHIFT_RANGE)  # the same for negative values
        leaky = plan.act == Act.LEAKY.value
        self.fast = None
        if (plan.fast_ok and (right >= 0).all() and (not leaky or (neg >= 0).all())
                and (bound + np.abs(self.bias)).max() < 1 << min(24, cfg.acc_bits - 1)):
            scale = np.ldexp(1.0, -right)
            self.fast = ((w * scale[:lanes] if plan.depthwise else (w * scale).reshape(-1, tm)).astype(np.float32),
                         (self.bias * scale).astype(np.float32),
                         np.ldexp(1.0, right - neg).astype(np.float32) if leaky else None)
        else:
            self.dtype = np.float32 if bound.max(initial=0) < 1 << 24 else np.float64
            self.w = (w if plan.depthwise else w.reshape(-1, tm)).astype(self.dtype)
        kept = self.fast[:2] if self.fast is not None else (self.w,)
        self.nbytes = len(wraw) + len(praw) + sum(a.nbytes for a in kept)


def execute(m, ins: Instr, plan_class=ConvPlan) -> None:
    """Run CONV ``ins`` on machine ``m`` (SPCONV: with ``sim.sparse.SparseConvPlan``)."""
    plan = m.plan(ins, plan_class)
    w = plan.weights(m, ins)
    for r0, r1, region in plan.chunks:
        n = r1 - r0
        if w.fast is not None:
            acc = _product(m, plan, region, n, w.fast[0], np.float32)
            _post_fast(plan, w, acc)
            m.put(ins, plan.outs[0], r0, acc.reshape(n, plan.cols, m.cfg.tm))
            continue
        acc = _product(m, plan, region, n, w.w, w.dtype).astype(np.int64).reshape(n, plan.cols, m.cfg.tm)
        entries = m.psum_entries(plan.pixel, r0, r1, plan.cols)
        v = acc + (m.psum_read(entries, plan.pixel, plan.cols) if plan.psum_in else w.bias)
        if plan.psum_out:
            m.psum_write(entries, plan.pixel, m.wrap(v))
        elif plan.planes > 1:
            v = m.wrap(v)
            if plan.act == Act.RELU.value:
                v = np.maximum(v, 0)
            for k, out in enumerate(plan.outs):
                m.put(ins, out, r0, v >> (8 * k))
        else:
            m.put(ins, plan.outs[0], r0, m.post(ins, v, w.shift))


def _product(m, plan: ConvPlan, region: Region, rows: int, w: np.ndarray, dtype) -> np.ndarray:
    """The accumulators ``(rows*cols, tm)`` of a row chunk, in ``dtype``: the tile's taps
    times ``w`` (``(taps*lanes, tm)``; depthwise ``(taps, lanes)``, the diagonal)."""
    lanes, n, tm = plan.lanes, rows * plan.cols, m.cfg.tm
    if plan.depthwise:
        taps = region.taps_view(m.gathered(region, dtype), rows)[..., :lanes]
        acc = (np.empty if lanes == tm else np.zeros)((rows, plan.cols, tm), dtype)
        part = acc[..., :lanes]
        if n <= _SMALL_DEPTHWISE:  # one call; for larger tiles the loop below is faster
            np.einsum("rcyxl,yxl->rcl", taps, w.reshape(plan.kh, plan.kw, lanes), out=part)
            return acc.reshape(n, tm)
        tmp = np.empty((rows, plan.cols, lanes), dtype)
        np.multiply(taps[:, :, 0, 0], w[0], out=part)
        for t in range(1, plan.taps):
            np.multiply(taps[:, :, t // plan.kw, t % plan.kw], w[t], out=tmp)
            part += tmp
        return acc.reshape(n, tm)
    x = m.gathered(region, dtype, (lanes, rows, dtype), lambda block: region.taps_view(block, rows)[..., :lanes]
                   .reshape(n, plan.taps * lanes))
    return x @ w


def _post_fast(plan: ConvPlan, w: Weights, acc: np.ndarray) -> None:
    """In place: bias, activation, round half to even, clamp (the shift is in the weights)."""
    _, bias, leaky = w.fast
    acc += bias
    if leaky is not None:
        np.multiply(acc, leaky, out=acc, where=acc < 0)
    np.rint(acc, out=acc)
    acc.clip(plan.fast_lo, plan.hi, out=acc)  # min(max(q, lo), hi): hi when lo > hi, as the contract
