"""Figures quoted in README.md and docs/*.md, filled in from ``benchmarks/results/*.json``.

A measured figure in a page is a marked span (HTML comments: invisible when rendered)::

    <!-- fig:detector_accel_zu3eg.runs.auto.fps -->25.96<!-- /fig -->

The key is ``STEM.PATH[|FILTER...][:SPEC]``:

- ``STEM`` names ``benchmarks/results/STEM.json``; ``PATH`` walks it: dict keys, list
  indices, and ``[PATTERN,...]`` — the list items whose ``module`` (its first dotted part
  dropped: ``accel_zu3eg.compute.mac`` -> ``compute.mac``) or ``name`` matches any of the
  ``fnmatch`` patterns; a path through such a selection ends in the sum over the selected
  items of the value times the item's ``instances`` (1 when absent);
- ``FILTER``: ``len``, ``pct`` (x100), ``mega`` (/1e6), ``giga`` (/1e9), applied in order;
- ``SPEC``: a Python format spec (``.1f``, ``,.0f``); without one, whole numbers get
  thousands separators (``68,804``) and other numbers ``g`` (``25.96``).

``python -m shiftflow.docs_figures`` lists every span whose text differs from its key's
value (exit 1 when one does); ``--write`` rewrites the spans. ``tests/test_docs.py`` runs the
check, so a figure cannot go stale: rerun the benchmark, then ``--write``. Figures with no
result file behind them are not marked; the pages call them illustrative or historical.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "benchmarks" / "results"
MARK = re.compile(r"<!-- fig:(?P<key>[^>]+?) -->(?P<text>.*?)<!-- /fig -->", re.S)
FILTERS = {"len": len, "pct": lambda v: v * 100, "mega": lambda v: v / 1e6, "giga": lambda v: v / 1e9}
_STEP = re.compile(r"\[[^\]]*\]|[^.\[]+")


class FigureError(Exception):
    """A key that names no value (missing file, key, index or filter)."""


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may quote figures: the README and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def load_results(results: Path = RESULTS) -> dict[str, Any]:
    """Every result file, by stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def _matches(item: dict, patterns: list[str]) -> bool:
    label = item.get("module", item.get("name", ""))
    label = label.split(".", 1)[1] if "module" in item and "." in label else label
    return any(fnmatch.fnmatchcase(label, p) for p in patterns)


def _walk(node: Any, steps: list[str], key: str) -> Any:
    for i, step in enumerate(steps):
        if step.startswith("["):
            if not isinstance(node, list):
                raise FigureError(f"{key}: {step} selects from a list, found {type(node).__name__}")
            chosen = [item for item in node if _matches(item, step[1:-1].split(","))]
            if not chosen:
                raise FigureError(f"{key}: {step} selects nothing")
            return sum(_walk(item, steps[i + 1:], key) * item.get("instances", 1) for item in chosen)
        try:
            node = node[int(step)] if isinstance(node, list) else node[step]
        except (KeyError, IndexError, ValueError, TypeError):
            raise FigureError(f"{key}: no {step!r} there") from None
    return node


def value(key: str, results: dict[str, Any]) -> str:
    """The text ``key`` stands for (see the module docstring)."""
    path, _, spec = key.partition(":")
    path, *filters = path.split("|")
    stem, _, rest = path.partition(".")
    if stem not in results:
        raise FigureError(f"{key}: no benchmarks/results/{stem}.json")
    v = _walk(results[stem], _STEP.findall(rest), key)
    for name in filters:
        if name not in FILTERS:
            raise FigureError(f"{key}: unknown filter {name!r} (known: {', '.join(FILTERS)})")
        v = FILTERS[name](v)
    if spec:
        return format(v, spec)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return f"{int(v):,}"
    return format(v, "g") if isinstance(v, float) else str(v)


def render(text: str, results: dict[str, Any]) -> str:
    """``text`` with every figure span's text replaced by its key's value."""
    return MARK.sub(lambda m: f"<!-- fig:{m['key']} -->{value(m['key'], results)}<!-- /fig -->", text)


def stale(text: str, results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(key, quoted, measured)`` for every span of ``text`` that disagrees with its key."""
    out = []
    for m in MARK.finditer(text):
        want = value(m["key"], results)
        if m["text"] != want:
            out.append((m["key"], m["text"], want))
    return out


def keys(text: str) -> list[str]:
    """The keys of every figure span in ``text``."""
    return [m["key"] for m in MARK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the spans in place")
    args = ap.parse_args(argv)
    results = load_results()
    bad = 0
    for page in pages():
        text = page.read_text()
        if args.write:
            new = render(text, results)
            if new != text:
                page.write_text(new)
                print(f"updated {page.relative_to(ROOT)}")
            continue
        for key, have, want in stale(text, results):
            bad += 1
            print(f"{page.relative_to(ROOT)}: {key}: the page says {have!r}, the results say {want!r}")
    if bad:
        print(f"{bad} stale figure(s): run `python -m shiftflow.docs_figures --write`", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
