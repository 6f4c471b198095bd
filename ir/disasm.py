"""Disassembler: one line per instruction, fields by name (``shiftflow disasm BUILD``).

It decodes with ``ir/decode.py`` (the whole program at once) and never fails on a bad word:
an invalid instruction is printed as far as it decodes, followed by its problem.
"""

from __future__ import annotations

from .decode import Instr, decode_program, field_enum, scan
from .isa import INSTR_BYTES

_DEPS = (("<", "pop_prev"), (">", "pop_next"), ("^", "push_prev"), ("v", "push_next"))


def _fields(ins: Instr) -> list[str]:
    """``name=value`` of the non-zero fields; enum members by lower-case name (``none`` omitted),
    values outside their enum as numbers."""
    out = []
    for name, v in ins.f.items():
        en = field_enum(ins.opcode, name)
        member = next((m for m in en if m.value == v), None) if en is not None else None
        if member is not None:
            if member.name != "NONE":
                out.append(f"{name}={member.name.lower()}")
        elif v != 0:
            out.append(f"{name}={v}")
    return out


def disassemble(instructions: bytes, start: int = 0, layer_of: dict[int, str] | None = None) -> list[str]:
    """Text lines for ``instructions`` (64-byte words), numbered from ``start``; zero-valued
    fields are omitted, and an invalid instruction ends with ``!! <problem>``."""
    problems = scan(instructions)
    lines = []
    for i, ins in enumerate(decode_program(instructions, check=False)):
        tag = f"  ; {layer_of[start + i]}" if layer_of and start + i in layer_of else ""
        if i in problems:
            tag += f"  !! {problems[i].detail}"
        if ins is None:
            word = int.from_bytes(instructions[i * INSTR_BYTES:(i + 1) * INSTR_BYTES], "little")
            lines.append(f"{start + i:6d}  {'?':<8} {'':<4} word=0x{word:x}{tag}")
            continue
        deps = "".join(flag for flag, key in _DEPS if getattr(ins, key))
        lines.append(f"{start + i:6d}  {ins.opcode.name:<8} {deps:<4} {' '.join(_fields(ins))}{tag}")
    return lines
