"""The integer reference interpreter (verification level L1).

Executes a Graph IR with numpy integers: every op computes its exact value, applies its
activation, rounds half-to-even to the output ``frac`` and saturates (``ir/ops.py``). CPU ops
run in onnxruntime on their own small ONNX model, with integer inputs dequantized exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import numpy as np

from ..errors import UsageError
from ..ir.graph import Graph, Op
from ..ir.semantics import dequantize, execute_op


class Interpreter:
    """Runs one graph; keeps onnxruntime sessions of its CPU ops between runs."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._sessions: dict[str, object] = {}

    def run(self, inputs: Mapping[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
        """Execute on ``inputs`` (graph input name → array of its declared type/shape).

        Returns the graph outputs (integer tensors as int64 arrays of integer codes, float
        tensors as float32), or every tensor with ``keep_all``.
        """
        g = self.graph
        env: dict[str, np.ndarray] = {}
        for name in g.inputs:
            if name not in inputs:
                raise UsageError(f"missing input {name!r}; the model takes {list(g.inputs)}")
            t = g.types[name]
            a = np.asarray(inputs[name])
            if a.shape != t.shape:
                raise UsageError(f"input {name!r} must have shape {t.shape}, got {a.shape}")
            env[name] = a.astype(np.float32) if not t.is_int else a.astype(np.int64)
        for name, data in g.constants.items():
            env[name] = data.astype(np.int64)
        for op in g.ops:
            results = self._execute(op, [env[t] for t in op.inputs])
            for name, value in zip(op.outputs, results):
                env[name] = value
        return env if keep_all else {name: env[name] for name in g.outputs}

    def _execute(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        g = self.graph
        in_t = [g.types[t] for t in op.inputs]
        if op.kind == "cpu":
            return self._run_cpu(op, args, in_t)
        return execute_op(op, args, in_t, g.types[op.outputs[0]])

    def _run_cpu(self, op: Op, args, in_t) -> list[np.ndarray]:
        from .cpu_ops import make_session, onnxruntime_errors

        sess = self._sessions.get(op.name)
        if sess is None:
            with onnxruntime_errors(f"CPU op {op.name!r}"):
                sess = self._sessions[op.name] = make_session(base64.b64decode(op.attrs["model"]))
        feeds = {}
        names = [i.name for i in sess.get_inputs()]
        for name, v, t in zip(op.inputs, args, in_t):
            if name in names:
                # np.asarray: numpy arithmetic turns a 0-d array into a scalar onnxruntime refuses
                feeds[name] = np.asarray(dequantize(v, t), dtype=np.float32)
        with onnxruntime_errors(f"CPU op {op.name!r}"):
            outs = sess.run(list(op.outputs), feeds)
        return [np.asarray(o, dtype=np.float32) for o in outs]
