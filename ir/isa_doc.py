"""The field tables of docs/isa.md, generated from the layouts of ``ir/isa.py`` and the
field rules of ``ir/rules.py``.

    python -m shiftflow.ir.isa_doc           # print the Markdown tables
    python -m shiftflow.ir.isa_doc --write   # put them into docs/isa.md

The tables sit in docs/isa.md between ``BEGIN`` and ``END`` (appended at the end of the page
when the markers are missing); ``tests/ir/test_isa_doc.py`` fails when they are stale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from amaranth.lib import enum

from .isa import BODY_OF, INSTR, INSTR_BITS, PARAM_BYTES, PARAM_ENTRY, layout_table
from .rules import RULES

BEGIN = "<!-- isa-tables:begin -->"
END = "<!-- isa-tables:end -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "isa.md"


def _shape(shape) -> str:
    if isinstance(shape, enum.EnumType):
        members = ", ".join(f"{m.name}={m.value}" for m in shape)
        return f"`{shape.__name__}` ({members})"
    return f"`{shape}`"


def _table(rows: list[tuple[str, int, int, str]]) -> list[str]:
    out = ["| field | bit offset | width | shape |", "|---|---|---|---|"]
    out += [f"| `{path}` | {offset} | {width} | {shape} |" for path, offset, width, shape in rows]
    return out


def tables() -> str:
    """Markdown: the instruction word, its header, and the body of every opcode that has one
    (bit offsets count from bit 0 of the little-endian 512-bit word, field paths are the dotted
    names the decoder and the disassembler use); the parameter entry; the field rules."""
    members = dict(INSTR)
    kinds = {"header": "header fields (below)", "body": "the opcode's body (below; NOP and FINISH have none)"}
    lines = [f"### Instruction word ({INSTR_BITS} bits)", ""]
    lines += _table([(name, fld.offset, fld.width, kinds.get(name) or _shape(fld.shape))
                     for name, fld in members.items()])
    groups = [("Header", "header", members["header"].shape, members["header"].offset)]
    body, offset = members["body"].shape, members["body"].offset
    groups += [(f"{op.name} body", f"body.{key}", body.members[key], offset) for op, key in BODY_OF.items()]
    for title, path, layout, base in groups:
        lines += ["", f"### {title} (`{path}`)", ""]
        lines += _table([(p, base + off, width, _shape(shape)) for p, off, width, shape in layout_table(layout)])
    lines += ["", f"### Parameter entry (`PARAM_ENTRY`, {PARAM_BYTES} bytes, little endian)", ""]
    lines += _table([(p, off, width, _shape(shape)) for p, off, width, shape in layout_table(PARAM_ENTRY)])
    lines += ["", "### Field rules (`ir/rules.py`)", "",
              "Checked when a program is loaded, in this order; the first one an instruction breaks is reported "
              "(a `ProgramError` naming the instruction and the field).", "",
              "| opcode | field | rule |", "|---|---|---|"]
    lines += [f"| {r.opcode.name} | `{r.field}` | {r.rule} |" for r in RULES]
    return "\n".join(lines) + "\n"


def with_tables(text: str) -> str:
    """``text`` (docs/isa.md) with the generated tables between the markers."""
    block = f"{BEGIN}\n{tables()}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"update the tables in {DOC}")
    args = p.parse_args(argv)
    if args.write:
        DOC.write_text(with_tables(DOC.read_text()))
    else:
        print(tables(), end="")


if __name__ == "__main__":
    main()
