"""Loading and running damaged build directories: one-line ``ProgramError``s, never a hang."""

import hashlib
import json
import re

import numpy as np
import onnx
import pytest

from shiftflow.frontend.importer import import_onnx
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import INSTR_BYTES, Opcode, encode
from shiftflow.ir.program import Program, ProgramError, load_program, save_program
from shiftflow.sim.run import simulate
from tests.modelgen import conv_layer_model
from tests.sim.handbuilt import conv_program


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "layer.onnx"
    onnx.save(conv_layer_model(cin=3, cout=5, hw=(6, 5)), path)
    return conv_program(TINY, import_onnx(path))


@pytest.fixture
def build(program, tmp_path):
    save_program(program, tmp_path)
    return tmp_path


def _rewrite(build, name, data: bytes):
    """Replace a file and fix its checksum, so only the content is wrong."""
    (build / name).write_bytes(data)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["checksums"][name] = hashlib.sha256(data).hexdigest()
    (build / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(build, **changes):
    manifest = json.loads((build / "manifest.json").read_text())
    manifest.update(changes)
    (build / "manifest.json").write_text(json.dumps(manifest))


def _drop(build, key):
    manifest = json.loads((build / "manifest.json").read_text())
    del manifest[key]
    (build / "manifest.json").write_text(json.dumps(manifest))


def _load_error(build, **kw) -> str:
    with pytest.raises(ProgramError) as info:
        load_program(build, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_round_trip_simulates_identically(program, build):
    a, b = simulate(program, seed=1), simulate(load_program(build, TINY), seed=1)
    assert all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
    assert a.total_cycles == b.total_cycles


@pytest.mark.parametrize("bit", [3, 8 * INSTR_BYTES + 100, -1])
def test_bit_flip_fails_the_checksum(build, bit):
    data = bytearray((build / "program.bin").read_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    (build / "program.bin").write_bytes(bytes(data))
    assert "program.bin" in _load_error(build) and "checksum" in _load_error(build)


def test_truncated_program(build):
    _rewrite(build, "program.bin", (build / "program.bin").read_bytes()[:-10])
    assert "not the" in _load_error(build) and "instructions of 64 bytes" in _load_error(build)


def test_invalid_opcode_after_fixing_the_checksum(build):
    data = bytearray((build / "program.bin").read_bytes())
    data[2 * INSTR_BYTES] = 0x07  # opcode 7 is not assigned
    _rewrite(build, "program.bin", bytes(data))
    assert "instruction 2: invalid opcode 7" in _load_error(build)


def test_reserved_opcode_is_rejected(build):
    data = bytearray((build / "program.bin").read_bytes())
    data[0:INSTR_BYTES] = encode(Opcode.NMS)
    _rewrite(build, "program.bin", bytes(data))
    assert "instruction 0 (NMS): needs levels >= 1" in _load_error(build)


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "manifest.json").unlink(), "has no manifest.json"),
    (lambda b: (b / "manifest.json").write_text("{\"format\": "), "manifest.json .* is corrupted"),
    (lambda b: (b / "manifest.json").write_bytes((b / "manifest.json").read_bytes()[:200]), "is corrupted"),
    (lambda b: (b / "manifest.json").write_bytes(b"\xff\xfe garbage"), "is corrupted"),
    (lambda b: (b / "manifest.json").write_text("[1, 2]"), "not a shiftflow program manifest"),
    (lambda b: _edit_manifest(b, version=99), "version 99 is not supported"),
    (lambda b: _drop(b, "segments"), "lacks 'segments'"),
    (lambda b: (b / "weights.bin").unlink(), "lacks weights.bin"),
    (lambda b: (b / "graph.ir").write_text("graph x"), "graph.ir .* does not match its checksum"),
])
def test_damaged_manifest_or_files(build, damage, message):
    damage(build)
    assert re.search(message, _load_error(build))


def test_mismatched_target(build):
    assert _load_error(build, expect_target=ZU3EG) == "program was compiled for target 'tiny', not 'zu3eg'"


def _with(program, **manifest_changes) -> Program:
    return Program(program.config, program.instructions, program.weights, program.graph,
                   dict(program.manifest, **manifest_changes))


