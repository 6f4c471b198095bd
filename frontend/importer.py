"""``import_onnx``: ONNX file → verified, fused Graph IR (the front end's entry point)."""

from __future__ import annotations

import os

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
    return run_passes(graph, FRONTEND_PASSES, print_after, dump_dir)
