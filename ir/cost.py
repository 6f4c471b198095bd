"""The cycle model, shared by the compiler (to choose dataflows and tiles) and the simulator.

Every formula here is what the RTL must reproduce exactly; ``docs/isa.md`` states them in
words. Functions take plain numbers so the compiler can cost an instruction before encoding.
"""

from __future__ import annotations

import math

import numpy as np

from .config import AcceleratorConfig


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def dma_segment_beats(cfg: AcceleratorConfig, addr: int, nbytes: int) -> int:
    """Beats of one contiguous transfer of ``nbytes`` from DRAM byte ``addr``: the port moves
    aligned ``dram_bytes_per_cycle``-byte beats, so a transfer that does not start on a beat
    boundary pays for the whole first beat. An empty transfer moves none."""
    bw = cfg.dram_bytes_per_cycle
    return ceil_div(addr % bw + nbytes, bw) if nbytes else 0


def _residues(n: int, stride: int, bw: int) -> list[tuple[int, int]]:
    """``(k*stride mod bw, count)`` for ``k < n``, grouped by one period of the residue."""
    period = bw // math.gcd(stride, bw)
    full, rest = divmod(n, period)
    return [(k * stride % bw, full + (k < rest)) for k in range(min(n, period))]


def dma_box_beats(cfg: AcceleratorConfig, addr: int, blk_stride: int, row_stride: int, nblk: int, nrows: int,
                  nbytes: int) -> int:
    """Beats of a DRAM box: ``nblk x nrows`` segments of ``nbytes``, segment ``(b, r)`` at
    ``addr + b*blk_stride + r*row_stride``, each costed by ``dma_segment_beats``. Only the
    offsets modulo the beat matter, and they repeat, so this sums over one period of each
    stride (at most ``dram_bytes_per_cycle`` terms each) however large the box."""
    bw = cfg.dram_bytes_per_cycle
    if blk_stride % bw == 0 and row_stride % bw == 0:  # the usual case: one offset for all (the tiler's hot path)
        return nblk * nrows * dma_segment_beats(cfg, addr, nbytes)
    return sum(nb * nr * dma_segment_beats(cfg, addr + ob + orow, nbytes)
               for ob, nb in _residues(nblk, blk_stride, bw) for orow, nr in _residues(nrows, row_stride, bw))


#: Cycles from a DMA's accept to its first request (``hw/dma.py``): the command is registered,
#: loaded into the segment walkers in the next cycle, and the first request (a store's first
#: on-chip read too) goes out the cycle after, so no combinational path runs from the
#: controller's issue decision into the walkers' address arithmetic or the request logic.
DMA_START = 2
#: Accept to done of a DMA command without beats: it is recognised from the registered command
#: in the cycle after the accept (hw/dma.py), and done follows.
DMA_EMPTY = 2


def _dma_cycles(cfg: AcceleratorConfig, beats: int, extra: int) -> int:
    """Accept to done of a DMA transfer of ``beats`` beats (``hw/dma.py``): the first request
    goes out ``DMA_START`` cycles after the accept and later ones run ahead of the data, so
    the latency is paid once and the beats stream back to back; ``extra`` cycles on top (a
    store's on-chip read). A transfer without beats completes ``DMA_EMPTY`` cycles after its
    acceptance."""
    return DMA_START + cfg.dram_latency + beats + extra if beats else DMA_EMPTY


def dma_box_cycles(cfg: AcceleratorConfig, addr: int, blk_stride: int, row_stride: int, nblk: int, nrows: int,
                   ncols: int) -> int:
    """LOAD_ACT: ``2 + dram_latency + beats`` (``DMA_START``; read channel: the last beat is written on chip in
    cycle ``latency + beats - 1``, done follows); each row segment (one channel block of one
    row: ``ncols*tn`` contiguous bytes) streams its beats."""
    return _dma_cycles(cfg, dma_box_beats(cfg, addr, blk_stride, row_stride, nblk, nrows, ncols * cfg.tn), 0)


def store_read_cycles(cfg: AcceleratorConfig) -> int:
    """Cycles of a STORE's on-chip read before its first beat: the output buffer's one-cycle
    read, and one more through the register slice of ``cfg.store_read_slice``."""
    return 1 + cfg.store_read_slice


