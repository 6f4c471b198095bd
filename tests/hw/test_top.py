"""Slow tier: whole programs on the RTL (``AcceleratorTop`` under Verilator, the in-design
DRAM model with the target's latency and bandwidth) against the simulator: outputs bit for
bit and, without stalls, every segment's cycles exactly. One simulator process serves all
programs of the module (``RtlAccelerator``)."""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from shiftflow.backend.compile import compile_model
from shiftflow.hw.tb.rtlsim import rtlsim
from shiftflow.hw.tb.rtl_accel import RtlAccelerator
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import Opcode
from shiftflow.zoo import zoo_model
from tests.backend.models import gemm_model, vec_model
from tests.modelgen import conv_layer_model
from tests.strategies import conv_layers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rtl():
    with RtlAccelerator() as acc:
        yield acc


@pytest.fixture(scope="module")
def fresh_rtl():
    """A new simulator process per program: on-chip state at power-on, like the simulator's
    fresh Machine (see test_onchip_state_of_a_previous_program_does_not_leak)."""
    with RtlAccelerator(fresh=True) as acc:
        yield acc


def assert_counted(report: dict) -> None:
    """Every segment's CYCLES register equals the bench's own count of clock edges."""
    assert report["segments"], "no accelerator segment ran"
    assert all(s["rtl_cycles"] == s["bench_cycles"] for s in report["segments"]), report["segments"]


def assert_exact(report: dict) -> None:
    """Outputs bit-exact (max |diff| 0) and every segment's RTL cycles == the model's (and the
    bench's clock)."""
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0, report["outputs"]
    assert_counted(report)
    mismatched = [s for s in report["segments"] if s["rtl_cycles"] != s["sim_cycles"]]
    assert not mismatched, mismatched
    assert report["cycles_equal"] and report["rtl_cycles"] == report["sim_cycles"]


ZOO = [("mnist", None), ("mobilenet", (16, 16)), ("resnet", (16, 16))]


@pytest.mark.parametrize("name,hw", ZOO, ids=[n for n, _ in ZOO])
def test_zoo_network_exact(fresh_rtl, name, hw):
    """Every segment's RTL cycles equal the cycle model's and the outputs are bit-exact (they
    differed while a STORE started in a CONV's done cycle read the output buffer's old words)."""
    program = compile_model(zoo_model(name, "w8a8", "qcdq", input_hw=hw), "tiny")
    assert_exact(rtlsim(program, seed=1, accelerator=fresh_rtl))


def features(program) -> set[str]:
    """What a single-layer program exercises (for the coverage assertion)."""
    out = set()
    for ins in decode_program(program.instructions):
        if ins.opcode != Opcode.CONV:
            continue
        f = ins.f
        out.add("pixel" if f["dataflow"] else "channel")
        out |= {name for name, on in (("depthwise", f["depthwise"]), ("stride2", f["win.sh"] == 2),
                                      ("pow2", f["pow2"]), ("pool", f["post.pool"] > 1)) if on}
        rows = f["tile.rows"]
        if rows < program.graph.types[program.graph.outputs[0]].shape[2] and rows > 0:
            out.add("strips")
    return out


def each_random_layer(tmp_path_factory, check) -> None:
    """Compile the 30 generated single-layer programs (the same ones on every call: a fixed
    seed and no example database) and ``check(program, layer)`` each."""
    @seed(20240611)
    @settings(max_examples=30, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow])
    @given(layer=conv_layers(max_hw=12, max_ch=6), dataflow=st.sampled_from(["channel", "pixel"]))
    def each(layer, dataflow):
        path = tmp_path_factory.mktemp("layer") / "m.onnx"
        onnx.save(conv_layer_model(**layer), path)
        check(compile_model(path, "tiny", dataflow=dataflow), layer)

    each()


def test_random_conv_layers_exact(fresh_rtl, tmp_path_factory):
    each_random_layer(tmp_path_factory,
                      lambda program, layer: assert_exact(rtlsim(program, seed=layer["seed"], accelerator=fresh_rtl)))


POOLED = [vec_model("maxpool", k=2, s=2, p=0, hw=(8, 10)), vec_model("maxpool", k=3, s=3, p=0, hw=(9, 15)),
          conv_layer_model(cin=16, cout=8, hw=(40, 40), act="relu"),  # row strips on tiny
          vec_model("add"), vec_model("avgpool"), vec_model("maxpool")]


def pooled_program(tmp_path, k: int):
    onnx.save(POOLED[k], tmp_path / f"m{k}.onnx")
    return compile_model(tmp_path / f"m{k}.onnx", "tiny", dataflow="pixel" if k < 3 else "auto")


@pytest.mark.parametrize("k", range(len(POOLED)))
def test_pooling_and_vector_layers_exact(fresh_rtl, tmp_path, k):
    """Fused pooling (the pool windows in the CONV's retire), a layer in row strips, the VEC
    ops."""
    assert_exact(rtlsim(pooled_program(tmp_path, k), seed=k, accelerator=fresh_rtl))


