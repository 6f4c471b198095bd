"""A detector exported WITH its ONNX NonMaxSuppression runs as it is: `compile` keeps the NMS
as a CPU tail in the build, `simulate` (and `--check`) run it after the program, and
`detect`/`run` draw the boxes it selects (head spec decoder ``nms``) — each compared with
onnxruntime running the whole model, index for index and box for box."""

import json

import numpy as np
import onnx
import pytest

from shiftflow.cli import main
from shiftflow.frontend.cpu_ops import make_session
from shiftflow.frontend.nms_tail import TAIL_FILE, load_tail
from shiftflow.ir.program import load_program
from shiftflow.runtime.heads import HeadSpecError, embed_heads, parse_heads
from shiftflow.runtime.images import to_input
from shiftflow.sim.run import make_feeds
from tests.cli_errors import one_line_exit_2
from tests.frontend.test_check_nms import CLASSES, HW, nms_detector

SIDE = 2 * HW  # the model input's height and width


def spec(fmt="yxyx", normalized=False, **extra):
    return parse_heads({"format": "shiftflow.heads.v1", "input": {"name": "input", "height": SIDE, "width": SIDE},
                        "classes": [f"c{k}" for k in range(CLASSES)], "decoder": "nms",
                        "box": {"format": fmt, "normalized": normalized}, **extra})


def whole_model_run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime on the whole model (its NMS included), the NMS's boxes and scores exposed."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    nms = next(n for n in m.graph.node if n.op_type == "NonMaxSuppression")
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in nms.input[:2])
    names = ["selected", nms.input[0], nms.input[1]]
    return dict(zip(["selected", "boxes", "scores"], make_session(m.SerializeToString()).run(names, {"input": x})))


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """(model, model path, build) of a 16×16 two-class detector ending in NMS, spec embedded."""
    root = tmp_path_factory.mktemp("modelnms")
    model = nms_detector(center_point_box=0, score_threshold=0.3)
    embed_heads(model, spec())
    path = root / "det.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "--target", "tiny", "-o", str(root / "build")]) == 0
    return model, path, str(root / "build")


