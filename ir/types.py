"""Tensor types of the Graph IR.

Every tensor between accelerator ops is an integer tensor with a bit width, a signedness and
a power-of-two scale ``2**-frac`` (fixed point): the real value of integer ``q`` is
``q * 2**-frac``. Weight constants may carry one ``frac`` per output channel (axis 0).
Tensors produced by CPU ops that are not re-quantized are ``float32``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ParseError

Frac = int | tuple[int, ...]


@dataclass(frozen=True)
class TensorType:
    """Type of one IR tensor.

    ``kind`` is ``"int"`` or ``"float"``. For ``int``: ``bits`` (1..64) and ``signed`` give the
    representable range, ``frac`` the scale exponent (scalar, or a tuple with one entry per
    index of axis 0 for per-channel weights). For ``float`` (always float32) bits/signed/frac
    are unused and fixed to ``32/True/0``.
    """

    shape: tuple[int, ...]
    kind: str = "int"
    bits: int = 8
    signed: bool = True
    frac: Frac = 0

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if isinstance(self.frac, (list, tuple, np.ndarray)):
            object.__setattr__(self, "frac", tuple(int(f) for f in self.frac))
        else:
            object.__setattr__(self, "frac", int(self.frac))
        if self.kind not in ("int", "float"):
            raise ValueError(f"tensor kind must be 'int' or 'float', got {self.kind!r}")
        if self.kind == "int" and not 1 <= self.bits <= 64:
            raise ValueError(f"integer bit width must be 1..64, got {self.bits}")

    @staticmethod
    def float32(shape) -> "TensorType":
        return TensorType(tuple(shape), "float", 32, True, 0)

    @property
    def is_int(self) -> bool:
        return self.kind == "int"

    @property
    def per_channel(self) -> bool:
        return isinstance(self.frac, tuple)

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def frac_array(self, ndim: int | None = None) -> np.ndarray:
        """``frac`` as an int64 array broadcastable against a tensor of this type (axis 0)."""
        ndim = len(self.shape) if ndim is None else ndim
        if isinstance(self.frac, tuple):
            return np.asarray(self.frac, dtype=np.int64).reshape((-1,) + (1,) * (ndim - 1))
        return np.asarray(self.frac, dtype=np.int64)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.kind, self.bits, self.signed, self.frac)

    def storage_dtype(self) -> np.dtype:
        """Smallest numpy dtype that holds every value of this type."""
        if not self.is_int:
            return np.dtype(np.float32)
        need = self.bits if self.signed else self.bits + 1
        for bits in (8, 16, 32):
            if need <= bits:
                return np.dtype(f"int{bits}")
        return np.dtype(np.int64)

    def __str__(self) -> str:
        dims = "[" + ",".join(str(d) for d in self.shape) + "]"
        if not self.is_int:
            return "f32" + dims
        if isinstance(self.frac, tuple):
            frac = "[" + ",".join(str(f) for f in self.frac) + "]"
        else:
            frac = str(self.frac)
        return f"{'i' if self.signed else 'u'}{self.bits}<{frac}>{dims}"


_TYPE_RE = re.compile(r"^(?:(?P<f>f32)|(?P<s>[iu])(?P<bits>\d+)<(?P<frac>-?\d+|\[[-\d,\s]*\])>)"
                      r"\[(?P<dims>[\d,\s]*)\]$")


def parse_type(text: str) -> TensorType:
    """Inverse of ``str(TensorType)``."""
    m = _TYPE_RE.match(text.strip())
    if not m:
        raise ParseError(f"bad tensor type {text!r}: expected e.g. 'i8<7>[1,3,32,32]' or 'f32[1,10]'")
    dims = tuple(int(d) for d in m["dims"].split(",") if d.strip())
    if m["f"]:
        return TensorType.float32(dims)
    frac_text = m["frac"]
    if frac_text.startswith("["):
        frac: Frac = tuple(int(f) for f in frac_text[1:-1].split(",") if f.strip())
    else:
        frac = int(frac_text)
    return TensorType(dims, "int", int(m["bits"]), m["s"] == "i", frac)


def bits_for_range(lo: int, hi: int, signed: bool | None = None) -> tuple[int, bool]:
    """Smallest (bits, signed) that represents every integer in ``[lo, hi]``."""
    if signed is None:
        signed = lo < 0
    bits = 1
    while True:
        t = TensorType((), "int", bits, signed, 0)
        if t.qmin <= lo and hi <= t.qmax:
            return bits, signed
        bits += 1
