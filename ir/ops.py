"""The op set of the Graph IR: attributes and shape rules, defined once.

Every int-producing op follows one rule: compute the exact rational result, apply ``act``
(``none``/``relu``/``leaky`` with negative slope ``2**leaky_exp``), round half-to-even to
the output type's ``frac``, saturate to its bit range, then apply the optional integer
``clip = (lo, hi)``. See ``docs/ir.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .graph import Op

ACTS = ("none", "relu", "leaky")


def conv_out_size(size: int, k: int, stride: int, pad0: int, pad1: int, dilation: int,
                  ceil_mode: bool = False) -> int:
    """Output length of a conv/pool window sweep along one axis (ONNX rules, incl. ceil_mode)."""
    span = size + pad0 + pad1 - dilation * (k - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad0:
        out -= 1  # the last window would start inside the end padding
    return out


def _spatial(op: Op, x: tuple[int, ...], k: tuple[int, int], ceil_mode: bool = False) -> tuple[int, int]:
    s, p, d = op.attrs["strides"], op.attrs["pads"], op.attrs["dilations"]
    return (conv_out_size(x[2], k[0], s[0], p[0], p[2], d[0], ceil_mode),
            conv_out_size(x[3], k[1], s[1], p[1], p[3], d[1], ceil_mode))


def _conv_shape(op: Op, shapes):
    x, w = shapes[0], shapes[1]
    g = op.attrs["groups"]
    if len(x) != 4 or len(w) != 4:
        raise ValueError(f"conv needs NCHW input and OIHW weights, got {x} and {w}")
    if x[1] != w[1] * g or w[0] % g:
        raise ValueError(f"conv channels: input has {x[1]}, weights {w} with groups={g}")
    if len(shapes) == 3 and shapes[2] != (w[0],):
        raise ValueError(f"conv bias must have shape ({w[0]},), got {shapes[2]}")
    return [(x[0], w[0]) + _spatial(op, x, (w[2], w[3]))]


def _pool_shape(op: Op, shapes):
    x = shapes[0]
    if len(x) != 4:
        raise ValueError(f"pooling needs an NCHW input, got {x}")
    return [x[:2] + _spatial(op, x, op.attrs["kernel"], bool(op.attrs["ceil_mode"]))]


def _broadcast(op: Op, shapes):
    out: list[int] = []
    for dims in zip(*(((1,) * (max(map(len, shapes)) - len(s)) + tuple(s)) for s in shapes)):
        big = max(dims)
        if any(d not in (1, big) for d in dims):
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(big)
    return [tuple(out)]


def _concat_shape(op: Op, shapes):
    axis = op.attrs["axis"] % len(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
            raise ValueError(f"concat along axis {axis}: incompatible shapes {shapes}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [tuple(out)]


def _resize_shape(op: Op, shapes):
    x = shapes[0]
    sh, sw = op.attrs["scales"]
    return [(x[0], x[1], x[2] * sh, x[3] * sw)]


def _reshape_shape(op: Op, shapes):
    shape = tuple(op.attrs["shape"])
    if math.prod(shape) != math.prod(shapes[0]):
        raise ValueError(f"reshape {shapes[0]} -> {shape} changes the element count")
    return [shape]


def _transpose_shape(op: Op, shapes):
    perm = op.attrs["perm"]
    if sorted(perm) != list(range(len(shapes[0]))):
        raise ValueError(f"transpose perm {perm} does not match rank {len(shapes[0])}")
    return [tuple(shapes[0][p] for p in perm)]


def _same(op: Op, shapes):
    return [tuple(shapes[0])]


@dataclass(frozen=True)
class OpSpec:
    """What an op kind needs: input count range, required attributes, and its shape rule
    (``None`` when output shapes are declared by the op itself, as for ``cpu``)."""

    n_inputs: tuple[int, int]
    attrs: tuple[str, ...]
    shape: Callable | None
    post: bool = True  # follows the act/round/saturate/clip rule


_WINDOW = ("strides", "pads", "dilations")

SPECS: dict[str, OpSpec] = {
    "conv": OpSpec((2, 3), _WINDOW + ("groups",), _conv_shape),
    "requant": OpSpec((1, 1), (), _same),
    "add": OpSpec((2, 2), (), _broadcast),
    "maxpool": OpSpec((1, 1), _WINDOW + ("kernel", "ceil_mode"), _pool_shape),
    "avgpool": OpSpec((1, 1), _WINDOW + ("kernel", "ceil_mode"), _pool_shape),
    "concat": OpSpec((1, 1 << 16), ("axis",), _concat_shape),
    "resize": OpSpec((1, 1), ("scales",), _resize_shape),
    "reshape": OpSpec((1, 1), ("shape",), _reshape_shape, post=False),
    "transpose": OpSpec((1, 1), ("perm",), _transpose_shape, post=False),
    "quantize": OpSpec((1, 1), (), _same, post=False),
    "cpu": OpSpec((0, 1 << 16), ("model", "reason"), None, post=False),
}


def infer_shapes(op: Op, in_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]] | None:
    """Output shapes of ``op`` from its input shapes; ``None`` for ops that declare them."""
    spec = SPECS[op.kind]
    return None if spec.shape is None else spec.shape(op, [tuple(s) for s in in_shapes])


def conv_macs(x_shape, w_shape, y_shape) -> int:
    """Multiply-accumulates of a conv: one per weight tap per output element."""
    return int(math.prod(y_shape) * math.prod(w_shape[1:]))
