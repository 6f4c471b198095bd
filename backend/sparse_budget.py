"""Per-layer densities under a latency budget (``shiftflow prune --latency-budget``, issue 12).

As ALCS (Zhao et al. 2021) does, the latency of a layer at a density is estimated by sampling
and piecewise-linear interpolation — here with the project's own cycle model: the model is
pruned at every density of ``SAMPLES`` at once, compiled with SPCONV and costed
(``backend/estimate.py``, the simulator's per-layer attribution), which gives each pruned
conv's cycles at those densities; between them, cycles are interpolated linearly. The samples
are compiled without layer overlap: with it, the completion-front attribution books one
layer's cycles to its overlapped neighbour (a depthwise conv would carry its pointwise
successor's work), and the per-layer table would price the wrong layer. The frame the user
compiles (with overlap) is then at most about the sum, and the final check measures it.

The allocation picks one density per layer from ``CHOICES`` to minimize the accuracy proxy
under the budget. The proxy is the relative reconstruction error of each layer's weights,
``||W - W_pruned|| / ||W||`` (real weights, the magnitude rule's blocks), summed over layers —
every layer counts alike, whatever its size. Two solvers:

- ``knapsack``: the exact multiple-choice knapsack by dynamic programming over the cycles,
  counted in units of ``budget / RESOLUTION`` and rounded up (so the chosen set meets the
  interpolated budget);
- ``lagrange``: the dual relaxation, a price on cycles: each layer minimizes
  ``error + λ·cycles`` on its own and ``λ`` is bisected to the budget — it can only reach the
  allocations on the lower convex hull;
- ``admm``: ADMM as ALCS solves it, the cycles split off as a variable constrained to the
  budget (each layer's choice exact, the split a projection), the best feasible iterate.

Interpolation is an estimate, so ``allocate`` compiles the result and searches the solver's
target: over the budget it lowers the target by the overshoot, under it by more than
``SLACK`` it raises the target by the slack (the overlapped frame can be well below the
summed samples: at shapesdet's 512×512, uniform density 0.5 compiles below the samples'
estimate of every conv at 0.25), then bisects between a met and a missed target; the met
allocation with the lowest proxy is returned.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import UsageError

SAMPLES = (1.0, 0.75, 0.5, 0.375, 0.25, 0.125)  # densities the cycle model is sampled at
CHOICES = tuple(np.round(np.arange(4, 33) / 32, 5)[::-1])  # densities a layer may take: 1.0 .. 0.125
RESOLUTION = 20000  # cycle units of the knapsack's budget (rounding costs up loses at most one a layer)
ROUNDS = 8  # compile-and-correct rounds (at most)
SLACK = 0.005  # a compiled allocation this close under the budget is taken


@dataclass
class Allocation:
    densities: dict[str, float]  # per pruned conv (ONNX node name)
    predicted: int  # interpolated frame cycles
    measured: int  # the compiled program's frame cycles (cycle model)
    error: float  # the proxy: sum of relative reconstruction errors
    rounds: int
    samples: dict = field(default_factory=dict)  # density -> frame cycles at uniform density


def compile_cycles(model: onnx.ModelProto, target: str, input_shapes, overlap: bool = True) -> tuple[int, dict[str, int]]:
    """Frame cycles and per-layer cycles of ``model`` compiled with SPCONV for ``target``
    (``overlap``: as ``compile_model`` takes it)."""
    from .compile import compile_model
    from .estimate import estimate_program

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(model, path)
        est = estimate_program(compile_model(path, target, input_shapes=input_shapes, sparse=True, overlap=overlap))
    return est["total_cycles"], {r["name"]: r["cycles"] for r in est["layers"]}


def _errors(model: onnx.ModelProto, tm: int, names: list[str]) -> np.ndarray:
    """(layers, CHOICES): the relative reconstruction error of each layer at each density."""
    from ..frontend.prune import pattern_mask, real_weights

    real = real_weights(model)
    out = np.zeros((len(names), len(CHOICES)))
    for i, name in enumerate(names):
        w = real[name]
        norm = np.sqrt((w ** 2).sum()) or 1.0
        for j, d in enumerate(CHOICES):
            out[i, j] = np.sqrt((w[~pattern_mask(w, "block", tm, d)] ** 2).sum()) / norm
    return out


def knapsack(costs: np.ndarray, errors: np.ndarray, budget: float) -> np.ndarray | None:
    """Exact multiple-choice knapsack: one choice per row minimizing ``errors`` with summed
    ``costs`` (rounded up to units of ``budget / RESOLUTION``) within ``budget``; the chosen
    column per row, or None when no choice fits."""
    if budget <= 0:
        return None
    unit = budget / RESOLUTION
    units = np.ceil(costs / unit - 1e-9).astype(np.int64)
    best = np.full(RESOLUTION + 1, np.inf)
    best[0] = 0.0
    picks = []
    for row in range(costs.shape[0]):
        nxt = np.full(RESOLUTION + 1, np.inf)
        arg = np.zeros(RESOLUTION + 1, np.int64)
        for j in range(costs.shape[1]):
            u = units[row, j]
            if u > RESOLUTION:
                continue
            cand = np.full(RESOLUTION + 1, np.inf)
            cand[u:] = best[:RESOLUTION + 1 - u] + errors[row, j]
            better = cand < nxt
            nxt[better], arg[better] = cand[better], j
        picks.append(arg)
        best = nxt
    if not np.isfinite(best).any():
        return None
    c = int(np.argmin(best))
    chosen = np.zeros(costs.shape[0], np.int64)
    for row in range(costs.shape[0] - 1, -1, -1):
        chosen[row] = picks[row][c]
        c -= units[row, chosen[row]]
    return chosen


def lagrange(costs: np.ndarray, errors: np.ndarray, budget: float) -> np.ndarray | None:
    """The dual relaxation: per row ``argmin(errors + λ·costs)``, ``λ`` bisected to the
    smallest price whose choice fits ``budget``; None when even the cheapest does not."""
    def pick(lam):
        return np.argmin(errors + lam * costs, axis=1)

    rows = np.arange(costs.shape[0])
    if costs[rows, pick(1e9)].sum() > budget:
        return None
    lo, hi = 0.0, 1e-12
    while costs[rows, pick(hi)].sum() > budget:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if costs[rows, pick(mid)].sum() <= budget else (mid, hi)
    return pick(hi)


def sample(model: onnx.ModelProto, target: str, tm: int, names: list[str], input_shapes=None):
    """``(frame cycles by density, (layers, SAMPLES) cycles of the convs ``names``)`` of
    ``model`` pruned uniformly at each of ``SAMPLES`` and compiled with SPCONV."""
    from ..frontend.prune import prune_weights

    samples, table = {}, np.zeros((len(names), len(SAMPLES)))
    for k, d in enumerate(SAMPLES):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        if d < 1.0:
            prune_weights(m, 1.0, tm, densities={n: d for n in names})
        total, layers = compile_cycles(m, target, input_shapes, overlap=False)
        samples[d] = total
        table[:, k] = [layers.get(n, 0) for n in names]
    return samples, table


def admm(costs: np.ndarray, errors: np.ndarray, budget: float, iterations: int = 300) -> np.ndarray | None:
    """ADMM (scaled form) on ``min Σ errors[l, x_l]`` s.t. ``Σ costs[l, x_l] <= budget``, split
    as ``s_l = costs[l, x_l]`` and ``z`` in the half-space ``Σ z <= budget``: the x-update is
    each layer's exact search over its choices, the z-update a projection, the penalty ``ρ``
    grows so the iterates settle. Costs are in units of ``budget / layers``. Returns the best
    feasible iterate, or None when even the cheapest choices do not fit."""
    rows = np.arange(costs.shape[0])
    if costs.min(axis=1).sum() > budget:
        return None
    scale = budget / costs.shape[0]
    c, b = costs / scale, costs.shape[0]
    z, u, rho = c.min(axis=1), np.zeros(costs.shape[0]), 0.01
    best, best_err = None, np.inf
    for _ in range(iterations):
        x = np.argmin(errors + rho / 2 * (c - (z - u)[:, None]) ** 2, axis=1)
        s = c[rows, x]
        v = s + u
        z = v - max(0.0, (v.sum() - b) / len(v))
        u += s - z
        rho *= 1.03
        if s.sum() <= b and errors[rows, x].sum() < best_err:
            best, best_err = x, errors[rows, x].sum()
    return best if best is not None else np.argmin(c, axis=1)


def allocate(model: onnx.ModelProto, budget: int, target: str, tm: int, prunable: list[str], *,
             input_shapes=None, method: str = "knapsack", sampled=None) -> Allocation:
    """Densities for the ``prunable`` convs of the QDQ ``model`` so that the compiled program
    (SPCONV, ``target``) takes at most ``budget`` frame cycles; ``UsageError`` when the budget
    is below what the sparsest choice reaches. ``sampled``: ``sample``'s result, when known."""
    from ..frontend.prune import prune_weights

    solve = {"knapsack": knapsack, "lagrange": lagrange, "admm": admm}[method]
    names = list(prunable)
    samples, table = sampled or sample(model, target, tm, names, input_shapes)
    order = np.argsort(SAMPLES)
    dens = np.array(SAMPLES)[order]
    costs = np.stack([np.interp(CHOICES, dens, row[order]) for row in table])
    rest = samples[1.0] - table[:, 0].sum()  # cycles of what is not pruned (stem, vector layers, gaps)
    errors = _errors(model, tm, names)
    rows = np.arange(len(names))
    # The frame is compiled with overlap, the samples without it, so the interpolated cycles
    # are off either way. Search the solver's target t for the largest one whose compiled
    # allocation meets the budget: ok/over bracket it; each round steps by the miss (a secant
    # step) until a bracket exists, then bisects it. The best feasible allocation is kept.
    # The sparsest choice everywhere: a budget below it is refused. At or just above it the
    # solver may still find nothing (its costs rounded up, at most a unit a layer): it then
    # aims that rounding higher.
    floor = rest + costs[:, -1].sum()
    t, ok, over, best, measured = float(budget), None, None, None, 0
    for rounds in range(1, ROUNDS + 1):
        chosen = solve(costs, errors, t - rest)
        if chosen is None:
            if best is None and ok is None and rounds == 1 and budget < floor:
                raise UsageError(f"--latency-budget {budget} cycles is below what density {CHOICES[-1]} "
                                 f"everywhere reaches (about {int(floor):,} cycles on {target})")
            ok = t if ok is None else max(ok, t)  # too low for the solver: aim higher
        else:
            densities = {n: float(CHOICES[j]) for n, j in zip(names, chosen)}
            m = onnx.ModelProto()
            m.CopyFrom(model)
            prune_weights(m, 1.0, tm, densities=densities)
            measured, _ = compile_cycles(m, target, input_shapes)
            err = float(errors[rows, chosen].sum())
            if measured <= budget:
                ok = t
                if best is None or err < best.error:
                    predicted = round(float(rest + costs[rows, chosen].sum()))
                    best = Allocation(densities, predicted, measured, err, rounds, samples)
                if budget - measured <= SLACK * budget or chosen.sum() == 0:  # close enough, or all dense
                    break
            else:
                over = t
            miss = budget - measured
        if ok is not None and over is not None:
            if over - ok <= SLACK * budget:
                break
            t = (ok + over) / 2
        else:
            if chosen is not None:
                t += miss
            elif t >= floor:  # the rounding's loss, at most a unit a layer
                t += len(names) * (t - rest) / RESOLUTION + 1
            else:
                t += abs(t) / 2 + 1
    if best is None:
        raise UsageError(f"--latency-budget {budget} cycles: no allocation met it in {rounds} rounds (the last "
                         f"compiled to {measured:,} cycles); give a larger budget")
    best.rounds = rounds
    return best


def prune_to_budget(path: str | os.PathLike, budget: int, target: str = "tiny", dense: tuple[str, ...] = (),
                    input_shapes: dict | None = None, method: str = "knapsack", calib=None,
                    calib_random: int | None = None, **quantize_args):
    """``shiftflow prune --latency-budget``: the QDQ model of ``path`` pruned in ``target``'s
    blocks with per-conv densities chosen so that its program (compiled with SPCONV) takes at
    most ``budget`` cycles a frame; returns (model, per-conv report, the ``Allocation``). A
    float model is quantized first (as ``shiftflow quantize`` does) and pruned on that grid."""
    from ..frontend.prune import prune_model, prune_weights, real_weights
    from ..ir.config import load_target

    if budget <= 0:
        raise UsageError(f"--latency-budget must be a positive number of cycles, found {budget}")
    tm = load_target(target).tm
    model, _ = prune_model(path, 1.0, target, dense=dense, calib=calib, calib_random=calib_random, **quantize_args)
    alloc = allocate(model, budget, target, tm, list(real_weights(model, dense)), input_shapes=input_shapes,
                     method=method)
    return model, prune_weights(model, 1.0, tm, dense=dense, densities=alloc.densities), alloc
