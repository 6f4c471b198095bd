"""Bounded caches of work that depends only on instruction words, weights or the program, so
that it is done once and reused by every later frame (and every ``Machine``) that meets the
same words again.

Every key holds everything its value is computed from (the target, the instruction's
fields, the weight bytes), so a hit returns exactly what a fresh computation would; a cache
that outgrows its limit is emptied and refilled.
"""

from __future__ import annotations

import sys

from ..ir.config import AcceleratorConfig


class Cache(dict):
    """A dict that empties itself before it would hold more than ``limit`` entries, or, with
    ``weigh`` (a value's size in bytes), more than ``max_bytes`` of values."""

    def __init__(self, limit: int, max_bytes: int = 0, weigh=None):
        super().__init__()
        self.limit, self.max_bytes, self.weigh = limit, max_bytes, weigh
        self.bytes = 0

    def put(self, key, value):
        size = self.weigh(value) if self.weigh else 0
        if len(self) >= self.limit or self.bytes + size > self.max_bytes > 0:
            self.clear()
            self.bytes = 0
        self[key] = value
        self.bytes += size
        return value


def target_key(cfg: AcceleratorConfig) -> str:
    """A hashable key for a target (the config holds a dict, so it is not hashable itself);
    interned, so that keys of equal targets compare by identity."""
    return sys.intern(repr(cfg))


#: Instruction plans (``sim/conv.py``, ``sim/machine.py``): checked fields and views.
PLANS = Cache(1 << 15)
#: Gather regions of CONV tiles, shared by the output blocks that read the same input.
REGIONS = Cache(1 << 15, 1 << 28, lambda region: region.index.nbytes)
#: Prepared weights by content (``sim/conv.py``).
WEIGHTS = Cache(1 << 14, 1 << 28, lambda w: w.nbytes)
#: Per-instruction stall cycles and DRAM bytes of timelines (``sim/report.py``), by identity.
TIMELINE_COLUMNS = Cache(256)
#: Decoded programs and their segments' timelines (``sim/accelerator.py``).
PROGRAMS = Cache(4)
