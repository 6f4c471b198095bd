"""``simulate --check``: the simulator (L2) against the integer interpreter (L1) and, when the
model file is known, the interpreter against onnxruntime (L0) — the verification ladder.

Each rung compares one level with the one below it on the same input: L2 == L1 as integer
codes (float outputs of CPU ops must be identical), L1 == L0 as real values. ``bit_exact`` is
true when every rung is. ``frontend`` is imported here only, inside the function: the rest of
``sim`` reads nothing but ``ir``.
"""

from __future__ import annotations

import os

import numpy as np

from ..ir.program import Program
from ..ir.semantics import dequantize
from .run import SimResult, make_feeds, simulate


def compare_outputs(program: Program, ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """``{"bit_exact", "max_abs_diff", "outputs": [...]}`` of two runs on the same graph;
    differences are in real values (dequantized codes)."""
    rows, worst = [], 0.0
    for name in program.graph.outputs:
        t = program.graph.types[name]
        a, b = np.asarray(ours[name]), np.asarray(ref[name])
        if a.shape != b.shape:
            same, diff, mismatches = False, float("inf"), int(b.size)
        else:
            equal = (a == b) | (np.isnan(a) & np.isnan(b) if not t.is_int else False)
            same, mismatches = bool(equal.all()), int(np.count_nonzero(~equal))
            d = np.abs(dequantize(a, t) - dequantize(b, t))
            diff = 0.0 if same else float(np.max(np.where(np.isnan(d), np.inf, d)))
        rows.append({"name": name, "shape": list(b.shape), "bit_exact": same, "max_abs_diff": diff,
                     "mismatches": mismatches})
        worst = max(worst, diff)
    return {"bit_exact": all(r["bit_exact"] for r in rows), "max_abs_diff": worst, "outputs": rows}


def check_simulation(program: Program, model_path: str | os.PathLike | None = None, inputs=None, seed: int = 0,
                     progress: bool = False) -> SimResult:
    """``simulate`` (with the race check: a segment whose tokens leave conflicting accesses
    unordered raises ``ProgramError``) plus the ladder: ``result.checks["L2_vs_L1"]`` and
    ``result.checks["L1_vs_L0"]`` — the latter ``{"bit_exact": None, "skipped": why}`` without
    ``model_path``; ``result.bit_exact`` is the conjunction of the rungs that ran."""
    from ..frontend.check import check_model
    from ..frontend.interpreter import Interpreter

    feeds = make_feeds(program, inputs, seed)
    result = simulate(program, feeds, seed, progress=progress, check_races=True)
    l1 = Interpreter(program.graph).run(feeds)
    result.checks["L2_vs_L1"] = compare_outputs(program, result.outputs, l1)
    if model_path is not None:
        result.checks["L1_vs_L0"] = check_model(model_path, feeds, seed, graph=program.graph).to_json()
    else:
        result.checks["L1_vs_L0"] = {"bit_exact": None, "skipped": "no source ONNX model to run onnxruntime "
                                                                     "on; a build keeps it as source.onnx"}
    result.bit_exact = all(c["bit_exact"] for k, c in result.checks.items()
                           if k.startswith("L") and c["bit_exact"] is not None)
    return result
