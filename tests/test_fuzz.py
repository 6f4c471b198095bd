"""A small count of the fuzzing benchmark (benchmarks/bench_fuzz.py, harness in tests/fuzzing):
mutated ONNX files through import + compile, mutated builds through load + simulate, each in a
worker process under a deadline; every case must end in a one-line ``ShiftflowError`` or run
(never a crash or a hang)."""

import pytest

from tests.fuzzing.corpus import build_corpus
from tests.fuzzing.report import failure_lines, summarize
from tests.fuzzing.runner import Pool

CASES = 1000
SEED = 0


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(zoo=False)  # the zoo's seeds need torch; the benchmark adds them


@pytest.mark.parametrize("domain", ["onnx", "program"])
def test_mutated_inputs_never_crash_or_hang(corpus, domain):
    summary = summarize(Pool(corpus, domain, SEED, workers=2, deadline=20.0).run(range(CASES)), SEED, 1.0)
    assert summary["categories"]["crash"] == summary["categories"]["hang"] == 0, "\n".join(failure_lines(summary))
    assert sum(summary["categories"].values()) == CASES
    assert summary["categories"]["error"] and summary["categories"]["accepted"]  # both kinds of outcome occur


def test_a_case_is_reproducible(corpus):
    from tests.fuzzing.runner import make_case

    for domain in ("onnx", "program"):
        assert make_case(corpus, domain, SEED, 7) == make_case(corpus, domain, SEED, 7)
