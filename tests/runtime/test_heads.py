"""Head specs: parse, round-trip, find beside a model or in its metadata, check shapes."""

import json

import onnx
import pytest
from onnx import TensorProto, helper

from shiftflow.errors import UsageError
from shiftflow.runtime.heads import HeadSpecError, embed_heads, load_heads, parse_heads, validate_against


def blazeface_doc():
    """BlazeFace's layout (docs/heads.md): two rows levels, linear sizes in pixels."""
    return {"format": "shiftflow.heads.v1",
            "input": {"name": "input", "height": 128, "width": 128, "scale": 1 / 127.5,
                      "mean": [1.0, 1.0, 1.0], "resize": "stretch"},
            "classes": ["face"], "decoder": "ssd",
            "box": {"variances": [1 / 128] * 4, "size": "linear"},
            "levels": [{"stride": 8, "grid": [16, 16], "anchors": [[128, 128]] * 2,
                        "scores": {"output": "scores", "layout": "rows", "offset": 0},
                        "boxes": {"output": "regressors", "layout": "rows", "offset": 0}},
                       {"stride": 16, "grid": [8, 8], "anchors": [[128, 128]] * 6,
                        "scores": {"output": "scores", "layout": "rows", "offset": 512},
                        "boxes": {"output": "regressors", "layout": "rows", "offset": 512}}]}


BLAZE_SHAPES = {"scores": (1, 896, 1), "regressors": (1, 896, 16)}


def test_parse_round_trips_and_counts_boxes():
    spec = parse_heads(blazeface_doc())
    assert spec.num_boxes == 896 and spec.num_classes == 1
    assert parse_heads(spec.to_json()) == spec
    assert spec.input.std == (1.0, 1.0, 1.0) and spec.input.channels == 3
    validate_against(spec, BLAZE_SHAPES)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("decoder"), "decoder: is missing"),
    (lambda d: d.update(format="v0"), "format"),
    (lambda d: d.update(decoder="fcos"), "decoder: must be one of"),
    (lambda d: d["levels"][1].update(grid=[8]), "levels[1].grid"),
    (lambda d: d["levels"][0].update(anchors=[[128, -1]]), "levels[0].anchors[0]"),
    (lambda d: d["levels"][0]["scores"].pop("offset"), "levels[0].scores.offset: is missing"),
    (lambda d: d["box"].update(size="log"), "box.size"),
    (lambda d: d["input"].update(mean=[0.5]), "input.mean"),
    (lambda d: d.update(classes=[]), "classes"),
])
def test_a_bad_field_is_one_line_naming_it(edit, field):
    doc = blazeface_doc()
    edit(doc)
    with pytest.raises(HeadSpecError, match=r"^head spec " + field.replace("[", r"\[").replace("]", r"\]")) as e:
        parse_heads(doc)
    assert "\n" not in str(e.value) and isinstance(e.value, UsageError)


@pytest.mark.parametrize("shapes, field", [
    ({"regressors": (1, 896, 16)}, "levels[0].scores.output: names 'scores'"),
    ({"scores": (1, 896, 2), "regressors": (1, 896, 16)}, "levels[0].scores: output 'scores' must have shape"),
    ({"scores": (1, 800, 1), "regressors": (1, 896, 16)}, "levels[1].scores"),
    ({"scores": (1, 896, 1), "regressors": (1, 896, 3)}, "levels[0].boxes"),
])
def test_validate_names_the_mismatching_field(shapes, field):
    with pytest.raises(HeadSpecError, match=field.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        validate_against(parse_heads(blazeface_doc()), shapes)


def test_overlapping_rows_are_refused():
    doc = blazeface_doc()
    doc["levels"][1]["scores"]["offset"] = 500
    with pytest.raises(HeadSpecError, match=r"levels\[1\].scores.offset: rows 500..884"):
        validate_against(parse_heads(doc), {"scores": (1, 896, 1), "regressors": (1, 896, 16)})


def test_grid_levels_read_one_head():
    doc = {"format": "shiftflow.heads.v1", "input": {"name": "x", "height": 64, "width": 64},
           "classes": ["a", "b"], "decoder": "grid",
           "levels": [{"stride": 16, "grid": [4, 4], "anchors": [[20, 20], [40, 30]],
                       "head": {"output": "head_s16"}}]}
    spec = parse_heads(doc)
    validate_against(spec, {"head_s16": (1, 14, 4, 4)})
    with pytest.raises(HeadSpecError, match=r"levels\[0\].head: .*\(1, 2\*7, 4, 4\)"):
        validate_against(spec, {"head_s16": (1, 12, 4, 4)})
    del doc["levels"][0]["head"]
    with pytest.raises(HeadSpecError, match=r"levels\[0\].head: is missing"):
        parse_heads(doc)


def _model():
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["scores"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 896, 1])],
                          [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 896, 1])])
    return helper.make_model(g)


def test_load_from_metadata_beside_the_model_and_from_a_build(tmp_path):
    spec = parse_heads(blazeface_doc())
    m = _model()
    embed_heads(m, spec)
    embed_heads(m, spec)  # replaces, does not duplicate
    assert [p.key for p in m.metadata_props] == ["shiftflow.heads"]
    onnx.save(m, tmp_path / "meta.onnx")
    assert load_heads(tmp_path / "meta.onnx") == spec
    onnx.save(_model(), tmp_path / "side.onnx")
    (tmp_path / "side.heads.json").write_text(spec.to_json())
    assert load_heads(tmp_path / "side.onnx") == spec
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "heads.json").write_text(json.dumps(blazeface_doc()))
    assert load_heads(tmp_path / "build") == spec


def test_missing_or_broken_specs_are_one_line(tmp_path):
    onnx.save(_model(), tmp_path / "bare.onnx")
    with pytest.raises(HeadSpecError, match=r"no head spec for .*bare.onnx.*bare.heads.json"):
        load_heads(tmp_path / "bare.onnx")
    (tmp_path / "bare.heads.json").write_text("{not json")
    with pytest.raises(HeadSpecError, match=r"bare.heads.json: head spec is not valid JSON"):
        load_heads(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(HeadSpecError, match="cannot read"):
        load_heads(tmp_path / "junk.onnx")
