"""The controller's register interface: the CSR port's signature and the register map.

The port is a plain synchronous register bus (the top puts an AXI-Lite or a debug bridge in
front of it): ``addr`` is a 32-bit word index, ``we`` writes ``wdata`` to register ``addr`` at
the end of the cycle, ``rdata`` is register ``addr`` combinationally (no read side effects).
"""

from __future__ import annotations

import enum

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

ADDR_BITS = 4
DATA_BITS = 32


class Reg(enum.IntEnum):
    """Register word indices. Counters are of the last (or current) segment."""
    CTRL = 0  # write bit 0 = 1: start a segment (ignored while STATUS.busy)
    STATUS = 1  # bit 0 busy, bit 1 done (sticky until the next start), bit 2 error
    SEG_ADDR = 2  # DRAM byte address of the segment's first instruction (a multiple of 64)
    SEG_LEN = 3  # instructions in the segment (the last one is its FINISH)
    ERROR = 4  # an ErrorCode
    CYCLES = 5  # cycles since the segment's cycle 0; ir.timeline's Timeline.cycles when done
    LOAD_BUSY = 6
    LOAD_STALL = 7
    COMPUTE_BUSY = 8
    COMPUTE_STALL = 9
    STORE_BUSY = 10
    STORE_STALL = 11


class ErrorCode(enum.IntEnum):
    NONE = 0
    ILLEGAL_OPCODE = 1  # an opcode other than NOP/LOAD_ACT/LOAD_WGT/CONV/VEC/STORE/FINISH/SPCONV
    TOKEN_OVERFLOW = 2  # a token pushed into a counter already holding token_depth
    NO_FINISH = 3  # SEG_LEN instructions without a FINISH among them (or SEG_LEN = 0)


STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4

#: ``(busy, stall)`` counter registers per unit, in ``ir.isa.Unit`` order.
UNIT_COUNTERS = ((Reg.LOAD_BUSY, Reg.LOAD_STALL), (Reg.COMPUTE_BUSY, Reg.COMPUTE_STALL),
                 (Reg.STORE_BUSY, Reg.STORE_STALL))


def csr_signature() -> wiring.Signature:
    """The CSR bus seen from the host (the controller's port is ``In(csr_signature())``)."""
    return wiring.Signature({
        "addr": Out(ADDR_BITS),
        "wdata": Out(DATA_BITS),
        "we": Out(1),
        "rdata": In(DATA_BITS),
    })
