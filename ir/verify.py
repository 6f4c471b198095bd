"""The IR verifier: structural and type invariants, run between passes.

``verify(graph, after="fold_requant")`` raises ``VerifyError`` naming the pass after which the
graph broke, the op, and what must hold.
"""

from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from .graph import Graph
from .ops import ACTS, SPECS, infer_shapes


def verify(graph: Graph, after: str = "construction") -> Graph:
    """Check ``graph`` and return it unchanged; raise ``VerifyError`` on the first problem."""

    def fail(msg: str):
        raise VerifyError(f"IR invalid after {after}: {msg}")

    defined: set[str] = set()

    def define(name: str, what: str):
        if name in defined:
            fail(f"tensor %{name} defined twice ({what})")
        if name not in graph.types:
            fail(f"tensor %{name} ({what}) has no type")
        defined.add(name)

    for name in graph.inputs:
        define(name, "graph input")
    for name, data in graph.constants.items():
        define(name, "constant")
        t = graph.types[name]
        if not t.is_int:
            fail(f"constant %{name} must be an integer tensor, type is {t}")
        if tuple(data.shape) != t.shape:
            fail(f"constant %{name} has data shape {data.shape}, type says {t.shape}")
        if not np.issubdtype(data.dtype, np.integer):
            fail(f"constant %{name} has non-integer data ({data.dtype})")
        if data.size and (data.min() < t.qmin or data.max() > t.qmax):
            fail(f"constant %{name} holds values in [{data.min()}, {data.max()}] outside {t}")
        if t.per_channel and len(t.frac) != t.shape[0]:
            fail(f"constant %{name} has {len(t.frac)} per-channel fracs for {t.shape[0]} channels")

    op_names: set[str] = set()
    for op in graph.ops:
        where = f"op @{op.name} ({op.kind})"
        if op.name in op_names:
            fail(f"op name @{op.name} used twice")
        op_names.add(op.name)
        spec = SPECS.get(op.kind)
        if spec is None:
            fail(f"{where}: unknown op kind {op.kind!r}")
        lo, hi = spec.n_inputs
        if not lo <= len(op.inputs) <= hi:
            fail(f"{where}: takes {lo}..{hi} inputs, has {len(op.inputs)}")
        for a in spec.attrs:
            if a not in op.attrs:
                fail(f"{where}: missing attribute {a!r}")
        for t in op.inputs:
            if t not in defined:
                fail(f"{where}: input %{t} is not defined before use")
        out_types = []
        for t in op.outputs:
            define(t, where)
            out_types.append(graph.types[t])
        in_types = [graph.types[t] for t in op.inputs]
        try:
            shapes = infer_shapes(op, [t.shape for t in in_types])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            fail(f"{where}: {exc}")
        if shapes is not None:
            if len(shapes) != len(op.outputs):
                fail(f"{where}: produces {len(shapes)} outputs, declares {len(op.outputs)}")
            for name, want, t in zip(op.outputs, shapes, out_types):
                if tuple(want) != t.shape:
                    fail(f"{where}: output %{name} has shape {t.shape}, the op gives {tuple(want)}")
        _check_kind_rules(op, in_types, out_types, fail, where)

    for name in graph.outputs:
        if name not in defined:
            fail(f"graph output %{name} is never defined")
    return graph


def _check_kind_rules(op, in_types, out_types, fail, where):
    spec = SPECS[op.kind]
    if spec.post:
        act = op.attrs.get("act", "none")
        if act not in ACTS:
            fail(f"{where}: act must be one of {ACTS}, got {act!r}")
        if act == "leaky" and "leaky_exp" not in op.attrs:
            fail(f"{where}: act='leaky' needs leaky_exp (slope = 2**leaky_exp)")
        for t in out_types:
            if not t.is_int or t.per_channel:
                fail(f"{where}: output must be a per-tensor integer type, got {t}")
        for t in in_types:
            if not t.is_int:
                fail(f"{where}: inputs must be integer tensors, got {t}")
        clip = op.attrs.get("clip")
        if clip is not None and (len(clip) != 2 or clip[0] > clip[1]):
            fail(f"{where}: clip must be (lo, hi) with lo <= hi, got {clip}")
    if op.kind == "quantize" and (in_types[0].is_int or not out_types[0].is_int):
        fail(f"{where}: quantize maps a float tensor to an integer one")
    if op.kind in ("reshape", "transpose") and (in_types[0].kind, in_types[0].bits, in_types[0].signed,
                                                in_types[0].frac) != (out_types[0].kind, out_types[0].bits,
                                                                      out_types[0].signed, out_types[0].frac):
        fail(f"{where}: layout ops keep the element type ({in_types[0]} -> {out_types[0]})")
