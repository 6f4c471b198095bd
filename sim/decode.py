"""Instruction decoding for the simulator, derived from the ``ir.isa`` layouts.

``ir.isa.decode`` (amaranth ``Layout.from_bits``) is the reference decoder, but it costs about
a millisecond per instruction; a 10^5-instruction program must decode in well under a second.
So this module walks the same ``INSTR`` layout once, records every field's bit offset, width,
signedness and enum type, and extracts each field for the whole program at once with numpy.
No offset or width is written by hand: a changed layout changes the decoder with it, and
``tests/sim/test_decode.py`` checks the result against ``ir.isa.to_dict`` field for field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from ..ir.isa import BODY_OF, INSTR, INSTR_BYTES, UNIT_OF, Opcode, Unit
from ..ir.program import ProgramError


@dataclass(frozen=True)
class _Field:
    name: str  # dotted path below the opcode's body, e.g. "inp.ring.base"
    offset: int  # bit offset in the 512-bit instruction word
    width: int
    signed: bool


def _leaves(layout: data.Layout, offset: int, prefix: str) -> list[_Field]:
    out = []
    for name, fld in layout:
        if isinstance(fld.shape, data.Layout):
            out += _leaves(fld.shape, offset + fld.offset, f"{prefix}{name}.")
        else:
            out.append(_Field(prefix + name, offset + fld.offset, fld.width, Shape.cast(fld.shape).signed))
    return out


def _layout_fields() -> tuple[list[_Field], dict[Opcode, list[_Field]]]:
    members = dict(INSTR)
    header = _leaves(members["header"].shape, members["header"].offset, "")
    body_offset = members["body"].offset
    bodies = {op: _leaves(members["body"].shape.members[key], body_offset, "")
              for op, key in BODY_OF.items()}
    return header, bodies


_HEADER, _BODIES = _layout_fields()
_OPCODES = {op.value: op for op in Opcode}  # Opcode(v) through amaranth's enum metaclass is slow
assert max(f.width for f in _HEADER + [f for fs in _BODIES.values() for f in fs]) <= 56


@dataclass(frozen=True, slots=True)
class Instr:
    """One decoded instruction. ``f`` maps the body's fields, by the dotted names of
    ``ir/isa.py`` and the disassembler (``"inp.ring.base"``, ``"tile.rows"``), to ints
    (enums as their values)."""

    index: int  # position in program.bin (error messages name it)
    opcode: Opcode
    unit: Unit
    pop_prev: int
    pop_next: int
    push_prev: int
    push_next: int
    f: dict

    def where(self) -> str:
        return f"instruction {self.index} ({self.opcode.name})"


def _extract(words: np.ndarray, fld: _Field) -> np.ndarray:
    """Field ``fld`` of every row of ``words`` (N x (64+8) uint8, zero-padded) as int64."""
    byte, bit = divmod(fld.offset, 8)
    chunk = np.ascontiguousarray(words[:, byte:byte + 8]).view("<u8")[:, 0]
    v = ((chunk >> np.uint64(bit)) & np.uint64((1 << fld.width) - 1)).astype(np.int64)
    if fld.signed:
        v = np.where(v >= 1 << (fld.width - 1), v - (1 << fld.width), v)
    return v


def decode_program(instructions: bytes, start: int = 0, count: int | None = None) -> list[Instr]:
    """Decode ``count`` instructions (all by default) from index ``start`` of ``instructions``.
    Raises ``ProgramError`` naming the first instruction whose opcode is invalid or whose
    token flags name a neighbour its unit does not have."""
    n_total = len(instructions) // INSTR_BYTES
    count = n_total - start if count is None else count
    if start < 0 or count < 0 or start + count > n_total:
        raise ProgramError(f"instructions {start}..{start + count - 1} are outside the program's {n_total}")
    raw = np.frombuffer(instructions, np.uint8, count * INSTR_BYTES, start * INSTR_BYTES).reshape(count, INSTR_BYTES)
    words = np.zeros((count, INSTR_BYTES + 8), np.uint8)
    words[:, :INSTR_BYTES] = raw
    head = {fld.name: _extract(words, fld) for fld in _HEADER}
    bad = np.flatnonzero(~np.isin(head["opcode"], list(_OPCODES)))
    if bad.size:
        i = int(bad[0])
        raise ProgramError(f"instruction {start + i} has an invalid opcode {int(head['opcode'][i])}")
    bodies: list[dict] = [{} for _ in range(count)]
    for op, fields in _BODIES.items():
        rows = np.flatnonzero(head["opcode"] == op.value)
        if rows.size == 0:
            continue
        names = [fld.name for fld in fields]
        mine = words[rows]
        values = np.stack([_extract(mine, fld) for fld in fields], axis=1).tolist()
        for r, vals in zip(rows.tolist(), values):
            bodies[r] = dict(zip(names, vals))
    flags = np.stack([head[k] for k in ("pop_prev", "pop_next", "push_prev", "push_next")], axis=1).tolist()
    out = []
    for i, (code, fl, body) in enumerate(zip(head["opcode"].tolist(), flags, bodies)):
        op = _OPCODES[code]
        ins = Instr(start + i, op, UNIT_OF[op], *fl, body)
        _check_flags(ins)
        out.append(ins)
    return out


def _check_flags(ins: Instr) -> None:
    if ins.unit == Unit.LOAD and (ins.pop_prev or ins.push_prev):
        raise ProgramError(f"{ins.where()}: the load unit has no previous unit to pop from or push to")
    if ins.unit == Unit.STORE and (ins.pop_next or ins.push_next):
        raise ProgramError(f"{ins.where()}: the store unit has no next unit to pop from or push to")
