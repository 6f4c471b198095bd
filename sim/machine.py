"""The functional model (verification level L2): the machine state of ``docs/isa.md`` and one
method per opcode, executed in program order.

Every buffer is a numpy ``uint8`` array in the shape the contract describes; each CONV/VEC
tile is computed in one vectorized step (a float64 matrix product for convolutions: every
product and partial sum is an integer below 2**53, so it is exact). Any address outside its
memory, and any field that makes an instruction meaningless, raises ``ProgramError`` naming
the instruction. Readings of the contract that the text leaves open are listed in
``docs/simulator.md`` ("Functional model").
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div, conv_psum_entries
from ..ir.decode import Instr
from ..ir.intmath import round_shift
from ..ir.isa import (PARAM_BYTES, PARAM_DTYPE, POW2_EXP, POW2_NONZERO, POW2_RESERVED, POW2_SIGN, Act, Dataflow,
                      Opcode, VecOp, WgtTarget)
from ..ir.program import ProgramError

# Shift amounts are saturated to this range before rounding. Datapath values are below
# 2**acc_bits (<= 2**32) and results are clamped to 16 bits, so no result changes; it keeps
# int64 arithmetic from overflowing on hostile shift fields.
_SHIFT_RANGE = (-32, 48)
_CHUNK_ELEMS = 1 << 21  # input values gathered per step of a tile (bounds memory: 16 MiB of float64)
# pow2 weight code -> value (docs/isa.md "LOAD_WGT"); codes with reserved bits are rejected first.
_POW2 = np.array([0.0 if not c & POW2_NONZERO else (-1.0 if c & POW2_SIGN else 1.0) * 2.0 ** (c & POW2_EXP)
                  for c in range(256)])


def dma_bytes(cfg: AcceleratorConfig, ins: Instr) -> int:
    """Bytes instruction ``ins`` moves between DRAM and the chip (0 for compute)."""
    f = ins.f
    if ins.opcode == Opcode.LOAD_ACT:
        return f["src.nblk"] * f["src.nrows"] * f["src.ncols"] * cfg.tn
    if ins.opcode == Opcode.STORE:
        return f["dst.nblk"] * f["dst.nrows"] * f["dst.ncols"] * cfg.tn
    if ins.opcode == Opcode.LOAD_WGT:
        return f["nbytes"]
    return 0


class Machine:
    """DRAM, line buffer, weight/parameter banks and output buffer of one accelerator."""

    def __init__(self, cfg: AcceleratorConfig, dram_size: int):
        self.cfg = cfg
        tn = cfg.tn
        self.dram = np.zeros(dram_size, np.uint8)
        self.lb = np.zeros((cfg.line_buffer_words, tn), np.uint8)
        self.wbuf = np.zeros((2, cfg.weight_bank_bytes), np.uint8)
        self.pbuf = np.zeros((2, cfg.param_entries * PARAM_BYTES), np.uint8)
        self.obuf = np.zeros((2, cfg.output_half_words, tn), np.uint8)
        self.psum = np.zeros((cfg.psum_entries, cfg.ppu_lanes), np.int64)
        self._handlers = {Opcode.NOP: _nothing, Opcode.FINISH: _nothing, Opcode.LOAD_ACT: self._load_act,
                          Opcode.LOAD_WGT: self._load_wgt, Opcode.STORE: self._store, Opcode.CONV: self._conv,
                          Opcode.VEC: self._vec}

    def execute(self, ins: Instr) -> None:
        handler = self._handlers.get(ins.opcode)
        if handler is None:
            raise ProgramError(f"{ins.where()}: target {self.cfg.name!r} has no {ins.opcode.name} core")
        handler(ins)

    # -- DMA -----------------------------------------------------------------------------------
    def _load_act(self, ins: Instr) -> None:
        f, tn = ins.f, self.cfg.tn
        nblk, nrows, ncols = f["src.nblk"], f["src.nrows"], f["src.ncols"]
        box = self._dram_box(ins, "src.")
        if box.size == 0:
            return
        ring = self._ring(ins, "ring.", nblk)
        slots, slot0 = ring.shape[0], f["slot0"]
        if ncols > ring.shape[2]:
            _fail(ins, f"loads {ncols} columns into a ring of {ring.shape[2]}")
        if nrows > slots or slot0 + nrows > 2 * slots:
            _fail(ins, f"loads rows into slots {slot0}..{slot0 + nrows - 1} of a ring of {slots} slots "
                       f"(at most {slots} rows, offsets below {2 * slots})")
        rows = (slot0 + np.arange(nrows)) % slots
        ring[rows, :, :ncols] = box.reshape(nblk, nrows, ncols, tn).transpose(1, 0, 2, 3)

    def _load_wgt(self, ins: Instr) -> None:
        f = ins.f
        addr, n, sram = f["dram_addr"], f["nbytes"], f["sram_addr"]
        weights = f["target"] == WgtTarget.WEIGHTS.value
        bank = (self.wbuf if weights else self.pbuf)[f["bank"]]
        if addr + n > self.dram.size:
            _fail(ins, f"reads DRAM bytes {addr}..{addr + n - 1} beyond its {self.dram.size}")
        if sram + n > bank.size:
            _fail(ins, f"writes bytes {sram}..{sram + n - 1} of a {'weight' if weights else 'parameter'} bank "
                       f"of {bank.size}")
        bank[sram:sram + n] = self.dram[addr:addr + n]

    def _store(self, ins: Instr) -> None:
        f, tn = ins.f, self.cfg.tn
        nblk, nrows, ncols = f["dst.nblk"], f["dst.nrows"], f["dst.ncols"]
        box = self._dram_box(ins, "dst.")
        if box.size == 0:
            return
        start, n = f["obuf_addr"], nrows * ncols * nblk
        if start + n > self.cfg.output_half_words:
            _fail(ins, f"reads output-buffer words {start}..{start + n - 1} of a half of {self.cfg.output_half_words}")
        words = self.obuf[f["half"], start:start + n]
        box[...] = words.reshape(nrows, ncols, nblk, tn).transpose(2, 0, 1, 3).reshape(box.shape)

    def _dram_box(self, ins: Instr, p: str) -> np.ndarray:
        """A writable (nblk, nrows, ncols*tn) view of the DRAM box described by fields ``p*``."""
        f, tn = ins.f, self.cfg.tn
        nblk, nrows, ncols = f[p + "nblk"], f[p + "nrows"], f[p + "ncols"]
        addr, rs, bs = f[p + "dram_addr"], f[p + "row_stride"], f[p + "blk_stride"]
        shape = (nblk, nrows, ncols * tn)
        if 0 in shape:
            return np.zeros(shape, np.uint8)
        end = addr + (nblk - 1) * bs + (nrows - 1) * rs + ncols * tn
        if end > self.dram.size:
            _fail(ins, f"DRAM box {addr}..{end - 1} is outside the DRAM of {self.dram.size} bytes")
        return as_strided(self.dram[addr:], shape, (bs, rs, 1))

    # -- line buffer ---------------------------------------------------------------------------
    def _ring(self, ins: Instr, p: str, nblk: int) -> np.ndarray:
        """A writable (slots, nblk, cols, tn) view of the ring described by fields ``p*``."""
        f, tn = ins.f, self.cfg.tn
        base, slots, slot_words, cols = f[p + "base"], f[p + "slots"], f[p + "slot_words"], f[p + "cols"]
        if slots == 0 or cols == 0:
            _fail(ins, f"ring has {slots} slots of {cols} columns")
        if nblk * cols > slot_words:
            _fail(ins, f"a ring slot of {slot_words} words cannot hold {nblk} blocks of {cols} columns")
        end = base + (slots - 1) * slot_words + nblk * cols
        if end > self.cfg.line_buffer_words:
            _fail(ins, f"ring words {base}..{end - 1} are outside the line buffer of {self.cfg.line_buffer_words}")
        return as_strided(self.lb.reshape(-1)[base * tn:], (slots, nblk, cols, tn),
                          (slot_words * tn, cols * tn, tn, 1))

    def _gather(self, ins: Instr, p: str, dy: np.ndarray, dx: np.ndarray, lanes: int):
        """Input bytes at image rows ``y_first + dy`` and columns ``x_first + dx`` of geometry
        ``p*`` (``dy``: (rows, taps_y), ``dx``: (cols, taps_x)): ``(x, valid)`` with ``x`` of shape
        ``(rows, cols, taps_y, taps_x, ceil(lanes/tn)*tn)`` (int8 if the input is signed, else
        uint8; taps outside the image read 0; lanes past ``lanes`` hold whatever the ring
        holds) and ``valid`` the in-image mask of the taps, or None when all are inside."""
        f, tn = ins.f, self.cfg.tn
        nblk = ceil_div(lanes, tn)
        ring = self._ring(ins, p + "ring.", nblk)
        slots, cols = ring.shape[0], ring.shape[2]
        iy = f[p + "y_first"] + dy
        ix = f[p + "x_first"] + dx
        row_ok = (iy >= 0) & (iy < f[p + "height"])
        col_ok = (ix >= 0) & (ix < f[p + "width"])
        if np.any(row_ok & (f[p + "slot_first"] + dy >= 2 * slots)):
            _fail(ins, f"slot offset {f[p + 'slot_first'] + int(dy[row_ok].max())} of an image row is not below "
                       f"2*slots = {2 * slots}")
        j = ix - f[p + "x0"]
        if np.any(col_ok & ((j < 0) | (j >= cols))):
            bad = int(ix[col_ok & ((j < 0) | (j >= cols))][0])
            _fail(ins, f"image column {bad} is not in the ring (columns {f[p + 'x0']}..{f[p + 'x0'] + cols - 1})")
        slot = (f[p + "slot_first"] + dy) % slots
        j = np.where(col_ok, j, 0)
        # Advanced indices broadcast to (rows, cols, taps_y, taps_x) and come first; the result
        # is contiguous in the order the PE array reduces over, so no transpose follows.
        x = ring[slot[:, None, :, None], :, j[None, :, None, :], :]
        x = x.reshape(x.shape[:4] + (nblk * tn,))
        valid = row_ok[:, None, :, None] & col_ok[None, :, None, :]
        if valid.all():
            valid = None
        else:
            x[~valid] = 0
        return (x.view(np.int8) if f[p + "signed_"] else x), valid

    def _values(self, ins: Instr, p: str, dy: np.ndarray, dx: np.ndarray, chans: int, pad: int = 0) -> np.ndarray:
        """``_gather`` as int64 for the vector unit: lanes past ``chans`` read 0, taps outside
        the image read ``pad``."""
        x, valid = self._gather(ins, p, dy, dx, chans)
        x = x.astype(np.int64)
        x[..., chans:] = 0
        if valid is not None and pad:
            x[~valid] = pad
        return x

    # -- compute -------------------------------------------------------------------------------
    def _conv(self, ins: Instr) -> None:
        f, cfg = ins.f, self.cfg
        tm, tn = cfg.tm, cfg.tn
        kh, kw, sh, sw, dh, dw = _window(ins, "khkwshswdhdw")
        rows, cols, chans = f["tile.rows"], f["tile.cols"], f["inp.chans"]
        pixel, depthwise = f["dataflow"] == Dataflow.PIXEL.value, bool(f["depthwise"])
        if depthwise and not pixel:
            _fail(ins, "the channel-parallel dataflow has no depthwise mode")
        if pixel and sw > 2:
            _fail(ins, f"pixel-parallel reads column stride 1 or 2, win.sw is {sw}")
        if f["pow2"] and not pixel:
            _fail(ins, "pow2 weights need the pixel-parallel dataflow (channel-parallel takes int weights)")
        encoding = "pow2" if f["pow2"] else "int"
        if encoding not in cfg.weight_encodings:
            _fail(ins, f"target {cfg.name!r} has no {encoding} weights")
        psum_in, psum_out = bool(f["psum_in"]), bool(f["psum_out"])  # entries checked at load (ir/rules.py)
        planes = 1 << f["wide"]  # byte planes of a wide output (docs/isa.md "Wide outputs"), wide checked at load
        outs = [self._tile_target(ins, rows, cols, tm // tn, k * f["plane_words"])  # checked even when psum_out
                for k in range(planes)]                                                 # writes elsewhere
        taps = kh * kw
        lanes = min(chans, tm) if depthwise else chans
        width = ceil_div(lanes, tn) * tn  # lanes of the gathered words
        w = self._conv_weights(ins, taps, chans, width)  # (taps, width, tm), zero past the real channels
        # float32 is exact while every partial sum stays below 2**24 (then any summation order
        # gives the exact integer); else float64 (below 2**53 for any 8-bit operands).
        xmax = 128 if f["inp.signed_"] else 255
        exact32 = taps * width * xmax * float(np.abs(w).max(initial=0)) < 1 << 24
        dtype = np.float32 if exact32 else np.float64
        w = w.astype(dtype)
        bias, shift = self._params(ins)
        dx = (np.arange(cols) * sw)[:, None] + (np.arange(kw) * dw)[None, :]
        for r0, r1 in self._chunks(ins, rows, cols * taps * width):
            dy = (np.arange(r0, r1) * sh)[:, None] + (np.arange(kh) * dh)[None, :]
            x, _ = self._gather(ins, "inp.", dy, dx, lanes)
            n = (r1 - r0) * cols
            acc = x.astype(dtype).reshape(n, taps * width) @ w.reshape(taps * width, tm)
            acc = acc.astype(np.int64).reshape(r1 - r0, cols, tm)
            entries = self._psum_entries(pixel, r0, r1, cols)
            v = acc + (self._psum_read(entries, pixel, cols) if psum_in else bias)
            if psum_out:
                self._psum_write(entries, pixel, self._wrap(v))
            elif planes > 1:
                v = self._wrap(v)
                if f["post.act"] == Act.RELU.value:
                    v = np.maximum(v, 0)
                for k, out in enumerate(outs):
                    self._put(ins, out, r0, v >> (8 * k))
            else:
                self._put(ins, outs[0], r0, self._post(ins, v, shift))

    # -- partial sums (docs/isa.md "Partial sums") ---------------------------------------------
    def _psum_entries(self, pixel: bool, r0: int, r1: int, cols: int) -> slice:
        """The entries of tile rows ``r0 .. r1-1``: a row's chunks are consecutive entries."""
        per_row = conv_psum_entries(self.cfg, pixel, 1, cols)
        return slice(r0 * per_row, r1 * per_row)

    def _psum_read(self, entries: slice, pixel: bool, cols: int) -> np.ndarray:
        """Entries as (rows, cols, tm): pixel-parallel entry ``(r*groups + g)*drain + k`` lane
        ``λ`` is channel ``λ % tm`` of column ``g*tn + k*npc + λ // tm``; channel-parallel entry
        ``r*cols + q`` lane ``i < tm`` is channel ``i``."""
        tm = self.cfg.tm
        part = self.psum[entries]
        if pixel:
            rows = part.shape[0] // conv_psum_entries(self.cfg, True, 1, cols)
            return part.reshape(rows, -1, tm)[:, :cols]
        return part[:, :tm].reshape(-1, cols, tm)

    def _psum_write(self, entries: slice, pixel: bool, v: np.ndarray) -> None:
        """``v`` (rows, cols, tm) into the entries (the layout of ``_psum_read``); lanes of
        columns past the tile are zero here and never read back into a result."""
        tm, tn = self.cfg.tm, self.cfg.tn
        rows, cols, _ = v.shape
        if pixel:
            padded = np.zeros((rows, ceil_div(cols, tn) * tn, tm), np.int64)
            padded[:, :cols] = v
            self.psum[entries] = padded.reshape(-1, self.cfg.ppu_lanes)
        else:
            self.psum[entries] = 0
            self.psum[entries, :tm] = v.reshape(-1, tm)

    def _conv_weights(self, ins: Instr, taps: int, chans: int, width: int) -> np.ndarray:
        """The block's weights as real values ``W[tap, lane, i]`` (``tap = y*kw + x``) for
        ``width`` input lanes, zero for lanes ``>= chans``. Depthwise (PE row i reads ring
        channel i) is the dense product with diagonal weights ``W[tap, i, i]``."""
        f, tm, tn = ins.f, self.cfg.tm, self.cfg.tn
        w = np.zeros((taps, width, tm))
        if f["depthwise"]:
            steps = self._weight_steps(ins, taps)  # (taps, tm)
            n = min(chans, width)
            w[:, np.arange(n), np.arange(n)] = steps[:, :n]
        elif f["dataflow"] == Dataflow.PIXEL.value:
            steps = self._weight_steps(ins, chans * taps)  # step (c*kh + y)*kw + x
            w[:, :chans] = steps.reshape(chans, taps, tm).transpose(1, 0, 2)
        else:
            nb = width // tn
            words = self._weight_words(ins, nb * taps).reshape(nb, taps, tm, tn)
            w[:] = words.transpose(1, 0, 3, 2).reshape(taps, width, tm)
            w[:, chans:] = 0
        return w

    def _weight_words(self, ins: Instr, n: int) -> np.ndarray:
        """Weight words ``w_addr .. w_addr+n-1`` of bank ``wbank`` as real values (n, tm, tn)."""
        cfg, f = self.cfg, ins.f
        start, nwords = f["w_addr"], cfg.weight_bank_words
        if start + n > nwords:
            _fail(ins, f"reads weight words {start}..{start + n - 1} of a bank of {nwords}")
        words = self.wbuf[f["wbank"], :nwords * cfg.tm * cfg.tn].reshape(nwords, cfg.tm, cfg.tn)[start:start + n]
        if not f["pow2"]:
            return words.view(np.int8).astype(np.float64)
        # nonzero (bit 6) with a reserved bit (5..3) set is exactly: masked to those bits, above bit 6
        bad = (words & (POW2_NONZERO | POW2_RESERVED)) > POW2_NONZERO
        if bad.any():
            word, row, lane = np.unravel_index(np.argmax(bad), bad.shape)
            _fail(ins, f"pow2 weight code 0x{words[word, row, lane]:02x} in weight word {start + word} (row {row}, "
                       f"lane {lane}) sets reserved bits 5..3")
        return _POW2[words]

    def _weight_steps(self, ins: Instr, steps: int) -> np.ndarray:
        """Pixel-parallel weights: step ``s`` in word ``s // tn``, lane ``s % tn`` → (steps, tm)."""
        tm, tn = self.cfg.tm, self.cfg.tn
        words = self._weight_words(ins, ceil_div(steps, tn))
        return words.transpose(0, 2, 1).reshape(-1, tm)[:steps]

    def _params(self, ins: Instr) -> tuple[np.ndarray, np.ndarray]:
        """(bias int64, shift int64) of parameter entries ``p_addr .. p_addr+tm-1``."""
        cfg, f = self.cfg, ins.f
        start = f["p_addr"]
        if start + cfg.tm > cfg.param_entries:
            _fail(ins, f"reads parameter entries {start}..{start + cfg.tm - 1} of a bank of {cfg.param_entries}")
        if start % cfg.tm:
            _fail(ins, f"p_addr {start} is not a multiple of tm ({cfg.tm}): a CONV reads one parameter row")
        entries = self.pbuf[f["wbank"]].view(PARAM_DTYPE)[start:start + cfg.tm]
        return entries["bias"].astype(np.int64), entries["shift"].astype(np.int64)

    def _vec(self, ins: Instr) -> None:
        f, tn = ins.f, self.cfg.tn
        op = f["op"]
        rows, cols, chans = f["tile.rows"], f["tile.cols"], f["inp.chans"]
        q = np.arange(cols)[:, None]
        if op in (VecOp.ADD.value, VecOp.REQUANT.value):
            sh, sw = _window(ins, "shsw")
            taps, dx = 1, q * sw
            def row_offsets(r): return r[:, None] * sh
        elif op in (VecOp.MAXPOOL.value, VecOp.AVGPOOL.value):
            kh, kw, sh, sw, dh, dw = _window(ins, "khkwshswdhdw")
            taps, dx = kh * kw, q * sw + (np.arange(kw) * dw)[None, :]
            def row_offsets(r): return r[:, None] * sh + (np.arange(kh) * dh)[None, :]
        else:  # RESIZE: the decoder admits no other value
            kh, kw = _window(ins, "khkw")
            taps, dx = 1, q // kw
            def row_offsets(r): return r[:, None] // kh
        nblk = ceil_div(chans, tn)
        out = self._tile_target(ins, rows, cols, nblk)
        for r0, r1 in self._chunks(ins, rows, cols * taps * nblk * tn):
            dy = row_offsets(np.arange(r0, r1))
            if op == VecOp.MAXPOOL.value:
                v = self._values(ins, "inp.", dy, dx, chans, pad=-(1 << (self.cfg.acc_bits - 1))).max(axis=(2, 3))
            else:
                v = self._values(ins, "inp.", dy, dx, chans).sum(axis=(2, 3))
            if op == VecOp.ADD.value:
                v = (v << f["shift_a"]) + (self._values(ins, "inp_b.", dy, dx, chans).sum(axis=(2, 3)) << f["shift_b"])
            self._put(ins, out, r0, self._post(ins, v, np.int64(f["rshift"])))

    def _wrap(self, v: np.ndarray) -> np.ndarray:
        """``v`` wrapped to the accumulator width (two's complement)."""
        half = 1 << (self.cfg.acc_bits - 1)
        return ((v + half) & ((half << 1) - 1)) - half

    def _post(self, ins: Instr, v: np.ndarray, shift) -> np.ndarray:
        """Wrap to the accumulator width, activation, round-half-even shift, clamp."""
        f = ins.f
        v = self._wrap(v)
        act = f["post.act"]
        if act == Act.RELU.value:
            v = np.maximum(v, 0)
        elif act == Act.LEAKY.value:
            shift = np.where(v < 0, shift - f["post.leaky_exp"], shift)
        q = round_shift(v, -np.clip(shift, *_SHIFT_RANGE))
        return np.minimum(np.maximum(q, f["post.lo"]), f["post.hi"])

    # -- output buffer -------------------------------------------------------------------------
    def _tile_target(self, ins: Instr, rows: int, cols: int, blk: int, offset: int = 0) -> np.ndarray:
        """The writable output-buffer view (rows/p, cols/p, blk*tn) of a tile's pooled results:
        pixel (r', q') block k at word obuf_addr + offset + (r'*obuf_cols + q')*obuf_blk + k."""
        f, tn = ins.f, self.cfg.tn
        p = f["post.pool"] or 1
        if rows % p or cols % p:
            _fail(ins, f"a {rows}x{cols} tile cannot be max-pooled in {p}x{p} windows")
        if f["tile.obuf_blk"] != blk:
            _fail(ins, f"tile.obuf_blk is {f['tile.obuf_blk']}, must be {blk} (output blocks per pixel)")
        prow, pcol = rows // p, cols // p
        start, ocols = f["tile.obuf_addr"] + offset, f["tile.obuf_cols"]
        if prow and pcol:
            if ocols < pcol:
                _fail(ins, f"tile.obuf_cols ({ocols}) is less than the tile's {pcol} output columns")
            end = start + ((prow - 1) * ocols + pcol) * blk
            if end > self.cfg.output_half_words:
                _fail(ins, f"writes output-buffer words {start}..{end - 1} of a half of {self.cfg.output_half_words}")
        half = self.obuf[f["tile.half"]].reshape(-1)[start * tn:]
        return as_strided(half, (prow, pcol, blk * tn), (ocols * blk * tn, blk * tn, 1))

    def _put(self, ins: Instr, out: np.ndarray, r0: int, q: np.ndarray) -> None:
        """Fused max-pool of tile rows ``r0..`` (``q``: rows, cols, channels) into ``out``."""
        p = ins.f["post.pool"] or 1
        if p > 1:
            q = q.reshape(q.shape[0] // p, p, q.shape[1] // p, p, -1).max(axis=(1, 3))
        out[r0 // p:r0 // p + q.shape[0]] = (q & 0xFF).astype(np.uint8)

    def _chunks(self, ins: Instr, rows: int, per_row: int):
        """Row ranges of a tile, each gathering about ``_CHUNK_ELEMS`` input values at most
        (a multiple of the fused-pool window), so memory stays bounded for any tile."""
        p = ins.f["post.pool"] or 1
        step = max(p, _CHUNK_ELEMS // max(1, per_row) // p * p)
        return [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]


def _nothing(ins: Instr) -> None:
    """NOP and FINISH change no state (FINISH's wait is the cycle model's business)."""


def _fail(ins: Instr, message: str):
    raise ProgramError(f"{ins.where()}: {message}")


def _window(ins: Instr, which: str) -> list[int]:
    """Window fields named by two-letter codes (``"khsw"`` → kh, sw); each must be >= 1."""
    names = [which[i:i + 2] for i in range(0, len(which), 2)]
    values = [ins.f["win." + n] for n in names]
    zero = [n for n, v in zip(names, values) if v == 0]
    if zero:
        _fail(ins, f"window field(s) {', '.join('win.' + n for n in zero)} must be at least 1")
    return values
