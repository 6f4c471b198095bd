"""A graph's input arrays: one loader and one rule for ``check``, ``simulate`` and ``rtlsim``.

The rule (docs/ir.md, "Inputs"): every graph input gets a float32 array of exactly its
shape, converted from any float or integer array. Without a given array an input gets
seeded standard-normal data. (Infinities and NaN are values like any other: the ``quantize``
op saturates an infinity and codes NaN as the low end of its range, as onnxruntime does.)
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..errors import UsageError
from .graph import Graph


def load_array(path: str | os.PathLike) -> np.ndarray:
    """The array in a ``.npy`` file, or the one array of an ``.npz`` file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"cannot read {path!r}: it is a directory, not a .npy/.npz file")
    if not os.path.isfile(path):
        raise UsageError(f"cannot read {path!r}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path!r} as a .npy/.npz array: {exc}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise UsageError(f"{path!r} holds {len(data.files)} arrays; give a .npy with the one input")
            return data[data.files[0]]
    return data


def graph_feeds(graph: Graph, given: dict | np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 arrays for every graph input: ``given`` (a dict by input name, or one array
    for a single-input model), else seeded standard-normal data. Raises ``UsageError`` for
    a missing or unknown input, a wrong shape or a non-numeric dtype."""
    names = list(graph.inputs)
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise UsageError(f"unknown input(s) {unknown}; the model takes {names}")
    elif given is not None and len(names) != 1:
        raise UsageError(f"the model takes {len(names)} inputs {names}; pass a dict of arrays by name")
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in names:
        shape = graph.types[name].shape
        if given is None:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        if isinstance(given, dict) and name not in given:
            raise UsageError(f"missing input {name!r}; the model takes {names}")
        a = np.asarray(given[name] if isinstance(given, dict) else given)
        feeds[name] = _checked(name, a, shape)
    return feeds


def _checked(name: str, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.shape != tuple(shape):
        raise UsageError(f"input {name!r} must have shape {list(shape)}, got {list(a.shape)}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise UsageError(f"input {name!r} must hold float or integer numbers, got dtype {a.dtype}")
    return a.astype(np.float32)
