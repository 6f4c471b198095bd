"""Benchmark: fuzzing the importer and the loader/simulator with mutated inputs.

    python benchmarks/bench_fuzz.py [--cases 100000] [--program-cases N] [--seed 0] [--workers 2]
    python benchmarks/bench_fuzz.py --seed S --replay onnx:1234 [--out DIR]

``--cases`` mutated ONNX files (zoo models at small sizes, small QDQ models, the quantized digits
CNN) go through import + compile on ``tiny``; as many mutated build directories (``--program-cases``
to differ) go through ``load_program`` + ``simulate``, each case in a worker process under a
``--deadline``. The harness is ``tests/fuzzing`` (also run, at a small count, by
``tests/test_fuzz.py``). Prints counts per outcome and mutation kind, throughput, and one line per
distinct crash or hang with its reproducer; writes ``benchmarks/results/fuzz.json`` unless a case
crashed or hung (then exit 1). ``--replay DOMAIN:INDEX`` runs one case in this process with its
traceback, keeping the mutated files in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fuzzing, as pytest sees it

from guard import write_result
from tests.fuzzing.corpus import build_corpus
from tests.fuzzing.report import failure_lines, summarize
from tests.fuzzing.runner import DOMAINS, Pool, replay


def run_domain(corpus, domain: str, cases: int, seed: int, workers: int, deadline: float) -> dict:
    t0, last = time.perf_counter(), [0.0]

    def progress(o):
        now = time.perf_counter()
        if now - last[0] > 30:
            last[0] = now
            print(f"  {domain}: case {o.index} of {cases}, {now - t0:.0f} s", file=sys.stderr, flush=True)

    outcomes = Pool(corpus, domain, seed, workers, deadline).run(range(cases), progress)
    return summarize(outcomes, seed, time.perf_counter() - t0)


def _print(domain: str, s: dict) -> None:
    cats = s["categories"]
    print(f"{domain}: {s['cases']} cases in {s['seconds']:.0f} s ({s['cases_per_s']:.0f}/s): "
          + ", ".join(f"{k} {v}" for k, v in cats.items()))
    for kind, c in s["kinds"].items():
        print(f"  {kind:18} " + " ".join(f"{k} {v:6}" for k, v in c.items()))
    for line in failure_lines(s):
        print(line)


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000, help="ONNX cases (and program cases, unless given)")
    p.add_argument("--program-cases", type=int, help="program cases (default: --cases)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--deadline", type=float, default=60.0, help="seconds a case may take before it is a hang")
    p.add_argument("--no-zoo", action="store_true", help="only the small built-in seeds (no torch)")
    p.add_argument("--replay", metavar="DOMAIN:INDEX", help="run one case here, with its traceback")
    p.add_argument("--out", help="with --replay: directory for the mutated files")
    args = p.parse_args(argv)
    corpus = build_corpus(zoo=not args.no_zoo)
    if args.replay:
        domain, index = args.replay.split(":")
        out = Path(args.out or tempfile.mkdtemp(prefix="fuzz-replay-"))
        outcome = replay(corpus, domain, args.seed, int(index), out)
        print(f"{domain} case {index} ({outcome.kind} of {outcome.seed_model}) ran to the end; files in {out}")
        return None
    counts = {"onnx": args.cases, "program": args.cases if args.program_cases is None else args.program_cases}
    result = {"seed": args.seed, "workers": args.workers, "deadline_s": args.deadline, "corpus": corpus.describe()}
    for domain in DOMAINS:
        result[domain] = run_domain(corpus, domain, counts[domain], args.seed, args.workers, args.deadline)
        _print(domain, result[domain])
    result["seconds"] = round(sum(result[d]["seconds"] for d in DOMAINS), 1)
    write_result("fuzz.json", result, {f"{d}: no {c}es" if c == "crash" else f"{d}: no {c}s":
                                       result[d]["categories"][c] == 0 for d in DOMAINS for c in ("crash", "hang")})
    return result


if __name__ == "__main__":
    main()
