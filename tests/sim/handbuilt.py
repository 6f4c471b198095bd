"""A hand-built whole ``Program`` for a one-conv IR graph (``quantize → conv``), so the runner,
the host protocol and the ladder are tested without the compiler: the quantize runs on the
host and writes its DRAM tensor, the conv is one accelerator segment from ``tests/sim/asm``."""

from __future__ import annotations

import math

import numpy as np

from shiftflow.ir.graph import Graph
from shiftflow.ir.ops import conv_macs
from shiftflow.ir.program import Program
from tests.sim.asm import DRAM_SIZE, conv_asm

X_ADDR, CONST_BASE, CONST_END, Y_ADDR = 0, 0x40000, 0x80000, 0x80000


def _spec(t, addr: int, tn: int) -> dict:
    """A DRAM tensor entry at default strides."""
    _, c, h, w = t.shape
    return {"addr": addr, "shape": list(t.shape), "bits": t.bits, "signed": t.signed, "frac": t.frac,
            "blocks": math.ceil(c / tn), "row_stride": w * tn, "blk_stride": h * w * tn}


def conv_program(cfg, graph: Graph, dataflow: str = "channel") -> Program:
    quant, conv = graph.ops
    assert (quant.kind, conv.kind) == ("quantize", "conv")
    x_t, w_t, y_t = graph.types[conv.inputs[0]], graph.types[conv.inputs[1]], graph.types[conv.outputs[0]]
    w = graph.constants[conv.inputs[1]].astype(np.int64)
    m = w.shape[0]
    a = conv.attrs
    depthwise = a["groups"] > 1
    assert not depthwise or (a["groups"] == w.shape[0] == x_t.shape[1]), "depthwise with multiplier 1 only"
    acc_frac = x_t.frac + np.broadcast_to(w_t.frac_array(1).reshape(-1), (m,))
    bias = np.zeros(m, np.int64)
    if len(conv.inputs) == 3:
        b_t = graph.types[conv.inputs[2]]
        assert np.all(b_t.frac_array(1).reshape(-1) == acc_frac), "bias at the accumulator scale"
        bias = graph.constants[conv.inputs[2]].astype(np.int64)
    lo, hi = a["clip"] if "clip" in a else (y_t.qmin, y_t.qmax)
    lo, hi = max(lo, y_t.qmin), min(hi, y_t.qmax)
    st, dil = a["strides"], a["dilations"]
    assert st[0] == st[1] and dil[0] == dil[1]
    pads = tuple(a["pads"])
    asm, out, _, _ = conv_asm(cfg, np.zeros(x_t.shape[1:], np.int64), w, bias, acc_frac - y_t.frac,
                              dataflow="pixel" if depthwise else dataflow, depthwise=depthwise,
                              # pow2 codes are pixel-parallel only; channel-parallel takes the same values as int8
                              pow2=a.get("wenc") == "pow2" and (depthwise or dataflow == "pixel"),
                              stride=st[0], pads=pads, dil=dil[0],
                              act=a.get("act", "none"), leaky_exp=a.get("leaky_exp", 0), lo=lo, hi=hi,
                              x_signed=x_t.signed)
    assert out == Y_ADDR
    n = len(asm.words)
    weights = asm.dram[CONST_BASE:CONST_END].tobytes()
    tensors = {conv.inputs[0]: _spec(x_t, X_ADDR, cfg.tn), conv.outputs[0]: _spec(y_t, Y_ADDR, cfg.tn)}
    layer = {"name": conv.name, "op": "conv", "dataflow": "pixel" if depthwise else dataflow,
             "macs": conv_macs(x_t.shape, w.shape, y_t.shape), "first": 0, "last": n - 1, "segment": 1}
    manifest = {"dram": {"size": DRAM_SIZE, "const_base": CONST_BASE, "const_size": len(weights)},
                "tensors": tensors, "inputs": [{"name": i, "shape": list(graph.types[i].shape)} for i in graph.inputs],
                "outputs": [{"name": o, "shape": list(graph.types[o].shape), "type": str(graph.types[o])}
                            for o in graph.outputs],
                "segments": [{"kind": "host", "ops": [quant.name]}, {"kind": "accel", "start": 0, "count": n}],
                "layers": [layer]}
    return Program(cfg, b"".join(asm.words), weights, graph, manifest)
