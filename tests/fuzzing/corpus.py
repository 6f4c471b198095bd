"""The seeds the fuzzer mutates: small quantized ONNX models and compiled build directories.

Seeds are built once, in the parent process, before the workers fork; a case picks one with
its own random generator, so what a case runs depends only on the run's seed and the case's
index. ``Corpus.models`` are serialized ModelProtos (QDQ models from ``tests/modelgen.py`` and
``tests/backend/models.py``, the bundled digits CNN after ``shiftflow quantize``, and — for the
benchmark — small zoo models in both export forms). ``Corpus.builds`` are the files of
``shiftflow compile`` for a few of them on ``tiny``, as bytes plus the parsed manifest.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from shiftflow.backend.compile import compile_graph
from shiftflow.frontend.importer import import_onnx
from shiftflow.frontend.quantize import quantize_model
from shiftflow.ir.config import TINY
from shiftflow.ir.program import save_program

from ..backend.models import gemm_model, two_branch_concat_model, vec_model
from ..modelgen import conv_layer_model

DIGITS = Path(__file__).resolve().parents[2] / "data" / "digits_cnn.onnx"
# Zoo models at small input sizes (network, variant, form, input size): the benchmark's extra
# seeds. Building one that is not cached takes torch and some seconds; the CI test skips them.
ZOO_SEEDS = (("mnist", "w8a8", "qcdq", None), ("mnist", "pow2", "qonnx", None), ("resnet", "w4a8", "qcdq", (8, 8)),
             ("mobilenet", "pow2", "qcdq", (16, 16)))
# Seeds that are also compiled into the program corpus (small: a case simulates its build).
# (seed, dataflow): pow2 codes reach the machine on pixel-parallel CONVs only.
BUILD_SEEDS = (("conv", "channel"), ("conv_pow2_pixel", "pixel"), ("depthwise", "auto"), ("add", "auto"),
               ("maxpool", "auto"), ("resize", "auto"), ("concat", "auto"), ("gemm", "auto"), ("digits", "auto"))


def _small_models() -> dict[str, onnx.ModelProto]:
    return {
        "conv": conv_layer_model(cin=3, cout=5, hw=(6, 5)),
        "conv_pow2_pixel": conv_layer_model(cin=4, cout=8, hw=(7, 6), pow2=True, act="leaky"),
        "conv_stride2": conv_layer_model(cin=3, cout=6, hw=(8, 8), stride=2, per_channel=True, wbits=4, abits=6),
        "depthwise": conv_layer_model(cin=4, cout=4, hw=(6, 6), groups=4),
        "add": vec_model("add", c=4, hw=(5, 6)),
        "maxpool": vec_model("maxpool", c=4, hw=(6, 7)),
        "avgpool": vec_model("avgpool", c=4, hw=(6, 6)),
        "resize": vec_model("resize", c=4, hw=(4, 5)),
        "concat": vec_model("concat", c=4, hw=(5, 5)),
        "requant": vec_model("requant", c=4, hw=(5, 5)),
        "two_branch": two_branch_concat_model(6),
        "gemm": gemm_model(24, 10),
        "digits": quantize_model(str(DIGITS), calib_random=4, seed=0),
    }


@dataclass
class Build:
    """A build directory in memory: ``files`` by name (program.bin, weights.bin, graph.ir)."""

    name: str
    files: dict[str, bytes]
    manifest: dict


@dataclass
class Corpus:
    models: dict[str, bytes] = field(default_factory=dict)
    builds: list[Build] = field(default_factory=list)

    def describe(self) -> dict:
        return {"models": {k: len(v) for k, v in self.models.items()},
                "builds": {b.name: b.manifest["n_instructions"] for b in self.builds}}


def build_corpus(zoo: bool = True) -> Corpus:
    """Every seed (``zoo``: also ``ZOO_SEEDS``, built into the zoo cache if absent)."""
    corpus = Corpus()
    for name, model in _small_models().items():
        corpus.models[name] = model.SerializeToString()
    if zoo:
        from shiftflow.zoo import zoo_model

        for net, variant, form, hw in ZOO_SEEDS:
            corpus.models[f"{net}-{variant}-{form}"] = zoo_model(net, variant, form, input_hw=hw).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for name, dataflow in BUILD_SEEDS:
            path = Path(tmp) / f"{name}.onnx"
            path.write_bytes(corpus.models[name])
            build = Path(tmp) / name
            save_program(compile_graph(import_onnx(path), TINY, dataflow), build)
            files = {f: (build / f).read_bytes() for f in ("program.bin", "weights.bin", "graph.ir")}
            corpus.builds.append(Build(name, files, json.loads((build / "manifest.json").read_text())))
    return corpus
