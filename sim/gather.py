"""Which line-buffer words an instruction reads, as word indices checked against its ring.

A ring (docs/isa.md "Line buffer") is ``slots`` rows of ``slot_words`` words from word
``base``; block ``b`` of image column ``x`` in slot ``s`` is word
``base + s*slot_words + b*cols + (x - x0)``. The functional model reads it by numpy take
on the line buffer viewed as ``(words + 1, tn)``: the extra last word (index
``line_buffer_words``) is always zero, and every tap outside the image points at it, so "taps
outside the image read 0" costs nothing at run time.

``tap_words`` is the one place the tap rules are checked (CONV and VEC). A ``Region`` is what
a CONV tile reads, gathered once as a dense ``(D, E, words)`` block of the rows and columns its
window spans, so that the taps are strided views of it (no tap is gathered twice); it depends
only on the instruction's fields and is cached with the instruction's plan (``sim/conv.py``).
"""

from __future__ import annotations

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.decode import Instr
from ..ir.program import ProgramError

NONE = -1  # a row or column word offset that is outside the image (reads the zero word)


def fail(ins: Instr, message: str):
    raise ProgramError(f"{ins.where()}: {message}")


def ring_geometry(cfg: AcceleratorConfig, ins: Instr, p: str, nblk: int) -> tuple[int, int, int, int]:
    """``(base, slots, slot_words, cols)`` of the ring described by fields ``p*``, checked to
    hold ``nblk`` blocks per slot inside the line buffer."""
    f = ins.f
    base, slots, slot_words, cols = f[p + "base"], f[p + "slots"], f[p + "slot_words"], f[p + "cols"]
    if slots == 0 or cols == 0:
        fail(ins, f"ring has {slots} slots of {cols} columns")
    if nblk * cols > slot_words:
        fail(ins, f"a ring slot of {slot_words} words cannot hold {nblk} blocks of {cols} columns")
    end = base + (slots - 1) * slot_words + nblk * cols
    if end > cfg.line_buffer_words:
        fail(ins, f"ring words {base}..{end - 1} are outside the line buffer of {cfg.line_buffer_words}")
    return base, slots, slot_words, cols


def tap_words(cfg: AcceleratorConfig, ins: Instr, p: str, dy: np.ndarray, dx: np.ndarray,
              nblk: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The words of image rows ``y_first + dy`` and columns ``x_first + dx`` of geometry ``p*``
    (``dy``: (rows, taps_y), ``dx``: (cols, taps_x)), split as ``row_word + col_word + b*stride``
    for block ``b``: ``(row_word, col_word, stride)``, with ``NONE`` where the row or column is
    outside the image. Raises ``ProgramError`` for a slot offset or a column the ring cannot
    serve."""
    f = ins.f
    base, slots, slot_words, cols = ring_geometry(cfg, ins, p + "ring.", nblk)
    iy = f[p + "y_first"] + dy
    ix = f[p + "x_first"] + dx
    row_ok = (iy >= 0) & (iy < f[p + "height"])
    col_ok = (ix >= 0) & (ix < f[p + "width"])
    if np.any(row_ok & (f[p + "slot_first"] + dy >= 2 * slots)):
        fail(ins, f"slot offset {f[p + 'slot_first'] + int(dy[row_ok].max())} of an image row is not below "
                  f"2*slots = {2 * slots}")
    j = ix - f[p + "x0"]
    if np.any(col_ok & ((j < 0) | (j >= cols))):
        bad = int(ix[col_ok & ((j < 0) | (j >= cols))][0])
        fail(ins, f"image column {bad} is not in the ring (columns {f[p + 'x0']}..{f[p + 'x0'] + cols - 1})")
    row_word = np.where(row_ok, base + (f[p + "slot_first"] + dy) % slots * slot_words, NONE)
    return row_word, np.where(col_ok, j, NONE), cols


def word_index(row_word: np.ndarray, col_word: np.ndarray, stride: int, nblk: int, zero: int) -> np.ndarray:
    """Broadcast ``row_word[..., None] + col_word[..., None] + b*stride`` over blocks ``b``,
    ``zero`` where either part is ``NONE``."""
    ok = (row_word[..., None] != NONE) & (col_word[..., None] != NONE)
    words = row_word[..., None] + col_word[..., None] + np.arange(nblk) * stride
    return np.where(ok, words, zero)


class Region:
    """The input words of CONV tile rows ``r0 .. r1-1``: a dense block of ``D`` region rows
    (``(r - r0)*sh + y*dh``) by ``E`` region columns (``q*sw + x*dw``) by ``nblk`` words.
    Region rows and columns no tap uses read the zero word too. ``span`` is the range of
    line-buffer words it reads (empty when it reads none), for invalidating gathered copies."""

    __slots__ = ("index", "shape", "span", "signed", "window", "cols")

    def __init__(self, cfg: AcceleratorConfig, ins: Instr, r0: int, r1: int, nblk: int):
        f = ins.f
        kh, kw, sh, sw, dh, dw = self.window = tuple(f["win." + n] for n in ("kh", "kw", "sh", "sw", "dh", "dw"))
        cols = self.cols = f["tile.cols"]
        self.signed = bool(f["inp.signed_"])
        ry = (np.arange(r1 - r0) * sh)[:, None] + (np.arange(kh) * dh)[None, :]
        rx = (np.arange(cols) * sw)[:, None] + (np.arange(kw) * dw)[None, :]
        row_word, col_word, stride = tap_words(cfg, ins, "inp.", ry + r0 * sh, rx, nblk)
        # Scatter tap rows/columns into the region (taps that meet the same row agree on it).
        rows = np.full((r1 - r0 - 1) * sh + (kh - 1) * dh + 1, NONE)
        rows[ry] = row_word
        columns = np.full(max(0, (cols - 1) * sw + (kw - 1) * dw + 1), NONE)
        columns[rx] = col_word
        zero = cfg.line_buffer_words
        index = word_index(rows[:, None], columns[None, :], stride, nblk, zero)
        self.index = index.reshape(-1)
        self.shape = (rows.size, columns.size, nblk * cfg.tn)
        used = self.index[self.index != zero]
        self.span = (int(used.min()), int(used.max()) + 1) if used.size else (0, 0)

    def taps_view(self, block: np.ndarray, rows: int) -> np.ndarray:
        """The ``(rows, cols, kh, kw, lanes)`` view of a gathered ``block`` (this region's
        shape, C-contiguous) that the tile's ``rows`` rows of taps read: no copy."""
        kh, kw, sh, sw, dh, dw = self.window
        e, w = self.shape[1], self.shape[2]
        item = block.itemsize
        strides = (sh * e * w * item, sw * w * item, dh * e * w * item, dw * w * item, item)
        return np.ndarray((rows, self.cols, kh, kw, w), block.dtype, block, 0, strides)
