"""The layout-derived decoder equals ``ir.isa.to_dict`` (amaranth ``from_bits``), and rejects
exactly the words amaranth cannot name; ``load_program`` and the disassembler use it."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.ir.config import TINY
from shiftflow.ir.decode import _BODIES, decode_program, scan
from shiftflow.ir.disasm import disassemble
from shiftflow.ir.graph import Graph
from shiftflow.ir.isa import UNIT_OF, Act, Dataflow, Opcode, Unit, VecOp, WgtTarget, encode, to_dict
from shiftflow.ir.program import Program, ProgramError, load_program, save_program

_ENUM_VALUES = {m.name.lower(): m.value for e in (Act, Dataflow, VecOp, WgtTarget) for m in e}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = _ENUM_VALUES.get(v, v) if isinstance(v, str) else v
    return out


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=64, max_size=64), op=st.sampled_from(list(Opcode)))
def test_decoder_matches_amaranth(raw, op):
    flags = raw[0] & 0xF0 if UNIT_OF[op] == Unit.COMPUTE else 0  # load/store may not use all four flags
    word = bytes([flags | op.value]) + raw[1:]
    try:
        ref = to_dict(word)
    except ValueError:  # an enum field out of range: amaranth cannot name it, the decoder rejects it
        assert list(scan(word)) == [0]
        with pytest.raises(ProgramError, match=rf"instruction 0 \({op.name}\): \S+ has invalid value \d+$"):
            decode_program(word)
        return
    assert scan(word) == {}
    (ins,) = decode_program(word)
    assert ins.opcode == op
    assert [ins.pop_prev, ins.pop_next, ins.push_prev, ins.push_next] == \
        [ref["pop_prev"], ref["pop_next"], ref["push_prev"], ref["push_next"]]
    body = next((v for v in ref.values() if isinstance(v, dict)), {})
    assert ins.f == _flat(body)


def test_decode_a_slice_keeps_global_indices():
    words = encode(Opcode.NOP) * 3 + encode(Opcode.FINISH)
    assert [i.index for i in decode_program(words, 2, 2)] == [2, 3]
    with pytest.raises(ProgramError, match="outside the program's 4"):
        decode_program(words, 3, 2)


def _with_field(word: bytes, op: Opcode, name: str, value: int) -> bytes:
    (fld,) = [f for f in _BODIES[op] if f.name == name]
    v = int.from_bytes(word, "little") & ~(((1 << fld.width) - 1) << fld.offset) | value << fld.offset
    return v.to_bytes(64, "little")


def test_invalid_opcode_flags_and_enum_values_are_named():
    bad = bytes([7]) + bytes(63)
    with pytest.raises(ProgramError, match="^instruction 1: invalid opcode 7$"):
        decode_program(encode(Opcode.NOP) + bad)
    with pytest.raises(ProgramError, match=r"instruction 0 \(LOAD_WGT\): the load unit has no previous unit"):
        decode_program(encode(Opcode.LOAD_WGT, {"nbytes": 1}, push_prev=1))
    with pytest.raises(ProgramError, match=r"instruction 0 \(STORE\): the store unit has no next unit"):
        decode_program(encode(Opcode.STORE, {}, pop_next=1))
    conv = _with_field(encode(Opcode.CONV), Opcode.CONV, "post.act", 3)
    vec = _with_field(encode(Opcode.VEC), Opcode.VEC, "op", 7)
    with pytest.raises(ProgramError, match=r"^instruction 1 \(CONV\): post.act has invalid value 3$"):
        decode_program(encode(Opcode.NOP) + conv + vec)
    assert {i: str(p) for i, p in scan(bad + conv + vec).items()} == {
        0: "instruction 0: invalid opcode 7", 1: "instruction 1 (CONV): post.act has invalid value 3",
        2: "instruction 2 (VEC): op has invalid value 7"}


def test_every_enum_field_is_checked():
    checked = {(op, f.name) for op, fields in _BODIES.items() for f in fields if f.enum is not None}
    assert {(Opcode.CONV, "dataflow"), (Opcode.CONV, "post.act"), (Opcode.VEC, "op"), (Opcode.VEC, "post.act"),
            (Opcode.LOAD_WGT, "target")} <= checked


def _build(tmp_path, instructions: bytes):
    manifest = {"dram": {"size": 0, "const_base": 0}, "inputs": [], "outputs": [], "segments": [], "layers": [],
                "tensors": {}}
    program = Program(TINY, instructions, b"", Graph("g", (), (), (), {}), manifest)
    save_program(program, tmp_path)
    return tmp_path


def test_load_program_rejects_enum_values_out_of_range(tmp_path):
    vec = _with_field(encode(Opcode.VEC), Opcode.VEC, "op", 5)
    with pytest.raises(ProgramError, match=r"^program.bin instruction 2 \(VEC\): op has invalid value 5$"):
        load_program(_build(tmp_path, encode(Opcode.NOP) * 2 + vec + encode(Opcode.FINISH)))


def test_loading_a_large_program_is_fast(tmp_path):
    """With the field rules (``ir/rules.py``) too."""
    win = {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1}
    tile, inp = {"rows": 1, "cols": 1, "obuf_cols": 1}, {"ring": {"slots": 1, "cols": 1}}
    words = (encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL, "win": win, "tile": dict(tile, obuf_blk=1), "inp": inp,
                                  "post": {"act": Act.RELU}}) +
             encode(Opcode.LOAD_WGT, {"nbytes": 64}, push_next=1) +
             encode(Opcode.VEC, {"op": VecOp.RESIZE, "win": win, "tile": tile, "inp": inp}))
    build = _build(tmp_path, words * 5000 + encode(Opcode.FINISH))
    t0 = time.perf_counter()
    assert load_program(build).n_instructions == 15001
    assert time.perf_counter() - t0 < 0.5


def test_disassembler_prints_bad_words_instead_of_failing():
    conv = _with_field(encode(Opcode.CONV, {"dataflow": Dataflow.PIXEL}, pop_prev=1), Opcode.CONV, "post.act", 3)
    lines = disassemble(encode(Opcode.LOAD_WGT, {"nbytes": 64, "target": WgtTarget.PARAMS}) + conv +
                        bytes([0xAF]) + bytes(62) + b"\x01", 10, {10: "conv1"})
    assert lines[0].split() == ["10", "LOAD_WGT", "nbytes=64", "target=params", ";", "conv1"]
    assert lines[1].split() == ["11", "CONV", "<", "dataflow=pixel", "post.act=3", "!!", "post.act", "has", "invalid",
                                "value", "3"]
    assert lines[2].split() == ["12", "?", f"word=0x1{'0' * 124}af", "!!", "invalid", "opcode", "15"]
