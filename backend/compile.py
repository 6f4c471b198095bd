"""The back end's entry points: Graph IR -> Program, as a flat pipeline of named passes.

    (stem) -> partition -> fusion -> dataflow -> tiling -> overlap -> buffers -> dram -> schedule -> encode

Each pass maps a ``Plan`` to a ``Plan``; ``verify_plan`` runs after each and names the pass
that broke an invariant; ``print_after=PASS`` (or ``all``) prints the plan after that pass.
Before them, ``backend/stem.py`` may rewrite a few-channel stride-2 stem conv over the host's
space-to-depth rearrangement of its input (a Graph -> Graph rewrite: the plan's graph, and so
the Program's, is the rewritten one).
"""

from __future__ import annotations

import os

from ..errors import UsageError
from ..ir.config import AcceleratorConfig, load_target
from ..ir.graph import Graph
from ..ir.program import Program
from .assemble import encode_plan, manifest, schedule_plan
from .dataflow import choose_dataflows
from .fusion import fuse
from .overlap import choose_overlaps
from .memory import place_buffers, plan_dram
from .partition import partition
from .plan import Plan, format_plan
from .stem import space_to_depth_stem
from .verify import verify_plan
from .tiling import tile_layers

PASSES = [
    ("partition", partition),
    ("fusion", fuse),
    ("dataflow", choose_dataflows),
    ("tiling", tile_layers),
    ("overlap", choose_overlaps),
    ("buffers", place_buffers),
    ("dram", plan_dram),
    ("schedule", schedule_plan),
    ("encode", encode_plan),
]
PASS_NAMES = [name for name, _ in PASSES]


def run_backend(graph: Graph, config: AcceleratorConfig, dataflow: str = "auto",
                print_after: str | None = None, overlap: bool = True, sparse: bool = False,
                s2d: bool = True) -> Plan:
    """All passes; returns the final plan (``plan.program`` holds the scheduled code).
    ``overlap=False`` keeps every layer whole in program order (no ``overlap`` pairs);
    ``sparse=True`` emits SPCONV where the cycle model finds it faster (docs/sparsity.md);
    ``s2d=False`` keeps the stem as imported (no space-to-depth rewrite, backend/stem.py)."""
    if print_after is not None and print_after not in PASS_NAMES + ["all"]:
        raise UsageError(f"unknown pass {print_after!r} for --print-after; passes: {', '.join(PASS_NAMES)}")
    if s2d:
        graph = space_to_depth_stem(graph, config)
    plan = Plan(graph, config, dataflow, overlap=overlap, sparse=sparse)
    for name, fn in PASSES:
        plan = verify_plan(fn(plan), after=name)
        _show(plan, name, print_after)
    return plan


def _show(plan: Plan, name: str, print_after: str | None) -> None:
    if print_after in (name, "all"):
        print(f"// plan after {name}")
        print(format_plan(plan), end="")


def compile_graph(graph: Graph, config: AcceleratorConfig, dataflow: str = "auto",
                  print_after: str | None = None, overlap: bool = True, sparse: bool = False,
                  s2d: bool = True) -> Program:
    """Compile a verified Graph IR for ``config``. ``dataflow`` is ``auto`` (per layer, by the
    cost model) or ``channel``/``pixel`` (forced wherever legal). Raises ``ResourceError`` for a layer that cannot fit the target,
    ``UnsupportedError`` for a model the back end refuses."""
    plan = run_backend(graph, config, dataflow, print_after, overlap, sparse, s2d)
    return Program(config, plan.program.code, plan.weights, plan.graph, manifest(plan, PASS_NAMES))


def compile_model(path: str | os.PathLike, target: str | AcceleratorConfig = "tiny", dataflow: str = "auto",
                  input_shapes: dict | None = None, print_after: str | None = None, overlap: bool = True,
                  sparse: bool = False, s2d: bool = True) -> Program:
    """Import the ONNX model at ``path`` (front end) and compile it for ``target`` (a name,
    a JSON file, or an ``AcceleratorConfig``)."""
    from ..frontend.importer import import_onnx  # the one place the back end calls the front end

    config = load_target(target)
    graph = import_onnx(path, input_shapes)
    return compile_graph(graph, config, dataflow, print_after, overlap, sparse, s2d)
