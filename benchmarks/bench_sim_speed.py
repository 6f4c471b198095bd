"""Benchmark: the simulator's speed on the 512×512 reference detector compiled for zu3eg.

    python benchmarks/bench_sim_speed.py [--frames 9] [--previous-frames 3] [--base COMMIT]

Times ``simulate`` per frame in one process (median wall and CPU time of ``--frames`` warm
frames; the first, cold frame — decoding, the timeline and every instruction's plan — is
reported apart), and, side by side in the same run, the simulator as it was before the speed
work (``sim/machine.py`` and ``sim/accelerator.py`` of ``--base``, read with ``git show``
and run on the current ``ir/``), and onnxruntime on the same QCDQ model with one thread (its
int8 kernels after graph optimization). Also records the top of a cProfile of one warm frame
(CPU time).

Verdicts (``guard.write_result``): the simulator's outputs equal the interpreter's (L2 == L1)
and the previous simulator's, with the same total cycles, per-layer rows and counters. If
the previous simulator cannot be loaded (no git history), its figure is quoted from
``detector_accel_zu3eg.json`` instead and ``previous.measured`` says so. Writes
``benchmarks/results/sim_speed.json``. Goal: at most 0.5 s per frame (median wall time).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort

from guard import RESULTS, write_result
from shiftflow.backend.compile import compile_model
from shiftflow.frontend.interpreter import Interpreter
from shiftflow.sim.run import make_feeds, simulate
from shiftflow.zoo import zoo_model

GOAL_S = 0.5
BASE = "f29b1a1"  # main before the simulator speed work of issue 13
REPO = Path(__file__).resolve().parents[1]


def previous_simulator(commit: str):
    """The ``SimAccelerator`` class of ``commit`` (its machine and accelerator modules, loaded
    under private names), or None when git or the commit is not available."""
    modules = {}
    for name in ("machine", "accelerator"):
        try:
            src = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:sim/{name}.py"], capture_output=True,
                                 text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        module = types.ModuleType(f"shiftflow.sim._previous_{name}")
        module.__package__ = "shiftflow.sim"
        sys.modules[module.__name__] = module
        exec(compile(src.replace("from .machine import", "from ._previous_machine import"),  # noqa: S102
                     f"{commit}:sim/{name}.py", "exec"), module.__dict__)
        modules[name] = module
    return modules["accelerator"].SimAccelerator


def frames(program, n: int, accelerator=None) -> tuple[dict, object]:
    """``n`` frames of ``simulate``: wall and CPU seconds of each, and the last result."""
    wall, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        result = simulate(program, seed=0, accelerator=accelerator() if accelerator else None)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": round(statistics.median(wall), 4), "cpu_s": round(statistics.median(cpu), 4),
            "frames_wall_s": [round(t, 4) for t in wall]}, result


def onnxruntime_seconds(path: Path, feeds: dict, n: int) -> float:
    """Median wall time of one run of the model in onnxruntime, one thread, all graph
    optimizations (the QDQ pairs fold into int8 kernels)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile_top(program, n: int = 12) -> dict:
    """The ``n`` functions with the most own CPU time in one warm frame under cProfile (whose
    own overhead inflates the frame to ``total_s``; numpy's C functions count as their
    callers' own time)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(simulate, program, seed=0)
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:n]
    root = str(REPO) + os.sep
    return {"total_s": round(sum(v[2] for v in stats.values()), 4),
            "top": [{"function": f"{file.replace(root, '')}:{line}({name})", "calls": nc, "own_s": round(tt, 4),
                     "cumulative_s": round(ct, 4)} for (file, line, name), (_, nc, tt, ct, _) in rows]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--previous-frames", type=int, default=3)
    p.add_argument("--base", default=BASE)
    args = p.parse_args(argv)
    path = zoo_model("detector", "w8a8", "qcdq")
    program = compile_model(path, "zu3eg")
    cold, _ = frames(program, 1)
    now, result = frames(program, args.frames)
    now["cold_wall_s"] = cold["wall_s"]
    feeds = make_feeds(program, None, 0)
    reference = Interpreter(program.graph).run(feeds)
    checks = {"outputs equal the interpreter's": all(np.array_equal(result.outputs[k], reference[k]) for k in reference)}
    previous_class = previous_simulator(args.base)
    if previous_class is not None:
        previous, old = frames(program, args.previous_frames, previous_class)
        previous.update(measured=True, commit=args.base)
        checks["outputs equal the previous simulator's"] = all(np.array_equal(result.outputs[k], old.outputs[k])
                                                               for k in reference)
        checks["cycles, layers and counters equal the previous simulator's"] = (
            old.total_cycles == result.total_cycles and old.layers == result.layers
            and old.counters == result.counters)
    else:
        quoted = json.loads((RESULTS / "detector_accel_zu3eg.json").read_text())["runs"]["auto"]["simulate_s"]
        previous = {"wall_s": quoted, "measured": False,
                    "source": "detector_accel_zu3eg.json (no git history here to run it side by side)"}
    ort_s = onnxruntime_seconds(path, feeds, args.frames)
    out = {"model": path.name, "target": "zu3eg", "statistic": "median", "frames": args.frames,
           "goal_s": GOAL_S, "load_average": [round(x, 2) for x in os.getloadavg()],
           "instructions": program.n_instructions, "total_cycles": result.total_cycles,
           "simulate": now, "previous": previous,
           "speedup": round(previous["wall_s"] / now["wall_s"], 2),
           "onnxruntime_int8_s": round(ort_s, 4), "onnxruntime_threads": 1,
           "ratio_to_onnxruntime": round(now["wall_s"] / ort_s, 1),
           "profile": profile_top(program)}
    print(f"detector 512x512 on zu3eg, {program.n_instructions} instructions, load average {out['load_average']}")
    print(f"simulate: {now['wall_s']:.3f} s/frame wall, {now['cpu_s']:.3f} s CPU (median of {args.frames}; "
          f"cold first frame {cold['wall_s']:.3f} s); goal <= {GOAL_S} s")
    print(f"previous ({'measured' if previous['measured'] else 'quoted'}): {previous['wall_s']:.3f} s/frame "
          f"-> {out['speedup']}x")
    print(f"onnxruntime int8, 1 thread: {ort_s:.4f} s/frame; simulate / onnxruntime = {out['ratio_to_onnxruntime']}")
    print(f"profile of one warm frame ({out['profile']['total_s']:.3f} s under cProfile), top own time:")
    for row in out["profile"]["top"]:
        print(f"  {row['own_s']:7.4f} s own {row['cumulative_s']:7.4f} s cum {row['calls']:6d}  {row['function']}")
    write_result("sim_speed.json", out, checks)
    return out


if __name__ == "__main__":
    main()