def test_bad_segments_are_named(program):
    n = program.n_instructions
    with pytest.raises(ProgramError, match=f"segment 0..{n} is outside the program's {n} instructions"):
        simulate(_with(program, segments=[{"kind": "host", "ops": [program.graph.ops[0].name]},
                                          {"kind": "accel", "start": 0, "count": n + 1}]))
    with pytest.raises(ProgramError, match="neither 'host' nor 'accel'"):
        simulate(_with(program, segments=[{"kind": "gpu"}]))
    with pytest.raises(ProgramError, match="names op 'nope'"):
        simulate(_with(program, segments=[{"kind": "host", "ops": ["nope"]}]))
    with pytest.raises(ProgramError, match=r"must end with FINISH"):
        simulate(_with(program, segments=[{"kind": "host", "ops": [program.graph.ops[0].name]},
                                          {"kind": "accel", "start": 0, "count": n - 1}]))


def test_deadlocking_program_is_rejected(program):
    words = bytearray(program.instructions)
    for i in (1, 2):  # the two loads that push the conv's token
        words[i * INSTR_BYTES:(i + 1) * INSTR_BYTES] = encode(Opcode.NOP)
    bad = Program(program.config, bytes(words), program.weights, program.graph, program.manifest)
    with pytest.raises(ProgramError, match=r"instruction 3 \(CONV\) pops a token .* would deadlock"):
        simulate(bad)


