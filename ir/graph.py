"""The immutable Graph IR.

A ``Graph`` is a list of ``Op``s in topological order over named tensors, each tensor with
a ``TensorType``. Graph inputs, weight/bias constants and op outputs are the only ways a
tensor is defined; each is defined once. Everything is frozen: passes build new graphs with
``dataclasses.replace`` (or the helpers here) and the verifier runs between passes.

Op semantics (executed by ``frontend.interpreter``, documented in ``docs/ir.md``) follow one
rule: an op computes its exact rational result, applies its activation, then converts to its
output type with round-half-to-even and saturation (plus an optional integer ``clip``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .types import TensorType


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"attribute values must be int, float, str, bool or tuples of them; got {type(value).__name__}")


class Attrs(Mapping):
    """A frozen, hashable mapping of op attributes (lists are stored as tuples)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None, **kwargs: Any):
        merged = dict(items or {}, **kwargs)
        object.__setattr__(self, "_items", tuple(sorted((k, _freeze(v)) for k, v in merged.items())))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attrs):
            return self._items == other._items
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __setattr__(self, name, value):
        raise AttributeError("Attrs is immutable")

    def __repr__(self) -> str:
        return f"Attrs({dict(self._items)!r})"

    def updated(self, **changes: Any) -> "Attrs":
        """A copy with ``changes`` applied; a value of ``None`` removes the key."""
        merged = dict(self._items)
        for k, v in changes.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return Attrs(merged)


@dataclass(frozen=True)
class Op:
    """One operation: ``outputs = kind(inputs) {attrs}``. ``name`` is unique in the graph and
    keeps the ONNX node name it came from, so errors can point back at the model."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Attrs = field(default_factory=Attrs)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))


@dataclass(frozen=True, eq=False)
class Graph:
    """A whole network. ``types`` covers every tensor (inputs, constants, op outputs);
    ``constants`` holds read-only integer arrays for weight and bias tensors."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ops: tuple[Op, ...]
    types: Mapping[str, TensorType]
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "types", _FrozenDict(self.types))
        consts = {}
        for k, v in self.constants.items():
            a = np.array(v, copy=True) if v.flags.writeable else v
            a.flags.writeable = False
            consts[k] = a
        object.__setattr__(self, "constants", _FrozenDict(consts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        if (self.name, self.inputs, self.outputs, self.ops) != (other.name, other.inputs, other.outputs, other.ops):
            return False
        if dict(self.types) != dict(other.types) or set(self.constants) != set(other.constants):
            return False
        return all(np.array_equal(self.constants[k], other.constants[k])
                   and self.constants[k].shape == other.constants[k].shape for k in self.constants)

    __hash__ = None  # type: ignore[assignment]

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def producer(self) -> dict[str, Op]:
        """Map tensor name → the op that defines it."""
        return {t: o for o in self.ops for t in o.outputs}

    def consumers(self) -> dict[str, list[Op]]:
        """Map tensor name → the ops that read it (in order)."""
        uses: dict[str, list[Op]] = {}
        for o in self.ops:
            for t in o.inputs:
                uses.setdefault(t, []).append(o)
        return uses

    def with_ops(self, ops, *, types: Mapping[str, TensorType] | None = None,
                 constants: Mapping[str, np.ndarray] | None = None, outputs=None) -> "Graph":
        """A new graph with these ops; types/constants default to this graph's, pruned to
        the tensors still in use."""
        ops = tuple(ops)
        types = dict(self.types if types is None else types)
        constants = dict(self.constants if constants is None else constants)
        outputs = self.outputs if outputs is None else tuple(outputs)
        live = set(self.inputs) | set(outputs)
        for o in ops:
            live.update(o.inputs)
            live.update(o.outputs)
        return replace(self, ops=ops, outputs=outputs,
                       types={k: v for k, v in types.items() if k in live},
                       constants={k: v for k, v in constants.items() if k in live})


class _FrozenDict(Mapping):
    __slots__ = ("_d",)

    def __init__(self, d: Mapping):
        object.__setattr__(self, "_d", dict(d))

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __setattr__(self, name, value):
        raise AttributeError("read-only mapping")

    def __repr__(self):
        return f"{self._d!r}"
