"""shapesdet: the synthetic dataset, anchor targets against the runtime decoder, the zoo
export from committed weights (head spec, onnxruntime equal to torch), and accuracy."""

import json

import numpy as np
import onnx
import pytest

from shiftflow.errors import UsageError
from shiftflow.runtime.heads import load_heads, parse_heads, validate_against
from shiftflow.zoo.build import build_zoo
from shiftflow.zoo.shapes_data import CLASSES, make_image, make_split
from shiftflow.zoo.shapesdet import OUTPUT_NAMES, TRAIN_HW, anchor_boxes, head_spec
from shiftflow.zoo.shapesdet_eval import detections, mean_ap, onnxruntime_outputs, torch_outputs
from shiftflow.zoo.train_shapesdet import match

# Measured on val images 0..63 (w8a8 40.1, pow2 28.9; zoo/weights/shapesdet-train.json), minus ~5.
MAP_FLOOR = {"w8a8": 35.0, "pow2": 24.0}


def test_same_seed_same_bytes_and_splits_differ():
    a, ba = make_image("train", 7, 128)
    b, bb = make_image("train", 7, 128)
    assert a.tobytes() == b.tobytes() and ba.tobytes() == bb.tobytes()
    c, _ = make_image("val", 7, 128)
    d, _ = make_image("train", 8, 128)
    assert a.tobytes() != c.tobytes() and a.tobytes() != d.tobytes()


@pytest.mark.parametrize("size", [128, (96, 160), 512])
def test_boxes_are_inside_and_well_formed(size):
    images, boxes = make_split("val", 12 if size != 512 else 3, size)
    h, w = images.shape[1:3]
    assert images.dtype == np.uint8 and images.shape[3] == 3
    for b in boxes:
        assert b.dtype == np.float32 and b.shape[1] == 5
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
        assert np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        assert np.all(np.isin(b[:, 4], np.arange(len(CLASSES))))


def test_every_class_appears_at_many_scales():
    _, boxes = make_split("train", 80, 128)
    b = np.concatenate(boxes)
    assert set(b[:, 4].astype(int)) == set(range(len(CLASSES)))
    side = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert side.min() < 16 and side.max() > 50
    assert sum(len(x) for x in boxes) > 80  # several objects per image on average


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="split"):
        make_image("test", 0)
    with pytest.raises(UsageError, match="at least 32"):
        make_image("val", 0, 16)


def test_training_targets_decode_back_to_the_ground_truth():
    """Targets of ``match`` written as head maps decode (runtime/decode.py) to the boxes."""
    spec = parse_heads(head_spec(TRAIN_HW))
    anchors = anchor_boxes(TRAIN_HW)
    images, gts = make_split("val", 6, TRAIN_HW)
    dets = []
    for gt in gts:
        cls, box = match(anchors, gt)
        logits = np.full((len(anchors), len(CLASSES)), -10.0, np.float32)
        logits[cls >= 0, cls[cls >= 0]] = 10.0
        outputs, start = {}, 0
        for lv in spec.levels:
            (gh, gw), a = lv.grid, len(lv.anchors)
            n = gh * gw * a
            for name, v in ((lv.scores.output, logits), (lv.boxes.output, box)):
                k = v.shape[1]
                outputs[name] = v[start:start + n].reshape(gh, gw, a * k).transpose(2, 0, 1)[None]
            start += n
        dets.append(detections(spec, outputs))
    assert mean_ap(dets, gts)["voc_map"] == 100.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapesdet")
    paths = build_zoo(out, names=["shapesdet"], forms=["qcdq"], log=lambda line: None)
    return {p.name.split("-")[1]: p for p in paths}


def test_zoo_exports_both_variants_with_their_head_spec(exported):
    assert sorted(exported) == ["pow2", "w8a8"]
    for path in exported.values():
        model = onnx.load(path)
        meta = {p.key: p.value for p in model.metadata_props}
        beside = path.with_suffix(".heads.json")
        assert json.loads(meta["shiftflow.heads"]) == json.loads(beside.read_text())
        spec = load_heads(path)
        shapes = {o.name: tuple(d.dim_value for d in o.type.tensor_type.shape.dim)
                  for o in model.graph.output}
        assert list(shapes) == OUTPUT_NAMES
        validate_against(spec, shapes)
        assert spec.classes == CLASSES and [lv.stride for lv in spec.levels] == [8, 16, 32]


def test_unknown_variant_is_refused():
    with pytest.raises(UsageError, match="shapesdet"):
        build_zoo("/nonexistent", names=["shapesdet"], variants=["w4a8"], log=lambda line: None)


@pytest.mark.parametrize("variant", ["w8a8", "pow2"])
def test_detections_on_validation_images(exported, variant):
    """onnxruntime equals the Brevitas QAT forward exactly, and mAP@0.5 holds its floor."""
    from shiftflow.zoo.shapesdet_export import load_trained

    images, gts = make_split("val", 64, TRAIN_HW)
    l0 = onnxruntime_outputs(exported[variant], images)
    qat = torch_outputs(load_trained(variant), images[:4])
    for a, b in zip(qat, l0):
        assert all(np.array_equal(a[n], b[n]) for n in OUTPUT_NAMES)
    spec = load_heads(exported[variant])
    result = mean_ap([detections(spec, o) for o in l0], gts)
    assert result["voc_map"] >= MAP_FLOOR[variant], result
