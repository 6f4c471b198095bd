"""Shared fixtures: a deliberately cramped target that forces many strips, bands and groups."""

import pytest

from shiftflow.ir.config import AcceleratorConfig

SMALL = AcceleratorConfig(name="small", tm=8, tn=4, clock_mhz=100.0, line_buffer_bytes=2048, weight_bank_bytes=8192,
                          output_buffer_bytes=512, param_entries=32, dram_bytes_per_cycle=8, dram_latency=10,
                          ppu_lanes=8, pe_latency=4, queue_depth=3)


@pytest.fixture
def small():
    return SMALL
