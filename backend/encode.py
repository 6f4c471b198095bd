"""Pass ``encode``: instructions to 64-byte words, through ``ir/isa.encode`` only.

``isa.encode`` builds an amaranth constant per call (about a millisecond), too slow for the
tens of thousands of instructions of a large model. The encoding is linear: an instruction
is the opcode's header word plus, for each field, the field's bit pattern placed where the
layout puts it. ``Encoder`` asks ``isa.encode`` once per opcode for the header, once per
token flag, and once per body field for the word with that field = 1 (its *unit*); a value
is then its two's-complement pattern times the unit. No offset or mask is written here; the
layout in ``ir/isa.py`` stays the only definition, and ``check`` compares against
``isa.encode`` directly (the test suite does so for every emitted kind of instruction).
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import enum

from ..ir.isa import BODY_OF, Body, INSTR_BYTES, Opcode, encode, layout_table
from .emit import Ins

FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


def _leaves(layout):
    """(path as a tuple of names, width, signed, enum class or None) of every leaf field."""
    for path, _, width, shape in layout_table(layout):
        en = shape if isinstance(shape, enum.EnumType) else None
        yield tuple(path.split(".")), width, Shape.cast(shape).signed, en


def _nest(path: tuple[str, ...], value) -> dict:
    d = value
    for name in reversed(path):
        d = {name: d}
    return d


class Encoder:
    """Fast, layout-driven encoding (see module docstring); one per process is enough."""

    def __init__(self):
        self._ops: dict[Opcode, tuple[int, dict, list]] = {}

    def _tables(self, op: Opcode):
        if op not in self._ops:
            base = int.from_bytes(encode(op), "little")
            flags = {f: int.from_bytes(encode(op, **{f: 1}), "little") ^ base for f in FLAGS}
            fields = []
            if op in BODY_OF:
                for path, width, signed, en in _leaves(Body.members[BODY_OF[op]]):
                    one = en(1) if en is not None else 1
                    unit = int.from_bytes(encode(op, _nest(path, one)), "little") ^ base
                    assert unit and unit & (unit - 1) == 0, path
                    fields.append((path, width, signed, unit))
            self._ops[op] = (base, flags, fields)
        return self._ops[op]

    def word(self, ins: Ins) -> int:
        base, flags, fields = self._tables(ins.opcode)
        w = base
        for f in FLAGS:
            if getattr(ins, f):
                w |= flags[f]
        body = ins.body
        for path, width, signed, unit in fields:
            v = body
            for name in path:
                v = v[name]
            v = int(v.value) if isinstance(v, enum.Enum) else int(v)
            lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1)) if signed else (0, 2 ** width)
            if not lo <= v < hi:
                raise AssertionError(f"{ins.opcode.name}.{'.'.join(path)} = {v} does not fit {width} bits")
            w |= (v % 2 ** width) * unit
        return w

    def encode(self, ins: Ins) -> bytes:
        return self.word(ins).to_bytes(INSTR_BYTES, "little")

    def check(self, ins: Ins) -> None:
        """Assert that the fast encoding equals ``isa.encode`` for ``ins``."""
        flags = {f: getattr(ins, f) for f in FLAGS}
        assert self.encode(ins) == encode(ins.opcode, ins.body, **flags), ins.opcode


def encode_all(instructions: list[Ins], encoder: Encoder | None = None) -> bytes:
    enc = encoder or Encoder()
    return b"".join(enc.word(i).to_bytes(INSTR_BYTES, "little") for i in instructions)
