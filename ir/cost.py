"""The cycle model, shared by the compiler (to choose dataflows and tiles) and the simulator.

Every formula here is what the RTL must reproduce exactly; ``docs/isa.md`` states them in
words. Functions take plain numbers so the compiler can cost an instruction before encoding.
"""

from __future__ import annotations

from .config import AcceleratorConfig


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def dma_box_cycles(cfg: AcceleratorConfig, nblk: int, nrows: int, ncols: int) -> int:
    """LOAD_ACT / STORE: requests are pipelined, so the latency is paid once; each row
    segment (one channel block of one row: ncols*tn contiguous bytes) streams at the port
    bandwidth and starts on a fresh beat."""
    return cfg.dram_latency + nblk * nrows * ceil_div(ncols * cfg.tn, cfg.dram_bytes_per_cycle)


def dma_linear_cycles(cfg: AcceleratorConfig, nbytes: int) -> int:
    """LOAD_WGT: one contiguous burst."""
    return cfg.dram_latency + ceil_div(nbytes, cfg.dram_bytes_per_cycle)


def conv_inner_steps(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int) -> int:
    """PE-array steps (cycles) to accumulate one pixel group."""
    if pixel:
        return (1 if depthwise else chans) * kh * kw
    return ceil_div(chans, cfg.tn) * kh * kw


def conv_cycles(cfg: AcceleratorConfig, pixel: bool, depthwise: bool, chans: int, kh: int, kw: int,
                rows: int, cols: int) -> int:
    """CONV: per output row, pixel groups (one pixel for channel-parallel, tn pixels for
    pixel-parallel) each take max(accumulation steps, post-processing drain) cycles — the
    accumulators are double-buffered so draining overlaps the next group — plus the fixed
    pipeline latency once per instruction."""
    inner = conv_inner_steps(cfg, pixel, depthwise, chans, kh, kw)
    if pixel:
        groups, drain = ceil_div(cols, cfg.tn), ceil_div(cfg.tm * cfg.tn, cfg.ppu_lanes)
    else:
        groups, drain = cols, ceil_div(cfg.tm, cfg.ppu_lanes)
    return rows * groups * max(inner, drain) + cfg.pe_latency


def vec_cycles(cfg: AcceleratorConfig, taps: int, nblk: int, rows: int, cols: int) -> int:
    """VEC: one word (tn lanes) per cycle per window tap (ADD reads both operands at once)."""
    return rows * cols * nblk * max(1, taps) + cfg.pe_latency


def fetch_ready(cfg: AcceleratorConfig, index: int) -> int:
    """Cycle at which instruction ``index`` of a segment is in the fetch buffer: the fetch port
    streams instruction words back to back after one DRAM latency."""
    return cfg.dram_latency + ceil_div((index + 1) * cfg.instr_bytes, cfg.dram_bytes_per_cycle)
