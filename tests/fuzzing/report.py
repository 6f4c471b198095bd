"""Counting fuzz outcomes: per category, per mutation kind, distinct crash and hang signatures
with a reproducer each."""

from __future__ import annotations

from collections import Counter, defaultdict

from .runner import Outcome

CATEGORIES = ("error", "accepted", "crash", "hang")


def reproducer(o: Outcome, seed: int) -> str:
    return f"python benchmarks/bench_fuzz.py --seed {seed} --replay {o.domain}:{o.index}"


def summarize(outcomes: list[Outcome], seed: int, seconds: float) -> dict:
    """JSON-ready counts of one domain's outcomes."""
    per_kind: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        per_kind[o.kind][o.category] += 1
    total = Counter(o.category for o in outcomes)
    bugs: dict[str, dict] = {}
    for o in outcomes:
        if o.category in ("crash", "hang"):
            b = bugs.setdefault(o.signature, {"signature": o.signature, "category": o.category, "count": 0,
                                              "message": o.message, "kind": o.kind, "seed_model": o.seed_model,
                                              "reproducer": reproducer(o, seed)})
            b["count"] += 1
    return {"cases": len(outcomes), "seconds": round(seconds, 1),
            "cases_per_s": round(len(outcomes) / seconds, 1) if seconds else None,
            "categories": {c: total.get(c, 0) for c in CATEGORIES},
            "kinds": {k: {c: n.get(c, 0) for c in CATEGORIES} for k, n in sorted(per_kind.items())},
            "distinct_failures": sorted(bugs.values(), key=lambda b: -b["count"])}


def failure_lines(summary: dict) -> list[str]:
    """One line per distinct crash or hang signature, with its reproducer."""
    return [f"{b['category'].upper()} x{b['count']}: {b['signature']}: {b['message']} "
            f"[{b['kind']} of {b['seed_model']}] -- {b['reproducer']}" for b in summary["distinct_failures"]]
