"""The ``shiftflow`` command line: thin argument parsing, one library call per subcommand.

User errors (``ShiftflowError``) print ``error: ...`` on one line and exit 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile


from .errors import ShiftflowError, UsageError
from .ir.feeds import load_array


def _writable(directory: str, what: str) -> None:
    """Create and remove a scratch file in ``directory``: the one test that holds for every
    user (``os.access`` says yes to root even where nothing can be created, as in /proc)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {what}: {directory!r}: {exc.strerror}") from None


def _output_dir(path: str, flag: str) -> str:
    """``path`` for a command to write a directory into: an existing writable directory, or a
    new one under a writable directory (checked before any work, so a long compile does not
    end in a traceback)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is an existing file; give a directory to write into")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"cannot create {flag} {path!r}: {parent!r} is a file")
    _writable(parent, f"{flag} {path!r}")
    return path


def _output_file(path: str, flag: str) -> str:
    """``path`` for a command to write one file to: not a directory, in a writable directory."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {flag} {path!r}: directory {parent!r} does not exist")
    _writable(parent, f"{flag} {path!r}")
    return path


def _build_dir(path: str) -> str:
    """A build directory to read; a model file given instead gets the command that makes one."""
    if os.path.isfile(path):
        raise UsageError(f"{path!r} is a file, not a build directory: compile it first, e.g. "
                         f"`shiftflow compile {path} -o build`, then pass `build`")
    return path


def cmd_inspect(args) -> int:
    from .backend.partition import host_reasons
    from .frontend.importer import import_onnx
    from .frontend.onnx_load import parse_input_shapes
    from .frontend.summary import format_summary, summarize
    from .ir.config import load_target
    from .ir.text import print_graph

    config = load_target(args.target)

    if args.dump_dir:
        _output_dir(args.dump_dir, "--dump-dir")
    graph = import_onnx(args.model, parse_input_shapes(args.input_shape), args.print_after, args.dump_dir)
    summary = summarize(graph, host_reasons(graph, config), config.name)
    if args.json:
        print(json.dumps(summary))
        return 0
    if not args.summary_only:
        print(print_graph(graph, elide=True))
    print(format_summary(summary))
    return 0


def cmd_check(args) -> int:
    from .frontend.check import check_model
    from .frontend.onnx_load import parse_input_shapes

    given = load_array(args.input) if args.input else None
    report = check_model(args.model, given, args.seed, parse_input_shapes(args.input_shape))
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for o in report.outputs:
            status = "bit-exact" if o["bit_exact"] else f"MISMATCH ({o['mismatches']} elements)"
            print(f"{o['name']} {o['shape']}: max_abs_diff={o['max_abs_diff']:g} {status}")
        print("L1 interpreter vs L0 onnxruntime: " + ("bit-exact" if report.bit_exact else "NOT bit-exact"))
    return 0 if report.bit_exact else 1


