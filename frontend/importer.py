"""``import_onnx``: ONNX file → verified, fused Graph IR (the front end's entry point)."""

from __future__ import annotations

import os

from ..errors import UnsupportedError
from ..ir.graph import Graph
from .lower import Lowerer
from .onnx_load import load_model
from .passes import FRONTEND_PASSES, run_passes


def import_onnx(path: str | os.PathLike, input_shapes: dict[str, tuple[int, ...]] | None = None,
                print_after: str | None = None, dump_dir: str | None = None) -> Graph:
    """Import the model at ``path``: load and check it, lower every node, fuse, verify.

    Raises a ``ShiftflowError`` subclass for anything wrong with the model.
    """
    loaded = load_model(path, input_shapes)
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    graph = Lowerer(loaded, name).run()
    if not any(op.kind in ("quantize", "requant") for op in graph.ops):
        raise UnsupportedError(f"{os.fspath(path)!r} has no quantized activations (its quantizers quantize only "
                               f"constants): quantize the float model, e.g. `shiftflow quantize FLOAT.onnx "
                               f"-o quantized.onnx --calib-random 32`")
    return run_passes(graph, FRONTEND_PASSES, print_after, dump_dir)
