"""``AcceleratorConfig``: the instruction size is the ISA's fact, not a target knob."""

import json

import pytest

from shiftflow.errors import UsageError
from shiftflow.ir.config import TINY, AcceleratorConfig, load_target
from shiftflow.ir.isa import INSTR_BYTES


def test_instr_bytes_is_the_isas():
    assert TINY.instr_bytes == INSTR_BYTES
    assert "instr_bytes" not in TINY.to_json()
    with pytest.raises(TypeError):
        AcceleratorConfig(**dict(TINY.to_json(), instr_bytes=128))


def test_old_target_files_with_the_isas_value_still_load(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(dict(TINY.to_json(), instr_bytes=INSTR_BYTES)))
    assert load_target(str(path)) == TINY


def test_a_target_with_another_instruction_size_is_refused(tmp_path):
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(dict(TINY.to_json(), instr_bytes=128)))
    with pytest.raises(UsageError, match=r"instr_bytes is fixed by the ISA at 64 bytes .* sets 128: remove the field"):
        load_target(str(path))