def cmd_quantize(args) -> int:
    import onnx

    from .frontend.quantize import load_calibration, quantize_model

    if (args.calib is None) == (args.calib_random is None):
        raise UsageError("give exactly one of --calib DATA.npz or --calib-random N")
    _output_file(args.output, "-o")
    calib = load_calibration(args.calib) if args.calib else None
    model = quantize_model(args.model, calib=calib, calib_random=args.calib_random, wbits=args.wbits,
                           abits=args.abits, weights=args.weights, per_channel=args.per_channel,
                           wide_heads=args.wide_heads, seed=args.seed)
    onnx.save(model, args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_prune(args) -> int:
    import onnx

    from .backend.sparse_budget import prune_to_budget
    from .frontend.prune import prune_model
    from .frontend.quantize import load_calibration

    _output_file(args.output, "-o")
    if (args.density is None) == (args.latency_budget is None):
        raise UsageError("give one of --density D and --latency-budget CYCLES")
    calib = load_calibration(args.calib) if args.calib else None
    quant = dict(calib=calib, calib_random=args.calib_random, per_channel=args.per_channel, weights=args.weights,
                 wbits=args.wbits)
    budget = None
    if args.latency_budget is not None:  # block pattern, per-conv densities (backend/sparse_budget.py)
        model, layers, budget = prune_to_budget(args.model, args.latency_budget, args.target,
                                                tuple(args.dense or ()), method=args.allocation, **quant)
    else:
        model, layers = prune_model(args.model, args.density, args.target, args.pattern, tuple(args.dense or ()),
                                    **quant)
    onnx.save(model, args.output)
    blocks = sum(x.blocks for x in layers)
    kept = sum(x.kept_blocks for x in layers)
    if budget is not None and not args.json:
        print(f"latency budget {args.latency_budget:,} cycles ({args.allocation}): the compiled program takes "
              f"{budget.measured:,} (interpolated {budget.predicted:,}; dense {budget.samples[1.0]:,})")
    if args.json:
        print(json.dumps({"output": args.output, "pattern": args.pattern, "density": args.density,
                          "block_density": kept / blocks, "layers": [x.to_json() for x in layers],
                          **({"latency_budget": {"cycles": args.latency_budget, "allocation": args.allocation,
                                                 "measured": budget.measured, "predicted": budget.predicted,
                                                 "densities": budget.densities}} if budget else {})}))
    else:
        print(f"pruned {len(layers)} convs of {args.model} ({args.pattern}, 1x{load_tm(args.target)} blocks): "
              f"{kept:,} of {blocks:,} blocks kept ({kept / blocks:.3f}) -> {args.output}")
    return 0


def load_tm(target: str) -> int:
    from .ir.config import load_target

    return load_target(target).tm


def cmd_compile(args) -> int:
    from .backend.compile import compile_model
    from .frontend.nms_tail import body_file, save_tail
    from .frontend.onnx_load import parse_input_shapes
    from .ir.program import SOURCE_MODEL, save_program
    from .runtime.heads import find_heads
    from .sim.run import host_convs

    _output_dir(args.output, "-o")
    heads = find_heads(args.model)  # a malformed head spec fails before anything is written
    with body_file(args.model) as (body, tail, body_outputs):  # an NMS and what follows it stay on the CPU
        program = compile_model(body, args.target, dataflow=args.dataflow,
                                input_shapes=parse_input_shapes(args.input_shape), print_after=args.print_after,
                                sparse=args.sparse)
    if args.nms is not None:  # the NMS core's part after the heads (runtime/nms_core.py)
        from .runtime.nms_core import attach_nms

        if heads is None or tail is not None:
            raise UsageError(f"--nms {args.nms} needs a detector with a head spec and without its own NonMaxSuppression")
        program = attach_nms(program, heads, args.nms, args.score)
    save_program(program, args.output)
    if tail is not None:
        save_tail(args.output, tail, body_outputs)
    shutil.copyfile(args.model, os.path.join(args.output, SOURCE_MODEL))  # for simulate --check (L0)
    if heads is not None:  # detect and run find a detector's head spec in the build
        with open(os.path.join(args.output, "heads.json"), "w") as f:
            f.write(heads.to_json())
    m = program.manifest
    convs = host_convs(program)
    for c in convs:  # MACs the accelerator's cycles and fps will not include
        print(f"warning: conv {c['name']!r} ({c['macs']:,} MACs) runs on the host: {c['reason']}",
              file=sys.stderr)
    summary = {"build": args.output, "target": program.config.name, "instructions": program.n_instructions,
               "weights_bytes": len(program.weights), "dram_bytes": m["dram"]["size"],
               "accelerator_layers": len(m["layers"]),
               "host_ops": sum(len(s["ops"]) for s in m["segments"] if s["kind"] == "host"),
               "host_macs": sum(c["macs"] for c in convs), "nms_tail": [t.name for t in tail.nms] if tail is not None else [],
               "nms_tail_ops": tail.post_ops if tail is not None else [],
               "sparse_layers": [x["name"] for x in m["layers"] if "sparse" in x]}  # with SPCONV blocks
    if args.json:
        print(json.dumps(summary))
    else:
        n_after = len(summary["nms_tail_ops"])
        after = f" and {n_after} op{'' if n_after == 1 else 's'} after it" if n_after else ""
        on_cpu = f", NonMaxSuppression {', '.join(summary['nms_tail'])}{after} on the CPU" if tail is not None else ""
        print(f"compiled {args.model} for {summary['target']}: {summary['instructions']} instructions, "
              f"{summary['accelerator_layers']} accelerator layers ({len(summary['sparse_layers'])} with SPCONV), "
              f"{summary['host_ops']} host ops{on_cpu} -> {args.output}")
    return 0


def cmd_simulate(args) -> int:
    from .frontend.nms_tail import load_tail, run_on_program_outputs
    from .ir.program import load_program
    from .sim.run import format_report, simulate

    program = load_program(_build_dir(args.build))
    given = load_array(args.input) if args.input else None
    if args.check:
        from .ir.program import SOURCE_MODEL
        from .sim.check import check_simulation

        source = os.path.join(args.build, SOURCE_MODEL)
        result = check_simulation(program, source if os.path.isfile(source) else None, inputs=given, seed=args.seed)
    else:
        result = simulate(program, given, seed=args.seed, progress=not args.json and sys.stderr.isatty())
    tail, body_outputs = load_tail(args.build)
    computed = run_on_program_outputs(tail, program.graph, result.outputs, body_outputs) if tail is not None else {}
    if args.json:
        out = result.to_json()
        if tail is not None:
            out["nms_tail"] = {name: v.tolist() for name, v in computed.items()}
        print(json.dumps(out))
    else:
        print(format_report(result))
        for t in tail.nms if tail is not None else ():
            k = len(computed[t.output])
            print(f"NonMaxSuppression {t.name!r} on the CPU: {k} box{'' if k == 1 else 'es'} selected "
                  f"({t.output!r})")
        for name in tail.outputs if tail is not None else ():
            if name not in {t.output for t in tail.nms}:
                print(f"after it on the CPU: {name!r} shape {list(computed[name].shape)}")
    return 1 if args.check and not result.bit_exact else 0


def cmd_rtlsim(args) -> int:
    from .hw.tb.rtlsim import format_rtlsim, rtlsim
    from .progress import Phases
    from .ir.program import load_program

    program = load_program(_build_dir(args.build))
    spec = None
    if "nms" in program.manifest:  # a build with the NMS core's part: it runs too (its head spec)
        from .runtime.detect import load_detector

        _, spec, _ = load_detector(_build_dir(args.build), program.config.name)
    given = load_array(args.input) if args.input else None
    with Phases("rtlsim") as phase:  # on stderr, only when it is a terminal
        report = rtlsim(program, given, seed=args.seed, stalls=args.stalls, progress=phase, spec=spec)
    print(json.dumps(report) if args.json else format_rtlsim(report))
    return 0 if report["passed"] else 1


def cmd_verilog(args) -> int:
    from .hw.cli_rtl import fmax_rtl, write_rtl
    from .progress import Phases

    if args.fmax:
        if args.synth:
            raise UsageError("--fmax runs its own synthesis; give it without --synth")
        log_dir = _output_dir(args.output, "-o") if args.output else None
        with Phases("verilog") as phase:
            phase("place and route (ECP5, several minutes)")
            out = fmax_rtl(args.target, args.fmax, log_dir)
        if args.json:
            print(json.dumps(out))
        else:
            path = out["critical_path"]
            print(f"{out['target']}: {out['fmax_mhz']:.2f} MHz on {out['device']} ({out['seconds']:.0f} s)"
                  + (f"; critical path {out['critical_path_ns']} ns from {path[0]['cell']} to {path[-1]['cell']}"
                     if path else "; nextpnr named no critical path"))
        return 0
    if not args.output:
        raise UsageError("verilog needs -o RTLDIR (or --fmax)")
    with Phases("verilog") as phase:
        out = write_rtl(args.target, _output_dir(args.output, "-o"), args.synth, progress=phase)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['files'][0]} (top {out['top']}) and {out['file_list']}")
        if "synth" in out:
            s = out["synth"]
            print(f"{s['family']}: {s['lut']:g} LUT, {s['ff']} FF, {s['dsp']} DSP, {s['bram']:g} BRAM")
            if "fits" in s:
                b = s["budget"]
                print(f"budget {b['lut']} LUT, {b['ff']} FF, {b['dsp']} DSP, {b['bram36']} BRAM36: "
                      f"{'fits' if s['fits'] else 'does NOT fit'}")
    return 0


