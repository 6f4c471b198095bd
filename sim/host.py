"""The host side of a program: ops the accelerator does not run, and tensors in DRAM.

A host op (``{"kind": "host", "ops": [...]}`` segment) reads each input from DRAM when the
manifest lists it under ``"tensors"`` (channel-blocked, see docs/isa.md), else from host
memory (graph inputs, constants, earlier host results); it runs with
``ir.semantics.execute_op`` (``cpu`` ops in onnxruntime on their one-node model, exactly as the
reference interpreter does); its outputs go to host memory and, when listed, into DRAM.
"""

from __future__ import annotations

import base64
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ir.graph import Op
from ..ir.program import Program, ProgramError
from ..ir.semantics import dequantize, execute_op
from .accelerator import Accelerator


def _chw(name: str, spec: dict) -> tuple[int, int, int]:
    shape = list(spec["shape"])
    if len(shape) not in (2, 4) or shape[0] != 1:
        raise ProgramError(f"DRAM tensor {name!r} has shape {shape}; DRAM tensors are [1, C, H, W] or [1, C]")
    return (shape[1], 1, 1) if len(shape) == 2 else (shape[1], shape[2], shape[3])


def _span(name: str, spec: dict, tn: int) -> tuple[int, tuple[int, int, int], int, int, int]:
    """(start address, (C, H, W), allocated channel blocks, byte planes, bytes from start to the
    last byte) of a DRAM tensor. ``blocks`` may exceed ``ceil(C/tn)`` (a producer storing whole
    ``tm``-channel groups); the extra blocks are padding. A wide tensor (``planes`` 2 or 4,
    docs/isa.md "Wide outputs") holds byte ``k`` of block ``b`` at block ``k*blocks + b``."""
    c, h, w = _chw(name, spec)
    blocks, planes = spec.get("blocks", math.ceil(c / tn)), spec.get("planes", 1)
    if blocks < math.ceil(c / tn):
        raise ProgramError(f"DRAM tensor {name!r} lists {blocks} channel blocks; {c} channels need "
                           f"{math.ceil(c / tn)}")
    if planes not in (1, 2, 4):
        raise ProgramError(f"DRAM tensor {name!r} lists {planes} byte planes; a value is 1, 2 or 4 bytes")
    n = (blocks * planes - 1) * spec["blk_stride"] + (h - 1) * spec["row_stride"] + w * tn
    return spec["addr"], (c, h, w), blocks, planes, n


def read_tensor(acc: Accelerator, name: str, spec: dict, tn: int) -> np.ndarray:
    """Integer codes (int64, the spec's shape) of a channel-blocked DRAM tensor."""
    addr, (c, h, w), blocks, planes, n = _span(name, spec, tn)
    raw = np.frombuffer(acc.read_dram(addr, n), np.uint8)
    box = as_strided(raw, (planes, blocks, h, w, tn), (blocks * spec["blk_stride"], spec["blk_stride"],
                                                       spec["row_stride"], tn, 1), writeable=False)
    chans = box.transpose(0, 1, 4, 2, 3).reshape(planes, blocks * tn, h, w)[:, :c].astype(np.int64)
    values = sum(chans[k] << (8 * k) for k in range(planes))
    if spec["signed"]:  # sign-extend from the stored width
        top = 1 << (8 * planes - 1)
        values = ((values + top) & ((top << 1) - 1)) - top
    return values.reshape(spec["shape"])


def write_tensor(acc: Accelerator, name: str, spec: dict, tn: int, values: np.ndarray) -> None:
    """Store integer codes into a channel-blocked DRAM tensor (padding channels and blocks
    zero). Bytes between rows/blocks that belong to other tensors are kept (read-modify-write)."""
    addr, (c, h, w), blocks, planes, n = _span(name, spec, tn)
    raw = np.frombuffer(acc.read_dram(addr, n), np.uint8).copy()
    chans = np.zeros((planes, blocks * tn, h, w), np.uint8)
    v = np.asarray(values, np.int64).reshape(c, h, w)
    for k in range(planes):
        chans[k, :c] = ((v >> (8 * k)) & 0xFF).astype(np.uint8)
    box = as_strided(raw, (planes, blocks, h, w, tn), (blocks * spec["blk_stride"], spec["blk_stride"],
                                                       spec["row_stride"], tn, 1))
    box[...] = chans.reshape(planes, blocks, tn, h, w).transpose(0, 1, 3, 4, 2)
    acc.write_dram(addr, raw.tobytes())


class Host:
    """Host memory of one run plus the ops it executes between accelerator segments."""

    def __init__(self, program: Program, acc: Accelerator, feeds: dict[str, np.ndarray]):
        self.program = program
        self.acc = acc
        self.graph = program.graph
        self.tensors: dict = program.manifest["tensors"]
        self.tn = program.config.tn
        self.memory: dict[str, np.ndarray] = dict(feeds)
        self._ops = {op.name: op for op in self.graph.ops}
        self._sessions: dict[str, object] = {}

    def value(self, name: str) -> np.ndarray:
        """A tensor's current value: from DRAM when the manifest places it there."""
        if name in self.tensors:
            return read_tensor(self.acc, name, self.tensors[name], self.tn)
        if name in self.memory:
            return self.memory[name]
        if name in self.graph.constants:
            return self.graph.constants[name].astype(np.int64)
        raise ProgramError(f"tensor {name!r} is neither in DRAM nor computed on the host before it is read")

    def run(self, op_names: list[str]) -> None:
        for name in op_names:
            op = self._ops.get(name)
            if op is None:
                raise ProgramError(f"host segment names op {name!r}, which the program's graph lacks")
            g = self.graph
            args = [self.value(t) for t in op.inputs]
            in_t = [g.types[t] for t in op.inputs]
            outs = self._cpu(op, args, in_t) if op.kind == "cpu" else execute_op(op, args, in_t, g.types[op.outputs[0]])
            for t, v in zip(op.outputs, outs):
                self.memory[t] = v
                if t in self.tensors:
                    write_tensor(self.acc, t, self.tensors[t], self.tn, v)

    def _cpu(self, op: Op, args: list[np.ndarray], in_t) -> list[np.ndarray]:
        """onnxruntime on the op's one-node model, inputs dequantized (as the interpreter)."""
        sess = self._sessions.get(op.name)
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.log_severity_level = 3
            sess = self._sessions[op.name] = ort.InferenceSession(
                base64.b64decode(op.attrs["model"]), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        # np.asarray: numpy arithmetic turns a 0-d array into a scalar onnxruntime refuses
        feeds = {t: np.asarray(dequantize(v, ty), dtype=np.float32) for t, v, ty in zip(op.inputs, args, in_t)
                 if t in names}
        return [np.asarray(o, dtype=np.float32) for o in sess.run(list(op.outputs), feeds)]
