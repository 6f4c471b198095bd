"""`shiftflow detect --accelerator rtl` on the trained 128×128 shapesdet compiled for tiny: the
RTL (Verilator) gives the same boxes as the simulator, image for image."""

import json
import os

import pytest
from PIL import Image

from shiftflow.cli import main
from shiftflow.zoo.shapes_data import make_image

from .test_detect_cli import shapesdet_build


@pytest.mark.slow
def test_rtl_boxes_equal_simulator_boxes(tmp_path_factory, tmp_path, capsys):
    zoo = os.path.join(os.path.dirname(shapesdet_build(tmp_path_factory)), "zoo")
    (model,) = [f for f in os.listdir(zoo) if f.endswith(".qcdq.onnx")]
    build = str(tmp_path / "tiny")
    assert main(["compile", os.path.join(zoo, model), "--target", "tiny", "-o", build]) == 0
    img, _ = make_image("val", 3, 128)  # two circles, both found by the model
    Image.fromarray(img).save(tmp_path / "val3.png")
    capsys.readouterr()
    boxes = {}
    for acc in ("sim", "rtl"):
        code = main(["detect", build, str(tmp_path / "val3.png"), "-o", str(tmp_path / acc),
                     "--accelerator", acc, "--json"])
        out, _ = capsys.readouterr()
        assert code == 0
        boxes[acc] = json.loads(out)["images"][0]["boxes"]
    assert boxes["sim"], "the simulator found no box: the comparison would prove nothing"
    assert boxes["rtl"] == boxes["sim"]
