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
    # found by fuzzing: a manifest's target with these made the simulator overflow or run out of memory
    ({"acc_bits": 40}, r"acc_bits \(40\) must be at most 32 \(the width of a parameter entry's bias\)"),
    ({"line_buffer_bytes": 1 << 40}, r"line_buffer_bytes \(1099511627776\) must be at most 4194304 \(words the "
                                     r"ring base reaches\)"),
    ({"output_buffer_bytes": 1 << 24}, r"output_buffer_bytes \(16777216\) must be at most 8388608"),
    ({"weight_bank_bytes": 1 << 25}, r"weight_bank_bytes \(33554432\) must be at most 16777216"),
    ({"param_entries": 4097}, r"param_entries \(4097\) must be at most 4096 \(entries p_addr reaches\)"),
    ({"dram_bytes": 1 << 33}, r"dram_bytes \(8589934592\) must be at most 4294967296"),
    ({"tm": 4096}, r"tm \(4096\) must be at most 4095 \(a CONV's cout field holds at most tm\)"),
    ({"ppu_lanes": 32}, r"ppu_lanes \(32\) must be at most 16 \(lanes past the tm\*tn results"),
    ({"psum_entries": 1 << 21}, r"psum_entries \(2097152\) must be at most 1048576 \(the simulator holds them"),
    ({"lb_copies": 3}, r"lb_copies \(3\) must be 1 or 2"),
    ({"dispatch_stage": 0}, r"queue_products needs dispatch_stage 1"),
    ({"lb_copies": 1, "tm": 16, "ppu_lanes": 16}, r"one line-buffer copy \(lb_copies 1\) serves at most two channel "
                                                  r"blocks: tm \(16\) must be at most 2\*tn \(8\)"),
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
