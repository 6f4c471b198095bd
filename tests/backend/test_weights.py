"""Weight encoding (backend/weights.py): the ISA's pow2 codes (docs/isa.md "LOAD_WGT")."""

import numpy as np
import pytest

from shiftflow.backend.weights import pow2_codes


def test_pow2_codes_cover_exponents_0_to_7():
    w = np.array([0, 1, -1, 2, -4, 64, 128, -128])
    assert pow2_codes(w).tolist() == [0x00, 0x40, 0xC0, 0x41, 0xC2, 0x46, 0x47, 0xC7]


@pytest.mark.parametrize("weight", [256, -256, 1 << 15, 0.5])
def test_pow2_codes_refuse_exponents_outside_0_to_7(weight):
    """Exponents 8.. would need the reserved code bits 5..3 (-2**8 → 0xC8 = -2**0 on the
    hardware); fractions have no code at all."""
    with pytest.raises(ValueError, match=rf"holds the weight {weight}: .* 0 <= e <= 7 only"):
        pow2_codes(np.array([[1, weight], [0, -2]]))


def test_pow2_codes_refuse_non_powers_of_two():
    with pytest.raises(ValueError, match="not a power of two"):
        pow2_codes(np.array([1, 3]))
