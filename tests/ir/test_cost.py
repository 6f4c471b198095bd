"""DMA costs (docs/isa.md, "Cycle model"): every segment pays for the beats it touches, so an
unaligned one pays one more; the box sum's closed form equals the segment-by-segment sum; loads
take latency + beats, stores ``store_read_cycles`` more (the output buffer's read and, on tiny,
its register slice), empty transfers DMA_EMPTY (2)."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.cost import DMA_EMPTY, dma_box_beats, dma_box_cycles, dma_linear_cycles, dma_segment_beats, dma_store_cycles

assert (TINY.tn, TINY.dram_bytes_per_cycle, TINY.dram_latency) == (4, 8, 16)


def test_unaligned_segment_pays_the_partial_first_beat():
    assert dma_segment_beats(TINY, 0, 8) == 1
    assert dma_segment_beats(TINY, 4, 8) == 2  # bytes 4..11 touch beats 0 and 1
    assert dma_segment_beats(TINY, 4, 4) == 1 and dma_segment_beats(TINY, 12, 12) == 2
    assert dma_segment_beats(TINY, 4, 0) == 0
    assert dma_linear_cycles(TINY, 68, 64) == 2 + 16 + 9  # DMA_START + dram_latency + beats


def test_box_of_odd_width_rows():
    # 3 rows of 3 pixels (12 bytes) with row stride 12: segments at 0, 12, 24 take 2, 2, 2 beats;
    # two blocks 36 bytes apart: the second block's rows start at 36, 48, 60 (2, 2, 2 beats).
    assert dma_box_cycles(TINY, 0, 36, 12, 2, 3, 3) == 2 + 16 + 12
    # a 1-pixel strip at column 1 of 4-pixel rows: 4 bytes at offset 4 of each beat, 1 beat each
    assert dma_box_cycles(TINY, 4, 64, 16, 1, 5, 1) == 2 + 16 + 5
    assert dma_box_cycles(TINY, 4, 64, 16, 0, 5, 1) == DMA_EMPTY  # an empty box: recognised from the registered command


def test_store_pays_the_output_buffer_read():
    # tiny's reads pass the register slice (store_read_slice): two cycles before the first
    # beat; without it, one (the output buffer's read)
    assert dma_store_cycles(TINY, 0, 36, 12, 2, 3, 3) == 4 + 16 + 12
    assert dma_store_cycles(dataclasses.replace(TINY, store_read_slice=False), 0, 36, 12, 2, 3, 3) == 3 + 16 + 12
    assert dma_store_cycles(TINY, 4, 64, 16, 1, 5, 0) == DMA_EMPTY
    assert dma_linear_cycles(TINY, 0, 0) == DMA_EMPTY


@settings(max_examples=200, deadline=None)
@given(cfg=st.sampled_from([TINY, ZU3EG]), addr=st.integers(0, 1 << 20), blk=st.integers(0, 4096),
       row=st.integers(0, 512), nblk=st.integers(0, 40), nrows=st.integers(0, 40), nbytes=st.integers(0, 300))
def test_box_sum_equals_segment_by_segment(cfg, addr, blk, row, nblk, nrows, nbytes):
    brute = sum(dma_segment_beats(cfg, addr + b * blk + r * row, nbytes) for b in range(nblk) for r in range(nrows))
    assert dma_box_beats(cfg, addr, blk, row, nblk, nrows, nbytes) == brute


def test_huge_boxes_are_priced_without_a_loop_over_segments():
    assert dma_box_beats(ZU3EG, 8, 4095 * 16 + 8, 3, 4095, 4095, 16) > 0