def dma_store_cycles(cfg: AcceleratorConfig, addr: int, blk_stride: int, row_stride: int, nblk: int, nrows: int,
                     ncols: int) -> int:
    """STORE: ``2 + store_read_cycles + dram_latency + beats`` (``DMA_START``; write channel:
    the on-chip read before the first beat, then the beats, then the write response
    ``dram_latency`` cycles after the last beat; done follows it)."""
    return _dma_cycles(cfg, dma_box_beats(cfg, addr, blk_stride, row_stride, nblk, nrows, ncols * cfg.tn),
                       store_read_cycles(cfg))


def dma_linear_cycles(cfg: AcceleratorConfig, addr: int, nbytes: int) -> int:
    """LOAD_WGT: one contiguous burst from DRAM byte ``addr``, ``2 + dram_latency + beats``."""
    return _dma_cycles(cfg, dma_segment_beats(cfg, addr, nbytes), 0)


def conv_inner_steps(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int,
                     sw: int = 1, kept: int | None = None) -> int:
    """PE-array steps (cycles) to accumulate one pixel group. Pixel-parallel at column stride
    ``sw >= 2`` takes two cycles a step: the line buffer's ``tn`` banks deliver the ``tn``
    pixels at stride 2 as two halves of ``tn/2``. With one line-buffer copy
    (``cfg.lb_copies == 1``) a depthwise step of more than ``tn`` channels reads its two
    channel blocks one after the other: twice the cycles again. ``kept``: an SPCONV's listed
    steps instead of the dense ``chans*kh*kw`` (``kh*kw`` depthwise; docs/sparsity.md)."""
    if pixel:
        steps = (1 if depthwise else chans) * kh * kw if kept is None else kept
        blocks = 2 if depthwise and cfg.lb_copies == 1 and chans > cfg.tn else 1
        return steps * (2 if sw >= 2 else 1) * blocks
    return ceil_div(chans, cfg.tn) * kh * kw


def conv_drain(cfg: AcceleratorConfig) -> int:
    """Cycles to retire one pixel group's results: the ``tm*tn`` sums of the PE array in
    chunks of ``ppu_lanes``, in both dataflows (channel-parallel adds each row's ``tn`` sums
    while they drain and post-processes the ``tm`` totals with the last chunk)."""
    return ceil_div(cfg.tm * cfg.tn, cfg.ppu_lanes)


def conv_slots(cfg: AcceleratorConfig, pixel, planes: int = 1):
    """Cycles a CONV pixel group's results take to retire: ``conv_drain`` chunks, of which
    each one that reaches the post-processing unit (every chunk pixel-parallel, the last one
    channel-parallel) writes its ``planes`` byte planes one a cycle (docs/isa.md "Wide
    outputs"). Elementwise on numpy arrays as on ints."""
    drain = conv_drain(cfg)
    slots = np.where(pixel, drain * planes, drain - 1 + planes)
    return slots if isinstance(slots, np.ndarray) and slots.ndim else int(slots)


def conv_weight_words(cfg: AcceleratorConfig, pixel, depthwise, chans, kh, kw):
    """Weight words (``tm*tn`` bytes) a CONV with these fields reads from ``w_addr`` on
    (docs/isa.md "LOAD_WGT"): pixel-parallel packs its steps (``kh*kw`` per input channel, or
    ``kh*kw`` in all when depthwise) ``tn`` to a word; channel-parallel takes one word per
    input block and tap. Elementwise on numpy arrays (the loader's rules) as on ints."""
    taps = kh * kw
    steps = np.where(depthwise, taps, chans * taps)
    words = np.where(pixel, ceil_div(steps, cfg.tn), ceil_div(chans, cfg.tn) * taps)
    return words if isinstance(words, np.ndarray) and words.ndim else int(words)


def conv_psum_entries(cfg: AcceleratorConfig, pixel, rows, cols):
    """Partial-sum entries a CONV tile of ``rows x cols`` output pixels uses (docs/isa.md
    "Partial sums"): one per result chunk that reaches the post-processing unit — every chunk
    of every pixel group (pixel-parallel), the one chunk of totals per pixel (channel-parallel).
    Elementwise on numpy arrays as on ints."""
    entries = np.where(pixel, rows * ceil_div(cols, cfg.tn) * conv_drain(cfg), rows * cols)
    return entries if isinstance(entries, np.ndarray) and entries.ndim else int(entries)


