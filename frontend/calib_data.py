"""Calibration inputs of ``shiftflow quantize``: ``--calib DATA.npz`` or ``--calib-random N``.

:func:`load_calibration` reads the file; :func:`calibration_feeds` turns either source into
validated float32 arrays, one per graph input, samples on axis 0.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import onnx

from shiftflow.errors import UsageError

#: The key numpy gives an array saved without a name (``np.savez(f, x)``).
_UNNAMED = "arr_0"


def load_calibration(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read calibration data from an ``.npz`` (or ``.npy``) file.

    Returns the arrays by name, samples along axis 0. Names are graph input names; a single
    unnamed array (``np.savez(f, x)`` or an ``.npy`` file) comes back under ``"arr_0"``, which
    :func:`calibration_feeds` maps to the model's only input. Raises ``UsageError`` if the file
    is missing or not numpy data.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"calibration file '{path}' is a directory, not a .npz/.npy file")
    if not os.path.isfile(path):
        raise UsageError(f"calibration file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"calibration file '{path}' must be a numpy .npz or .npy file: "
                         f"{exc}") from None
    if isinstance(data, np.ndarray):
        return {_UNNAMED: data}
    with data:
        arrays = {name: data[name] for name in data.files}
    if not arrays:
        raise UsageError(f"calibration file '{path}' holds no arrays")
    return arrays


def input_dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """Static dims of a graph input; ``None`` where the dim is symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def _random_feed(vi: onnx.ValueInfoProto, n: int, rng: np.random.Generator) -> np.ndarray:
    dims = input_dims(vi)
    if not dims or any(d is None for d in dims[1:]):
        raise UsageError(f"--calib-random needs a static shape for input '{vi.name}' "
                         f"(besides the batch dim); found {dims}: pass --calib DATA.npz")
    return rng.standard_normal((n, *dims[1:])).astype(np.float32)


def _check_feed(vi: onnx.ValueInfoProto, array: np.ndarray) -> np.ndarray:
    dims = input_dims(vi)
    array = np.asarray(array)
    if not dims:
        raise UsageError(f"input '{vi.name}' must have a batch axis to calibrate; it is a scalar")
    if not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"calibration data for input '{vi.name}' must be numeric; found dtype "
                         f"{array.dtype}")
    shape_ok = array.ndim == len(dims) and all(
        d is None or d == a for d, a in zip(dims[1:], array.shape[1:]))
    if not shape_ok or array.shape[0] == 0:
        want = "(N, " + ", ".join("?" if d is None else str(d) for d in dims[1:]) + ")"
        raise UsageError(f"calibration data for input '{vi.name}' must have shape {want} with "
                         f"N >= 1 samples; found {array.shape}")
    return array.astype(np.float32, copy=False)


def calibration_feeds(inputs: list[onnx.ValueInfoProto],
                      calib: np.ndarray | dict[str, np.ndarray] | None,
                      calib_random: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Validated float32 calibration samples for each graph input, samples along axis 0.

    ``calib`` is one array (the model must have exactly one input) or arrays by input name
    (``"arr_0"`` stands for the only input). ``calib_random=N`` draws N samples from a
    standard normal distribution with ``numpy.random.default_rng(seed)`` — the usual
    distribution of normalised network inputs. Exactly one of the two must be given. Every
    array must match its input's shape except along the batch axis, and all inputs must get
    the same number of samples; anything else is a ``UsageError``.
    """
    names = [vi.name for vi in inputs]
    if (calib is None) == (calib_random is None):
        raise UsageError("quantize needs exactly one calibration source: --calib DATA.npz "
                         "or --calib-random N")
    if calib_random is not None:
        if isinstance(calib_random, bool) or not isinstance(calib_random, int) or calib_random < 1:
            raise UsageError(f"--calib-random must be a positive sample count; found {calib_random!r}")
        rng = np.random.default_rng(seed)
        return {vi.name: _random_feed(vi, calib_random, rng) for vi in inputs}
    if not isinstance(calib, dict):
        calib = {_UNNAMED: calib}
    if len(names) == 1 and set(calib) == {_UNNAMED}:
        calib = {names[0]: calib[_UNNAMED]}
    missing = [n for n in names if n not in calib]
    unknown = [n for n in calib if n not in names]
    if missing or unknown:
        raise UsageError(f"calibration arrays must be named after the graph inputs {names}; "
                         f"found {sorted(calib)}")
    feeds = {vi.name: _check_feed(vi, calib[vi.name]) for vi in inputs}
    counts = {n: a.shape[0] for n, a in feeds.items()}
    if len(set(counts.values())) != 1:
        raise UsageError(f"calibration arrays must hold the same number of samples; found {counts}")
    return feeds
