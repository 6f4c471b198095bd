"""Benchmark: the detection system of the 512×512 shapesdet (w8a8) at zu3eg, stage by stage.

    python benchmarks/bench_system.py

Builds the model as a user does (``shiftflow zoo --only shapesdet --input-hw 512`` then
``shiftflow compile --target zu3eg``) and runs ``run_frames`` (the call behind ``shiftflow
run``) over ``IMAGES`` frames, cycled, each a 4×4 mosaic of 128×128 validation images of
zoo/shapes_data.py: the objects keep the scale the detector was trained at (validation images
rendered at 512×512 have objects 4× larger than any it saw, and it misses them).

Reports, from one run of ``FRAMES`` frames with thread workers:

- every stage's median and p95 seconds per frame *measured on this machine* (pre, accel,
  host, post); the accel stage here is the Python simulator's wall time;
- the *deployment estimate*: the accel stage replaced by the cycle model's cycles per frame
  at the target's *nominal* clock (not a measured board), the CPU stages as measured here;
  system fps = 1 / the slowest stage's median, latency = the sum of the stage medians;
- the same stages *alone*: run one after another, one frame at a time, so that no stage
  competes with the simulator for the GIL and the cores (in the pipeline every thread's
  time includes waiting for them), and the deployment estimate from those times;
- the conv MACs the CPU stages carry per frame (every conv on the accelerator: 0) and the
  host ops that run at all;
- threads vs processes: ``RUNS`` runs of ``MODE_FRAMES`` frames per mode, the modes
  alternating run by run so that load from other work on the machine falls on both; the
  median of each mode's measured fps (wall clock, fill and drain included), and of its accel
  stage's per-run median time.

Writes ``benchmarks/results/system.json`` when no run dropped a frame and every run reported
the same accelerator cycles per frame (the program is static: its cycles do not depend on the
image).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from guard import write_result
from shiftflow.cli import main as cli
from shiftflow.runtime.detect import load_detector, make_stages, run_frames
from shiftflow.zoo.shapes_data import make_image

SIZE = 512
TARGET = "zu3eg"
IMAGES = 8
TILE = 128
FRAMES = 96
MODE_FRAMES = 32
RUNS = 5
ISOLATED_PASSES = 3


def build(tmp: str) -> tuple[str, str]:
    """(model file name, build directory) of the 512×512 w8a8 shapesdet for zu3eg."""
    zoo = os.path.join(tmp, "zoo")
    assert cli(["zoo", "--only", "shapesdet", "--variants", "w8a8", "--forms", "qcdq",
                "--input-hw", str(SIZE), "--out", zoo]) == 0
    (model,) = [f for f in os.listdir(zoo) if f.endswith(".qcdq.onnx")]
    out = os.path.join(tmp, "build")
    assert cli(["compile", os.path.join(zoo, model), "--target", TARGET, "-o", out]) == 0
    return model, out


def isolated(build_dir: str, files: list[str]) -> dict[str, list[float]]:
    """Each stage's seconds per frame with the stages run one after another on one frame at a
    time (``ISOLATED_PASSES`` passes over ``files``): no other stage competes for the GIL or
    the cores, as on a SoC whose CPU stages each have an ARM core."""
    program, spec, tail = load_detector(build_dir)
    stages = make_stages(program, spec, keep_pixels=False, tail=tail)
    times: dict[str, list[float]] = {s.name: [] for s in stages}
    for _ in range(ISOLATED_PASSES):
        for f in files:
            data = f
            for stage in stages:
                t0 = time.perf_counter()
                data = stage(data)
                times[stage.name].append(time.perf_counter() - t0)
    return times


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def isolated_result(times: dict[str, list[float]], accel_s: float) -> dict:
    """Median and p95 of the isolated stage times, and the deployment estimate from them."""
    stages = {name: {"median": ms(statistics.median(t)), "p95": ms(float(np.percentile(t, 95)))}
              for name, t in times.items()}
    est = {name: statistics.median(t) for name, t in times.items()}
    est["accel"] = accel_s
    slowest = max(est, key=est.get)
    return {"note": "stages one after another, one frame at a time (no concurrency); "
                    "estimate: accel at the nominal clock, pre/host/post as measured alone",
            "frames": len(times["pre"]), "stages_ms": stages,
            "estimate": {"stage_ms": {k: ms(v) for k, v in est.items()}, "slowest_stage": slowest,
                         "fps": round(1.0 / est[slowest], 1), "latency_ms": ms(sum(est.values()))}}


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model, out = build(tmp)
        images = os.path.join(tmp, "val")
        os.makedirs(images)
        n = SIZE // TILE
        for i in range(IMAGES):
            tiles = [make_image("val", i * n * n + k, TILE)[0] for k in range(n * n)]
            mosaic = np.concatenate([np.concatenate(tiles[r * n:(r + 1) * n], 1) for r in range(n)], 0)
            Image.fromarray(mosaic).save(os.path.join(images, f"mosaic{i}.png"))
        cycles_seen = set()

        def run(frames: int, mode: str) -> dict:
            rep = run_frames(out, frames, images, mode=mode)
            cycles_seen.add(rep["deployment_estimate"]["accel_cycles_per_frame"])
            return rep

        run(4, "thread")  # warm-up: imports, caches, the first frame's allocations
        t0 = time.perf_counter()
        rep = run(FRAMES, "thread")
        main_s = time.perf_counter() - t0
        fps = {"thread": [], "process": []}
        accel_ms = {"thread": [], "process": []}
        dropped = [rep["dropped"]]
        for k in range(RUNS):
            for mode in (("thread", "process") if k % 2 == 0 else ("process", "thread")):
                r = run(MODE_FRAMES, mode)
                fps[mode].append(round(r["measured"]["fps"], 3))
                accel_ms[mode].append(ms(r["measured"]["stages"]["accel"]["median_s"]))
                dropped.append(r["dropped"])
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        alone = isolated(out, sorted(os.path.join(images, f) for f in os.listdir(images)))
    stages = rep["measured"]["stages"]
    est = rep["deployment_estimate"]
    medians = {name: s["median_s"] for name, s in stages.items()}
    slowest = max(medians, key=medians.get)
    result = {
        "model": model, "target": TARGET, "input": f"{SIZE}x{SIZE}", "frames": rep["frames"],
        "source": f"{IMAGES} mosaics of {(SIZE // TILE) ** 2} zoo/shapes_data.py val images at {TILE}x{TILE}, cycled",
        "statistic": "median and p95 per frame", "load_average": [round(v, 2) for v in os.getloadavg()],
        "run_seconds": round(main_s, 2), "dropped": rep["dropped"],
        "stages_ms": {name: {"median": ms(s["median_s"]), "p95": ms(s["p95_s"])} for name, s in stages.items()},
        "measured": {
            "note": "every stage measured on this machine; accel = the Python simulator's wall time",
            "fps": round(rep["measured"]["fps"], 2), "slowest_stage": slowest,
            "slowest_stage_fps": round(1.0 / medians[slowest], 2),
            "latency_ms": ms(sum(medians.values()))},
        "accelerator": {
            "simulator_median_ms": ms(stages["accel"]["median_s"]), "simulator_p95_ms": ms(stages["accel"]["p95_s"]),
            "cycles_per_frame": est["accel_cycles_per_frame"], "nominal_clock_mhz": est["clock_mhz"],
            "estimate_ms": ms(est["accel_s"]), "estimate_fps": round(est["accel_fps"], 1)},
        "deployment_estimate": {
            "note": "accel = cycle model cycles at the target's nominal clock (not measured on a board); "
                    "pre, host, post as measured on this machine",
            "stage_ms": {name: ms(v) for name, v in est["stage_s"].items()},
            "slowest_stage": est["slowest_stage"], "fps": round(est["fps"], 1), "latency_ms": ms(est["latency_s"])},
        "isolated": isolated_result(alone, est["accel_s"]),
        "host_macs": rep["host_macs"],
        "host_ops": [op for s in manifest["segments"] if s["kind"] == "host" for op in s["ops"]],
        "modes": {
            "frames_per_run": MODE_FRAMES, "runs": RUNS, "order": "alternating, run by run",
            **{mode: {"fps": fps[mode], "median_fps": statistics.median(fps[mode]),
                      "accel_median_ms": accel_ms[mode], "accel_median_of_runs_ms": statistics.median(accel_ms[mode])}
               for mode in ("thread", "process")},
            "process_over_thread": round(statistics.median(fps["process"]) / statistics.median(fps["thread"]), 3)},
    }
    print(f"{model} at {TARGET}: {rep['frames']} frames, {result['measured']['fps']} fps measured here, "
          f"load average {result['load_average']}")
    for name, s in result["stages_ms"].items():
        print(f"  {name:6s} median {s['median']:9.2f} ms  p95 {s['p95']:9.2f} ms")
    a, d = result["accelerator"], result["deployment_estimate"]
    print(f"accelerator: simulator {a['simulator_median_ms']} ms; estimate {a['cycles_per_frame']:,} cycles at "
          f"nominal {a['nominal_clock_mhz']} MHz = {a['estimate_ms']} ms ({a['estimate_fps']} fps)")
    print(f"deployment estimate: {d['fps']} fps (slowest stage {d['slowest_stage']}), latency {d['latency_ms']} ms")
    iso = result["isolated"]
    print("stages alone: " + ", ".join(f"{k} {v['median']} ms" for k, v in iso["stages_ms"].items())
          + f"; estimate {iso['estimate']['fps']} fps (slowest {iso['estimate']['slowest_stage']}), "
          f"latency {iso['estimate']['latency_ms']} ms")
    print(f"host conv MACs: {result['host_macs']}; host ops: {result['host_ops']}")
    m = result["modes"]
    for mode in ("thread", "process"):
        print(f"{mode} workers: fps {m[mode]['fps']} -> median {m[mode]['median_fps']}; accel stage "
              f"{m[mode]['accel_median_of_runs_ms']} ms")
    write_result("system.json", result, {"no frame dropped in any run": not any(dropped),
                                         "same accelerator cycles in every run": len(cycles_seen) == 1})
    return result


if __name__ == "__main__":
    main()
