"""Generated Verilog cut into *parts*: the distinct modules of a design's hierarchy.

Amaranth writes one Verilog module per component instance, so identical components appear as
many identical modules (differing only in their names and in yosys's file-wide ``$auto$``
numbering). :func:`split_parts` finds each module's text, renames its children to their
parts' keys and renumbers its ``$auto$`` names locally, and keys the result by a hash of its
text: modules with the same key are one part, synthesized once (``hw/synth.py``) and counted
``instances`` times.
"""

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from .tools import SynthError

_MODULE = re.compile(r"^module (\\\S+ |\w+)\s*\(", re.M)
_INSTANCE = re.compile(r"^  (\\\S+|\w+)\s+(?:\\\S+ |\w+) \($", re.M)


_AUTO = re.compile(r"(\\\$auto\$[^\s$]*\$)(\d+)")


def _local_auto_names(text: str) -> str:
    """Renumber yosys's ``\\$auto$...$N`` names by first appearance in the module: the
    Verilog backend numbers them across the whole file, so identical modules differ there."""
    seen: dict[str, int] = {}

    def number(match: re.Match) -> str:
        return f"{match.group(1)}{seen.setdefault(match.group(0), len(seen) + 1)}"

    return _AUTO.sub(number, text)


@dataclass(frozen=True)
class Part:
    """A distinct module: ``text`` with its own name ``key`` and its children's types renamed
    to their keys; ``name`` is the first hierarchical name it was found under."""
    key: str
    name: str
    text: str
    children: tuple[str, ...]
    instances: int


def split_parts(verilog: str, top: str) -> list[Part]:
    """The distinct modules under ``top`` in Amaranth-generated ``verilog`` (one module per
    instance), each with the number of instances of it in the hierarchy, children first."""
    texts: dict[str, str] = {}
    for chunk in re.split(r"^endmodule\n", verilog, flags=re.M):
        found = _MODULE.search(chunk)
        if found:
            texts[found.group(1).strip().lstrip("\\")] = chunk + "endmodule\n"
    if top not in texts:
        raise SynthError(f"module {top!r} not found in the generated Verilog")
    keys: dict[str, str] = {}
    parts: dict[str, Part] = {}
    counts: dict[str, int] = {}

    def visit(name: str) -> str:
        if name in keys:
            return keys[name]
        text = texts[name]
        children = []

        def rename(match: re.Match) -> str:
            child = match.group(1).lstrip("\\")
            if child not in texts:
                return match.group(0)
            children.append(visit(child))
            return match.group(0).replace(match.group(1), children[-1], 1)

        body = _local_auto_names(_INSTANCE.sub(rename, text))
        head = _MODULE.search(body)
        before, after = body[:head.start(1)], body[head.end():]
        key = "m_" + hashlib.sha256((before + "@" + after).encode()).hexdigest()[:12]
        keys[name] = key
        if key not in parts:
            parts[key] = Part(key, name, f"{before}{key} ({after}", tuple(children), 0)
        return key

    def count(name: str, n: int) -> None:
        counts[keys[name]] = counts.get(keys[name], 0) + n
        for match in _INSTANCE.finditer(texts[name]):
            child = match.group(1).lstrip("\\")
            if child in texts:
                count(child, n)

    visit(top)
    count(top, 1)
    return [dataclasses.replace(p, instances=counts[k]) for k, p in parts.items()]
