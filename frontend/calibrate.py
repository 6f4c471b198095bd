"""Calibration proper: run the prepared float model and choose each activation's po2 scale.

:func:`collect_ranges` runs the model under onnxruntime over the calibration samples (from
:mod:`.calib_data`) with the requested intermediate tensors exposed as outputs and returns
each tensor's (min, max); :func:`activation_fracs` picks each activation's po2 scale: the max
fit (:func:`fit_frac`), refined by squared error over a second pass.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort

from shiftflow.errors import QuantizationError, UsageError

from .calib_data import input_dims

#: Input elements per onnxruntime call when the batch dimension is symbolic: every
#: intermediate tensor of the batch is fetched at once, so large inputs go one by one.
_CHUNK_ELEMENTS = 2 ** 18
#: Finer activation exponents tried beyond the max fit (see activation_fracs).
REFINE_STEPS = 2


def _batches(inputs: list[onnx.ValueInfoProto], feeds: dict[str, np.ndarray]):
    """Yield feed dicts the model accepts: its fixed batch size, or chunks if symbolic.

    A fixed batch B > 1 that does not divide the sample count gets its last batch padded by
    wrapping around to the first samples: that cannot move a min or max, and only reweights
    a few samples in the squared-error sums.
    """
    n = next(iter(feeds.values())).shape[0]
    fixed = {input_dims(vi)[0] for vi in inputs} - {None}
    if len(fixed) > 1:
        raise UsageError(f"graph inputs must share one batch size; found {sorted(fixed)}")
    per_sample = sum(a[0].size for a in feeds.values())
    step = next(iter(fixed)) if fixed else max(1, _CHUNK_ELEMENTS // per_sample)
    for start in range(0, n, step):
        idx = np.arange(start, start + step) % n if fixed else np.arange(start, min(start + step, n))
        yield {name: a[idx] for name, a in feeds.items()}


def float_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """An onnxruntime CPU session with graph optimizations off (plain float Q/DQ arithmetic)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _tensor_batches(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tensors: list[str]):
    """Yield ``{name: value}`` for the named float tensors, one dict per calibration batch.

    Graph inputs come from the feeds; every other name is exposed as an extra graph output of
    a copy of ``model`` and fetched with onnxruntime.
    """
    graph_inputs = [vi for vi in model.graph.input if vi.name in feeds]
    inner = [t for t in tensors if t not in feeds]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in inner)
    session = float_session(probe) if inner else None
    for batch in _batches(graph_inputs, feeds):
        values = {t: batch[t] for t in tensors if t in feeds}
        if session is not None:
            values.update(zip(inner, session.run(inner, batch)))
        yield values


def collect_ranges(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                   tensors: list[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of each named float tensor of ``model`` over all calibration samples."""
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    for values in _tensor_batches(model, feeds, tensors):
        for name, value in values.items():
            lo[name] = min(lo[name], float(value.min()))
            hi[name] = max(hi[name], float(value.max()))
    for name in tensors:
        if not (math.isfinite(lo[name]) and math.isfinite(hi[name])):
            raise QuantizationError(f"tensor '{name}' must stay finite on the calibration data; "
                                    f"found range [{lo[name]}, {hi[name]}]")
    return {t: (lo[t], hi[t]) for t in tensors}


def activation_grid(lo: float, abits: int) -> tuple[bool, int, int]:
    """(signed, qmin, qmax) for an activation whose calibrated minimum is ``lo``:
    unsigned (one more bit of magnitude) when nothing negative was seen."""
    if lo < 0:
        return True, -(2 ** (abits - 1)), 2 ** (abits - 1) - 1
    return False, 0, 2 ** abits - 1


def activation_fracs(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                     ranges: dict[str, tuple[float, float]], abits: int,
                     extra: int = REFINE_STEPS) -> dict[str, int]:
    """The po2 exponent of each activation's scale.

    Starts from :func:`fit_frac` of the calibrated range (nothing saturates) and tries up to
    ``extra`` finer exponents; a second pass over the calibration data keeps the one with the
    smallest squared quantization error summed over all samples. At 8 bits the max fit nearly
    always wins; at 4 bits saturating a tail of rare large values often pays.
    """
    first = {}
    for name, (lo, hi) in ranges.items():
        _, qmin, qmax = activation_grid(lo, abits)
        first[name] = fit_frac(lo, hi, qmin, qmax)
    if not extra:
        return first
    sse = {name: np.zeros(extra + 1) for name in ranges}
    for values in _tensor_batches(model, feeds, list(ranges)):
        for name, value in values.items():
            _, qmin, qmax = activation_grid(ranges[name][0], abits)
            v = value.astype(np.float64).ravel()
            for j in range(extra + 1):
                step = 2.0 ** -(first[name] + j)
                sse[name][j] += np.sum((np.clip(np.round(v / step), qmin, qmax) * step - v) ** 2)
    # argmin keeps the first (least saturating) exponent on ties.
    return {name: first[name] + int(np.argmin(sse[name])) for name in ranges}


def fit_frac(lo: float, hi: float, qmin: float, qmax: float) -> int:
    """The largest ``frac`` such that ``[lo, hi]`` fits ``[qmin, qmax]`` at scale ``2**-frac``.

    "Fits" means ``round(x * 2**frac)`` saturates by less than half a step: ``hi * 2**frac <
    qmax + 0.5`` and ``lo * 2**frac > qmin - 0.5``. Allowing that last half step costs at most
    the error rounding already costs, and it can buy a whole extra bit (int8: a maximum of
    0.995 codes as 127 at frac 7; requiring ``hi * 2**frac <= 127`` would force frac 6). An
    all-zero range gets frac 0.
    """
    bounds = [(qmax + 0.5) / hi] if hi > 0 else []
    if lo < 0:
        bounds.append((qmin - 0.5) / lo)
    if not bounds:
        return 0
    limit = min(bounds)
    frac = math.floor(math.log2(limit))
    # log2 of a float can be off by an ulp right at a power of two: settle it exactly.
    while 2.0 ** frac >= limit:
        frac -= 1
    while 2.0 ** (frac + 1) < limit:
        frac += 1
    return frac
