"""Per-layer densities under a latency budget (backend/sparse_budget.py): the exact
multiple-choice knapsack against brute force, the Lagrangian relaxation and ADMM never better, and
``prune_to_budget`` whose compiled program (SPCONV) meets the budget."""

import itertools
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shiftflow.backend.compile import compile_model
from shiftflow.backend.estimate import estimate_program
from shiftflow.backend.sparse_budget import RESOLUTION, admm, knapsack, lagrange, prune_to_budget
from shiftflow.errors import UsageError

from tests.frontend.test_prune import qdq_chain


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 999), share=st.floats(0.2, 1.2))
def test_knapsack_is_exact_and_the_relaxations_no_better(rows, cols, seed, share):
    rng = np.random.default_rng(seed)
    unit = 3.0  # the knapsack's unit (budget / RESOLUTION): costs in whole units are not rounded
    costs = rng.integers(1, max(2, int(share * 2 * RESOLUTION / rows)), (rows, cols)) * unit
    errors = rng.random((rows, cols))
    budget = RESOLUTION * unit
    best = None
    for pick in itertools.product(range(cols), repeat=rows):
        c, e = sum(costs[r, j] for r, j in enumerate(pick)), sum(errors[r, j] for r, j in enumerate(pick))
        if c <= budget and (best is None or e < best - 1e-12):
            best = e
    chosen = knapsack(costs, errors, budget)
    others = [lagrange(costs, errors, budget), admm(costs, errors, budget)]
    if best is None:
        assert chosen is None and others == [None, None]
        return
    rows_ = np.arange(rows)
    assert costs[rows_, chosen].sum() <= budget
    assert errors[rows_, chosen].sum() == pytest.approx(best)
    for pick in others:
        assert costs[rows_, pick].sum() <= budget and errors[rows_, pick].sum() >= best - 1e-12


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return qdq_chain(tmp_path_factory.mktemp("budget") / "m.onnx")


@pytest.mark.parametrize("method", ["knapsack", "lagrange", "admm"])
def test_the_compiled_program_meets_the_budget(chain, tmp_path, method):
    dense = estimate_program(compile_model(chain, "tiny", sparse=True))["total_cycles"]
    budget = int(0.5 * dense)
    model, report, alloc = prune_to_budget(chain, budget, "tiny", method=method)
    assert alloc.measured <= budget and min(alloc.densities.values()) < 1.0
    for layer in report:  # each conv kept its allocated share of blocks
        assert layer.kept_blocks == max(1, round(alloc.densities[layer.name] * layer.blocks))
    onnx.save(model, tmp_path / "p.onnx")
    assert estimate_program(compile_model(tmp_path / "p.onnx", "tiny", sparse=True))["total_cycles"] <= budget


def test_a_budget_below_the_sparsest_is_one_line(chain):
    with pytest.raises(UsageError, match="--latency-budget 100 cycles is below") as info:
        prune_to_budget(chain, 100, "tiny")
    assert "\n" not in str(info.value)


def test_cli_prune_to_a_budget_then_compile_sparse_and_check(chain, tmp_path, capsys):
    from shiftflow.cli import main

    from tests.cli_errors import one_line_exit_2

    out, build = str(tmp_path / "p.onnx"), str(tmp_path / "build")
    assert main(["prune", str(chain), "-o", out, "--latency-budget", "3500", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["latency_budget"]["measured"] <= 3500 and rep["latency_budget"]["allocation"] == "knapsack"
    assert main(["compile", out, "-o", build, "--sparse", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sparse_layers"]
    assert main(["disasm", build]) == 0 and "SPCONV" in capsys.readouterr().out
    assert main(["simulate", build, "--check", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["total_cycles"] <= 3500 and sim["bit_exact"] is True
    one_line_exit_2(["prune", str(chain), "-o", out], capsys, "give one of --density D and --latency-budget")
    one_line_exit_2(["prune", str(chain), "-o", out, "--density", "0.5", "--latency-budget", "9"], capsys,
                    "give one of")


def test_a_budget_at_the_sparsest_is_not_refused_as_below_it(chain, monkeypatch):
    """A budget at (not below) the sparsest choice's estimate: the knapsack's rounding (costs
    rounded up, a unit a layer) may find nothing at the first target — here it is made to —
    which is no reason to call the budget below that estimate: the search aims higher."""
    import shiftflow.backend.sparse_budget as sb

    with pytest.raises(UsageError) as info:
        prune_to_budget(chain, 100, "tiny")
    floor = int(str(info.value).split("about ")[1].split(" cycles")[0].replace(",", ""))
    calls = []

    def first_finds_nothing(costs, errors, budget):
        calls.append(budget)
        return None if len(calls) == 1 else knapsack(costs, errors, budget)

    monkeypatch.setattr(sb, "knapsack", first_finds_nothing)
    budget = floor + 10
    try:
        _, _, alloc = prune_to_budget(chain, budget, "tiny")
    except UsageError as e:  # the compiled program may still miss an estimate's floor
        assert "is below" not in str(e) and "no allocation met it" in str(e)
    else:
        assert alloc.measured <= budget
    assert len(calls) >= 2 and calls[1] > calls[0]
