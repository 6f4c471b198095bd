"""Disassembler: one line per instruction, fields by name (``shiftflow disasm BUILD``)."""

from __future__ import annotations

from .isa import INSTR_BYTES, to_dict


def _flat(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif v not in (0, "none"):
            out.append(f"{prefix}{k}={v}")
    return out


def disassemble(instructions: bytes, start: int = 0, layer_of: dict[int, str] | None = None) -> list[str]:
    """Text lines for ``instructions`` (64-byte words); zero-valued fields are omitted."""
    lines = []
    for i in range(len(instructions) // INSTR_BYTES):
        d = to_dict(instructions[i * INSTR_BYTES:(i + 1) * INSTR_BYTES])
        deps = "".join(flag for flag, key in (("<", "pop_prev"), (">", "pop_next"), ("^", "push_prev"),
                                              ("v", "push_next")) if d[key])
        body = next((v for k, v in d.items() if isinstance(v, dict)), {})
        tag = f"  ; {layer_of[start + i]}" if layer_of and start + i in layer_of else ""
        lines.append(f"{start + i:6d}  {d['opcode']:<8} {deps:<4} {' '.join(_flat(body))}{tag}")
    return lines
