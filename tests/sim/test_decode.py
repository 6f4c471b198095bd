"""The simulator's layout-derived decoder equals ``ir.isa.to_dict`` (amaranth ``from_bits``)."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shiftflow.ir.isa import UNIT_OF, Act, Dataflow, Opcode, Unit, VecOp, WgtTarget, encode, to_dict
from shiftflow.ir.program import ProgramError
from shiftflow.sim.decode import decode_program

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
    except ValueError:  # an enum field out of range: amaranth cannot name it (the simulator rejects it on use)
        assume(False)
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


def test_invalid_opcode_and_flags_are_named():
    bad = bytes([7]) + bytes(63)
    with pytest.raises(ProgramError, match="instruction 1 has an invalid opcode 7"):
        decode_program(encode(Opcode.NOP) + bad)
    with pytest.raises(ProgramError, match=r"instruction 0 \(LOAD_WGT\): the load unit has no previous unit"):
        decode_program(encode(Opcode.LOAD_WGT, {"nbytes": 1}, push_prev=1))
    with pytest.raises(ProgramError, match=r"instruction 0 \(STORE\): the store unit has no next unit"):
        decode_program(encode(Opcode.STORE, {}, pop_next=1))
