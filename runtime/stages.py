"""The stages of the detection pipeline (runtime/pipeline.py runs them, one worker each).

    pre    image file (or (h, w, 3) uint8 array) → RGB → resized, normalised float32 NCHW
    accel  the program's manifest segments up to and including its LAST accelerator
           segment, on one ``Accelerator`` (``SimAccelerator``, or the RTL); host ops that sit
           before or between accelerator segments run here too, because the accelerator
           waits for them (their conv MACs are ``AcceleratorStage.host_macs``)
    host   the trailing host segments, after the last accelerator segment (onnxruntime for
           ``cpu`` ops, via ``sim.host.Host``), then the graph outputs are read
    post   decode (runtime/decode.py) + NMS (runtime/nms*.py), or the model's own
           NonMaxSuppression (runtime/model_nms.py), + boxes mapped back to the original
           image's pixels

The frame data between stages is a dict: ``pixels``, ``note`` and ``geometry`` from pre,
``x`` the model input, ``feeds``/``carry`` between accel and host, ``outputs`` and
``exponents`` from host, ``rows`` ((K, 6) x0, y0, x1, y1, score, class in original-image
pixels) from post. Each stage drops what later stages do not read, so frames stay small.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..ir.program import Program
from ..ir.semantics import dequantize
from ..sim.accelerator import Accelerator, SimAccelerator
from ..sim.host import Host, read_tensor
from ..sim.run import host_convs, make_feeds
from .decode import decode
from .heads import HeadSpec, validate_against
from .images import read_rgb, to_input
from .model_nms import ModelNms, resolve_flags
from .nms import NMS_METHODS
from .nms_pool import run_nms

ACCELERATORS = ("sim", "rtl")


def make_accelerator(kind: str) -> Accelerator:
    """A fresh ``Accelerator``: ``sim`` (the simulator) or ``rtl`` (Verilator under cocotb;
    slow, for checking the pipeline against the hardware)."""
    if kind == "sim":
        return SimAccelerator()
    if kind == "rtl":
        from ..hw.tb.rtl_accel import RtlAccelerator

        return RtlAccelerator()
    raise UsageError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, not {kind!r}")


def split_segments(program: Program) -> tuple[list[dict], list[dict]]:
    """(segments of the accel stage, trailing host segments of the host stage)."""
    segs = program.manifest["segments"]
    last = max((i for i, s in enumerate(segs) if s.get("kind") == "accel"), default=-1)
    return segs[:last + 1], segs[last + 1:]


def check_model_matches(program: Program, spec: HeadSpec) -> None:
    """The head spec fits the program: its input is the graph input (name and H×W) and its
    levels match the graph outputs (``validate_against``). One-line ``HeadSpecError``/
    ``UsageError`` otherwise."""
    g = program.graph
    if len(g.inputs) != 1:
        raise UsageError(f"a detector has one input; the model has {len(g.inputs)}: {', '.join(g.inputs)}")
    shape = tuple(g.types[g.inputs[0]].shape)
    want = (1, spec.input.channels, spec.input.height, spec.input.width)
    if shape != want:
        raise UsageError(f"head spec input {spec.input.channels}x{spec.input.height}x{spec.input.width} "
                         f"does not match the model input {g.inputs[0]!r} of shape {list(shape)}")
    validate_against(spec, {name: tuple(g.types[name].shape) for name in g.outputs})


class PreStage:
    """Image file (or (h, w, 3) uint8 array) → ``pixels``, ``note``, ``geometry``, ``x``."""
    name = "pre"

    def __init__(self, spec: HeadSpec, keep_pixels: bool = True):
        self.spec = spec
        self.keep_pixels = keep_pixels

    def __call__(self, item) -> dict:
        if isinstance(item, str):
            pixels, note = read_rgb(item)
        else:
            pixels, note = np.asarray(item, np.uint8), None
        x, geo = to_input(pixels, self.spec.input)
        return {"pixels": pixels if self.keep_pixels else None, "note": note, "geometry": geo, "x": x}


class AcceleratorStage:
    """Runs the accel-stage segments of ``program`` on ``accelerator`` for each frame; the
    tensors the host stage and the outputs read from DRAM are copied out (``carry``) so the
    accelerator is free for the next frame. ``cycles`` is the cycle count of one frame."""
    name = "accel"

    def __init__(self, program: Program, accelerator: Accelerator | None = None):
        self.program = program
        self.acc = accelerator if accelerator is not None else SimAccelerator()
        self.segments, tail = split_segments(program)
        tail_ops = {op for s in tail for op in s["ops"]}
        graph, tensors = program.graph, program.manifest["tensors"]
        made_in_tail = {t for op in graph.ops if op.name in tail_ops for t in op.outputs}
        reads = {t for op in graph.ops if op.name in tail_ops for t in op.inputs} | set(graph.outputs)
        self.reads = reads
        self.carried = sorted(t for t in reads if t in tensors and t not in made_in_tail)
        convs = host_convs(program)
        self.host_macs = sum(c["macs"] for c in convs if c["name"] not in tail_ops)
        self.cycles = 0

    def __call__(self, frame: dict) -> dict:
        program = self.program
        feeds = make_feeds(program, {program.graph.inputs[0]: frame.pop("x")})
        self.acc.load_program(program)
        self.acc.write_dram(program.manifest["dram"]["const_base"], program.weights)
        host = Host(program, self.acc, feeds)
        cycles = 0
        for seg in self.segments:
            if seg.get("kind") == "host":
                host.run(seg["ops"])
            else:
                cycles += self.acc.run_segment(seg["start"], seg["count"])
        self.cycles = cycles
        tensors, tn = program.manifest["tensors"], program.config.tn
        # Only what the host stage reads: the whole host memory holds the input twice (float
        # and its integer codes), 9 MB of a 512×512 frame that would cross a queue for nothing.
        carry = {t: v for t, v in host.memory.items() if t in self.reads}
        carry.update({t: read_tensor(self.acc, t, tensors[t], tn) for t in self.carried})
        frame["carry"] = carry
        frame["cycles"] = cycles
        return frame


class HostStage:
    """The trailing host ops of ``program``, then its graph outputs: ``outputs`` (integer
    codes when every output is an integer tensor, with ``exponents``: value = code · 2**e;
    else float32 values and ``exponents`` None)."""
    name = "host"

    def __init__(self, program: Program):
        self.program = program
        _, tail = split_segments(program)
        self.ops = [op for s in tail for op in s["ops"]]
        tail_ops = set(self.ops)
        self.host_macs = sum(c["macs"] for c in host_convs(program) if c["name"] in tail_ops)
        g = program.graph
        self.integer = all(g.types[t].is_int and not isinstance(g.types[t].frac, tuple) for t in g.outputs)

    def __call__(self, frame: dict) -> dict:
        program, g = self.program, self.program.graph
        # A host with no DRAM view: everything it reads was carried out of the accelerator.
        host = Host(program, None, frame.pop("carry"))
        host.tensors = {}
        host.run(self.ops)
        if self.integer:
            frame["outputs"] = {t: np.asarray(host.value(t), np.int64) for t in g.outputs}
            frame["exponents"] = {t: -int(g.types[t].frac) for t in g.outputs}
        else:
            frame["outputs"] = {t: np.asarray(dequantize(host.value(t), g.types[t]), np.float32)
                                for t in g.outputs}
            frame["exponents"] = None
        return frame


class PostStage:
    """Decode + NMS (``nms`` one of greedy, maxpool, psrr; ``model`` for a detector exported
    with its NonMaxSuppression, whose ``tail`` — (tail, body outputs, graph) — then runs as
    it is) → ``rows`` (K, 6) in the original image's pixels; drops the raw outputs. ``None``
    flags take the spec's defaults (``model_nms.resolve_flags``)."""
    name = "post"

    def __init__(self, spec: HeadSpec, nms: str | None = None, score: float | None = None,
                 iou: float | None = None, tail=None):
        if nms is not None and nms not in NMS_METHODS + ("model",):
            raise UsageError(f"--nms must be one of {', '.join(NMS_METHODS + ('model',))}, not {nms!r}")
        if score is not None and not 0.0 <= score <= 1.0:
            raise UsageError(f"--score must be in [0, 1], found {score}")
        if iou is not None and not 0.0 <= iou <= 1.0:
            raise UsageError(f"--iou must be in [0, 1], found {iou}")
        nms, score, iou = resolve_flags(spec, nms, score, iou)
        self.spec, self.nms, self.score, self.iou = spec, nms, score, iou
        self.model_nms = None
        if nms == "model":
            if tail is None:
                raise UsageError("head spec decoder 'nms' needs the model's NonMaxSuppression tail (compile the "
                                 "model exported with it)")
            self.model_nms = ModelNms(spec, *tail, score=score)

    def __call__(self, frame: dict) -> dict:
        outputs, exponents = frame.pop("outputs"), frame.pop("exponents")
        if self.model_nms is not None:
            rows = self.model_nms(outputs, exponents)
        else:
            decoded = decode(self.spec, outputs, exponents)
            dets = run_nms(self.nms, decoded, score_threshold=self.score, iou_threshold=self.iou)
            rows = dets.rows.astype(np.float64)
        rows[:, :4] = frame["geometry"].to_image(rows[:, :4])
        frame["rows"] = rows
        return frame
