"""``AcceleratorConfig``: the instruction size is the ISA's fact, not a target knob; every field
is validated with a message naming it."""

import json

import pytest

from shiftflow.errors import UsageError
from shiftflow.ir.config import TARGETS, TINY, AcceleratorConfig, load_target
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


@pytest.mark.parametrize("patch, message", [
    ({"tn": 0}, "tn must be positive, got 0"),
    ({"tm": -4}, "tm must be positive, got -4"),
    ({"tm": "4"}, "tm must be an integer, got '4'"),
    ({"line_buffer_bytes": True}, "line_buffer_bytes must be an integer, got True"),
    ({"ppu_lanes": 8.0}, "ppu_lanes must be an integer, got 8.0"),
    ({"dram_latency": -1}, "dram_latency must be >= 0, got -1"),
    ({"clock_mhz": -100}, "clock_mhz must be a positive number, got -100"),
    ({"clock_mhz": 0}, "clock_mhz must be a positive number, got 0"),
    ({"clock_mhz": "fast"}, "clock_mhz must be a positive number, got 'fast'"),
    ({"clock_mhz": False}, "clock_mhz must be a positive number, got False"),
    ({"name": ""}, "name must be a non-empty string, got ''"),
    ({"weight_encodings": "int"}, "weight_encodings must be a non-empty list of 'int'/'pow2', got 'int'"),
    ({"weight_encodings": ["int", "fp8"]}, r"weight_encodings must be a subset of \('int', 'pow2'\)"),
    ({"budget": {"lut": -1}}, r"budget must map resource names to non-negative integers, got \{'lut': -1\}"),
    ({"tm": 0, "clock_mhz": -1}, "tm must be positive, got 0; clock_mhz must be a positive number, got -1"),
])
def test_invalid_field_is_named(patch, message):
    with pytest.raises(UsageError, match=rf"^target '\S*' is invalid: .*{message}"):
        AcceleratorConfig.from_json({**TINY.to_json(), **patch})


def test_valid_targets_round_trip():
    for cfg in TARGETS.values():
        assert AcceleratorConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert AcceleratorConfig.from_json({**TINY.to_json(), "dram_latency": 0, "clock_mhz": 250}).clock_mhz == 250


def test_target_file_names_the_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**TINY.to_json(), "tn": 0}))
    with pytest.raises(UsageError, match=rf"^target file '{path}': target 'tiny' is invalid: tn must be positive"):
        load_target(str(path))
