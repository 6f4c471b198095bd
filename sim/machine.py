"""The functional model (verification level L2): the machine state of ``docs/isa.md`` and one
method per opcode, executed in program order.

Every buffer is a numpy ``uint8`` array in the shape the contract describes. Any address
outside its memory, and any field that makes an instruction meaningless, raises
``ProgramError`` naming the instruction. Readings of the contract that the text leaves open
are listed in ``docs/simulator.md`` ("Functional model"). CONV lives in ``sim/conv.py``.

Speed (docs/simulator.md "Speed"): what an instruction's fields determine — its checks and
the shape of its views and gathers — is a *plan*, cached by the fields' values across
instructions, frames and machines (``sim/cache.py``); and within one ``run`` a tile's
gathered input is reused by the next tiles that read the same line-buffer words, until a
LOAD_ACT writes any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..ir.config import AcceleratorConfig
from ..ir.cost import ceil_div, conv_psum_entries
from ..ir.decode import Instr
from ..ir.intmath import round_shift
from ..ir.isa import PARAM_BYTES, Act, Opcode, VecOp, WgtTarget
from . import conv, nms_core
from .cache import PLANS, target_key
from .gather import NONE, fail, ring_geometry, tap_words, word_index
from .sparse import SparseConvPlan

_GATHERED_BYTES = 1 << 26  # gathered copies kept within one run (beyond: dropped and re-gathered)
_LOAD_ACT, _STORE, _LOAD_WGT = Opcode.LOAD_ACT, Opcode.STORE, Opcode.LOAD_WGT  # enum lookups are slow


def dma_bytes(cfg: AcceleratorConfig, ins: Instr) -> int:
    """Bytes instruction ``ins`` moves between DRAM and the chip (0 for compute)."""
    f, op = ins.f, ins.opcode
    if op is _LOAD_ACT:
        return f["src.nblk"] * f["src.nrows"] * f["src.ncols"] * cfg.tn
    if op is _STORE:
        return f["dst.nblk"] * f["dst.nrows"] * f["dst.ncols"] * cfg.tn
    if op is _LOAD_WGT:
        return f["nbytes"]
    return 0


class Machine:
    """DRAM, line buffer, weight/parameter banks and output buffer of one accelerator.

    The state may be read and written from outside between calls of ``run``/``execute``."""

    def __init__(self, cfg: AcceleratorConfig, dram_size: int, memo: dict | None = None):
        self.cfg = cfg
        # Plans by the identity of an ``Instr`` (entries hold it, so its id stays its own):
        # ``SimAccelerator`` passes one per decoded program, so a program run again skips
        # even building the field key.
        self._memo = {} if memo is None else memo
        self.target_key = target_key(cfg)
        self._plan_key = (self.target_key, dram_size)  # what plans depend on besides the fields
        tn = cfg.tn
        self.dram = np.zeros(dram_size, np.uint8)
        # The line buffer and, after it, one word that stays zero: the word every tap outside
        # the image reads (sim/gather.py).
        self._lbx = np.zeros((cfg.line_buffer_words + 1, tn), np.uint8)
        self.lb = self._lbx[:-1]
        self.wbuf = np.zeros((2, cfg.weight_bank_bytes), np.uint8)
        self.pbuf = np.zeros((2, cfg.param_entries * PARAM_BYTES), np.uint8)
        self.obuf = np.zeros((2, cfg.output_half_words, tn), np.uint8)
        self.psum = np.zeros((cfg.psum_entries, cfg.ppu_lanes), np.int64)
        self._gathered: dict[int, tuple] = {}  # id(region) -> (region, {key: array}), within one run
        self._gathered_bytes = 0
        handlers = {Opcode.NOP: _nothing, Opcode.FINISH: _nothing, Opcode.LOAD_ACT: self._load_act,
                    Opcode.LOAD_WGT: self._load_wgt, Opcode.STORE: self._store,
                    Opcode.CONV: lambda ins: conv.execute(self, ins), Opcode.VEC: self._vec,
                    Opcode.SPCONV: lambda ins: conv.execute(self, ins, SparseConvPlan),
                    Opcode.NMS: lambda ins: nms_core.run_on(self, ins)}
        # Cycles of the data-dependent instructions (NMS) of the last ``run``, by instruction
        # index: the timeline's cost of them (ir/timeline.py).
        self.measured: dict[int, int] = {}
        self._handlers = {id(op): h for op, h in handlers.items()}  # hashing amaranth enums is slow

    def run(self, instrs: Iterable[Instr], progress: Callable[[int], object] | None = None) -> None:
        """Execute ``instrs`` in order (``progress(1)`` after each)."""
        self._drop_gathered()  # the state may have been written from outside since the last run
        self.measured = {}
        try:
            for ins in instrs:
                handler = self._handlers.get(id(ins.opcode))
                if handler is None:
                    fail(ins, f"target {self.cfg.name!r} has no {ins.opcode.name} core")
                handler(ins)
                if progress is not None:
                    progress(1)
        finally:
            self._drop_gathered()

    def execute(self, ins: Instr) -> None:
        self.run((ins,))

    def plan(self, ins: Instr, build: Callable):
        """``build(self, ins)``, cached by the target, the DRAM size and the instruction's
        field values, and in ``memo`` by the identity of the ``Instr``."""
        known = self._memo.get(id(ins))
        if known is not None and known[0] is ins and known[1] == self._plan_key:
            return known[2]
        key = (self._plan_key, build, tuple(ins.f.values()))
        plan = PLANS.get(key)
        if plan is None:
            plan = PLANS.put(key, build(self, ins))
        self._memo[id(ins)] = (ins, self._plan_key, plan)
        return plan

    # -- DMA -----------------------------------------------------------------------------------
    def _load_act(self, ins: Instr) -> None:
        plan = self.plan(ins, _LoadActPlan)
        if plan.box is None:
            return
        shape, ring, rows, ncols, span = plan.box, plan.ring, plan.rows, plan.ncols, plan.span
        box = np.ndarray(shape[0], np.uint8, self.dram, shape[1], shape[2])
        view = np.ndarray(ring[0], np.uint8, self._lbx, ring[1], ring[2])
        view[rows, :, :ncols] = box.reshape(shape[3]).transpose(1, 0, 2, 3)
        for key, (region, arrays) in list(self._gathered.items()):
            if region.span[0] < span[1] and span[0] < region.span[1]:
                del self._gathered[key]

    def _load_wgt(self, ins: Instr) -> None:
        f = ins.f
        addr, n, sram = f["dram_addr"], f["nbytes"], f["sram_addr"]
        weights = f["target"] == WgtTarget.WEIGHTS.value
        bank = (self.wbuf if weights else self.pbuf)[f["bank"]]
        if addr + n > self.dram.size:
            fail(ins, f"reads DRAM bytes {addr}..{addr + n - 1} beyond its {self.dram.size}")
        if sram + n > bank.size:
            fail(ins, f"writes bytes {sram}..{sram + n - 1} of a {'weight' if weights else 'parameter'} bank "
                      f"of {bank.size}")
        bank[sram:sram + n] = self.dram[addr:addr + n]

    def _store(self, ins: Instr) -> None:
        plan = self.plan(ins, _StorePlan)
        if plan.box is None:
            return
        shape, (half, start, n), tiles = plan.box, plan.words, plan.tiles
        box = np.ndarray(shape[0], np.uint8, self.dram, shape[1], shape[2])
        box[...] = self.obuf[half, start:start + n].reshape(tiles).transpose(2, 0, 1, 3).reshape(shape[0])

    # -- compute -------------------------------------------------------------------------------
    def gathered(self, region, dtype, key=None, derive: Callable | None = None) -> np.ndarray:
        """The line-buffer words of ``region`` as ``dtype`` (signed or not as its input), or
        with ``key`` the array ``derive(those)``: computed once and kept until a LOAD_ACT
        writes a word of the region or the run ends."""
        entry = self._gathered.get(id(region))
        if entry is None or entry[0] is not region:
            if self._gathered_bytes > _GATHERED_BYTES:
                self._drop_gathered()
            entry = self._gathered[id(region)] = (region, {})
        arrays = entry[1]
        block = arrays.get(dtype)
        if block is None:
            raw = self._lbx.take(region.index, axis=0).reshape(region.shape)
            block = arrays[dtype] = (raw.view(np.int8) if region.signed else raw).astype(dtype)
            self._gathered_bytes += block.nbytes
        if key is None:
            return block
        derived = arrays.get(key)
        if derived is None:
            derived = arrays[key] = derive(block)
            self._gathered_bytes += derived.nbytes
        return derived

    def _drop_gathered(self) -> None:
        self._gathered.clear()
        self._gathered_bytes = 0

    def _gather(self, ins: Instr, p: str, dy: np.ndarray, dx: np.ndarray, lanes: int):
        """Input bytes at image rows ``y_first + dy`` and columns ``x_first + dx`` of geometry
        ``p*`` (``dy``: (rows, taps_y), ``dx``: (cols, taps_x)): ``(x, valid)`` with ``x`` of shape
        ``(rows, cols, taps_y, taps_x, ceil(lanes/tn)*tn)`` (int8 if the input is signed, else
        uint8; taps outside the image read 0; lanes past ``lanes`` hold whatever the ring
        holds) and ``valid`` the in-image mask of the taps, or None when all are inside."""
        nblk = ceil_div(lanes, self.cfg.tn)
        row_word, col_word, stride = tap_words(self.cfg, ins, p, dy, dx, nblk)
        rw, cw = row_word[:, None, :, None], col_word[None, :, None, :]
        index = word_index(rw, cw, stride, nblk, self.cfg.line_buffer_words)
        x = self._lbx.take(index, axis=0).reshape(index.shape[:4] + (nblk * self.cfg.tn,))
        valid = (rw != NONE) & (cw != NONE)
        return (x.view(np.int8) if ins.f[p + "signed_"] else x), (None if valid.all() else valid)

    def _values(self, ins: Instr, p: str, dy: np.ndarray, dx: np.ndarray, chans: int, pad: int = 0) -> np.ndarray:
        """``_gather`` as int64 for the vector unit: lanes past ``chans`` read 0, taps outside
        the image read ``pad``."""
        x, valid = self._gather(ins, p, dy, dx, chans)
        x = x.astype(np.int64)
        x[..., chans:] = 0
        if valid is not None and pad:
            x[~valid] = pad
        return x

    def _vec(self, ins: Instr) -> None:
        f, tn = ins.f, self.cfg.tn
        op = f["op"]
        rows, cols, chans = f["tile.rows"], f["tile.cols"], f["inp.chans"]
        q = np.arange(cols)[:, None]
        if op in (VecOp.ADD.value, VecOp.REQUANT.value):
            sh, sw = conv.window(ins, "shsw")
            taps, dx = 1, q * sw
            def row_offsets(r): return r[:, None] * sh
        elif op in (VecOp.MAXPOOL.value, VecOp.AVGPOOL.value):
            kh, kw, sh, sw, dh, dw = conv.window(ins, "khkwshswdhdw")
            taps, dx = kh * kw, q * sw + (np.arange(kw) * dw)[None, :]
            def row_offsets(r): return r[:, None] * sh + (np.arange(kh) * dh)[None, :]
        else:  # RESIZE: the decoder admits no other value
            kh, kw = conv.window(ins, "khkw")
            taps, dx = 1, q // kw
            def row_offsets(r): return r[:, None] // kh
        nblk = ceil_div(chans, tn)
        out = self.tile_target(ins, rows, cols, nblk)
        for r0, r1 in conv.chunks(ins, rows, cols * taps * nblk * tn):
            dy = row_offsets(np.arange(r0, r1))
            if op == VecOp.MAXPOOL.value:
                v = self._values(ins, "inp.", dy, dx, chans, pad=-(1 << (self.cfg.acc_bits - 1))).max(axis=(2, 3))
            else:
                v = self._values(ins, "inp.", dy, dx, chans).sum(axis=(2, 3))
            if op == VecOp.ADD.value:
                v = (v << f["shift_a"]) + (self._values(ins, "inp_b.", dy, dx, chans).sum(axis=(2, 3)) << f["shift_b"])
            self.put(ins, out, r0, self.post(ins, v, np.int64(f["rshift"])))

    # -- partial sums (docs/isa.md "Partial sums") ---------------------------------------------
    def psum_entries(self, pixel: bool, r0: int, r1: int, cols: int) -> slice:
        """The entries of tile rows ``r0 .. r1-1``: a row's chunks are consecutive entries."""
        per_row = conv_psum_entries(self.cfg, pixel, 1, cols)
        return slice(r0 * per_row, r1 * per_row)

    def psum_read(self, entries: slice, pixel: bool, cols: int) -> np.ndarray:
        """Entries as (rows, cols, tm): pixel-parallel entry ``(r*groups + g)*drain + k`` lane
        ``λ`` is channel ``λ % tm`` of column ``g*tn + k*npc + λ // tm``; channel-parallel entry
        ``r*cols + q`` lane ``i < tm`` is channel ``i``."""
        tm = self.cfg.tm
        part = self.psum[entries]
        if pixel:
            rows = part.shape[0] // conv_psum_entries(self.cfg, True, 1, cols)
            return part.reshape(rows, -1, tm)[:, :cols]
        return part[:, :tm].reshape(-1, cols, tm)

    def psum_write(self, entries: slice, pixel: bool, v: np.ndarray) -> None:
        """``v`` (rows, cols, tm) into the entries (the layout of ``psum_read``); lanes of
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

    def wrap(self, v: np.ndarray) -> np.ndarray:
        """``v`` wrapped to the accumulator width (two's complement)."""
        half = 1 << (self.cfg.acc_bits - 1)
        return ((v + half) & ((half << 1) - 1)) - half

    def post(self, ins: Instr, v: np.ndarray, shift) -> np.ndarray:
        """Wrap to the accumulator width, activation, round-half-even shift, clamp."""
        f = ins.f
        v = self.wrap(v)
        act = f["post.act"]
        if act == Act.RELU.value:
            v = np.maximum(v, 0)
        elif act == Act.LEAKY.value:
            shift = np.where(v < 0, shift - f["post.leaky_exp"], shift)
        q = round_shift(v, -np.clip(shift, *conv.SHIFT_RANGE))
        return np.minimum(np.maximum(q, f["post.lo"]), f["post.hi"])

    # -- output buffer -------------------------------------------------------------------------
    def tile_target(self, ins: Instr, rows: int, cols: int, blk: int, offset: int = 0) -> tuple | None:
        """Where a tile's pooled results go, checked: ``(byte offset, shape, strides)`` of the
        output-buffer view (rows/p, cols/p, blk*tn), pixel (r', q') block k at word
        ``obuf_addr + offset + (r'*obuf_cols + q')*obuf_blk + k``; None for an empty tile."""
        f, tn = ins.f, self.cfg.tn
        p = f["post.pool"] or 1
        if rows % p or cols % p:
            fail(ins, f"a {rows}x{cols} tile cannot be max-pooled in {p}x{p} windows")
        if f["tile.obuf_blk"] != blk:
            fail(ins, f"tile.obuf_blk is {f['tile.obuf_blk']}, must be {blk} (output blocks per pixel)")
        prow, pcol = rows // p, cols // p
        start, ocols = f["tile.obuf_addr"] + offset, f["tile.obuf_cols"]
        if not (prow and pcol):
            return None
        if ocols < pcol:
            fail(ins, f"tile.obuf_cols ({ocols}) is less than the tile's {pcol} output columns")
        end = start + ((prow - 1) * ocols + pcol) * blk
        if end > self.cfg.output_half_words:
            fail(ins, f"writes output-buffer words {start}..{end - 1} of a half of {self.cfg.output_half_words}")
        return ((f["tile.half"] * self.cfg.output_half_words + start) * tn, (prow, pcol, blk * tn),
                (ocols * blk * tn, blk * tn, 1))

    def put(self, ins: Instr, target: tuple | None, r0: int, q: np.ndarray) -> None:
        """Fused max-pool of tile rows ``r0..`` (``q``: rows, cols, channels; integers, or
        integer-valued floats within 16 bits) into ``target``, the low byte of each."""
        if target is None:
            return
        p = ins.f["post.pool"] or 1
        if p > 1:
            q = q.reshape(q.shape[0] // p, p, q.shape[1] // p, p, -1).max(axis=(1, 3))
        out = np.ndarray(target[1], np.uint8, self.obuf, target[0], target[2])
        # Assigning integers to uint8 keeps their low byte (a C conversion to unsigned).
        out[r0 // p:r0 // p + q.shape[0]] = q.astype(np.int16) if q.dtype.kind == "f" else q & 0xFF


class _LoadActPlan:
    """LOAD_ACT's checked views: ``box`` = (shape, DRAM offset, strides, (nblk, nrows, ncols,
    tn)) or None when it moves nothing; ``ring`` = (shape, byte offset, strides) of the ring
    in the line buffer; the ring ``rows`` it fills; ``span``, the line-buffer words it may write."""

    def __init__(self, m: Machine, ins: Instr):
        self.box = _dram_box(m, ins, "src.")
        if self.box is None:
            return
        tn = m.cfg.tn
        nblk, nrows, ncols = self.box[0][0], self.box[0][1], self.box[0][2] // tn
        self.box += ((nblk, nrows, ncols, tn),)
        base, slots, slot_words, cols = ring_geometry(m.cfg, ins, "ring.", nblk)
        slot0 = ins.f["slot0"]
        if ncols > cols:
            fail(ins, f"loads {ncols} columns into a ring of {cols}")
        if nrows > slots or slot0 + nrows > 2 * slots:
            fail(ins, f"loads rows into slots {slot0}..{slot0 + nrows - 1} of a ring of {slots} slots "
                      f"(at most {slots} rows, offsets below {2 * slots})")
        self.ring = ((slots, nblk, cols, tn), base * tn, (slot_words * tn, cols * tn, tn, 1))
        rows = (slot0 + np.arange(nrows)) % slots
        self.span = (base + int(rows.min()) * slot_words, base + int(rows.max()) * slot_words + nblk * cols)
        # The same slots as a slice when they do not wrap: basic indexing is faster.
        self.rows = slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] == nrows - 1 else rows
        self.ncols = ncols


class _StorePlan:
    """STORE's checked views: ``box`` as for LOAD_ACT, the output-buffer ``words`` (half,
    start, count) and their ``tiles`` shape (nrows, ncols, nblk, tn)."""

    def __init__(self, m: Machine, ins: Instr):
        self.box = _dram_box(m, ins, "dst.")
        if self.box is None:
            return
        f, tn = ins.f, m.cfg.tn
        nblk, nrows, ncols = self.box[0][0], self.box[0][1], self.box[0][2] // tn
        start, n = f["obuf_addr"], nrows * ncols * nblk
        if start + n > m.cfg.output_half_words:
            fail(ins, f"reads output-buffer words {start}..{start + n - 1} of a half of {m.cfg.output_half_words}")
        self.words = (f["half"], start, n)
        self.tiles = (nrows, ncols, nblk, tn)


def _dram_box(m: Machine, ins: Instr, p: str) -> tuple | None:
    """(shape, offset, strides) of the writable (nblk, nrows, ncols*tn) DRAM view that fields
    ``p*`` describe, checked against the DRAM; None when the box is empty."""
    f, tn = ins.f, m.cfg.tn
    nblk, nrows, ncols = f[p + "nblk"], f[p + "nrows"], f[p + "ncols"]
    addr, rs, bs = f[p + "dram_addr"], f[p + "row_stride"], f[p + "blk_stride"]
    shape = (nblk, nrows, ncols * tn)
    if 0 in shape:
        return None
    end = addr + (nblk - 1) * bs + (nrows - 1) * rs + ncols * tn
    if end > m.dram.size:
        fail(ins, f"DRAM box {addr}..{end - 1} is outside the DRAM of {m.dram.size} bytes")
    return shape, addr, (bs, rs, 1)


def _nothing(ins: Instr) -> None:
    """NOP and FINISH change no state (FINISH's wait is the cycle model's business)."""
