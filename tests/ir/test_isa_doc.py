"""docs/isa.md carries the field tables of ``ir/isa.py`` and the field rules of ``ir/rules.py``
as ``ir/isa_doc.py`` generates them."""

from shiftflow.ir.decode import _BODIES, _HEADER
from shiftflow.ir.isa import PARAM_ENTRY
from shiftflow.ir.isa_doc import BEGIN, DOC, END, main, tables, with_tables
from shiftflow.ir.rules import RULES


def test_docs_tables_are_current():
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{DOC} needs one {BEGIN} ... {END} block"
    current = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert current == "\n" + tables(), \
        "docs/isa.md's field tables are stale: run `python -m shiftflow.ir.isa_doc --write`"


def test_every_decoded_field_has_a_row():
    rows = [line for line in tables().splitlines() if line.startswith("| `")]
    fields = list(_HEADER.values()) + [f for fields in _BODIES.values() for f in fields]
    for f in fields:
        assert f"| `{f.name}` | {f.offset} | {f.width} |" in "\n".join(rows), f.name
    assert len(rows) == 3 + len(fields) + len(list(PARAM_ENTRY))  # + header, body, pad of the word


def test_every_rule_has_a_row():
    rows = [line for line in tables().splitlines() if line.startswith(("| LOAD", "| STORE", "| CONV", "| VEC", "| SPCONV", "| NMS"))]
    assert rows == [f"| {r.opcode.name} | `{r.field}` | {r.rule} |" for r in RULES]


def test_with_tables_replaces_only_the_block_or_appends_it():
    page = f"# page\n\ntext\n\n{BEGIN}\nold\n{END}\n\nafter\n"
    assert with_tables(page) == f"# page\n\ntext\n\n{BEGIN}\n{tables()}{END}\n\nafter\n"
    assert with_tables("# page\n") == f"# page\n\n{BEGIN}\n{tables()}{END}\n"
    assert with_tables(with_tables("# page\n")) == with_tables("# page\n")


def test_cli_prints_the_tables(capsys):
    main([])
    assert capsys.readouterr().out == tables()
