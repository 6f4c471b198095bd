"""The model zoo: every network × variant × form exports, runs, and is shift-quantized.

The checks read the zoo's files at their default sizes from the shared cache (``zoo_model``:
built once per machine and source version, and used by the frontend, backend and simulator
tests too) back with plain onnx/numpy — independent of the frontend, which consumes them.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from shiftflow.errors import UsageError
from shiftflow.zoo import (
    FORMS, NETWORKS, VARIANTS, build_zoo, count_macs, default_cache_dir, model_filename,
    zoo_model,
)
from shiftflow.zoo.spec import DEFAULT_HW
from shiftflow.zoo.__main__ import main

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
H, W = DEFAULT_HW["detector"]
OUTPUTS = {"mnist": [(1, 10)], "resnet": [(1, 10)], "mobilenet": [(1, 10)],
           "detector": [(1, 75, H // 16, W // 16), (1, 75, H // 32, W // 32)]}
ALL = [(n, v) for n in NETWORKS for v in VARIANTS]


@pytest.fixture(scope="module")
def zoo_dir():
    for name, variant in ALL:
        for form in FORMS:
            zoo_model(name, variant, form)
    return default_cache_dir()


def load(zoo_dir, name, variant, form) -> onnx.ModelProto:
    return onnx.load(zoo_dir / model_filename(name, variant, form))


def constants(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def producers(model) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def consumers(model, name) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def is_po2(a) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return bool(np.all(a > 0) and np.all(np.frexp(a)[0] == 0.5))


def integer_weights(model, form) -> dict[str, np.ndarray]:
    """The integer weight tensor of every Conv/Gemm, as the exported graph defines it.

    QCDQ: ``int8 initializer → Clip → DequantizeLinear`` (or, if Brevitas ever emits it,
    ``float initializer → QuantizeLinear → Clip → DequantizeLinear``). QONNX: ``float
    initializer → Quant(scale, zero point, bit width)``, rounded half-to-even and clipped.
    """
    consts, prod = constants(model), producers(model)
    weights = {}
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        q = prod[node.input[1]]
        if form == "qonnx":
            assert q.op_type == "Quant" and q.domain in QONNX_DOMAINS
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in q.attribute}
            bits = int(consts[q.input[3]])
            hi = 2 ** (bits - 1) - 1 if attrs["signed"] else 2**bits - 1
            lo = -hi - 1 + attrs["narrow"] if attrs["signed"] else 0
            ints = np.rint(consts[q.input[0]].astype(np.float64) / consts[q.input[1]])
            weights[node.name] = np.clip(ints, lo, hi).astype(np.int64)
            continue
        assert q.op_type == "DequantizeLinear", node.name
        src, lo, hi = q.input[0], None, None
        if src in prod and prod[src].op_type == "Clip":
            clip = prod[src]
            src, lo, hi = clip.input[0], consts[clip.input[1]], consts[clip.input[2]]
        if src in prod and prod[src].op_type == "QuantizeLinear":
            ql = prod[src]
            ints = np.rint(consts[ql.input[0]].astype(np.float64) / consts[ql.input[1]])
        else:
            ints = consts[src].astype(np.float64)
        weights[node.name] = np.clip(ints, lo, hi).astype(np.int64)
    return weights


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name,variant", ALL)
def test_export_is_well_formed(zoo_dir, name, variant, form):
    model = load(zoo_dir, name, variant, form)
    onnx.checker.check_model(model)
    assert model.ir_version == 10
    assert all(op.version <= 21 for op in model.opset_import if op.domain in ("", "ai.onnx"))
    shaped = {v.name for v in [*model.graph.value_info, *model.graph.output]}
    assert all(o in shaped for n in model.graph.node for o in n.output)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1 if name == "mnist" else 3, *DEFAULT_HW[name]]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    if form == "qonnx":
        assert "Quant" in ops and "QuantizeLinear" not in ops


@pytest.mark.parametrize("name,variant", ALL)
def test_qcdq_runs_in_onnxruntime(zoo_dir, name, variant):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    path = zoo_dir / model_filename(name, variant, "qcdq")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, size=inp.shape).astype(np.float32)
    outs = sess.run(None, {inp.name: x})
    assert [o.shape for o in outs] == OUTPUTS[name]
    assert all(np.isfinite(o).all() and np.any(o != 0) for o in outs)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name,variant", ALL)
def test_scales_are_po2_and_zero_points_zero(zoo_dir, name, variant, form):
    model = load(zoo_dir, name, variant, form)
    consts = constants(model)
    quant_ops = ("QuantizeLinear", "DequantizeLinear", "Quant")
    nodes = [n for n in model.graph.node if n.op_type in quant_ops]
    assert nodes
    for n in nodes:
        assert is_po2(consts[n.input[1]]), f"{n.name}: scale {consts[n.input[1]]}"
        assert np.all(consts[n.input[2]] == 0), f"{n.name}: zero point"


@pytest.mark.parametrize("name", NETWORKS)
def test_weights_fit_their_encoding(zoo_dir, name):
    for variant, form in ((v, f) for v in VARIANTS for f in FORMS):
        weights = integer_weights(load(zoo_dir, name, variant, form), form)
        values = np.unique(np.abs(np.concatenate([w.ravel() for w in weights.values()])))
        if variant == "w4a8":
            assert values.max() <= 7, (variant, form)
        elif variant == "pow2":
            assert set(values) <= {0, 1, 2, 4, 8, 16, 32, 64}, (form, values)
        else:
            assert values.max() <= 127 and len(values) > 16, (variant, form)


@pytest.mark.parametrize("name,variant", ALL)
def test_qcdq_and_qonnx_carry_the_same_integers(zoo_dir, name, variant):
    qcdq = integer_weights(load(zoo_dir, name, variant, "qcdq"), "qcdq")
    qonnx = integer_weights(load(zoo_dir, name, variant, "qonnx"), "qonnx")
    assert qcdq.keys() == qonnx.keys()
    assert all(np.array_equal(qcdq[k], qonnx[k]) for k in qcdq)


def test_adds_and_concats_are_requantized_and_pools_are_po2(zoo_dir):
    for name in NETWORKS:
        model = load(zoo_dir, name, "w8a8", "qcdq")
        for node in model.graph.node:
            if node.op_type in ("Add", "Concat"):
                (nxt,) = consumers(model, node.output[0])
                if nxt.op_type == "Relu":
                    (nxt,) = consumers(model, nxt.output[0])
                assert nxt.op_type == "QuantizeLinear", f"{name}: {node.name}"
            if node.op_type in ("AveragePool", "GlobalAveragePool"):
                kernel = next(a.ints for a in node.attribute if a.name == "kernel_shape")
                assert is_po2(np.prod(kernel)), f"{name}: {node.name} {kernel}"
        ops = [n.op_type for n in model.graph.node]
        if name == "resnet":
            assert "Add" in ops and "AveragePool" in ops
        if name == "detector":
            resize = next(n for n in model.graph.node if n.op_type == "Resize")
            assert any(a.s == b"nearest" for a in resize.attribute if a.name == "mode")
            assert "Concat" in ops


def test_build_is_deterministic(zoo_dir, tmp_path):
    again = build_zoo(tmp_path, names=["resnet"], variants=["pow2"], log=lambda line: None)
    assert len(again) == len(FORMS)
    for path in again:
        assert path.read_bytes() == (zoo_dir / path.name).read_bytes(), path.name


def test_zoo_model_reuses_the_cache(zoo_dir, monkeypatch):
    import shiftflow.zoo.export as export

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(export, "build_calibrated", fail)
    path = zoo_model("mnist", "w8a8", "qcdq", cache_dir=zoo_dir)
    assert path == zoo_dir / model_filename("mnist", "w8a8", "qcdq")


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHIFTFLOW_ZOO_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SHIFTFLOW_ZOO_DIR")
    assert default_cache_dir().parts[-3:] == (".cache", "shiftflow", "zoo")


@pytest.mark.parametrize("args,message", [
    (("alexnet", "w8a8", "qcdq"), "unknown network 'alexnet'; choose from: mnist, resnet"),
    (("mnist", "w2a2", "qcdq"), "unknown variant 'w2a2'; choose from: w8a8, w4a8, pow2"),
    (("mnist", "w8a8", "qdq"), "unknown form 'qdq'; choose from: qcdq, qonnx"),
])
def test_unknown_choices_are_usage_errors(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        zoo_model(*args, cache_dir=tmp_path)


@pytest.mark.parametrize("name,hw", [("resnet", (24, 24)), ("mobilenet", (48, 48)),
                                     ("detector", (500, 512)), ("mnist", (30, 28))])
def test_unsuitable_input_sizes_are_usage_errors(tmp_path, name, hw):
    with pytest.raises(UsageError, match=f"does not suit network '{name}'"):
        zoo_model(name, "w8a8", "qcdq", input_hw=hw, cache_dir=tmp_path)


def test_mac_counts():
    # mnist by hand: 28·28·8·9 + 14·14·16·72 + 784·32 + 32·10
    assert count_macs("mnist") == 307_648
    assert 2e9 <= count_macs("detector") <= 4e9


def test_command_line(tmp_path, capsys):
    assert main(["--only", "lenet"]) == 2
    assert "error: unknown network 'lenet'" in capsys.readouterr().err
    argv = ["--out", str(tmp_path), "--only", "mnist", "--variants", "w4a8",
            "--forms", "qonnx", "--input-hw", "16x16"]
    assert main(argv) == 0
    assert (tmp_path / model_filename("mnist", "w4a8", "qonnx", (16, 16))).exists()
    assert "MMAC" in capsys.readouterr().out
