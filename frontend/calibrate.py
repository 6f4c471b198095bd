"""The float side of ``shiftflow quantize``: the float model, calibration data, measurements.

:mod:`shiftflow.frontend.quantize` asks four things of this module:

* :func:`load_float_model` — load and check a float32 model (refusing one that is already
  quantized) and prepare it: opset 21 / IR 10, ``Constant`` nodes as initializers, Gemm
  weights as ``transB=1`` with alpha/beta folded in, BatchNormalization folded into the
  Conv/Gemm before it;
* :func:`load_calibration` / :func:`calibration_feeds` — turn ``--calib DATA.npz`` or
  ``--calib-random N`` into validated float32 arrays, one per graph input, samples on axis 0;
* :func:`collect_ranges` — run the prepared model under onnxruntime over those samples with
  the requested intermediate tensors exposed as outputs; each tensor's (min, max);
* :func:`activation_fracs` — each activation's po2 scale: the max fit (:func:`fit_frac`),
  refined by squared error over a second pass.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from shiftflow.errors import QuantizationError, UnsupportedError, UsageError

OPSET = 21
IR_VERSION = 10
#: Ops and domains that mark a model as already quantized (QDQ, QOperator, QONNX/Brevitas).
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                  "MatMulInteger"}
_QUANTIZED_DOMAINS = {"qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general"}

#: Input elements per onnxruntime call when the batch dimension is symbolic: every
#: intermediate tensor of the batch is fetched at once, so large inputs go one by one.
_CHUNK_ELEMENTS = 2 ** 18
#: The key numpy gives an array saved without a name (``np.savez(f, x)``).
_UNNAMED = "arr_0"
#: Finer activation exponents tried beyond the max fit (see activation_fracs).
REFINE_STEPS = 2


def load_float_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """A checked, prepared copy of a float32 model (a ``ModelProto`` or a file path).

    Raises ``UsageError`` for a missing or unreadable file, a graph input that is not
    float32, or a model already holding Q/DQ, QOperator or QONNX ``Quant`` nodes;
    ``UnsupportedError`` when the opset conversion to 21 fails. The result has shapes
    inferred and BatchNormalization folded where a Conv/Gemm feeds it alone.
    """
    model = _load(model)
    _check_float(model)
    return _prepare(model)


def _load(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise UsageError(f"model file '{path}' does not exist")
    try:
        return onnx.load(path)
    except Exception as exc:  # protobuf raises several unrelated types for a bad file
        raise UsageError(f"model file '{path}' is not an ONNX model: {exc}") from None


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real inputs (old exporters also list initializers there)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def _check_float(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if (node.op_type in _QUANTIZED_OPS or node.op_type.startswith("QLinear")
                or node.domain in _QUANTIZED_DOMAINS):
            raise UsageError(f"node '{node.name or node.output[0]}' is a {node.op_type}: the model "
                             "is already quantized; quantize takes a float model (import this "
                             "one directly)")
    for vi in graph_inputs(model.graph):
        elem = vi.type.tensor_type.elem_type
        if elem != TensorProto.FLOAT:
            raise UsageError(f"graph input '{vi.name}' must be float32 to quantize; found "
                             f"{TensorProto.DataType.Name(elem)}")


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float model at opset 21 / IR 10 with BN folded and Gemm weights normalized."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version != OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:  # the converter raises RuntimeError or its own C++ errors
            raise UnsupportedError(f"cannot convert the model from opset {version} to "
                                   f"{OPSET}: {exc}") from None
    model.ir_version = IR_VERSION
    graph = model.graph
    inputs = graph_inputs(graph)
    del graph.input[:]
    graph.input.extend(inputs)
    consts = _Consts(graph)
    _normalize_gemms(graph, consts)
    _fold_batchnorms(graph, consts)
    consts.store()
    return onnx.shape_inference.infer_shapes(model)


class _Consts:
    """The float model's initializers as numpy arrays (``Constant`` nodes moved in here)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        kept = []
        for node in graph.node:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if node.op_type == "Constant" and value is not None:
                self.arrays[node.output[0]] = numpy_helper.to_array(value)
            else:
                kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def used_once(self, name: str) -> bool:
        """Whether exactly one node input reads ``name`` (so it may be rewritten in place)."""
        return sum(list(n.input).count(name) for n in self.graph.node) == 1

    def store(self) -> None:
        del self.graph.initializer[:]
        self.graph.initializer.extend(numpy_helper.from_array(a, name)
                                      for name, a in self.arrays.items())
        drop_unused_initializers(self.graph)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node reads (subgraphs of If/Loop included) and no output names."""
    def reads(g: onnx.GraphProto):
        for node in g.node:
            yield from node.input
            for a in node.attribute:
                for sub in (*([a.g] if a.HasField("g") else []), *a.graphs):
                    yield from reads(sub)
    used = set(reads(graph)) | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def attr(node: onnx.NodeProto, name: str, default):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _normalize_gemms(graph: onnx.GraphProto, consts: _Consts) -> None:
    """Gemm with constant B: store B as [N, K] (``transB=1``) and fold alpha/beta into B/C,
    so that the weight's output channel is axis 0 like a Conv's."""
    for node in graph.node:
        if (node.op_type != "Gemm" or plain_gemm(node) or node.input[1] not in consts
                or not consts.used_once(node.input[1])):
            continue
        has_c = len(node.input) > 2 and node.input[2] != ""
        if has_c and (node.input[2] not in consts or not consts.used_once(node.input[2])):
            continue
        b = consts.arrays[node.input[1]].astype(np.float32)
        if not attr(node, "transB", 0):
            b = b.T
        alpha, beta = (np.float32(attr(node, a, 1.0)) for a in ("alpha", "beta"))
        consts.arrays[node.input[1]] = np.ascontiguousarray(b * alpha)
        if has_c:
            consts.arrays[node.input[2]] = consts.arrays[node.input[2]] * beta
        for name, value in (("transB", 1), ("alpha", 1.0), ("beta", 1.0)):
            _set_attr(node, name, value)


def _fold_batchnorms(graph: onnx.GraphProto, consts: _Consts) -> None:
    """Fold inference-mode BatchNormalization into the Conv (or normalized Gemm) feeding it.

    BN scales each output channel: ``W' = W * g / sqrt(v + eps)`` along axis 0 and
    ``b' = (b - mean) * g / sqrt(v + eps) + beta``. Only when the producer's output feeds
    nothing else and all parameters are constants; any other BN stays an ordinary op.
    """
    producers = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    folded = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        prod = producers.get(bn.input[0])
        params = bn.input[1:5]
        if (prod is None or not (prod.op_type == "Conv" or plain_gemm(prod))
                or bn.input[0] in outputs or not all(p in consts for p in params)
                or prod.input[1] not in consts or not consts.used_once(bn.input[0])
                or not consts.used_once(prod.input[1])):
            continue
        gamma, beta, mean, var = (consts.arrays[p].astype(np.float64) for p in params)
        k = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))
        w = consts.arrays[prod.input[1]]
        consts.arrays[prod.input[1]] = (w * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        bias_name = prod.input[2] if len(prod.input) > 2 and prod.input[2] else None
        bias = consts.arrays[bias_name].astype(np.float64) if bias_name else np.zeros(w.shape[0])
        if bias_name is None or not consts.used_once(bias_name):
            bias_name = f"{prod.input[1]}_bias_bnfold"
            while bias_name in consts:
                bias_name += "_"
        consts.arrays[bias_name] = ((bias - mean) * k + beta).astype(np.float32)
        del prod.input[2:]
        prod.input.append(bias_name)
        prod.output[0] = bn.output[0]
        folded.add(id(bn))
    kept = [n for n in graph.node if id(n) not in folded]
    del graph.node[:]
    graph.node.extend(kept)


def plain_gemm(node: onnx.NodeProto) -> bool:
    """A Gemm computing ``A @ B.T + C``: weights [N, K] with output channels on axis 0."""
    return (node.op_type == "Gemm" and not attr(node, "transA", 0) and attr(node, "transB", 0) == 1
            and attr(node, "alpha", 1.0) == 1 and attr(node, "beta", 1.0) == 1)


def load_calibration(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read calibration data from an ``.npz`` (or ``.npy``) file.

    Returns the arrays by name, samples along axis 0. Names are graph input names; a single
    unnamed array (``np.savez(f, x)`` or an ``.npy`` file) comes back under ``"arr_0"``, which
    :func:`calibration_feeds` maps to the model's only input. Raises ``UsageError`` if the file
    is missing or not numpy data.
    """
    path = os.fspath(path)
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


def _input_dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """Static dims of a graph input; ``None`` where the dim is symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def _random_feed(vi: onnx.ValueInfoProto, n: int, rng: np.random.Generator) -> np.ndarray:
    dims = _input_dims(vi)
    if not dims or any(d is None for d in dims[1:]):
        raise UsageError(f"--calib-random needs a static shape for input '{vi.name}' "
                         f"(besides the batch dim); found {dims}: pass --calib DATA.npz")
    return rng.standard_normal((n, *dims[1:])).astype(np.float32)


def _check_feed(vi: onnx.ValueInfoProto, array: np.ndarray) -> np.ndarray:
    dims = _input_dims(vi)
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


def _batches(inputs: list[onnx.ValueInfoProto], feeds: dict[str, np.ndarray]):
    """Yield feed dicts the model accepts: its fixed batch size, or chunks if symbolic.

    A fixed batch B > 1 that does not divide the sample count gets its last batch padded by
    wrapping around to the first samples: that cannot move a min or max, and only reweights
    a few samples in the squared-error sums.
    """
    n = next(iter(feeds.values())).shape[0]
    fixed = {_input_dims(vi)[0] for vi in inputs} - {None}
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

