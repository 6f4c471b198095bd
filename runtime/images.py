"""Image input and output of the detection pipeline (Pillow).

``read_rgb`` opens an image file as RGB uint8, refusing corrupt and truncated files with one
line (``ImageError``). Images that are not 8-bit RGB are converted, and every conversion is
stated in the returned note:

- grayscale (``L``, ``1``) is replicated to three channels; 16-bit grayscale (``I;16``,
  or ``I`` with values above 255) is scaled to 8 bits (``round(v / 257)``, so 65535 → 255);
  32-bit float (``F``) is refused (its value range is unknown);
- palette (``P``) is expanded; ``CMYK``/``YCbCr``/``LAB``/``HSV`` go through Pillow;
- an alpha channel (``RGBA``, ``LA``, ``PA``, palette transparency) is composited over
  white, as a viewer shows the image on a white page (an opaque pixel is unchanged);
- an EXIF orientation tag is applied (the photo is rotated as a viewer shows it);
- of a multi-frame file (GIF, TIFF) the first frame is used.

``to_input`` resizes to the head spec's input (``letterbox`` or ``stretch``) and normalises
to float32 NCHW, and returns the ``Geometry`` that ``Geometry.to_image`` uses to map boxes
back to the original image's pixels. ``draw_boxes`` draws detections and their labels.
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


def _to_rgb(im) -> tuple[np.ndarray, list[str]]:
    """(H, W, 3) uint8 of the decoded Pillow image ``im`` and the conversions made."""
    from PIL import Image, ImageOps

    done = []
    if getattr(im, "n_frames", 1) > 1:
        done.append(f"first of {im.n_frames} frames")
    orientation = im.getexif().get(0x0112, 1)  # the EXIF Orientation tag; 1 is upright
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        done.append(f"turned upright per its EXIF orientation {orientation}")
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, np.uint8), done
    if mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no known range; convert it to 8 bits")
    if mode.startswith("I"):  # 16- or 32-bit integer grey
        grey = np.asarray(im).astype(np.int64)
        if grey.min() < 0 or grey.max() > 65535:
            raise ValueError(f"integer pixels must be in 0..65535, found {grey.min()}..{grey.max()}")
        what = f"grey {mode} to RGB"
        if mode != "I" or grey.max() > 255:
            grey = np.rint(grey / 257.0)
            what = f"16-bit grey {mode} scaled to 8 bits, to RGB"
        rgb = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
        return np.ascontiguousarray(rgb), done + [what]
    if mode == "P" and "transparency" in im.info or mode == "PA":
        im = im.convert("RGBA")
    if "A" in im.mode:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
        return np.asarray(flat, np.uint8), done + [f"{mode} to RGB, alpha composited over white"]
    return np.asarray(im.convert("RGB"), np.uint8), done + [f"{mode} to RGB"]


def read_rgb(path: str) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 pixels of the image at ``path`` and a note naming the conversions made
    (None for an 8-bit RGB file shown as stored). Raises ``ImageError`` for a file Pillow cannot
    decode completely, or one with no pixels."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                pixels, done = _to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageError(f"cannot read image {path!r}: {exc}") from None
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"image {path!r} has no pixels (shape {pixels.shape})")
    note = f"{os.path.basename(path)}: " + "; ".join(done) if done else None
    return pixels, note


def _resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` resized (bilinear) to ``width`` × ``height``; the same array when it is that
    size already (Pillow would return a copy of it)."""
    from PIL import Image

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    return np.asarray(Image.fromarray(pixels, "RGB").resize((width, height), Image.BILINEAR))


def to_input(pixels: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """(1, 3, H, W) float32 model input of ``pixels`` ((h, w, 3) uint8) per ``spec``:
    resized (bilinear) by ``spec.resize``, then ``(p * scale - mean) / std`` per channel; and
    its ``Geometry``. Letterbox centres the image and pads with ``pad_value`` (in pixel
    units, before normalisation)."""
    if spec.channels != 3:
        raise UsageError(f"head spec input.channels must be 3 for RGB images, found {spec.channels}")
    h, w = pixels.shape[:2]
    H, W = spec.height, spec.width
    if spec.resize == "stretch":
        nw, nh, px, py = W, H, 0, 0
    else:
        s = min(W / w, H / h)
        nw, nh = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))
        px, py = (W - nw) // 2, (H - nh) // 2
    img = _resized(pixels, nw, nh)
    scale = np.float32(spec.scale)
    x = np.empty((1, 3, H, W), np.float32)
    # Channel by channel, straight into the NCHW planes: the same float32 operations in the
    # same order as over a whole (H, W, 3) canvas, so the same values, without its temporaries.
    for c in range(3):
        mean, std = np.float32(spec.mean[c]), np.float32(spec.std[c])
        if (nw, nh) != (W, H):
            x[0, c] = (np.float32(spec.pad_value) * scale - mean) / std
        plane = x[0, c, py:py + nh, px:px + nw]
        np.multiply(img[:, :, c], scale, out=plane, dtype=np.float32)
        plane -= mean
        plane /= std
    return x, Geometry(w, h, nw / w, nh / h, float(px), float(py))


def list_images(paths: list[str]) -> list[str]:
    """The image files named by ``paths``: files as given, directories expanded to their
    image files (sorted; by extension, not recursive; other files are ignored). Raises ``UsageError`` for a missing path or when no
    image is found."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(p, f)))
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
    drawn to the PNG ``path``: one rectangle per distinct box, in its best class's colour,
    labelled ``class score`` of that class, and ``+N`` when per-class NMS kept the same box
    for N more classes (all are in the JSON); the label on a filled background, kept inside
    the image."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    side = min(img.width, img.height)  # labels and lines grow with the image, to stay legible
    font = ImageFont.load_default(size=max(10, round(side / 40)))
    line = max(2, round(side / 256))
    palette = [(230, 40, 40), (40, 180, 40), (50, 110, 255), (230, 170, 0), (190, 50, 240), (0, 180, 180)]
    rows = np.asarray(rows, np.float64).reshape(-1, 6)
    groups: dict[tuple, list] = {}  # box → its (score, class) rows, best first (rows are)
    for r in rows[np.argsort(-rows[:, 4], kind="stable")]:
        groups.setdefault(tuple(np.round(r[:4], 2)), []).append((r[4], int(r[5])))
    for (x0, y0, x1, y1), labels in reversed(list(groups.items())):  # the best box drawn last, on top
        colour = palette[labels[0][1] % len(palette)]
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=colour, width=line)
        sc, k = labels[0]
        text = f"{classes[k] if 0 <= k < len(classes) else k} {sc:.2f}" + (f" +{len(labels) - 1}" if len(labels) > 1 else "")
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 4, b - t + 4
        tx = min(max(0.0, x0), max(0.0, img.width - tw))
        ty = y0 - th if y0 - th >= 0 else min(y0 + 2, max(0.0, img.height - th))
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=colour)
        draw.text((tx + 2 - l, ty + 2 - t), text, fill=(255, 255, 255), font=font)
    img.save(path, format="PNG")
