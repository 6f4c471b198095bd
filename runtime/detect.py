"""``shiftflow detect`` and ``shiftflow run``: the detection pipeline end to end.

``load_detector`` gives a compiled ``Program`` and its head spec from a model file (compiled
here for the target) or a build directory; ``detect`` runs image files through the pipeline
and writes a PNG with drawn boxes per image; ``run_frames`` runs N frames (cycling a
directory's images, or seeded synthetic ones) and reports throughput.

Failure contract of ``detect`` (docs/runtime.md): arguments, the model and its head spec,
and the image list (a missing path, a directory with no image) are checked before any frame
runs, and a problem there is one ``ShiftflowError`` with nothing written. An image that
cannot be read or whose outputs cannot be decoded (NaN) is *rejected*: ``on_error`` gets
one line for it, ``detections.jsonl`` an ``{"file", "error"}`` line, it gets no PNG, and
every other image is still processed and written. ``run_frames`` stops at the first bad
frame instead (a throughput run over bad input measures nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from ..errors import UsageError
from ..ir.program import Program
from .heads import HeadSpec, load_heads
from .decode import DetectionInputError
from .images import ImageError, draw_boxes, list_images, synthetic_image
from .pipeline import Frame, run_pipeline
from .report import system_report
from .stages import AcceleratorStage, HostStage, PostStage, PreStage, check_model_matches, make_accelerator


def _spec_source(path: str) -> str:
    """Where the head spec of ``path`` is: a build's ``heads.json`` when present, else the
    copy of its source model that ``shiftflow compile`` leaves (its metadata, or the
    ``source.heads.json`` beside it)."""
    from ..ir.program import SOURCE_MODEL

    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "heads.json")):
        source = os.path.join(path, SOURCE_MODEL)
        if os.path.isfile(source):
            return source
    return path


def load_detector(path: str, target: str = "tiny") -> tuple[Program, HeadSpec, tuple | None]:
    """(program, head spec, NMS tail) of a model file (compiled for ``target``) or a build
    directory (its ``heads.json``, else its ``source.onnx``'s metadata); the spec is checked
    against the program. The tail — ``(tail, body outputs, graph)`` for ``PostStage`` — is
    None unless the model has its own NonMaxSuppression (``frontend.nms_tail``)."""
    from ..frontend.nms_tail import body_file, load_tail
    from ..ir.program import load_program

    if os.path.isdir(path):
        program = load_program(path)
        tail, body_outputs = load_tail(path)
    elif os.path.isfile(path):
        from ..backend.compile import compile_model

        with body_file(path) as (body, tail, body_outputs):
            program = compile_model(body, target)
    else:
        raise UsageError(f"model {path!r} does not exist (give MODEL.onnx or a build directory)")
    spec = load_heads(_spec_source(path))
    check_model_matches(program, spec)
    return program, spec, ((tail, body_outputs, program.graph) if tail is not None else None)


def make_stages(program: Program, spec: HeadSpec, nms: str | None = None, score: float | None = None,
                iou: float | None = None, accelerator: str = "sim", keep_pixels: bool = True, tail=None) -> list:
    """The four stages (pre, accel, host, post) of ``program``; ``None`` flags take the
    spec's defaults (``PostStage``)."""
    post = PostStage(spec, nms, score, iou, tail)  # validates the flags before an accelerator starts
    stages = [PreStage(spec, keep_pixels), AcceleratorStage(program, make_accelerator(accelerator)),
              HostStage(program), post]
    if post.nms == "psrr" and "nms" in program.manifest:  # a build with the NMS core (runtime/nms_core.py)
        from .nms_core import with_core

        stages = with_core(stages, program, spec, post.score)
    return stages


def _report(stages: list, result, cycles: int) -> dict:
    """``cycles``: one frame's, as the frames carried it (in process mode the stage objects
    here never ran)."""
    accel, host = stages[1], stages[2]
    return system_report(result, cycles, accel.program.config.clock_mhz,
                         {"accel": accel.host_macs, "host": host.host_macs})


def detect(model: str, images: list[str], outdir: str, target: str = "tiny", nms: str | None = None,
           score: float | None = None, iou: float | None = None, accelerator: str = "sim",
           on_note: Callable[[str], object] | None = None,
           on_error: Callable[[str], object] | None = None) -> dict:
    """Detect objects in ``images`` (files or directories): write ``OUTDIR/<name>.png`` with
    the boxes drawn and ``OUTDIR/detections.jsonl`` (one object per image, in input order),
    and return ``{"images": [{"file", "png", "boxes"}], "errors": [{"file", "error"}],
    "stages", "fps", "report"}``. ``on_note`` gets each conversion note (grayscale, RGBA...),
    ``on_error`` each rejected image's one-line reason (module docstring)."""
    files = list_images(images)
    program, spec, tail = load_detector(model, target)
    stages = make_stages(program, spec, nms, score, iou, accelerator, tail=tail)
    os.makedirs(outdir, exist_ok=True)
    pngs = {}
    for f in files:  # two inputs with one base name must not overwrite each other's PNG
        base = os.path.splitext(os.path.basename(f))[0]
        name, k = base, 1
        while name in pngs.values():
            name, k = f"{base}-{k}", k + 1
        pngs[f] = name
    found: list[dict] = []
    errors: list[dict] = []
    cycles = [0]
    jsonl = open(os.path.join(outdir, "detections.jsonl"), "w")

    def sink(frame: Frame) -> None:
        if frame.error is not None:
            entry = {"file": frame.source, "error": frame.error}
            jsonl.write(json.dumps(entry) + "\n")
            errors.append(entry)
            if on_error is not None:
                on_error(frame.error if frame.source in frame.error else f"{frame.source}: {frame.error}")
            return
        d = frame.data
        cycles[0] = d["cycles"]
        png = os.path.join(outdir, pngs[frame.source] + ".png")
        draw_boxes(d["pixels"], d["rows"], spec.classes, png)
        boxes = [[round(float(v), 2) for v in r[:4]] + [round(float(r[4]), 4), int(r[5])] for r in d["rows"]]
        entry = {"file": frame.source, "png": png, "boxes": boxes}
        if d["note"] and on_note is not None:
            on_note(d["note"])
        jsonl.write(json.dumps(entry) + "\n")
        found.append(entry)

    try:
        with jsonl:
            result = run_pipeline([(s.name, s) for s in stages], ((f, f) for f in files), sink,
                                  reject=(ImageError, DetectionInputError))
    finally:
        close = getattr(stages[1].acc, "close", None)
        if close is not None:
            close()
    rep = _report(stages, result, cycles[0])
    return {"images": found, "errors": errors, "stages": rep["measured"]["stages"], "fps": rep["measured"]["fps"],
            "report": rep}


def run_frames(build: str, frames: int, source: str = "synthetic", nms: str | None = None,
               score: float | None = None, iou: float | None = None, accelerator: str = "sim", mode: str = "thread", on_frame=None) -> dict:
    """Run ``frames`` frames of ``source`` (a directory of images, cycled, or ``synthetic``:
    seeded random images) through the pipeline of the build ``build``; the report of
    ``report.system_report``. ``on_frame`` is called once per delivered frame (progress)."""
    if frames < 1:
        raise UsageError(f"--frames must be at least 1, found {frames}")
    program, spec, tail = load_detector(build)
    if source == "synthetic":
        items = ((f"synthetic:{i}", synthetic_image(i)) for i in range(frames))
    else:
        files = list_images([source])
        items = ((files[i % len(files)], files[i % len(files)]) for i in range(frames))
    stages = make_stages(program, spec, nms, score, iou, accelerator, keep_pixels=False, tail=tail)
    cycles = [0]

    def sink(frame: Frame) -> None:
        cycles[0] = frame.data["cycles"]
        if on_frame is not None:
            on_frame()

    try:
        result = run_pipeline([(s.name, s) for s in stages], items, sink, mode=mode)
    finally:
        close = getattr(stages[1].acc, "close", None)
        if close is not None:
            close()
    return _report(stages, result, cycles[0])
