"""Benchmark: the deployment target's RTL runs programs. zu3eg's AcceleratorTop under
Verilator runs a zoo network at a small input (with VEC ops), ten single conv layers (both
dataflows, depthwise, stride 2, pow2, a wide head), three pruned layers compiled to SPCONV,
and the zoo network and a SPCONV layer again with random DRAM stalls; each is compared with the simulator (``hw.tb.rtlsim.rtlsim``): outputs bit-exact and,
without stalls, the cycle model's cycles in every segment.

    python benchmarks/bench_zu3eg_rtl.py [--cold] [--network resnet] [--hw 16x16]

``--cold`` builds the Verilator model in an empty cache (``SHIFTFLOW_HW_CACHE`` set to a
temporary directory) so that the build's wall time and peak memory are the uncached ones;
otherwise a cached model is reused and the build time says so. The build is measured on its
own (``bench_model``), then one RTL simulator process serves every program. Writes
``benchmarks/results/zu3eg_rtl.json`` only when every case passes (``guard.write_result``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.modelgen, as pytest sees it

from guard import write_result  # noqa: E402
from shiftflow.backend.compile import compile_model  # noqa: E402
from shiftflow.hw.tb.rtl_accel import RtlAccelerator, bench_model  # noqa: E402
from shiftflow.hw.tb.rtlsim import rtlsim  # noqa: E402
from shiftflow.ir.config import load_target  # noqa: E402
from shiftflow.zoo import zoo_model  # noqa: E402
from shiftflow.ir.decode import decode_program  # noqa: E402
from shiftflow.ir.isa import Opcode  # noqa: E402
from tests.backend.test_spconv import prune_all  # noqa: E402
from tests.modelgen import conv_layer_model  # noqa: E402

#: (name, conv_layer_model arguments, dataflow): the layer kinds the issue names.
LAYERS = (
    ("conv3x3 channel", dict(cin=16, cout=32, hw=(12, 10)), "channel"),
    ("conv3x3 pixel", dict(cin=16, cout=32, hw=(12, 10)), "pixel"),
    ("depthwise 3x3", dict(cin=32, cout=32, hw=(12, 12), groups=32), "auto"),
    ("depthwise 3x3 s2", dict(cin=32, cout=32, hw=(13, 11), groups=32, stride=2), "auto"),
    ("stem 3->16 s2", dict(cin=3, cout=16, hw=(16, 16), stride=2), "auto"),
    ("pointwise channel", dict(cin=32, cout=64, hw=(8, 8), k=1, pad=0), "channel"),
    ("pointwise pixel pow2", dict(cin=32, cout=64, hw=(8, 8), k=1, pad=0, pow2=True), "pixel"),
    ("conv3x3 s2 pow2", dict(cin=16, cout=16, hw=(11, 9), stride=2, pow2=True), "channel"),
    ("conv5x5 pixel", dict(cin=8, cout=40, hw=(9, 9), k=5, pad=2), "pixel"),
    ("wide head", dict(cin=16, cout=24, hw=(8, 8), act=None, out_quant=False), "auto"),
)
#: SPCONV (docs/sparsity.md): (name, conv_layer_model arguments, density), pruned in 1x32 blocks
#: by ``shiftflow prune``'s rule and compiled with ``sparse=True``.
SPARSE = (
    ("spconv 3x3 d0.5", dict(cin=16, cout=32, hw=(12, 10)), 0.5),
    ("spconv 1x1 d0.25", dict(cin=64, cout=32, hw=(8, 8), k=1, pad=0), 0.25),
    ("spconv 3x3 s2 d0.5", dict(cin=16, cout=32, hw=(13, 11), stride=2), 0.5),
)


def sparse_program(work: str, cfg, kw: dict, density: float, seed: int):
    """A conv layer pruned in 1 x tm blocks at ``density``, compiled with SPCONV."""
    path = Path(work) / f"sparse{seed}.onnx"
    model = conv_layer_model(seed=seed, **kw)
    prune_all(model, density, cfg.tm)
    onnx.save(model, path)
    return compile_model(path, cfg, dataflow="pixel", sparse=True)


def case(name: str, program, rtl, stalls: bool = False) -> dict:
    rep = rtlsim(program, seed=1, stalls=stalls, accelerator=rtl)
    row = {"name": name, "stalls": stalls, "passed": rep["passed"], "bit_exact": rep["bit_exact"],
           "cycles_equal": rep["cycles_equal"], "rtl_cycles": rep["rtl_cycles"], "sim_cycles": rep["sim_cycles"],
           "instructions": program.n_instructions, "rtl_s": rep["seconds"]["rtl"], "error": rep["error"]}
    print(f"  {name:24s} {'PASS' if row['passed'] else 'FAIL'}  rtl {row['rtl_cycles']} / sim {row['sim_cycles']} "
          f"cycles{' (stalls)' if stalls else ''}  {row['rtl_s']:.1f} s", flush=True)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="build the Verilator model in an empty cache")
    ap.add_argument("--network", default="resnet")
    ap.add_argument("--hw", default="16x16", help="the zoo network's input HxW")
    args = ap.parse_args(argv)
    if args.cold:
        os.environ["SHIFTFLOW_HW_CACHE"] = tempfile.mkdtemp(prefix="zu3eg-cold-")
    cfg = load_target("zu3eg")
    t0 = time.perf_counter()
    bench_model(cfg, progress=lambda phase: print(f"{phase} ...", flush=True))
    build_s = time.perf_counter() - t0
    # Verilator and the C++ compiler run as child processes: their peak resident set.
    build_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"zu3eg Verilator model: {build_s:.0f} s ({'cold' if args.cold else 'cache allowed'}), "
          f"peak child RSS {build_rss_mb:.0f} MB", flush=True)

    hw = tuple(int(v) for v in args.hw.split("x"))
    net = compile_model(zoo_model(args.network, "w8a8", "qcdq", input_hw=hw), cfg)
    vec_ops = sum(1 for lyr in net.manifest["layers"] if lyr["op"] not in ("conv", "gemm"))
    rows = []
    rtl = RtlAccelerator()
    work = tempfile.mkdtemp(prefix="zu3eg-layers-")
    try:
        rows.append(case(f"{args.network} {args.hw}", net, rtl))
        for name, kw, dataflow in LAYERS:
            path = Path(work) / f"layer{len(rows)}.onnx"
            onnx.save(conv_layer_model(seed=len(rows), **kw), path)
            rows.append(case(name, compile_model(path, cfg, dataflow=dataflow), rtl))
        for name, kw, density in SPARSE:
            program = sparse_program(work, cfg, kw, density, len(rows))
            spconvs = sum(i.opcode == Opcode.SPCONV for i in decode_program(program.instructions, config=cfg))
            rows.append({**case(name, program, rtl), "spconv_instructions": spconvs})
            rows[-1]["passed"] = rows[-1]["passed"] and spconvs > 0
        rows.append(case(f"{args.network} {args.hw}", net, rtl, stalls=True))
        rows.append(case(f"{SPARSE[0][0]}", sparse_program(work, cfg, *SPARSE[0][1:], 99), rtl,
                         stalls=True))
    finally:
        rtl.close()
    out = {"target": "zu3eg", "build": {"seconds": round(build_s, 1), "cold": args.cold,
                                        "peak_child_rss_mb": round(build_rss_mb)},
           "network": {"name": args.network, "input_hw": list(hw), "vec_layers": vec_ops},
           "cases": rows, "passed": sum(r["passed"] for r in rows), "total": len(rows)}
    print(f"{out['passed']}/{out['total']} cases bit-exact (and cycle-exact without stalls)")
    write_result("zu3eg_rtl.json", out, {f"{r['name']}{' (stalls)' if r['stalls'] else ''} passes: "
                                         f"{r['error'] or 'outputs or cycles differ'}": r["passed"] for r in rows})
    return out


if __name__ == "__main__":
    main()
