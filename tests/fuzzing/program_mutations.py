"""Mutations of a build directory: ``program.bin`` (bit flips, whole fields set through the ISA
layout of ``ir/isa.py``, opcodes, token flags, truncation, instructions duplicated / deleted /
reordered), ``weights.bin`` (flips, truncation, extension) and ``manifest.json`` (keys deleted,
values of other types, numbers changed, segments, DRAM plan, tensors, layers, target,
checksums).

``mutate_build(build, rng)`` returns ``(kind, files)``: the four files as bytes. After any
mutation but a checksum one the checksums are recomputed with probability ``REHASH`` (and
``n_instructions`` follows a program that changed length), so the loader's checksum test is
not the only code a mutated file reaches.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np

from shiftflow.ir.isa import BODY_OF, INSTR, INSTR_BYTES, Opcode, layout_table

from .corpus import Build
from .onnx_mutations import FLOATS, _choice, _int, byte_flip, truncate

REHASH = 0.9
_OPCODE_OF = {op.value: op for op in Opcode}
# Every leaf field by opcode: (dotted path, bit offset in the instruction word, width).
_FIELDS = {op: [(p, off, w) for p, off, w, _ in layout_table(INSTR) if p.startswith(f"body.{BODY_OF[op]}.")]
           for op in BODY_OF}
_HEADER = [(p, off, w) for p, off, w, _ in layout_table(INSTR) if p.startswith("header.")]


def _instrs(code: bytes) -> list[bytes]:
    return [code[i:i + INSTR_BYTES] for i in range(0, len(code) - len(code) % INSTR_BYTES, INSTR_BYTES)]


def _field_of(word: bytes, rng) -> tuple[str, int, int]:
    op = _OPCODE_OF.get(word[0] & 0xF)
    fields = _FIELDS.get(op) or _HEADER
    return fields[int(rng.integers(len(fields)))] if rng.random() < 0.9 else _choice(rng, _HEADER)


def _put(word: bytes, off: int, width: int, value: int) -> bytes:
    w = int.from_bytes(word, "little")
    mask = ((1 << width) - 1) << off
    return ((w & ~mask) | ((value << off) & mask)).to_bytes(INSTR_BYTES, "little")


def _get(word: bytes, off: int, width: int) -> int:
    return (int.from_bytes(word, "little") >> off) & ((1 << width) - 1)


def _one_instruction(code: bytes, rng, change) -> bytes:
    words = _instrs(code)
    if not words:
        return code
    k = int(rng.integers(len(words)))
    words[k] = change(words[k])
    return b"".join(words)


def field_flip(code: bytes, rng) -> bytes:
    def change(word):
        _, off, width = _field_of(word, rng)
        return _put(word, off, width, _get(word, off, width) ^ (1 << int(rng.integers(width))))
    return _one_instruction(code, rng, change)


def field_value(code: bytes, rng) -> bytes:
    def change(word):
        _, off, width = _field_of(word, rng)
        cur, top = _get(word, off, width), (1 << width) - 1
        r = rng.random()
        value = (int(rng.integers(0, top + 1)) if r < 0.35 else _choice(rng, (0, 1, 2, top, top - 1, top // 2 + 1))
                 if r < 0.7 else _int(rng, cur))
        return _put(word, off, width, value % (top + 1))
    return _one_instruction(code, rng, change)


def opcode(code: bytes, rng) -> bytes:
    return _one_instruction(code, rng, lambda w: _put(w, 0, 4, int(rng.integers(16))))


def flags(code: bytes, rng) -> bytes:
    return _one_instruction(code, rng, lambda w: _put(w, 4 + int(rng.integers(4)), 1, int(rng.integers(2))))


def instr_shuffle(code: bytes, rng) -> bytes:
    """An instruction duplicated, deleted, moved, or two swapped."""
    words = _instrs(code)
    if len(words) < 2:
        return code
    a, b = (int(x) for x in rng.choice(len(words), 2, replace=False))
    r = rng.random()
    if r < 0.3:
        words.insert(b, words[a])
    elif r < 0.6:
        del words[a]
    elif r < 0.8:
        words.insert(b, words.pop(a))
    else:
        words[a], words[b] = words[b], words[a]
    return b"".join(words)


def _manifest_paths(node, path=()) -> list[tuple]:
    """Every key path into the manifest (dict keys and list indices)."""
    out = [path] if path else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out += _manifest_paths(v, path + (k,))
    return out


def _value(rng, old):
    r = rng.random()
    if isinstance(old, bool) or r < 0.25:
        return _choice(rng, (None, "x", "", [], {}, 1.5, True, False, -1, 0, 2**64, [1, 2], {"a": 1}))
    if isinstance(old, int):
        return _int(rng, old) if r < 0.9 else float(old)
    if isinstance(old, float):
        return _choice(rng, FLOATS)
    if isinstance(old, str):
        return _choice(rng, ("", "accel", "host", "tiny", "x" * 3, old + "_"))
    if isinstance(old, list):
        return old[:-1] if r < 0.5 else old + old[-1:] if old else [0]
    return {}


def _at(manifest, path):
    node = manifest
    for k in path[:-1]:
        node = node[k]
    return node, path[-1]


def manifest_edit(manifest: dict, rng, prefix: tuple = ()) -> None:
    """Delete, retype or change one value at a random path under ``prefix``."""
    paths = [p for p in _manifest_paths(manifest) if p[:len(prefix)] == prefix and len(p) > len(prefix)]
    if not paths:
        return
    parent, key = _at(manifest, _choice(rng, paths))
    if rng.random() < 0.2:
        del parent[key]
    else:
        parent[key] = _value(rng, parent[key])


def segments(manifest: dict, rng) -> None:
    segs = manifest.get("segments")
    if not isinstance(segs, list) or not segs:
        return manifest_edit(manifest, rng)
    r = rng.random()
    if r < 0.2:
        a, b = (int(x) for x in rng.integers(len(segs), size=2))
        segs[a], segs[b] = segs[b], segs[a]
    elif r < 0.35:
        segs.insert(int(rng.integers(len(segs) + 1)), copy.deepcopy(_choice(rng, segs)))
    elif r < 0.45:
        del segs[int(rng.integers(len(segs)))]
    else:
        manifest_edit(manifest, rng, ("segments",))


MANIFEST_PARTS = ("dram", "tensors", "layers", "inputs", "outputs", "target")


def _rehash(files: dict[str, bytes], manifest: dict) -> None:
    sums = manifest.get("checksums")
    if isinstance(sums, dict):
        for name in ("program.bin", "weights.bin", "graph.ir"):
            sums[name] = hashlib.sha256(files[name]).hexdigest()
    if "n_instructions" in manifest:
        manifest["n_instructions"] = len(files["program.bin"]) // INSTR_BYTES


PROGRAM_KINDS = {"bit_flip": byte_flip, "field_flip": field_flip, "field_value": field_value, "opcode": opcode,
                 "flags": flags, "instr_shuffle": instr_shuffle, "program_truncate": truncate}
WEIGHT_KINDS = ("weights_flip", "weights_truncate", "weights_extend")
MANIFEST_KINDS = ("manifest_edit", "segments", "dram", "tensors", "layers", "io", "target", "checksum")
KINDS = tuple(PROGRAM_KINDS) + WEIGHT_KINDS + MANIFEST_KINDS
# Field-level program mutations reach the decoder, the rules and the machine: weigh them up.
_WEIGHTS = np.array([3 if k in ("field_flip", "field_value") else 1 for k in KINDS], float)


def mutate_build(build: Build, rng) -> tuple[str, dict[str, bytes]]:
    """One mutation of ``build``: ``(kind, {file name: bytes})`` including manifest.json."""
    files = dict(build.files)
    manifest = copy.deepcopy(build.manifest)
    kind = KINDS[int(rng.choice(len(KINDS), p=_WEIGHTS / _WEIGHTS.sum()))]
    if kind in PROGRAM_KINDS:
        files["program.bin"] = PROGRAM_KINDS[kind](files["program.bin"], rng)
    elif kind == "weights_flip":
        files["weights.bin"] = byte_flip(files["weights.bin"], rng) if files["weights.bin"] else b"\x01"
    elif kind == "weights_truncate":
        files["weights.bin"] = truncate(files["weights.bin"], rng) if files["weights.bin"] else b""
    elif kind == "weights_extend":
        files["weights.bin"] += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "manifest_edit":
        manifest_edit(manifest, rng)
    elif kind == "segments":
        segments(manifest, rng)
    elif kind == "io":
        manifest_edit(manifest, rng, (_choice(rng, ("inputs", "outputs")),))
    elif kind in MANIFEST_PARTS:
        manifest_edit(manifest, rng, (kind,))
    if kind != "checksum" and rng.random() < REHASH:
        _rehash(files, manifest)
    elif kind == "checksum":
        manifest_edit(manifest, rng, ("checksums",))
    files["manifest.json"] = json.dumps(manifest).encode()
    return kind, files
