"""Front-end passes over the Graph IR and the import pipeline.

Passes are named functions ``Graph -> Graph`` run in a flat list; the verifier runs after
each one and names it when something breaks. ``print_after`` / ``dump_dir`` show the IR
between passes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import UsageError
from ..ir.graph import Graph
from ..ir.ops import SPECS
from ..ir.text import print_graph
from ..ir.verify import verify
from . import ranges


def _compose_act(a1: tuple[str, int | None], a2: tuple[str, int | None]) -> tuple[str, int | None]:
    """The activation equal to applying ``a1`` then ``a2`` (both monotone)."""
    if a1[0] == "none":
        return a2
    if a2[0] == "none":
        return a1
    if "relu" in (a1[0], a2[0]):
        return ("relu", None)
    return ("leaky", a1[1] + a2[1])


def hoist_requant(graph: Graph) -> Graph:
    """Swap ``layout → requant`` into ``requant → layout`` (reshape/transpose only move
    elements, a requant acts per element), so the requant can fuse into the op before."""
    producers = graph.producer()
    consumers = graph.consumers()
    types = dict(graph.types)
    ops = list(graph.ops)
    index = {op.name: i for i, op in enumerate(ops)}
    for r in graph.ops:
        lay = producers.get(r.inputs[0])
        if r.kind != "requant" or lay is None or lay.kind not in ("reshape", "transpose"):
            continue
        if len(consumers.get(lay.outputs[0], [])) != 1 or lay.outputs[0] in graph.outputs:
            continue
        src = lay.inputs[0]
        mid = lay.outputs[0]  # now holds the requantized value, before the layout op
        types[mid] = types[r.outputs[0]].with_shape(types[src].shape)
        at_lay, at_r = index[lay.name], index[r.name]
        ops[at_lay] = type(r)(r.name, "requant", (src,), (mid,), r.attrs)
        ops[at_r] = type(lay)(lay.name, lay.kind, (mid,), r.outputs, lay.attrs)
        index[r.name], index[lay.name] = at_lay, at_r
        producers[mid], producers[r.outputs[0]] = ops[at_lay], ops[at_r]
    return graph.with_ops(ops, types=types)


def fuse_requant(graph: Graph) -> Graph:
    """Merge ``P → requant`` into ``P`` when P's output is exact and read only by the requant.

    P computes its exact value, so rounding once at the requant's frac gives the same result
    as the two ops (activations compose; an exact clip maps through the requant's rule).
    """
    producers = graph.producer()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    replaced: dict[str, object] = {}  # producer op name -> fused op
    for r in graph.ops:
        if r.kind != "requant":
            continue
        p = producers.get(r.inputs[0])
        if p is None or not SPECS[p.kind].post:
            continue
        mid = p.outputs[0]
        if mid in outputs or len(consumers.get(mid, [])) != 1:
            continue
        in_types = [graph.types[t] for t in p.inputs]
        consts = [graph.constants.get(t) for t in p.inputs]
        if not ranges.is_exact(p.kind, p.attrs, in_types, consts, graph.types[mid]):
            continue
        act, exp = _compose_act((p.attrs.get("act", "none"), p.attrs.get("leaky_exp")),
                                (r.attrs.get("act", "none"), r.attrs.get("leaky_exp")))
        out_t = graph.types[r.outputs[0]]
        clip = r.attrs.get("clip")
        if "clip" in p.attrs:
            lo, hi = ranges.map_bounds(*p.attrs["clip"], graph.types[mid].frac, out_t.frac,
                                       r.attrs.get("act", "none"), r.attrs.get("leaky_exp"))
            if clip is not None:
                lo, hi = max(lo, clip[0]), min(hi, clip[1])
            clip = (lo, max(lo, hi))
        attrs = p.attrs.updated(act=act, leaky_exp=exp if act == "leaky" else None, clip=clip)
        if act != "leaky" and "leaky_exp" in attrs:
            attrs = attrs.updated(leaky_exp=None)
        fused = type(p)(p.name, p.kind, p.inputs, r.outputs, attrs)
        replaced[p.name] = fused
        replaced[r.name] = None
        producers[r.outputs[0]] = fused
    ops = []
    for op in graph.ops:
        new = replaced.get(op.name, op)
        if new is not None:
            ops.append(new)
    # The fused op sits where its producer was: its inputs are defined before it, and its
    # output's readers all come after the requant it replaces.
    return graph.with_ops(ops)


def fold_layout(graph: Graph) -> Graph:
    """Collapse ``reshape → reshape`` into one reshape and drop reshapes that change nothing."""
    producers = graph.producer()
    consumers = graph.consumers()
    rename: dict[str, str] = {}
    ops = []
    for op in graph.ops:
        op = type(op)(op.name, op.kind, tuple(rename.get(t, t) for t in op.inputs), op.outputs, op.attrs)
        if op.kind == "reshape":
            src = producers.get(op.inputs[0])
            if src is not None and src.kind == "reshape":
                op = type(op)(op.name, op.kind, src.inputs, op.outputs, op.attrs)
            # A CPU op's one-node model names its inputs after the tensors it reads: keep those.
            if graph.types[op.inputs[0]].shape == graph.types[op.outputs[0]].shape and \
                    op.outputs[0] not in graph.outputs and \
                    not any(c.kind == "cpu" for c in consumers.get(op.outputs[0], [])):
                rename[op.outputs[0]] = op.inputs[0]
                continue
        producers[op.outputs[0]] = op
        ops.append(op)
    return graph.with_ops(ops)


def dead_code(graph: Graph) -> Graph:
    """Drop ops whose results nobody reads (they are not graph outputs either)."""
    live = set(graph.outputs)
    kept = []
    for op in reversed(graph.ops):
        if any(t in live for t in op.outputs):
            kept.append(op)
            live.update(op.inputs)
    return graph.with_ops(reversed(kept))


FRONTEND_PASSES: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("hoist_requant", hoist_requant),
    ("fuse_requant", fuse_requant),
    ("fold_layout", fold_layout),
    ("dead_code", dead_code),
]


def run_passes(graph: Graph, passes, print_after: str | None = None, dump_dir: str | None = None,
               start: str = "import") -> Graph:
    """Run ``passes`` in order, verifying after each; print or dump the IR as asked
    (``UsageError`` for a ``print_after`` that names no pass)."""
    names = [start] + [name for name, _ in passes]
    if print_after is not None and print_after not in names + ["all"]:
        raise UsageError(f"unknown pass {print_after!r} for --print-after; passes: {', '.join(names)} (or all)")
    verify(graph, after=start)
    _show(graph, start, print_after, dump_dir, 0)
    for i, (name, fn) in enumerate(passes, 1):
        graph = verify(fn(graph), after=name)
        _show(graph, name, print_after, dump_dir, i)
    return graph


def _show(graph, name, print_after, dump_dir, index):
    if print_after in (name, "all"):
        print(f"// IR after {name}")
        print(print_graph(graph, elide=True), end="")
    if dump_dir:
        os.makedirs(dump_dir, exist_ok=True)
        with open(os.path.join(dump_dir, f"{index:02d}_{name}.ir"), "w") as f:
            f.write(print_graph(graph))