def test_compile_keeps_the_nms_as_a_cpu_tail(detector, capsys):
    model, path, build = detector
    tail, body_outputs = load_tail(build)
    assert [t.name for t in tail.nms] == ["nms"] and tail.nms[0].max_output_boxes_per_class == 5
    assert len(body_outputs) == len(load_program(build).graph.outputs) == 2
    assert main(["compile", str(path), "--target", "tiny", "-o", build + "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nms_tail"] == ["nms"]


@pytest.mark.parametrize("seed", [0, 1])
def test_simulate_selects_what_onnxruntime_selects_on_the_whole_model(detector, capsys, seed):
    model, _, build = detector
    assert main(["simulate", build, "--json", "--seed", str(seed)]) == 0
    got = np.asarray(json.loads(capsys.readouterr().out)["nms_tail"]["selected"], np.int64).reshape(-1, 3)
    feeds = make_feeds(load_program(build), None, seed)  # the input simulate ran on
    expect = whole_model_run(model, feeds["input"])["selected"]
    assert len(expect) > 0
    np.testing.assert_array_equal(got, expect)


def test_simulate_check_covers_the_tail(detector, capsys):
    _, _, build = detector
    assert main(["simulate", build, "--check", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["bit_exact"] and rep["checks"]["L2_vs_L1"]["bit_exact"]
    rows = rep["checks"]["L1_vs_L0"]["outputs"]
    assert rows[-1]["name"] == "selected" and rows[-1]["nms"] and rows[-1]["bit_exact"]
    assert main(["simulate", build]) == 0
    assert "NonMaxSuppression 'nms' on the CPU:" in capsys.readouterr().out


def expected_rows(model, image: np.ndarray) -> list[list[float]]:
    """The boxes the model's own NMS selects on ``image`` (SIDE × SIDE: input pixels are image
    pixels), as detect writes them: x0, y0, x1, y1, score, class."""
    x, geo = to_input(image, spec().input)
    assert (geo.sx, geo.sy, geo.pad_x, geo.pad_y) == (1.0, 1.0, 0.0, 0.0)
    out = whole_model_run(model, x)
    rows = []
    for _, c, i in out["selected"]:
        y0, x0, y1, x1 = (float(v) for v in out["boxes"][0, i])
        rows.append([round(min(x0, x1), 2), round(min(y0, y1), 2), round(max(x0, x1), 2), round(max(y0, y1), 2),
                     round(float(out["scores"][0, c, i]), 4), int(c)])
    return rows


@pytest.mark.parametrize("source", ["model", "build"])
def test_detect_draws_the_boxes_the_model_selects(detector, tmp_path, capsys, source):
    from PIL import Image

    model, path, build = detector
    images = []
    for k in range(2):
        pixels = (np.random.default_rng(k).random((SIDE, SIDE, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{k}.png")
        images.append(pixels)
    target = str(path) if source == "model" else build
    assert main(["detect", target, str(tmp_path / "img0.png"), str(tmp_path / "img1.png"), "-o",
                 str(tmp_path / "out"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["images"]
    for entry, pixels in zip(got, images):
        want = expected_rows(model, pixels)
        # A box clipped to the image: detect clips to the original image, the model does not.
        want = [[min(max(v, 0.0), SIDE) for v in r[:4]] + r[4:] for r in want]
        assert len(want) > 0 and entry["boxes"] == want
        assert (tmp_path / "out" / f"{entry['file'].split('/')[-1]}").is_file()


def test_flags_that_have_no_meaning_are_one_line(detector, tmp_path, capsys):
    from PIL import Image

    _, _, build = detector
    Image.fromarray(np.zeros((SIDE, SIDE, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["detect", build, str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]
    one_line_exit_2(args + ["--nms", "psrr"], capsys, "its own NonMaxSuppression", "raw heads")
    one_line_exit_2(args + ["--iou", "0.3"], capsys, "--iou", "built in")


def test_a_spec_that_does_not_match_the_tail_is_one_line(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((SIDE, SIDE, 3), np.uint8)).save(tmp_path / "a.png")
    model = nms_detector(center_point_box=0)
    embed_heads(model, spec("cxcywh"))  # the NMS reads corners
    onnx.save(model, tmp_path / "m.onnx")
    one_line_exit_2(["detect", str(tmp_path / "m.onnx"), str(tmp_path / "a.png"), "-o", str(tmp_path / "o")],
                     capsys, "box.format 'cxcywh'", "center_point_box 0")


def test_spec_fields_of_decoder_nms():
    s = spec("cxcywh", True)
    assert (s.box_format, s.normalized, s.levels) == ("cxcywh", True, ())
    assert parse_heads(s.to_json()) == s
    with pytest.raises(HeadSpecError, match="levels: must be absent"):
        spec(levels=[])
    with pytest.raises(HeadSpecError, match="box.format: must be one of"):
        spec("xywh")
    with pytest.raises(HeadSpecError, match="box.normalized: must be bool"):
        spec(normalized=1)


def nms_only_model(cpb: int):
    """A model of one NonMaxSuppression over inputs ``b`` (1, 2, 4) and ``s`` (1, CLASSES, 2)
    (fed by Identity nodes: a tail may not read a model input), IoU 1, score threshold 0.5."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([10], np.int64), "m"), numpy_helper.from_array(np.array([1.0], np.float32), "i"),
             numpy_helper.from_array(np.array([0.5], np.float32), "t")]
    nodes = [helper.make_node("Identity", ["bi"], ["b"]), helper.make_node("Identity", ["si"], ["s"]),
             helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["sel"], name="n", center_point_box=cpb)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("bi", TensorProto.FLOAT, [1, 2, 4]),
                                       helper.make_tensor_value_info("si", TensorProto.FLOAT, [1, CLASSES, 2])],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, ["K", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def test_model_nms_rows_for_each_box_format():
    """ModelNms on hand-made outputs: corners in either order, centre-size, normalized."""
    from shiftflow.frontend.nms_tail import split_nms_tail
    from shiftflow.ir.graph import Graph
    from shiftflow.ir.types import TensorType
    from shiftflow.runtime.model_nms import ModelNms

    boxes = np.array([[[4, 2, 8, 6], [10, 12, 6, 14]]], np.float32)  # box 1: corners flipped in y
    scores = np.array([[[0.9, 0.8], [0.1, 0.2]]], np.float32)
    types = {"b": TensorType((1, 2, 4), "float"), "s": TensorType((1, CLASSES, 2), "float")}
    graph = Graph("g", [], ["b", "s"], [], types)
    for fmt, cpb, norm, want in [
            ("yxyx", 0, False, [[2, 4, 6, 8], [12, 6, 14, 10]]),
            ("xyxy", 0, False, [[4, 2, 8, 6], [6, 12, 10, 14]]),
            ("cxcywh", 1, False, [[0, -1, 8, 5], [7, 5, 13, 19]]),
            ("xyxy", 0, True, [[4 * SIDE, 2 * SIDE, 8 * SIDE, 6 * SIDE], [6 * SIDE, 12 * SIDE, 10 * SIDE, 14 * SIDE]])]:
        tail = split_nms_tail(nms_only_model(cpb))[1]  # IoU 1: nothing suppressed
        rows = ModelNms(spec(fmt, norm), tail, ["b", "s"], graph)({"b": boxes, "s": scores}, None)
        np.testing.assert_allclose(rows[:, :4], want)
        np.testing.assert_allclose(rows[:, 4:], [[0.9, 0], [0.8, 0]], rtol=1e-6)


def test_shapesdet_exported_with_its_nms_draws_what_the_head_spec_pipeline_draws(tmp_path_factory, tmp_path, capsys):
    """The trained shapesdet with its decode and NonMaxSuppression in the ONNX graph
    (zoo/shapesdet_nms.py: 29 host ops, the NMS a CPU tail) gives, on validation images,
    exactly the boxes of the plain model through the head-spec decoder and greedy NMS."""
    import os

    from PIL import Image

    from shiftflow.zoo.shapes_data import make_image
    from shiftflow.zoo import shapesdet_nms
    from tests.runtime.test_detect_cli import shapesdet_build

    plain = shapesdet_build(tmp_path_factory)
    zoo = os.path.join(os.path.dirname(plain), "zoo")
    (model,) = [f for f in os.listdir(zoo) if f.endswith(".qcdq.onnx")]
    assert shapesdet_nms.main([os.path.join(zoo, model), "-o", str(tmp_path / "with_nms.onnx")]) == 0
    assert shapesdet_nms.main([str(tmp_path / "with_nms.onnx"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "is not a shapesdet export" in capsys.readouterr().err
    assert main(["compile", str(tmp_path / "with_nms.onnx"), "--target", "zu3eg", "-o", str(tmp_path / "b")]) == 0
    for k in range(6):
        Image.fromarray(make_image("val", k, 128)[0]).save(tmp_path / f"v{k}.png")
    images = [str(tmp_path / f"v{k}.png") for k in range(6)]
    capsys.readouterr()
    runs = []
    for build, flags in ((str(tmp_path / "b"), []), (plain, ["--nms", "greedy", "--score", "0.3", "--iou", "0.5"])):
        assert main(["detect", build, *images, "-o", str(tmp_path / "out"), "--json", *flags]) == 0
        runs.append(json.loads(capsys.readouterr().out)["images"])
    assert sum(len(e["boxes"]) for e in runs[0]) >= 6
    for ours, theirs in zip(*runs):  # same boxes; the order within a class may differ on score ties
        assert sorted(ours["boxes"], key=lambda r: (r[5], -r[4], r[:4])) == \
            sorted(theirs["boxes"], key=lambda r: (r[5], -r[4], r[:4]))
