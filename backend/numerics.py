"""Per-op integer parameters of accelerator layers, derived from the IR types (docs/ir.md).

Every accelerator op ends in the same post-processing (docs/isa.md): ``v`` at some frac,
optional activation, a half-to-even right shift to the output frac, a clamp to ``[lo, hi]``.
These functions compute those fields and prove the accumulator never overflows; a value
the ISA cannot hold raises ``UnsupportedError`` (the caller turns it into a host fallback
with the message as the reason, or refuses the model where the brief says so).
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir.graph import Graph, Op
from ..ir.types import TensorType, bits_for_range

SHIFT_RANGE = (-128, 127)  # int8 parameter entry / signed(8) VEC rshift


def post_range(op: Op, out: TensorType) -> tuple[int, int]:
    """The final clamp: the output type's range intersected with the op's ``clip``."""
    lo, hi = out.qmin, out.qmax
    if "clip" in op.attrs:
        lo, hi = max(lo, op.attrs["clip"][0]), min(hi, op.attrs["clip"][1])
    return lo, hi


def act_fields(op: Op) -> tuple[str, int]:
    act = op.attrs.get("act", "none")
    return act, int(op.attrs.get("leaky_exp", 0) or 0) if act == "leaky" else 0


def _check_shift(op: Op, shifts, what: str) -> None:
    act, leaky = act_fields(op)
    lo, hi = int(np.min(shifts)), int(np.max(shifts))
    if act == "leaky":
        lo, hi = min(lo, lo - leaky), max(hi, hi - leaky)
    if lo < SHIFT_RANGE[0] or hi > SHIFT_RANGE[1]:
        raise UnsupportedError(f"layer {op.name!r}: {what} shift range [{lo}, {hi}] does not fit the ISA's "
                               f"signed 8-bit shift")


def _check_acc(op: Op, lo: int, hi: int, acc_bits: int) -> None:
    bits, _ = bits_for_range(min(int(lo), 0), max(int(hi), 0), True)
    if bits > acc_bits:
        raise UnsupportedError(f"layer {op.name!r}: accumulator needs {bits} bits, the accelerator has {acc_bits}")


def _acc_frac(graph: Graph, op: Op) -> np.ndarray:
    x, wt = graph.types[op.inputs[0]], graph.types[op.inputs[1]]
    return x.frac + np.broadcast_to(np.asarray(wt.frac, dtype=np.int64), (wt.shape[0],))


def aligned_bias(graph: Graph, op: Op) -> np.ndarray:
    """The conv's bias per output channel at the accumulator frac ``frac(x) + frac(w)[m]``
    (shifted left when coarser). A bias finer than the accumulator, or one beyond int32 once
    aligned, is refused (``UnsupportedError``): the PE array cannot represent it."""
    acc_frac = _acc_frac(graph, op)
    m = acc_frac.shape[0]
    bias = np.zeros(m, dtype=np.int64)
    if len(op.inputs) > 2:
        bt = graph.types[op.inputs[2]]
        b = np.broadcast_to(np.asarray(graph.constants[op.inputs[2]], dtype=np.int64).reshape(-1), (m,))
        bf = np.broadcast_to(np.asarray(bt.frac, dtype=np.int64), (m,))
        if np.any(bf > acc_frac):
            i = int(np.argmax(bf > acc_frac))
            raise UnsupportedError(f"layer {op.name!r}: bias of channel {i} has frac {int(bf[i])}, finer than the "
                                   f"accumulator's {int(acc_frac[i])} (frac(x) + frac(w)); requantize the bias "
                                   f"to scale s_x*s_w")
        bias = b << (acc_frac - bf)
        if bias.min() < -(1 << 31) or bias.max() >= 1 << 31:
            raise UnsupportedError(f"layer {op.name!r}: bias aligned to the accumulator frac exceeds int32")
    return bias


def conv_params(graph: Graph, op: Op, acc_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(bias, shift) per output channel of a conv: ``aligned_bias`` and the requant shift
    ``acc_frac[m] - out_frac``. Raises ``UnsupportedError`` for a shift beyond int8 or an
    accumulator wider than ``acc_bits`` (bounded from the actual weights and the input type)."""
    x, out = graph.types[op.inputs[0]], graph.types[op.outputs[0]]
    w = np.asarray(graph.constants[op.inputs[1]], dtype=np.int64)
    m = w.shape[0]
    bias = aligned_bias(graph, op)
    shift = _acc_frac(graph, op) - out.frac
    _check_shift(op, shift, "requant")
    taps = w.reshape(m, -1)
    hi = np.maximum(taps * x.qmin, taps * x.qmax).sum(axis=1) + bias
    lo = np.minimum(taps * x.qmin, taps * x.qmax).sum(axis=1) + bias
    _check_acc(op, lo.min(), hi.max(), acc_bits)
    return bias, shift


def vec_shifts(graph: Graph, op: Op, acc_bits: int) -> dict:
    """Shift fields of a vector op: ``shift_a``/``shift_b`` (add), ``rshift``; checks ranges."""
    ins = [graph.types[t] for t in op.inputs]
    out = graph.types[op.outputs[0]]
    x = ins[0]
    if op.kind == "add":
        f = max(t.frac for t in ins)
        sa, sb = f - ins[0].frac, f - ins[1].frac
        if max(sa, sb) > 31:
            raise UnsupportedError(f"layer {op.name!r}: operand alignment shift {max(sa, sb)} exceeds 31")
        lo = (ins[0].qmin << sa) + (ins[1].qmin << sb)
        hi = (ins[0].qmax << sa) + (ins[1].qmax << sb)
        fields = {"shift_a": sa, "shift_b": sb, "rshift": f - out.frac}
    elif op.kind == "avgpool":
        count = op.attrs["kernel"][0] * op.attrs["kernel"][1]
        lo, hi = x.qmin * count, x.qmax * count
        fields = {"rshift": x.frac + count.bit_length() - 1 - out.frac}
    else:  # maxpool, resize, requant, concat copy
        lo, hi = x.qmin, x.qmax
        fields = {"rshift": x.frac - out.frac}
    _check_shift(op, fields["rshift"], "output")
    _check_acc(op, lo, hi, acc_bits)
    return fields


def copy_shift(src: TensorType, op: Op, out: TensorType) -> int:
    """Right shift of a concat's requantizing copy of input ``src``."""
    rshift = src.frac - out.frac
    _check_shift(op, rshift, "output")
    return rshift
