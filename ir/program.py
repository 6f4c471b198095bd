"""The program container: what ``shiftflow compile`` writes and every executor reads.

A build directory holds

- ``program.bin``: the instruction words (64 bytes each), all segments back to back;
- ``weights.bin``: the constant DRAM image (weights and parameters), placed at
  ``manifest["dram"]["const_base"]``;
- ``graph.ir``: the Graph IR text of the compiled model (host ops run from it);
- ``manifest.json``: format version, target, DRAM plan, I/O tensors with their addresses,
  shapes, types and scales, the segments (accelerator instruction ranges and host ops, in
  execution order), per-layer instruction ranges, and SHA-256 checksums of the other files.

``load_program`` checks all of it and turns any problem into a one-line ``ProgramError``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProgramError, ShiftflowError  # ProgramError: also imported from here
from .config import AcceleratorConfig
from .decode import decode_program, opcodes, scan
from .graph import Graph
from .isa import INSTR_BYTES, Opcode, to_dict
from .nms import check_program as check_nms
from .sparse import check_program as check_spconv
from .text import parse_graph, print_graph

FORMAT = "shiftflow-program"
VERSION = 1
FILES = ("program.bin", "weights.bin", "graph.ir")
SOURCE_MODEL = "source.onnx"  # a copy of the compiled ONNX file, for the L0 check


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled model. ``manifest`` is JSON-ready; see the module docstring."""

    config: AcceleratorConfig
    instructions: bytes
    weights: bytes
    graph: Graph
    manifest: dict = field(default_factory=dict)

    @property
    def n_instructions(self) -> int:
        return len(self.instructions) // INSTR_BYTES

    def instruction(self, index: int) -> bytes:
        return self.instructions[index * INSTR_BYTES:(index + 1) * INSTR_BYTES]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_program(program: Program, build_dir: str | os.PathLike) -> None:
    """Write the build directory (files first, manifest last, so a partial write never loads)."""
    os.makedirs(build_dir, exist_ok=True)
    blobs = {"program.bin": program.instructions, "weights.bin": program.weights,
             "graph.ir": print_graph(program.graph).encode()}
    for name, data in blobs.items():
        with open(os.path.join(build_dir, name), "wb") as f:
            f.write(data)
    manifest = dict(program.manifest)
    manifest.update({"format": FORMAT, "version": VERSION, "target": program.config.to_json(),
                     "checksums": {k: _sha(v) for k, v in blobs.items()},
                     "n_instructions": program.n_instructions})
    with open(os.path.join(build_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def load_program(build_dir: str | os.PathLike, expect_target: AcceleratorConfig | None = None) -> Program:
    """Read and validate a build directory; raise ``ProgramError`` naming what is wrong."""
    build_dir = os.fspath(build_dir)
    if not os.path.isdir(build_dir):
        raise ProgramError(f"{build_dir!r} is not a build directory (run `shiftflow compile MODEL -o {build_dir}`)")
    mpath = os.path.join(build_dir, "manifest.json")
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ProgramError(f"{build_dir!r} has no manifest.json; is it a shiftflow build?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProgramError(f"manifest.json in {build_dir!r} is corrupted: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ProgramError(f"manifest.json in {build_dir!r} is not a shiftflow program manifest")
    if manifest.get("version") != VERSION:
        raise ProgramError(f"program format version {manifest.get('version')!r} is not supported "
                           f"(this shiftflow reads version {VERSION}); recompile the model")
    for key in ("target", "checksums", "dram", "inputs", "outputs", "segments", "layers", "tensors"):
        if key not in manifest:
            raise ProgramError(f"manifest.json in {build_dir!r} lacks {key!r}; recompile the model")
    _need(isinstance(manifest["checksums"], dict), "checksums", "an object", manifest["checksums"])
    blobs = {}
    for name in FILES:
        try:
            with open(os.path.join(build_dir, name), "rb") as f:
                blobs[name] = f.read()
        except FileNotFoundError:
            raise ProgramError(f"{build_dir!r} lacks {name}; recompile the model") from None
        if _sha(blobs[name]) != manifest["checksums"].get(name):
            raise ProgramError(f"{name} in {build_dir!r} does not match its checksum in manifest.json "
                               f"(corrupted or modified); recompile the model")
    _need(isinstance(manifest["target"], dict), "target", "an object", manifest["target"])
    try:
        config = AcceleratorConfig.from_json(manifest["target"])
    except ShiftflowError as exc:
        raise ProgramError(f"manifest.json target is invalid: {exc}") from None
    if expect_target is not None and config != expect_target:
        raise ProgramError(f"program was compiled for target {config.name!r}, not {expect_target.name!r}")
    _check_instructions(blobs["program.bin"], manifest.get("n_instructions"), config)
    const_base = manifest["dram"].get("const_base") if isinstance(manifest["dram"], dict) else None
    if _count(const_base) and np.any(opcodes(blobs["program.bin"]) == Opcode.SPCONV.value):
        check_spconv(config, decode_program(blobs["program.bin"], check=False), blobs["weights.bin"], const_base)
    nms = np.flatnonzero(opcodes(blobs["program.bin"]) == Opcode.NMS.value).tolist()
    check_nms(config, [(i, to_dict(blobs["program.bin"][i * INSTR_BYTES:(i + 1) * INSTR_BYTES])["nms"]) for i in nms],
              manifest)
    graph = parse_graph(blobs["graph.ir"].decode())
    check_manifest(manifest, graph, len(blobs["program.bin"]) // INSTR_BYTES)
    return Program(config, blobs["program.bin"], blobs["weights.bin"], graph, manifest)


def _check_instructions(instructions: bytes, listed, config: AcceleratorConfig) -> None:
    """``program.bin`` holds the ``listed`` number of valid instructions (``ir/decode.py``,
    with the field rules of ``ir/rules.py`` for ``config``). Every target's simulator has
    SPCONV and NMS (whose parameter table ``load_program`` checks: ``ir.nms.check_program``)."""
    if len(instructions) % INSTR_BYTES or len(instructions) // INSTR_BYTES != listed:
        raise ProgramError(f"program.bin holds {len(instructions)} bytes, not the "
                           f"{listed} instructions of {INSTR_BYTES} bytes the manifest lists")
    problems = scan(instructions, config=config)
    if problems:
        raise ProgramError(f"program.bin {problems[min(problems)]}")


def _need(ok: bool, where: str, what: str, value) -> None:
    if not ok:
        shown = repr(value)
        raise ProgramError(f"manifest.json {where} must be {what}, got "
                           f"{shown if len(shown) <= 60 else shown[:57] + '...'}; recompile the model")


def _count(v, least: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def check_manifest(manifest: dict, graph: Graph, n_instructions: int) -> None:
    """The manifest's structure, as far as an executor reads it: the DRAM plan, the DRAM
    tensors (graph tensors, with the graph's shapes), the segments, the layers (instruction
    ranges inside the program); ``ProgramError`` naming the first entry that is wrong. What
    depends on the target or the DRAM contents (sizes, addresses) is checked where it is used."""
    for key, kind in (("dram", dict), ("tensors", dict), ("segments", list), ("layers", list)):
        _need(isinstance(manifest[key], kind), key, "an object" if kind is dict else "a list", manifest[key])
    for key in ("size", "const_base"):
        _need(_count(manifest["dram"].get(key)), f"dram.{key}", "a non-negative integer", manifest["dram"].get(key))
    size = manifest["dram"]["size"]
    _need(isinstance(manifest.get("host_reasons", {}), dict), "host_reasons", "an object", manifest.get("host_reasons"))
    for name, spec in manifest["tensors"].items():
        where = f"tensors[{name!r}]"
        _need(name in graph.types, where, "a tensor of the program's graph", name)
        _need(isinstance(spec, dict), where, "an object", spec)
        for key in ("addr", "row_stride", "blk_stride"):
            _need(_count(spec.get(key)) and spec[key] <= size, f"{where}.{key}",
                  f"a byte offset inside the DRAM of {size} bytes", spec.get(key))
        _need(_count(spec.get("blocks", 1), 1), f"{where}.blocks", "a positive integer", spec.get("blocks"))
        _need(spec.get("planes", 1) in (1, 2, 4) and not isinstance(spec.get("planes", 1), bool), f"{where}.planes",
              "1, 2 or 4 (bytes a value)", spec.get("planes"))
        _need(isinstance(spec.get("signed"), bool), f"{where}.signed", "true or false", spec.get("signed"))
        shape = list(graph.types[name].shape)
        given = spec.get("shape")
        _need(isinstance(given, list) and all(map(_count, given)) and given == shape, f"{where}.shape",
              f"the graph's {shape}", given)
    for i, seg in enumerate(manifest["segments"]):
        where = f"segments[{i}]"
        _need(isinstance(seg, dict) and seg.get("kind") in ("host", "accel"), where,
              "an object of kind 'host' or 'accel'", seg)
        if seg["kind"] == "host":
            ops = seg.get("ops")
            _need(isinstance(ops, list) and all(isinstance(o, str) for o in ops), f"{where}.ops",
                  "a list of op names", ops)
        else:
            _need(_count(seg.get("start")), f"{where}.start", "a non-negative integer", seg.get("start"))
            _need(_count(seg.get("count"), 1), f"{where}.count", "a positive integer", seg.get("count"))
    for i, layer in enumerate(manifest["layers"]):
        where = f"layers[{i}]"
        _need(isinstance(layer, dict) and isinstance(layer.get("name"), str), where, "an object with a name", layer)
        first, last = layer.get("first"), layer.get("last")
        _need(_count(first) and _count(last, first) and last < n_instructions, f"{where} first..last",
              f"an instruction range inside the program's {n_instructions}", [first, last])
        _need(_count(layer.get("macs", 0)), f"{where}.macs", "a non-negative integer", layer.get("macs"))
        for key in ("op", "dataflow"):
            _need(isinstance(layer.get(key, ""), str | None), f"{where}.{key}", "a string", layer.get(key))