#: Cycles from the compute unit's accept of a CONV or VEC to its start (``hw/compute.py``):
#: the instruction is registered and decoded in the next cycle, so no combinational path runs
#: from the controller's issue decision into the decoder. (A NOP takes its one cycle.)
COMPUTE_START = 1
#: Cycles from an SPCONV's start until its index walker's first step is on its stream
#: (``hw/spconv_walk.py``: the first read asked for the cycle after the start, its word a
#: cycle later into the chunk queue, the queue's head through the stream's register).
SPCONV_PRIMING = 4
#: An SPCONV's extra start cycles over a CONV's: the walker's priming, then the sequencer's
#: offset stage (``hw/seq.py``), after which the sequencer starts with the first step.
SPCONV_START = SPCONV_PRIMING + 1


def conv_cycles(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int,
                rows: int, cols: int, sw: int = 1, planes: int = 1, kept: int | None = None) -> int:
    """CONV: ``COMPUTE_START``, then per output row, pixel groups (one pixel for channel-parallel, tn pixels for
    pixel-parallel) each take max(accumulation steps, retire slots) cycles — the
    accumulators are double-buffered so a group's drain overlaps the next group's steps —
    then the last group's drain, which has nothing to overlap (``min(steps, drain)``: its
    first chunk retires with its last step), and the fixed pipeline latency. ``drain`` is
    ``conv_slots`` (``planes`` byte planes a result: 1, or 2 and 4 for wide outputs). An
    SPCONV is this rule with its ``kept`` steps (pixel-parallel only), started
    ``SPCONV_START`` cycles later."""
    inner = conv_inner_steps(cfg, pixel, depthwise, chans, kh, kw, sw, kept)
    drain = conv_slots(cfg, pixel, planes)
    groups = ceil_div(cols, cfg.tn) if pixel else cols
    start = COMPUTE_START + (SPCONV_START if kept is not None else 0)
    return start + rows * groups * max(inner, drain) + min(inner, drain) + cfg.pe_latency


def vec_taps(cfg: AcceleratorConfig, pool: bool, add: bool, kh: int, kw: int) -> int:
    """Line-buffer reads a VEC makes per output word: a pool's ``kh*kw`` window taps; ADD one
    (both operands at once, from two line-buffer copies) or, with one copy
    (``cfg.lb_copies == 1``), two (``a``, then ``b``); the others one."""
    return kh * kw if pool else 2 if add and cfg.lb_copies == 1 else 1


def vec_cycles(cfg: AcceleratorConfig, taps: int, nblk: int, rows: int, cols: int) -> int:
    """VEC: ``COMPUTE_START``, then one word (tn lanes) per cycle per read (``taps``:
    ``vec_taps``), then the last word's one-cycle drain and the fixed pipeline latency."""
    return COMPUTE_START + rows * cols * nblk * max(1, taps) + 1 + cfg.pe_latency


def fetch_beats(cfg: AcceleratorConfig) -> int:
    """DRAM beats of one instruction word (``instr_bytes`` is whole beats, see the config)."""
    return cfg.instr_bytes // cfg.dram_bytes_per_cycle


def fetch_ready(cfg: AcceleratorConfig, index: int, prev_ready: int | None = None,
                freed: int | None = None) -> int:
    """Cycle at which instruction ``index`` of a segment is in the fetch buffer. Fetch has its
    own DRAM read port (not the DMA port) with the DMA port's latency and bandwidth: one burst
    per instruction, requested while the buffer (``fetch_depth`` instructions, counting those
    in flight) has room, answered in order at one beat a cycle. ``prev_ready`` is instruction
    ``index - 1``'s ready cycle; ``freed`` the dispatch cycle of instruction
    ``index - fetch_depth``, whose slot this one reuses (its request goes out the cycle
    after)."""
    nb = fetch_beats(cfg)
    ready = cfg.dram_latency + nb if prev_ready is None else prev_ready + nb
    if freed is not None:
        ready = max(ready, freed + 1 + cfg.dram_latency + nb)
    return ready
