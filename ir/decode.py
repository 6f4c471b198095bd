"""Instruction decoding and validation for whole programs, derived from the ``ir.isa`` layouts.

``ir.isa.decode`` (amaranth ``Layout.from_bits``) is the reference decoder, but it costs about
a millisecond per instruction; a 10^5-instruction program must decode in well under a second.
So this module walks the same ``INSTR`` layout once, records every field's bit offset, width,
signedness and enum type, and extracts each field for the whole program at once with numpy.
No offset or width is written by hand: a changed layout changes the decoder with it, and
``tests/ir/test_decode.py`` checks the result against ``ir.isa.to_dict`` field for field.

An instruction is *valid* when its opcode is assigned, its token flags name only neighbours
its unit has, every enum field of its body (activation, VEC op, ...) holds a member of its
enum, and — given the target — it keeps the field rules of ``ir/rules.py`` (alignments,
dataflow limits, ranges against the buffer sizes). ``scan`` finds every invalid instruction
(vectorized, so ``load_program`` checks a whole program in milliseconds); ``decode_program``
builds ``Instr`` objects and rejects the first invalid one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data, enum

from ..errors import ProgramError
from .config import AcceleratorConfig
from .isa import BODY_OF, INSTR, INSTR_BYTES, UNIT_OF, Opcode, Unit, layout_table
from .rules import broken


@dataclass(frozen=True)
class _Field:
    name: str  # dotted path below the opcode's body, e.g. "inp.ring.base"
    offset: int  # bit offset in the 512-bit instruction word
    width: int
    signed: bool
    enum: enum.EnumType | None  # the field's enum, whose members are its only valid values


def _leaves(layout: data.Layout, offset: int) -> list[_Field]:
    return [_Field(path, offset + off, width, Shape.cast(shape).signed,
                   shape if isinstance(shape, enum.EnumType) else None)
            for path, off, width, shape in layout_table(layout)]


def _layout_fields() -> tuple[dict[str, _Field], dict[Opcode, list[_Field]]]:
    members = dict(INSTR)
    header = {f.name: f for f in _leaves(members["header"].shape, members["header"].offset)}
    body_offset = members["body"].offset
    bodies = {op: _leaves(members["body"].shape.members[key], body_offset) for op, key in BODY_OF.items()}
    return header, bodies


_HEADER, _BODIES = _layout_fields()
_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
_OPCODES = {op.value: op for op in Opcode}  # Opcode(v) through amaranth's enum metaclass is slow
_ENUMS = {op: {f.name: f.enum for f in fields if f.enum is not None} for op, fields in _BODIES.items()}
# Flags each unit may not use: the load unit has no previous unit, the store unit no next one,
# the NMS unit no neighbour at all.
_BAD_FLAGS = {Unit.LOAD: (("pop_prev", "push_prev"), "the load unit has no previous unit to pop from or push to"),
              Unit.STORE: (("pop_next", "push_next"), "the store unit has no next unit to pop from or push to"),
              Unit.NMS: (_FLAGS, "the NMS unit takes and gives no tokens (it runs as a barrier)")}
assert max(f.width for f in list(_HEADER.values()) + [f for fs in _BODIES.values() for f in fs]) <= 56


def field_enum(opcode: Opcode, name: str) -> enum.EnumType | None:
    """The enum of body field ``name`` (dotted path) of ``opcode``, or None for a plain number."""
    return _ENUMS.get(opcode, {}).get(name)


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


def _words(instructions: bytes, start: int, count: int | None) -> np.ndarray:
    """Instructions ``start .. start+count-1`` as rows of 64 bytes plus 8 zero bytes, so that
    every field can be read as one 8-byte little-endian chunk."""
    n_total = len(instructions) // INSTR_BYTES
    count = n_total - start if count is None else count
    if start < 0 or count < 0 or start + count > n_total:
        raise ProgramError(f"instructions {start}..{start + count - 1} are outside the program's {n_total}")
    raw = np.frombuffer(instructions, np.uint8, count * INSTR_BYTES, start * INSTR_BYTES).reshape(count, INSTR_BYTES)
    words = np.zeros((count, INSTR_BYTES + 8), np.uint8)
    words[:, :INSTR_BYTES] = raw
    return words


def _extract(words: np.ndarray, fld: _Field) -> np.ndarray:
    """Field ``fld`` of every row of ``words`` (see ``_words``) as int64."""
    byte, bit = divmod(fld.offset, 8)
    chunk = np.ascontiguousarray(words[:, byte:byte + 8]).view("<u8")[:, 0]
    v = ((chunk >> np.uint64(bit)) & np.uint64((1 << fld.width) - 1)).astype(np.int64)
    if fld.signed:
        v = np.where(v >= 1 << (fld.width - 1), v - (1 << fld.width), v)
    return v


@dataclass(frozen=True)
class Problem:
    """Why instruction ``index`` is invalid; ``str()`` is the one-line message naming it."""

    index: int
    opcode: Opcode | None  # None when the opcode itself is invalid
    detail: str  # e.g. "post.act has invalid value 3"

    def __str__(self) -> str:
        where = f"instruction {self.index}" + (f" ({self.opcode.name})" if self.opcode else "")
        return f"{where}: {self.detail}"


def _check(words: np.ndarray, head: dict[str, np.ndarray], start: int,
           config: AcceleratorConfig | None) -> dict[int, Problem]:
    """A ``Problem`` for every invalid row of ``words``: the first one found in the order
    opcode, token flags, body enum fields (layout order), field rules (with ``config``)."""
    problems: dict[int, Problem] = {}
    codes = head["opcode"]
    for i in np.flatnonzero(~np.isin(codes, list(_OPCODES))).tolist():
        problems[start + i] = Problem(start + i, None, f"invalid opcode {int(codes[i])}")
    for unit, (flags, why) in _BAD_FLAGS.items():
        ops = [op.value for op, u in UNIT_OF.items() if u == unit]
        used = np.bitwise_or.reduce([head[f] for f in flags])
        for i in np.flatnonzero(np.isin(codes, ops) & (used != 0)).tolist():
            problems.setdefault(start + i, Problem(start + i, _OPCODES[int(codes[i])], why))
    for op, fields in _BODIES.items():
        rows = np.flatnonzero(codes == op.value)
        if rows.size == 0:
            continue
        mine = words[rows]
        for fld in fields:
            if fld.enum is None:
                continue
            v = _extract(mine, fld)
            for r in np.flatnonzero(~np.isin(v, [m.value for m in fld.enum])).tolist():
                i = start + int(rows[r])
                problems.setdefault(i, Problem(i, op, f"{fld.name} has invalid value {int(v[r])}"))
    if config is not None:
        for op, fields in _BODIES.items():
            rows = np.array([r for r in np.flatnonzero(codes == op.value).tolist() if start + r not in problems], int)
            if rows.size:
                mine = words[rows]
                columns = {fld.name: _extract(mine, fld) for fld in fields}
                for r, detail in broken(op, columns, config):
                    i = start + int(rows[r])
                    problems[i] = Problem(i, op, detail)
    return problems


def opcodes(instructions: bytes) -> np.ndarray:
    """The raw opcode field of every instruction (int64; invalid values included)."""
    return _extract(_words(instructions, 0, None), _HEADER["opcode"])


def scan(instructions: bytes, start: int = 0, count: int | None = None, *,
         config: AcceleratorConfig | None = None) -> dict[int, Problem]:
    """Every invalid instruction among ``count`` (all by default) from index ``start``, by
    index (empty for a valid program); the field rules apply with ``config``. Nothing is
    raised for them."""
    words = _words(instructions, start, count)
    return _check(words, {name: _extract(words, fld) for name, fld in _HEADER.items()}, start, config)


def decode_program(instructions: bytes, start: int = 0, count: int | None = None, *,
                   check: bool = True, config: AcceleratorConfig | None = None) -> list[Instr | None]:
    """Decode ``count`` instructions (all by default) from index ``start`` of ``instructions``.
    With ``check`` (the default), raises ``ProgramError`` naming the first invalid instruction
    (see the module docstring; the field rules apply with ``config``, the target the program
    runs on). Without, nothing is raised: an instruction with an invalid opcode is ``None``
    and other fields keep their raw values (for the disassembler)."""
    words = _words(instructions, start, count)
    head = {name: _extract(words, fld) for name, fld in _HEADER.items()}
    if check:
        problems = _check(words, head, start, config)
        if problems:
            raise ProgramError(str(problems[min(problems)]))
    n = len(words)
    bodies: list[dict] = [{} for _ in range(n)]
    for op, fields in _BODIES.items():
        rows = np.flatnonzero(head["opcode"] == op.value)
        if rows.size == 0:
            continue
        names = [fld.name for fld in fields]
        mine = words[rows]
        values = np.stack([_extract(mine, fld) for fld in fields], axis=1).tolist()
        for r, vals in zip(rows.tolist(), values):
            bodies[r] = dict(zip(names, vals))
    flags = np.stack([head[k] for k in _FLAGS], axis=1).tolist()
    out: list[Instr | None] = []
    for i, (code, fl, body) in enumerate(zip(head["opcode"].tolist(), flags, bodies)):
        op = _OPCODES.get(code)
        out.append(None if op is None else Instr(start + i, op, UNIT_OF[op], *fl, body))
    return out