def cmd_disasm(args) -> int:
    from .ir.disasm import disassemble
    from .ir.program import load_program

    program = load_program(_build_dir(args.build))
    layer_of = {}
    for layer in program.manifest["layers"]:
        for i in range(layer["first"], layer["last"] + 1):
            layer_of.setdefault(i, layer["name"])
    for line in disassemble(program.instructions, 0, layer_of):
        print(line)
    return 0


def cmd_detect(args) -> int:
    from .runtime.detect import detect

    out = detect(args.model, args.images, _output_dir(args.output, "-o"), args.target, args.nms, args.score,
                 args.iou, args.accelerator, on_note=lambda note: print(f"note: {note}", file=sys.stderr),
                 on_error=lambda line: print(f"error: {line}", file=sys.stderr))
    if args.json:
        print(json.dumps({"images": [{"file": e["file"], "boxes": e["boxes"]} for e in out["images"]],
                          "stages": out["stages"], "fps": out["fps"]}))
    else:
        for e in out["images"]:
            print(f"{e['file']}: {len(e['boxes'])} boxes -> {e['png']}")
    return 2 if out["errors"] else 0


def cmd_run(args) -> int:
    from .runtime.detect import run_frames
    from .runtime.report import format_report

    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.frames, unit="frame", desc="run", leave=False)
    try:
        rep = run_frames(_build_dir(args.build), args.frames, args.source, accelerator=args.accelerator,
                         mode=args.mode, on_frame=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(rep) if args.json else format_report(rep))
    return 0 if rep["dropped"] == 0 else 1


