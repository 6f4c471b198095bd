"""Image input of the detection pipeline: every format a user may hand `shiftflow detect`
(grayscale, 16-bit, palette, RGBA, EXIF-rotated, animated, corrupt, truncated, float) through
the CLI on the 128×128 shapesdet, and `read_rgb`'s conversions pixel by pixel."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from shiftflow.cli import main
from shiftflow.runtime.heads import InputSpec
from shiftflow.runtime.images import ImageError, draw_boxes, read_rgb, to_input
from shiftflow.zoo.shapes_data import make_image

from .test_detect_cli import shapesdet_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return shapesdet_build(tmp_path_factory)


@pytest.fixture(scope="module")
def rgb():
    return make_image("val", 3, 128)[0]


def save(path, img: Image.Image, **kw):
    img.save(path, **kw)
    return str(path)


def test_every_format_through_the_cli(build, rgb, tmp_path, capsys):
    """Convertible images are converted, stated in one note each, and get a PNG; unreadable
    ones get one error line each and no PNG; the exit code is 2; nothing else is lost."""
    d = tmp_path / "in"
    d.mkdir()
    im = Image.fromarray(rgb)
    png = save(d / "a_rgb.png", im)
    save(d / "b_grey.png", im.convert("L"))
    save(d / "c_grey16.png", Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257))
    save(d / "d_palette.gif", im.convert("P"))
    save(d / "e_rgba.png", Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90° clockwise
    save(d / "f_exif.jpg", im.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes(), quality=95)
    save(d / "g_anim.gif", im, save_all=True, append_images=[im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    with open(png, "rb") as f:
        whole = f.read()
    (d / "h_truncated.png").write_bytes(whole[: len(whole) // 2])
    jpeg = io.BytesIO()
    im.save(jpeg, "JPEG")
    (d / "i_truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (d / "j_corrupt.png").write_bytes(b"GIF89a garbage")
    save(d / "k_float.tif", Image.fromarray(np.asarray(im.convert("L"), np.float32)))
    (d / "notes.txt").write_text("not an image, ignored: no image extension")

    code = main(["detect", build, str(d), "-o", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    notes = {ln.split(":")[1].strip(): ln for ln in lines if ln.startswith("note: ")}
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(lines) == len(notes) + len(errors)
    assert set(notes) == {"b_grey.png", "c_grey16.png", "d_palette.gif", "e_rgba.png", "f_exif.jpg", "g_anim.gif"}
    assert "alpha composited over white" in notes["e_rgba.png"]
    assert "16-bit grey" in notes["c_grey16.png"] and "EXIF orientation 6" in notes["f_exif.jpg"]
    assert "first of 2 frames" in notes["g_anim.gif"]
    assert [e.split("'")[1].rsplit("/", 1)[1] for e in errors] == [
        "h_truncated.png", "i_truncated.jpg", "j_corrupt.png", "k_float.tif"]
    assert "truncated" in errors[0] and "mode F" in errors[3]
    doc = json.loads(out)
    boxes = {os.path.basename(e["file"]): e["boxes"] for e in doc["images"]}
    assert sorted(boxes) == ["a_rgb.png", "b_grey.png", "c_grey16.png", "d_palette.gif", "e_rgba.png",
                             "f_exif.jpg", "g_anim.gif"]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["detections.jsonl"] + [os.path.splitext(f)[0] + ".png" for f in boxes])
    # Opaque RGBA and the first frame of the GIF are the RGB image: the same boxes.
    assert boxes["e_rgba.png"] == boxes["a_rgb.png"] and boxes["a_rgb.png"]
    # The EXIF-rotated JPEG is found upright: its boxes land where the RGB image's are.
    for b in boxes["a_rgb.png"]:
        assert any(max(abs(np.subtract(b[:4], c[:4]))) < 8 for c in boxes["f_exif.jpg"]), boxes["f_exif.jpg"]


def test_read_rgb_conversions_exact(rgb, tmp_path):
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    p, note = read_rgb(save(tmp_path / "g.png", Image.fromarray(grey)))
    assert (p == grey[:, :, None]).all() and note == "g.png: L to RGB"
    p, _ = read_rgb(save(tmp_path / "g16.png", Image.fromarray(grey.astype(np.uint16) * 257)))
    assert (p == grey[:, :, None]).all()  # v·257 / 257 is v exactly
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 64:] = 255
    p, _ = read_rgb(save(tmp_path / "a.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))
    assert (p[:, 64:] == rgb[:, 64:]).all() and (p[:, :64] == 255).all()  # transparent → white
    p, note = read_rgb(save(tmp_path / "rgb.png", Image.fromarray(rgb)))
    assert (p == rgb).all() and note is None
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="cannot read image"):
        read_rgb(str(tmp_path / "empty.png"))


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_wrong_size_maps_back_to_the_image(resize):
    """A 300×90 image in a 128×128 input: letterbox scales by 128/300 and pads top and bottom;
    stretch scales each axis. Either way a box maps back to the original pixels."""
    spec = InputSpec("x", 128, 128, resize=resize)
    x, geo = to_input(np.full((90, 300, 3), 200, np.uint8), spec)
    assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
    if resize == "letterbox":
        # (sx, sy are the rounded resize 128/300 and 38/90: equal to 2 %)
        assert geo.sx == pytest.approx(128 / 300) and geo.sy == pytest.approx(128 / 300, rel=0.02)
        assert geo.pad_x == 0 and geo.pad_y == 45
        assert x[0, 0, 0, 64] == 0 and x[0, 0, 64, 64] == pytest.approx(200 / 255)  # pad, then image
    box = np.array([[geo.pad_x + 30 * geo.sx, geo.pad_y + 10 * geo.sy, geo.pad_x + 60 * geo.sx,
                     geo.pad_y + 50 * geo.sy]])
    np.testing.assert_allclose(geo.to_image(box), [[30, 10, 60, 50]], atol=1e-9)


def test_draw_boxes_one_rectangle_per_box(rgb, tmp_path):
    rows = np.array([[10, 20, 50, 60, 0.9, 0], [10, 20, 50, 60, 0.5, 3], [70, 70, 127, 127, 0.4, 1]])
    draw_boxes(rgb, rows, ("circle", "square", "triangle", "star", "cross"), str(tmp_path / "o.png"))
    with Image.open(tmp_path / "o.png") as im:
        out = np.asarray(im)
    assert out.shape == rgb.shape
    assert (out[40, 10] != rgb[40, 10]).any() and (out[100, 127] != rgb[100, 127]).any()  # left, right edges
    assert (out[100, 100] == rgb[100, 100]).all()  # inside a box: untouched


@pytest.mark.parametrize("shape", [(128, 128), (90, 300), (77, 33)])
def test_to_input_equals_the_whole_canvas_formula(shape):
    """Bit for bit the documented formula over a whole (H, W, 3) float32 canvas."""
    spec = InputSpec("x", 128, 96, pad_value=114.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixels = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    x, geo = to_input(pixels, spec)
    nw, nh, px, py = round(shape[1] * geo.sx), round(shape[0] * geo.sy), int(geo.pad_x), int(geo.pad_y)
    canvas = np.full((128, 96, 3), spec.pad_value, np.float32)
    canvas[py:py + nh, px:px + nw] = np.asarray(Image.fromarray(pixels).resize((nw, nh), Image.BILINEAR))
    want = (canvas * np.float32(spec.scale) - np.float32(spec.mean)) / np.float32(spec.std)
    assert np.array_equal(x[0], want.transpose(2, 0, 1))
