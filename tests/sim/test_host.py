"""The channel-blocked DRAM tensor format of host ops."""

import numpy as np
import pytest

from shiftflow.ir.config import TINY
from shiftflow.ir.graph import Graph
from shiftflow.ir.isa import Opcode, encode
from shiftflow.ir.program import Program, ProgramError
from shiftflow.sim.accelerator import SimAccelerator
from shiftflow.sim.host import read_tensor, write_tensor


def _acc(size=4096):
    acc = SimAccelerator()
    acc.load_program(Program(TINY, encode(Opcode.FINISH), b"", Graph("t", (), (), (), {}), {"dram": {"size": size}}))
    return acc


def test_round_trip_keeps_neighbours_and_zeroes_padding():
    acc = _acc()
    acc.write_dram(0, b"\xee" * 4096)
    # 6 channels (2 blocks of tn=4, one allocated spare block) of a 2x3 map inside a wider
    # concat: rows are 5 pixels apart, blocks 64 bytes apart.
    spec = {"addr": 100, "shape": [1, 6, 2, 3], "bits": 8, "signed": True, "frac": 3, "blocks": 3,
            "row_stride": 5 * 4, "blk_stride": 64}
    x = np.arange(-18, 18).reshape(1, 6, 2, 3)
    write_tensor(acc, "x", spec, 4, x)
    assert np.array_equal(read_tensor(acc, "x", spec, 4), x)
    raw = np.frombuffer(acc.read_dram(0, 4096), np.uint8)
    assert raw[100 + 12] == 0xEE  # byte after row 0 of block 0 belongs to someone else
    assert raw[100 + 64 + 2] == 0  # channel 6 (padding lane of block 1)
    assert not raw[100 + 128:100 + 128 + 12].any()  # the spare block is zero
    assert raw[:100].tolist() == [0xEE] * 100


def test_unsigned_and_vector_tensors():
    acc = _acc()
    spec = {"addr": 0, "shape": [1, 5], "bits": 8, "signed": False, "frac": 0, "blocks": 2, "row_stride": 4,
            "blk_stride": 4}
    write_tensor(acc, "v", spec, 4, np.array([[0, 200, 255, 7, 128]]))
    assert read_tensor(acc, "v", spec, 4).tolist() == [[0, 200, 255, 7, 128]]


@pytest.mark.parametrize("planes, signed, lo, hi", [(2, True, -(1 << 15), (1 << 15) - 1), (2, False, 0, (1 << 16) - 1),
                                                    (4, True, -(1 << 31), (1 << 31) - 1)])
def test_wide_tensors_are_byte_planes(planes, signed, lo, hi):
    """A wide tensor (docs/isa.md "Wide outputs"): byte k of channel block b in block k*blocks + b."""
    acc = _acc()
    spec = {"addr": 64, "shape": [1, 5, 2, 3], "bits": 8 * planes, "signed": signed, "frac": 0, "blocks": 2,
            "row_stride": 12, "blk_stride": 24, "planes": planes}
    x = np.random.default_rng(planes).integers(lo, hi, size=(1, 5, 2, 3), endpoint=True)
    x.flat[:2] = lo, hi
    write_tensor(acc, "w", spec, 4, x)
    assert np.array_equal(read_tensor(acc, "w", spec, 4), x)
    raw = np.frombuffer(acc.read_dram(64, planes * 48), np.uint8).reshape(planes, 2, 2, 3, 4)
    for k in range(planes):  # plane k, block 0, row 0, column 0, lane 1 is byte k of channel 1
        assert raw[k, 0, 0, 0, 1] == (int(x[0, 1, 0, 0]) >> (8 * k)) & 0xFF
    with pytest.raises(ProgramError, match="lists 3 byte planes; a value is 1, 2 or 4 bytes"):
        read_tensor(acc, "w", dict(spec, planes=3), 4)


def test_bad_tensor_specs():
    acc = _acc()
    spec = {"addr": 0, "shape": [1, 9, 2, 2], "bits": 8, "signed": True, "frac": 0, "blocks": 2, "row_stride": 8,
            "blk_stride": 16}
    with pytest.raises(ProgramError, match="lists 2 channel blocks; 9 channels need 3"):
        read_tensor(acc, "t", spec, 4)
    with pytest.raises(ProgramError, match=r"shape \[2, 9, 2, 2\]"):
        read_tensor(acc, "t", dict(spec, shape=[2, 9, 2, 2]), 4)
    with pytest.raises(ProgramError, match="outside the DRAM of 4096"):
        read_tensor(acc, "t", dict(spec, blocks=3, addr=4090), 4)