def test_pow2_code_with_a_reserved_bit_is_rejected(tmp_path, capsys):
    """A compiled pow2 conv whose weights.bin gets bit 3 set in a code: ``simulate`` (API and
    CLI) stops with a one-line ProgramError naming the CONV and the code."""
    from shiftflow.backend.compile import compile_model
    from shiftflow.cli import main

    onnx.save(conv_layer_model(cin=3, cout=5, hw=(6, 5), pow2=True), tmp_path / "pow2.onnx")
    program = compile_model(tmp_path / "pow2.onnx", TINY, dataflow="pixel")  # pow2 codes are pixel-parallel only
    build = tmp_path / "build"
    save_program(program, build)
    simulate(load_program(build))  # intact: runs
    data = bytearray((build / "weights.bin").read_bytes())
    first = next(i for i, b in enumerate(data) if b)  # the first layer's weight codes come first
    assert data[first] & 0x40 and not data[first] & 0x38
    data[first] |= 0x08
    _rewrite(build, "weights.bin", bytes(data))
    with pytest.raises(ProgramError) as info:
        simulate(load_program(build))
    msg = str(info.value)
    assert re.fullmatch(rf"instruction \d+ \(CONV\): pow2 weight code 0x{data[first]:02x} in weight word \d+ "
                        r"\(row \d+, lane \d+\) sets reserved bits 5..3", msg), msg
    assert main(["simulate", str(build)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {msg}"]


def test_off_beat_weight_load_is_rejected_at_load_time(program, build):
    """A LOAD_WGT whose DRAM address is off the beat its on-chip address is on: the RTL's DMA
    would not shift the bytes, so the simulator's and the RTL's results would differ. The
    field rules (ir/rules.py) reject it when the build is loaded and when it is simulated."""
    words = bytearray(program.instructions)
    i, ins = next((i, ins) for i, ins in enumerate(decode_program(program.instructions))
                  if ins.opcode == Opcode.LOAD_WGT)
    body = {k: ins.f[k] for k in ("dram_addr", "nbytes", "target", "bank", "sram_addr")}
    body["dram_addr"] += 4
    words[i * INSTR_BYTES:(i + 1) * INSTR_BYTES] = encode(Opcode.LOAD_WGT, body, push_next=ins.push_next,
                                                          pop_next=ins.pop_next)
    _rewrite(build, "program.bin", bytes(words))
    want = rf"instruction {i} \(LOAD_WGT\): sram_addr \d+ and dram_addr {body['dram_addr']} differ modulo the DRAM beat"
    assert re.search(want, _load_error(build))
    with pytest.raises(ProgramError, match=want):
        simulate(Program(program.config, bytes(words), program.weights, program.graph, program.manifest))


def _set(build, path, value):
    """Set ``manifest[path[0]][path[1]]...`` (``None`` value: delete the key) and keep it loadable
    otherwise (the checksums are untouched)."""
    manifest = json.loads((build / "manifest.json").read_text())
    node = manifest
    for k in path[:-1]:
        node = node[k]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    (build / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("path, value, message", [
    (("checksums",), [1], r"checksums must be an object, got \[1\]"),
    (("target",), "tiny", r"target must be an object, got 'tiny'"),
    (("segments",), {}, r"segments must be a list, got \{\}"),
    (("segments", 1), 1.5, r"segments\[1\] must be an object of kind 'host' or 'accel', got 1.5"),
    (("segments", 0, "ops"), None, r"segments\[0\].ops must be a list of op names, got None"),
    (("segments", 1, "count"), "18", r"segments\[1\].count must be a positive integer, got '18'"),
    (("dram", "const_base"), {}, r"dram.const_base must be a non-negative integer, got \{\}"),
    (("tensors", "nope"), {}, r"tensors\['nope'\] must be a tensor of the program's graph, got 'nope'"),
    (("tensors", "dq25", "blk_stride"), None, r"tensors\['dq25'\].blk_stride must be a byte offset inside the DRAM "
                                               r"of \d+ bytes, got None"),
    (("tensors", "dq5", "blk_stride"), 2**64, r"tensors\['dq5'\].blk_stride must be a byte offset inside the DRAM "
                                              r"of \d+ bytes, got 18446744073709551616"),
    (("tensors", "dq25", "shape", 3), 5.0, r"tensors\['dq25'\].shape must be the graph's \[1, 5, 6, 5\], got "
                                           r"\[1, 5, 6, 5.0\]"),
    (("tensors", "dq25", "signed"), 0, r"tensors\['dq25'\].signed must be true or false, got 0"),
    (("tensors", "dq25", "planes"), 3, r"tensors\['dq25'\].planes must be 1, 2 or 4 \(bytes a value\), got 3"),
    (("layers", 0, "last"), None, r"layers\[0\] first..last must be an instruction range inside the program's "
                                  r"\d+, got \[\d+, None\]"),
    (("layers", 0, "name"), None, r"layers\[0\] must be an object with a name, got \{'op': .*"),
    (("layers", 0, "dataflow"), ["pixel"], r"layers\[0\].dataflow must be a string, got \['pixel'\]"),
    (("host_reasons",), [], r"host_reasons must be an object, got \[\]"),
])
def test_malformed_manifest_entries_are_named(build, path, value, message):
    """Found by fuzzing (benchmarks/bench_fuzz.py): a manifest value of the wrong type or shape
    raised KeyError / TypeError / AttributeError in the simulator and the report."""
    _set(build, path, value)
    assert re.fullmatch(rf"manifest.json {message}; recompile the model", _load_error(build))


def test_empty_tile_is_rejected_at_load_time(program, build):
    """Found by fuzzing: a CONV of 0 columns (with a fused pool it also crashed the simulator's
    pooling). Replayed on the RTL's compute unit (tests/hw/replay.py) an empty tile takes cycles
    the cycle model does not count, so the field rules refuse it (ir/rules.py)."""
    from shiftflow.ir.isa import INSTR, layout_table

    (off, width), = [(o, w) for p, o, w, _ in layout_table(INSTR) if p == "body.conv.tile.cols"]
    i = next(i for i, ins in enumerate(decode_program(program.instructions)) if ins.opcode == Opcode.CONV)
    words = bytearray(program.instructions)
    word = int.from_bytes(words[i * INSTR_BYTES:(i + 1) * INSTR_BYTES], "little") & ~(((1 << width) - 1) << off)
    words[i * INSTR_BYTES:(i + 1) * INSTR_BYTES] = word.to_bytes(INSTR_BYTES, "little")
    _rewrite(build, "program.bin", bytes(words))
    assert re.fullmatch(rf"program.bin instruction {i} \(CONV\): an empty \d+x0 tile \(tile.rows and tile.cols must "
                        r"be at least 1\)", _load_error(build))
