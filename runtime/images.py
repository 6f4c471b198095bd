"""Image input and output of the detection pipeline (Pillow).

``read_rgb`` opens an image file as RGB uint8, refusing corrupt and truncated files with one
line. Images that are not RGB are converted, and the conversion is reported in the returned
note: grayscale (``L``, ``LA``, ``I;16``...) is replicated to three channels, palette
(``P``) is expanded, ``RGBA``/``LA`` drop their alpha (no compositing: a transparent pixel
keeps its colour), ``CMYK``/``YCbCr`` go through Pillow's conversion. ``to_input`` resizes to
the head spec's input (``letterbox`` or ``stretch``) and normalises to float32 NCHW, and
returns the ``Geometry`` that ``Geometry.to_image`` uses to map boxes back to the original
image's pixels. ``draw_boxes`` draws detections and their labels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from .heads import InputSpec

# Extensions a directory source picks up (other files in it are ignored).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(UsageError):
    """An image file that cannot be used: unreadable, corrupt, truncated, or empty."""


@dataclass(frozen=True)
class Geometry:
    """How an original ``width`` × ``height`` image sits in the model input: input pixel
    ``x = x_orig * sx + pad_x`` (likewise y)."""
    width: int
    height: int
    sx: float
    sy: float
    pad_x: float
    pad_y: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """(K, 4) xyxy boxes in model-input pixels → original-image pixels, clipped to it."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, 0::2] = np.clip((b[:, 0::2] - self.pad_x) / self.sx, 0, self.width)
        b[:, 1::2] = np.clip((b[:, 1::2] - self.pad_y) / self.sy, 0, self.height)
        return b


def read_rgb(path: str) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 pixels of the image at ``path`` and a note naming the conversion made
    (None for an RGB file). Raises ``ImageError`` for a file Pillow cannot decode completely."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                mode = im.mode
                rgb = im if mode == "RGB" else im.convert("RGB")
                pixels = np.asarray(rgb, np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageError(f"cannot read image {path!r}: {exc}") from None
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"image {path!r} has no pixels (shape {pixels.shape})")
    note = None if mode == "RGB" else f"{os.path.basename(path)}: converted {mode} to RGB" + (
        " (alpha dropped)" if "A" in mode else "")
    return pixels, note


def to_input(pixels: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """(1, 3, H, W) float32 model input of ``pixels`` ((h, w, 3) uint8) per ``spec``:
    resized (bilinear) by ``spec.resize``, then ``(p * scale - mean) / std`` per channel; and
    its ``Geometry``. Letterbox centres the image and pads with ``pad_value`` (in pixel
    units, before normalisation)."""
    from PIL import Image

    if spec.channels != 3:
        raise UsageError(f"head spec input.channels must be 3 for RGB images, found {spec.channels}")
    h, w = pixels.shape[:2]
    H, W = spec.height, spec.width
    img = Image.fromarray(pixels, "RGB")
    if spec.resize == "stretch":
        canvas = np.asarray(img.resize((W, H), Image.BILINEAR), np.float32)
        geo = Geometry(w, h, W / w, H / h, 0.0, 0.0)
    else:
        s = min(W / w, H / h)
        nw, nh = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))
        px, py = (W - nw) // 2, (H - nh) // 2
        canvas = np.full((H, W, 3), spec.pad_value, np.float32)
        canvas[py:py + nh, px:px + nw] = np.asarray(img.resize((nw, nh), Image.BILINEAR), np.float32)
        geo = Geometry(w, h, nw / w, nh / h, float(px), float(py))
    x = (canvas * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32), geo


def list_images(paths: list[str]) -> list[str]:
    """The image files named by ``paths``: files as given, directories expanded to their
    image files (sorted, by extension). Raises ``UsageError`` for a missing path or when no
    image is found."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise UsageError(f"directory {p!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise UsageError(f"image {p!r} does not exist")
    if not files:
        raise UsageError("no images given")
    return files


def synthetic_image(seed: int, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A seeded random (h, w, 3) uint8 image: smooth colour blobs, not white noise, so the
    resize and the network see image-like statistics."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(coarse, 32, 0), 32, 1)[:h, :w]
    return np.ascontiguousarray(img)


def draw_boxes(pixels: np.ndarray, rows: np.ndarray, classes: tuple[str, ...], path: str) -> None:
    """Write ``pixels`` with ``rows`` ((K, 6) x0, y0, x1, y1, score, class in its pixels)
    drawn as rectangles labelled ``class score`` to the PNG ``path``."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    palette = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 200, 200)]
    for x0, y0, x1, y1, score, c in np.asarray(rows, np.float64).reshape(-1, 6):
        k = int(c)
        colour = palette[k % len(palette)]
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=colour, width=2)
        name = classes[k] if 0 <= k < len(classes) else str(k)
        draw.text((x0 + 2, max(0.0, y0 - 11)), f"{name} {score:.2f}", fill=colour)
    img.save(path, format="PNG")