def _input_hw(text: str) -> tuple[int, int]:
    from .zoo.__main__ import parse_hw  # the zoo's own parser; imported only for this command

    return parse_hw(text)


def cmd_zoo(args) -> int:
    from .zoo.build import build_zoo

    build_zoo(_output_dir(args.out, "--out"), names=args.only, variants=args.variants, forms=args.forms,
              input_hw=args.input_hw)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(_output_dir(args.out, "--out"))


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, ``error: ...``, exit 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="shiftflow", description="Shift-quantized CNNs from ONNX to an FPGA accelerator.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("model", help="ONNX file (QDQ/QCDQ or QONNX)")
        sp.add_argument("--input-shape", action="append", metavar="[NAME=]D0,D1,..",
                        help="static shape for a dynamic input (repeatable)")

    sp = sub.add_parser("inspect", help="import a model and print its IR and a summary")
    model_args(sp)
    sp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sp.add_argument("--summary-only", action="store_true", help="skip the IR listing")
    sp.add_argument("--print-after", metavar="PASS", help="print the IR after this pass ('all' for every one)")
    sp.add_argument("--dump-dir", metavar="DIR", help="write the IR after every pass into DIR")
    sp.add_argument("--target", default="tiny", help="the target whose placement (accelerator or host) to show")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("check", help="integer interpreter vs onnxruntime, bit for bit")
    model_args(sp)
    sp.add_argument("--input", metavar="X.npy", help="input array (default: seeded random)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("quantize", help="po2 post-training quantization of a float model to QDQ")
    sp.add_argument("model", help="float ONNX model")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    sp.add_argument("--calib", metavar="DATA.npz", help="calibration inputs")
    sp.add_argument("--calib-random", type=int, metavar="N", help="calibrate on N seeded random inputs")
    sp.add_argument("--wbits", type=int, default=8, help="weight bits, 2..8")
    sp.add_argument("--abits", type=int, default=8, help="activation bits, 4..8")
    sp.add_argument("--weights", default="int", help="weight encoding: int or pow2")
    sp.add_argument("--per-channel", action="store_true", help="one po2 scale per output channel")
    sp.add_argument("--wide-heads", action="store_true",
                    help="no output quantizers on the convs feeding the outputs: their exact sums (a detector's heads)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_quantize)

    sp = sub.add_parser("prune", help="SIMD-structured (1xN block) magnitude pruning to a QDQ model")
    sp.add_argument("model", help="float, QDQ/QCDQ or QONNX ONNX model")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    sp.add_argument("--density", type=float, metavar="D", help="share of blocks kept, in (0, 1]")
    sp.add_argument("--latency-budget", type=int, metavar="CYCLES",
                    help="per-conv densities so that the program (with SPCONV) takes at most CYCLES a frame")
    sp.add_argument("--allocation", default="knapsack", choices=("knapsack", "lagrange", "admm"),
                    help="--latency-budget's solver (docs/sparsity.md)")
    sp.add_argument("--target", default="tiny", help="target whose tm sets the block (1 x tm)")
    sp.add_argument("--pattern", default="block", choices=("block", "unstructured", "filter"),
                    help="block (the accelerator skips these), or unstructured/filter (for comparison)")
    sp.add_argument("--dense", nargs="+", metavar="CONV", help="convs to keep dense (the stem always is)")
    sp.add_argument("--calib", metavar="DATA.npz", help="calibration inputs (float models)")
    sp.add_argument("--calib-random", type=int, metavar="N", help="calibrate on N seeded random inputs (float models)")
    sp.add_argument("--wbits", type=int, default=8, help="weight bits, 2..8 (float models)")
    sp.add_argument("--weights", default="int", help="weight encoding: int or pow2 (float models)")
    sp.add_argument("--per-channel", action="store_true", help="one po2 scale per output channel (float models)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("compile", help="compile a quantized model into an accelerator program")
    model_args(sp)
    sp.add_argument("-o", "--output", required=True, metavar="BUILD", help="build directory to write")
    sp.add_argument("--target", default="tiny", help="tiny, zu3eg, or a target JSON file")
    sp.add_argument("--dataflow", default="auto", choices=("auto", "channel", "pixel"))
    sp.add_argument("--print-after", metavar="PASS", help="print the plan after this back-end pass")
    sp.add_argument("--sparse", action="store_true",
                    help="emit SPCONV where faster (pruned models; docs/sparsity.md)")
    sp.add_argument("--nms", choices=("psrr",), help="append the NMS core's instruction (PSRR-MaxpoolNMS after the "
                                                     "heads; docs/nms_core.md)")
    sp.add_argument("--score", type=float, default=0.3, help="score threshold of --nms psrr (default 0.3)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_compile)

    sp = sub.add_parser("simulate", help="run a build on the bit-exact cycle-level simulator")
    sp.add_argument("build", metavar="BUILD")
    sp.add_argument("--input", metavar="X.npy", help="input array (default: seeded random)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--check", action="store_true", help="also compare with the interpreter and onnxruntime")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("rtlsim", help="run a build on the RTL (Verilator) and compare with the simulator")
    sp.add_argument("build", metavar="BUILD")
    sp.add_argument("--input", metavar="X.npy", help="input array (default: seeded random)")
    sp.add_argument("--seed", type=int, default=0, help="input and DRAM-stall seed")
    sp.add_argument("--stalls", action="store_true",
                    help="random AXI stalls in the DRAM model (cycles are then not compared)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_rtlsim)

    sp = sub.add_parser("verilog", help="write the accelerator's Verilog (and optionally synthesize it)")
    sp.add_argument("--target", default="tiny", help="tiny, zu3eg, or a target JSON file")
    sp.add_argument("-o", "--output", metavar="RTLDIR", help="directory to write (with --fmax: nextpnr's log)")
    sp.add_argument("--synth", choices=("xilinx", "ecp5", "ice40"), help="also synthesize for this family")
    sp.add_argument("--fmax", choices=("ecp5",), help="place and route the whole accelerator and report its Fmax")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_verilog)

    sp = sub.add_parser("disasm", help="disassemble a build's program")
    sp.add_argument("build", metavar="BUILD")
    sp.set_defaults(func=cmd_disasm)

    sp = sub.add_parser("detect", help="detect objects in images with a detector (model or build)")
    sp.add_argument("model", metavar="MODEL.onnx|BUILD", help="detector with its head spec (docs/heads.md)")
    sp.add_argument("images", nargs="+", metavar="IMAGE", help="image files or directories of images")
    sp.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory for the PNGs")
    sp.add_argument("--target", default="tiny", help="target to compile a MODEL.onnx for")
    sp.add_argument("--nms", choices=("greedy", "maxpool", "psrr", "model"),
                    help="default: the model's own NonMaxSuppression if it has one (model), else greedy")
    sp.add_argument("--score", type=float, help="score threshold (default 0.3; 0 with --nms model)")
    sp.add_argument("--iou", type=float, help="IoU threshold of greedy NMS (default 0.5)")
    sp.add_argument("--accelerator", default="sim", choices=("sim", "rtl"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_detect)

    sp = sub.add_parser("run", help="run the detection pipeline over N frames and report throughput")
    sp.add_argument("build", metavar="BUILD", help="build directory with heads.json")
    sp.add_argument("--frames", type=int, required=True, metavar="N")
    sp.add_argument("--source", default="synthetic", metavar="DIR|synthetic")
    sp.add_argument("--accelerator", default="sim", choices=("sim", "rtl"))
    sp.add_argument("--mode", default="thread", choices=("thread", "process"),
                    help="stage workers as threads (default) or processes (docs/runtime.md)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("zoo", help="build the model zoo (Brevitas, QCDQ + QONNX)")
    sp.add_argument("--out", default="zoo_models", metavar="DIR")
    sp.add_argument("--only", nargs="+", metavar="NAME")
    sp.add_argument("--variants", nargs="+", metavar="VARIANT")
    sp.add_argument("--forms", nargs="+", metavar="FORM")
    sp.add_argument("--input-hw", type=_input_hw, metavar="HxW",
                    help="input size for every network (default: each network's own, e.g. shapesdet 128x128)")
    sp.set_defaults(func=cmd_zoo)

    sp = sub.add_parser("demo", help="the main job on the bundled model: quantize, check, inspect")
    sp.add_argument("--out", default="shiftflow_demo", metavar="DIR")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed "error: ..." and exits 2
        return int(exc.code or 0)
    try:
        return args.func(args)
    except ShiftflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
