"""Encoding: the layout-driven encoder equals ``ir.isa.encode`` field for field, decodes back
through ``ir/decode.py``, and refuses values a field cannot hold."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftflow.backend.emit import Ins
from shiftflow.backend.encode import Encoder, _leaves
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import BODY_OF, Body, Opcode, encode, to_dict

ENC = Encoder()
OPS = [Opcode.LOAD_ACT, Opcode.LOAD_WGT, Opcode.STORE, Opcode.CONV, Opcode.VEC]


def _body(draw, op):
    body: dict = {}
    for path, width, signed, en in _leaves(Body.members[BODY_OF[op]]):
        if en is not None:
            v = draw(st.sampled_from(list(en)))
        elif signed:
            v = draw(st.integers(-(1 << (width - 1)), (1 << (width - 1)) - 1))
        else:
            v = draw(st.integers(0, (1 << width) - 1))
        d = body
        for name in path[:-1]:
            d = d.setdefault(name, {})
        d[path[-1]] = v
    return body


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(OPS + [Opcode.NOP, Opcode.FINISH]))
    ins = Ins(op, _body(draw, op) if op in BODY_OF else None, 0)
    for f in ("pop_prev", "pop_next", "push_prev", "push_next"):
        setattr(ins, f, draw(st.integers(0, 1)))
    return ins


@settings(max_examples=60, deadline=None)
@given(ins=instructions())
def test_encoder_equals_isa_encode_and_round_trips(ins):
    word = ENC.encode(ins)
    flags = {f: getattr(ins, f) for f in ("pop_prev", "pop_next", "push_prev", "push_next")}
    assert word == encode(ins.opcode, ins.body, **flags)
    d = to_dict(word)
    assert d["opcode"] == ins.opcode.name and all(d[f] == v for f, v in flags.items())
    (got,) = decode_program(word, check=False)  # load/store may carry flags their unit lacks
    assert (got.pop_prev, got.pop_next, got.push_prev, got.push_next) == tuple(flags.values())
    if ins.body is not None:
        for path, _, _, en in _leaves(Body.members[BODY_OF[ins.opcode]]):
            v = ins.body
            for name in path:
                v = v[name]
            assert got.f[".".join(path)] == (v.value if en is not None else v)


def test_out_of_range_field_is_a_compiler_bug_naming_the_field():
    ins = Ins(Opcode.LOAD_WGT, {"dram_addr": 0, "nbytes": 1 << 24, "target": 0, "bank": 0, "sram_addr": 0}, 0)
    with pytest.raises(AssertionError, match=r"LOAD_WGT.nbytes = 16777216 does not fit 24 bits"):
        ENC.encode(ins)
    ins.body["nbytes"] = 5
    ins.body["bank"] = 2
    with pytest.raises(AssertionError, match="bank"):
        ENC.encode(ins)
