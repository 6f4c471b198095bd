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



@pytest.mark.slow
def test_rtl_with_the_nms_core_gives_the_simulator_boxes(tmp_path_factory, tmp_path, capsys):
    """`detect --nms psrr --accelerator rtl` on shapesdet (64×64) compiled for tiny with
    `--nms psrr`: the NMS part runs on the RTL's NMS core, and the boxes equal
    `--accelerator sim`'s."""
    from tests.hw.test_nms_rtl import FRAMES, tiny_nms_build, val_image

    build = tiny_nms_build(tmp_path_factory)
    Image.fromarray(val_image(FRAMES[0])).save(tmp_path / "val.png")
    capsys.readouterr()
    boxes = {}
    for acc in ("sim", "rtl"):
        code = main(["detect", build, str(tmp_path / "val.png"), "--nms", "psrr", "-o", str(tmp_path / acc),
                     "--accelerator", acc, "--json"])
        out, _ = capsys.readouterr()
        assert code == 0
        boxes[acc] = json.loads(out)["images"][0]["boxes"]
    assert len(boxes["sim"]) >= 2, "too few boxes: the comparison would prove little"
    assert boxes["rtl"] == boxes["sim"]
