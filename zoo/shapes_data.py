"""A seeded synthetic detection dataset: five shape classes pasted onto real photo crops.

Every image is a pure function of ``(split, index, size)``: its random generator is seeded
from those, so any image can be regenerated alone, in any order, with the same bytes.

- Background: a random crop (random position and side, flipped at random) of one of the
  photos scikit-image ships (``skimage.data``; grey ones are tinted), or a procedural texture
  (stripes, checker or smooth noise), resized to the image size.
- Objects: 1..``MAX_OBJECTS`` of the classes ``CLASSES``, each filling a box of side
  ``SCALE_RANGE`` × the image's shorter side and aspect ratio (w/h) in ``ASPECT_RANGE``
  (log-uniform), entirely inside the image, filled with a random colour, two-colour stripes or
  a checker, plus noise. Later objects are drawn over earlier ones (partial occlusion).
- Boxes: tight around the *whole* object's mask (the pixels it would cover if nothing
  occluded it), computed from the rendered mask, so they are exact to the pixel:
  ``[x0, y0, x1, y1]`` with ``x1``/``y1`` one past the last covered column/row. An object
  whose visible pixels are fewer than ``MIN_VISIBLE`` of its mask is dropped from the
  labels (it is still drawn: it is background clutter then).
- Splits: ``train`` and ``val`` use disjoint seed streams, so the held-out validation set
  never overlaps the training set.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..errors import UsageError

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SPLITS: tuple[str, ...] = ("train", "val")
MAX_OBJECTS = 6
SCALE_RANGE = (0.08, 0.5)
ASPECT_RANGE = (0.5, 2.0)
MIN_VISIBLE = 0.5
# Photos (colour and grey) from skimage.data used as backgrounds.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "brick",
          "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "clock", "page")


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    out = []
    for name in PHOTOS:
        a = getattr(skimage.data, name)()
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(a[:, :, :3]))
    return tuple(out)


def _seed(split: str, index: int, size: tuple[int, int]) -> int:
    if split not in SPLITS:
        raise UsageError(f"dataset split must be one of {', '.join(SPLITS)}, got '{split}'")
    if index < 0:
        raise UsageError(f"image index must be >= 0, got {index}")
    return zlib.crc32(f"shapes/{split}/{index}/{size[0]}x{size[1]}".encode())


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if rng.random() < 0.75:
        photo = _photos()[rng.integers(len(PHOTOS))]
        ph, pw = photo.shape[:2]
        side = int(rng.uniform(0.3, 1.0) * min(ph, pw))
        y, x = rng.integers(0, ph - side + 1), rng.integers(0, pw - side + 1)
        crop = photo[y:y + side, x:x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        img = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.BILINEAR),
                         dtype=np.float32)
        if rng.random() < 0.3:  # tint: grey photos get colour, colour photos shift
            img = img * rng.uniform(0.6, 1.2, size=3)
        return img
    return _texture(rng, h, w)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Stripes, checker or smooth noise in two random colours, (h, w, 3) float."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    period = rng.uniform(4, max(6.0, min(h, w) / 4))
    if kind == 0:
        theta = rng.uniform(0, np.pi)
        t = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) + 1) / 2
    elif kind == 1:
        t = ((xx // period + yy // period) % 2).astype(np.float32)
    else:
        coarse = rng.random((max(2, h // 16), max(2, w // 16))).astype(np.float32)
        t = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)).clip(0, 1)
    return c0 + t[:, :, None] * (c1 - c0)


def _polygon(cls: str, bw: int, bh: int) -> list[tuple[float, float]] | None:
    """Outline of a polygonal class in a bw×bh box (None for the ellipse)."""
    if cls == "square":
        return [(0, 0), (bw, 0), (bw, bh), (0, bh)]
    if cls == "triangle":
        return [(bw / 2, 0), (bw, bh), (0, bh)]
    if cls == "cross":
        a, b, c, d = 0.33 * bw, 0.67 * bw, 0.33 * bh, 0.67 * bh
        return [(a, 0), (b, 0), (b, c), (bw, c), (bw, d), (b, d), (b, bh), (a, bh),
                (a, d), (0, d), (0, c), (a, c)]
    if cls == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            ang = -np.pi / 2 + k * np.pi / 5
            pts.append((np.cos(ang) * r, np.sin(ang) * r))
        p = np.array(pts)
        p = (p - p.min(0)) / (p.max(0) - p.min(0))  # stretch the star to touch its box
        return [(x * bw, y * bh) for x, y in p]
    return None


def _mask(cls: str, bw: int, bh: int) -> np.ndarray:
    """Boolean (bh, bw) mask of one object filling its box."""
    im = Image.new("L", (bw, bh), 0)
    draw = ImageDraw.Draw(im)
    poly = _polygon(cls, bw - 1, bh - 1)
    if poly is None:
        draw.ellipse([0, 0, bw - 1, bh - 1], fill=255)
    else:
        draw.polygon(poly, fill=255)
    return np.asarray(im) > 0


def _fill(rng: np.random.Generator, bh: int, bw: int) -> np.ndarray:
    c0 = rng.uniform(0, 255, size=3)
    kind = rng.random()
    if kind < 0.6:
        return np.broadcast_to(c0, (bh, bw, 3)).astype(np.float32)
    c1 = rng.uniform(0, 255, size=3)
    yy, xx = np.mgrid[0:bh, 0:bw]
    period = max(2, int(rng.uniform(2, max(3, min(bh, bw) / 3))))
    t = ((xx + yy) // period) % 2 if kind < 0.8 else (xx // period + yy // period) % 2
    return (c0 + t[:, :, None] * (c1 - c0)).astype(np.float32)


def make_image(split: str, index: int, size: int | tuple[int, int] = 128):
    """Image ``index`` of ``split`` at ``size`` (side, or (height, width)).

    Returns ``(image, boxes)``: ``image`` uint8 (H, W, 3) RGB; ``boxes`` float32 (M, 5) rows
    ``[x0, y0, x1, y1, class]`` in pixels (class indexes ``CLASSES``), M ≥ 0.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(h, w) < 32:
        raise UsageError(f"image size must be at least 32x32, got {h}x{w}")
    rng = np.random.default_rng(_seed(split, index, (h, w)))
    img = _background(rng, h, w)
    owner = np.full((h, w), -1, dtype=np.int32)  # which object each pixel shows
    objects = []
    for k in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        cls = int(rng.integers(len(CLASSES)))
        side = rng.uniform(*SCALE_RANGE) * min(h, w)
        aspect = np.exp(rng.uniform(np.log(ASPECT_RANGE[0]), np.log(ASPECT_RANGE[1])))
        bw = int(np.clip(round(side * np.sqrt(aspect)), 6, w))
        bh = int(np.clip(round(side / np.sqrt(aspect)), 6, h))
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        m = _mask(CLASSES[cls], bw, bh)
        region = img[y:y + bh, x:x + bw]
        paint = _fill(rng, bh, bw) + rng.normal(0, rng.uniform(0, 12), size=(bh, bw, 3))
        region[m] = paint[m]
        owner[y:y + bh, x:x + bw][m] = k
        ys, xs = np.nonzero(m)
        objects.append((x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1,
                        cls, int(m.sum())))
    visible = np.bincount(owner[owner >= 0], minlength=len(objects))
    rows = [o[:5] for k, o in enumerate(objects) if visible[k] >= MIN_VISIBLE * o[5]]
    boxes = np.array(rows, dtype=np.float32).reshape(-1, 5)
    return np.clip(img, 0, 255).round().astype(np.uint8), boxes


def make_split(split: str, count: int, size: int | tuple[int, int] = 128, start: int = 0):
    """Images ``start .. start+count-1`` of ``split``: a (count, H, W, 3) uint8 array and a
    list of (M_i, 5) box arrays."""
    pairs = [make_image(split, i, size) for i in range(start, start + count)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]
