"""Text form of the Graph IR: ``print_graph`` and ``parse_graph`` round-trip exactly.

    graph mnist(%x: i8<7>[1,1,28,28]) -> (%y) {
      const %w0: i8<[6,7]>[2,1,3,3] = "AQID..."          # base64 of the little-endian data
      %c0: u8<4>[1,2,26,26] = conv @conv0(%x, %w0) {"act": "relu", "groups": 1, ...}
    }

Names that are not plain identifiers are JSON-quoted (``%"a/b:0"``). Attributes are a JSON
object (lists come back as tuples). ``elide=True`` prints constants as ``...`` for humans;
such text cannot be parsed back.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from ..errors import ParseError
from .graph import Graph, Op
from .types import TensorType, parse_type

_SIMPLE = re.compile(r"^[A-Za-z0-9_.]+$")
_TYPE_TOKEN = re.compile(r"\s*((?:f32|[iu]\d+<(?:-?\d+|\[[-\d,\s]*\])>)\[[\d,\s]*\])")


def _name(sigil: str, name: str) -> str:
    return sigil + (name if _SIMPLE.match(name) else json.dumps(name))


def _attrs_json(attrs) -> str:
    return json.dumps(dict(attrs), sort_keys=True, separators=(", ", ": "))


def print_graph(graph: Graph, elide: bool = False) -> str:
    """The text form of ``graph`` (see module docstring)."""
    ins = ", ".join(f"{_name('%', n)}: {graph.types[n]}" for n in graph.inputs)
    outs = ", ".join(_name("%", n) for n in graph.outputs)
    lines = [f"graph {_name('', graph.name)}({ins}) -> ({outs}) {{"]
    for name, data in graph.constants.items():
        t = graph.types[name]
        if elide:
            body = "..."
        else:
            body = json.dumps(base64.b64encode(np.ascontiguousarray(data, t.storage_dtype().newbyteorder("<"))
                                               .tobytes()).decode())
        lines.append(f"  const {_name('%', name)}: {t} = {body}")
    for op in graph.ops:
        outs_t = ", ".join(f"{_name('%', n)}: {graph.types[n]}" for n in op.outputs)
        args = ", ".join(_name("%", n) for n in op.inputs)
        attrs = dict(op.attrs)
        if elide and op.kind == "cpu":
            attrs["model"] = f"<{len(attrs['model'])} bytes of base64 ONNX>"
        lines.append(f"  {outs_t} = {op.kind} {_name('@', op.name)}({args}) {_attrs_json(attrs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class _Scanner:
    """Tokenizer for one line of the text form."""

    _TOKEN = re.compile(r'\s*(?:(?P<sym>[%@]?)(?P<q>"(?:[^"\\]|\\.)*")|(?P<sym2>[%@]?)(?P<w>[A-Za-z0-9_.]+)'
                        r'|(?P<p>->|[(),:=]))')

    def __init__(self, text: str, lineno: int):
        self.text, self.pos, self.lineno = text, 0, lineno

    def fail(self, msg: str):
        raise ParseError(f"line {self.lineno}: {msg}: {self.text.strip()!r}")

    def peek(self) -> str | None:
        m = self._TOKEN.match(self.text, self.pos)
        return None if m is None else (m["p"] or (m["sym"] or m["sym2"] or "") + (m["q"] or m["w"]))

    def name(self, sigil: str) -> str:
        m = self._TOKEN.match(self.text, self.pos)
        if m is None or m["p"] or (m["sym"] or m["sym2"] or "") != sigil:
            self.fail(f"expected a {sigil or 'plain '}name")
        self.pos = m.end()
        return json.loads(m["q"]) if m["q"] else m["w"]

    def expect(self, punct: str):
        m = self._TOKEN.match(self.text, self.pos)
        if m is None or m["p"] != punct:
            self.fail(f"expected {punct!r}")
        self.pos = m.end()

    def type_(self) -> TensorType:
        m = _TYPE_TOKEN.match(self.text, self.pos)
        if m is None:
            self.fail("expected a tensor type")
        self.pos = m.end()
        return parse_type(m[1])

    def rest(self) -> str:
        out, self.pos = self.text[self.pos:].strip(), len(self.text)
        return out

    def name_list(self, sigil: str, typed: bool, types: dict, closer: str = ")") -> list[str]:
        names: list[str] = []
        while self.peek() != closer:
            if names:
                self.expect(",")
            names.append(self.name(sigil))
            if typed:
                self.expect(":")
                types[names[-1]] = self.type_()
        return names


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def parse_graph(text: str) -> Graph:
    """Parse the output of ``print_graph`` back into an equal ``Graph``."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise ParseError("empty IR text")
    types: dict[str, TensorType] = {}
    lineno, head = lines[0]
    s = _Scanner(head, lineno)
    if s.name("") != "graph":
        s.fail("expected 'graph'")
    gname = s.name("")
    s.expect("(")
    inputs = s.name_list("%", True, types)
    s.expect(")")
    s.expect("->")
    s.expect("(")
    outputs = s.name_list("%", False, types)
    s.expect(")")
    if s.rest() != "{":
        s.fail("expected '{' at the end of the graph header")
    if lines[-1][1].strip() != "}":
        raise ParseError(f"line {lines[-1][0]}: expected the closing '}}'")
    constants: dict[str, np.ndarray] = {}
    ops: list[Op] = []
    for lineno, line in lines[1:-1]:
        s = _Scanner(line, lineno)
        if s.peek() == "const":
            s.name("")
            name = s.name("%")
            s.expect(":")
            t = s.type_()
            s.expect("=")
            body = s.rest()
            if body == "...":
                s.fail("constant data was elided; print with elide=False to round-trip")
            try:
                raw = base64.b64decode(json.loads(body), validate=True)
                data = np.frombuffer(raw, t.storage_dtype().newbyteorder("<")).astype(t.storage_dtype())
                constants[name] = data.reshape(t.shape)
            except (ValueError, json.JSONDecodeError) as exc:
                s.fail(f"bad constant data ({exc})")
            types[name] = t
            continue
        outs = s.name_list("%", True, types, closer="=")
        s.expect("=")
        kind = s.name("")
        opname = s.name("@")
        s.expect("(")
        args = s.name_list("%", False, types)
        s.expect(")")
        try:
            attrs = _tuples(json.loads(s.rest()))
        except json.JSONDecodeError as exc:
            s.fail(f"bad attribute object ({exc})")
        ops.append(Op(opname, kind, tuple(args), tuple(outs), attrs))
    return Graph(gname, tuple(inputs), tuple(outputs), tuple(ops), types, constants)