def test_random_layers_covered(tmp_path_factory, tmp_path):
    """The generated layers, with the first three pooled ones, cover every feature the RTL must
    get right (compiled again here, so the check does not depend on which tests ran before)."""
    seen, count = set(), [0]

    def note(program, layer):
        seen.update(features(program))
        count[0] += 1

    each_random_layer(tmp_path_factory, note)
    for k in range(3):
        seen |= features(pooled_program(tmp_path, k))
    assert count[0] >= 30
    want = {"channel", "pixel", "depthwise", "stride2", "pow2", "pool", "strips"}
    assert want <= seen, f"not exercised: {sorted(want - seen)}"


SPLIT = [("fc", "channel"), ("deep", "channel"), ("deep", "pixel")]


def split_program(tmp_path, which: str, dataflow: str):
    """A layer whose reduction is split over input-channel chunks on tiny (docs/isa.md "Partial
    sums"): a 4096 -> 6 fully connected layer, or a 3x3 conv over 240 channels (9 KiB of
    weights a block; the bank holds 8)."""
    model = gemm_model(4096, 6) if which == "fc" else conv_layer_model(cin=240, cout=5, hw=(6, 10), seed=7)
    onnx.save(model, tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", "tiny", dataflow=dataflow)
    assert any(i.opcode == Opcode.CONV and i.f["psum_out"] for i in decode_program(program.instructions))
    return program


@pytest.mark.parametrize("which,dataflow", SPLIT)
def test_split_reduction_exact(fresh_rtl, tmp_path, which, dataflow):
    assert_exact(rtlsim(split_program(tmp_path, which, dataflow), seed=2, accelerator=fresh_rtl))


def test_split_reduction_with_stalls_stays_bit_exact(fresh_rtl, tmp_path):
    report = rtlsim(split_program(tmp_path, "deep", "pixel"), seed=6, stalls=True, accelerator=fresh_rtl)
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0
    assert report["rtl_cycles"] > report["sim_cycles"]
    assert_counted(report)


#: Heads without an output quantizer: their exact sums stored as byte planes (docs/isa.md
#: "Wide outputs"), 4 bytes channel-parallel, 2 bytes pixel-parallel.
WIDE_HEADS = [(dict(cin=6, cout=5, hw=(7, 9), act="none"), "channel", 2),
              (dict(cin=4, cout=6, hw=(6, 10), k=1, pad=0, wbits=4, in_bits=6, bias=False), "pixel", 1)]


def wide_program(tmp_path, k: int):
    kw, dataflow, wide = WIDE_HEADS[k]
    onnx.save(conv_layer_model(**kw, out_quant=False), tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", "tiny", dataflow=dataflow)
    assert {i.f["wide"] for i in decode_program(program.instructions) if i.opcode == Opcode.CONV} == {wide}
    return program


@pytest.mark.parametrize("k", range(len(WIDE_HEADS)))
def test_wide_outputs_exact(fresh_rtl, tmp_path, k):
    assert_exact(rtlsim(wide_program(tmp_path, k), seed=k, accelerator=fresh_rtl))


def test_wide_outputs_with_stalls_stay_bit_exact(fresh_rtl, tmp_path):
    report = rtlsim(wide_program(tmp_path, 0), seed=8, stalls=True, accelerator=fresh_rtl)
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0
    assert report["rtl_cycles"] > report["sim_cycles"]
    assert_counted(report)


@pytest.mark.parametrize("seed", [3, 4])
def test_random_stalls_stay_bit_exact(fresh_rtl, tmp_path, seed):
    """Random AXI stalls on both ports: the run completes, outputs stay bit-exact, and the
    stalls did cost cycles (so they happened)."""
    onnx.save(conv_layer_model(cin=6, cout=5, hw=(9, 11), stride=1), tmp_path / "m.onnx")
    program = compile_model(tmp_path / "m.onnx", "tiny", dataflow="pixel" if seed % 2 else "channel")
    report = rtlsim(program, seed=seed, stalls=True, accelerator=fresh_rtl)
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0
    assert report["rtl_cycles"] > report["sim_cycles"]
    assert_counted(report)


def test_mnist_with_stalls_completes(fresh_rtl):
    """Both segments complete under stalls, each slower than the model, outputs bit-exact."""
    program = compile_model(zoo_model("mnist", "w8a8", "qcdq"), "tiny")
    report = rtlsim(program, seed=5, stalls=True, accelerator=fresh_rtl)
    assert report["completed"], report["error"]
    assert report["bit_exact"] and report["max_abs_diff"] == 0
    assert len(report["segments"]) == 2
    assert np.all([s["rtl_cycles"] > s["sim_cycles"] for s in report["segments"]])


def test_onchip_state_of_a_previous_program_does_not_leak(rtl, tmp_path):
    """Programs in one simulator process: the 1x1 layer's STORE starts in its CONV's done
    cycle, in which the CONV writes its last word, and reads that word (from a non-transparent
    port, ``ir.cost.DMA_START`` cycles later); it once stored what the previous program had
    left there."""
    def program(**kw):
        onnx.save(conv_layer_model(**kw), tmp_path / "m.onnx")
        return compile_model(tmp_path / "m.onnx", "tiny", dataflow="channel")

    small = program(cin=1, cout=1, hw=(1, 1), k=1, pad=0, wbits=2, abits=2, in_bits=2, act="none", bias=False)
    big = program(cin=6, cout=5, hw=(6, 7), act="leaky")
    for p in (small, big, small):
        assert_exact(rtlsim(p, seed=0, accelerator=rtl))
