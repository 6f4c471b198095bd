"""The one way a benchmark writes its result file: only after its run proved exact.

A benchmark that compares two levels of the ladder (outputs bit for bit, cycles exactly)
passes its verdicts to :func:`write_result` as ``{what: bool}``. Any false verdict ends the
benchmark with exit status 1 and a message on stderr naming it, and the result file keeps
what it held before: a figure in ``benchmarks/results/`` (and so in the docs, through
``docs_figures``) is never one of a wrong run. (``rtl_speed.json`` once recorded
``bit_exact: false`` and nobody knew which run wrote it.)

``$SHIFTFLOW_BENCH_RESULTS`` redirects the files (tests and trial runs of a dirty tree write
elsewhere than the committed results).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RESULTS = Path(os.environ.get("SHIFTFLOW_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


class BenchmarkFailed(SystemExit):
    """A benchmark run that was not exact (exit status 1)."""

    def __init__(self, name: str, failed: list[str]):
        super().__init__(1)
        self.message = f"benchmark FAILED: {name}: {', '.join(failed)} — {name} not written"


def write_result(name: str, result: dict, checks: dict[str, bool], indent: int = 1) -> Path:
    """Write ``result`` as ``RESULTS/name`` when every value of ``checks`` is true; else print
    the false ones to stderr and raise :class:`BenchmarkFailed`. ``checks`` is empty only for
    a benchmark that compares nothing (synthesis counts)."""
    failed = [what for what, ok in checks.items() if ok is None or not ok]
    if failed:
        exc = BenchmarkFailed(name, failed)
        print(exc.message, file=sys.stderr)
        raise exc
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=indent) + "\n")
    return path
