"""The cycle model, shared by the compiler (to choose dataflows and tiles) and the simulator.

Every formula here is what the RTL must reproduce exactly; ``docs/isa.md`` states them in
words. Functions take plain numbers so the compiler can cost an instruction before encoding.
"""

from __future__ import annotations

import math

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


def dma_box_cycles(cfg: AcceleratorConfig, addr: int, blk_stride: int, row_stride: int, nblk: int, nrows: int,
                   ncols: int) -> int:
    """LOAD_ACT / STORE: requests are pipelined, so the latency is paid once; each row
    segment (one channel block of one row: ``ncols*tn`` contiguous bytes) streams its beats."""
    return cfg.dram_latency + dma_box_beats(cfg, addr, blk_stride, row_stride, nblk, nrows, ncols * cfg.tn)


def dma_linear_cycles(cfg: AcceleratorConfig, addr: int, nbytes: int) -> int:
    """LOAD_WGT: one contiguous burst from DRAM byte ``addr``."""
    return cfg.dram_latency + dma_segment_beats(cfg, addr, nbytes)


def conv_inner_steps(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int) -> int:
    """PE-array steps (cycles) to accumulate one pixel group."""
    if pixel:
        return (1 if depthwise else chans) * kh * kw
    return ceil_div(chans, cfg.tn) * kh * kw


def conv_drain(cfg: AcceleratorConfig, pixel: bool) -> int:
    """Cycles the post-processing unit needs to retire one pixel group's results."""
    return ceil_div(cfg.tm * cfg.tn if pixel else cfg.tm, cfg.ppu_lanes)


def conv_cycles(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int,
                rows: int, cols: int) -> int:
    """CONV: per output row, pixel groups (one pixel for channel-parallel, tn pixels for
    pixel-parallel) each take max(accumulation steps, post-processing drain) cycles — the
    accumulators are double-buffered so draining overlaps the next group — plus the fixed
    pipeline latency once per instruction."""
    inner = conv_inner_steps(cfg, pixel, depthwise, chans, kh, kw)
    if pixel:
        groups = ceil_div(cols, cfg.tn)
    else:
        groups = cols
    return rows * groups * max(inner, conv_drain(cfg, pixel)) + cfg.pe_latency


def vec_cycles(cfg: AcceleratorConfig, taps: int, nblk: int, rows: int, cols: int) -> int:
    """VEC: one word (tn lanes) per cycle per window tap (ADD reads both operands at once)."""
    return rows * cols * nblk * max(1, taps) + cfg.pe_latency


def fetch_ready(cfg: AcceleratorConfig, index: int) -> int:
    """Cycle at which instruction ``index`` of a segment is in the fetch buffer: instruction
    fetch has its own DRAM read port (not the DMA port), with the DMA port's latency and
    bandwidth, and streams the segment's words back to back after one latency."""
    return cfg.dram_latency + ceil_div((index + 1) * cfg.instr_bytes, cfg.dram_bytes_per_cycle)
