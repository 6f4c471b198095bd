"""Decode a detector's raw head outputs into boxes and score logits (docs/heads.md, docs/nms.md).

``decode(spec, outputs)`` reads each level's maps and keeps their structure: per level
``logits`` (H, W, A, C) and ``boxes`` (H, W, A, 4) as ``x0, y0, x1, y1`` in model-input
pixels. ``Decoded`` also gives flat views over all levels: ``boxes`` (N, 4), ``logits`` and
``scores`` (N, C, sigmoid applied). The flat box index — used by every NMS and as its
tie-break — is fixed: levels in spec order, then ``(y, x, a)`` row-major within a level, so
box ``i`` of level ``l`` at cell ``(y, x)``, anchor ``a`` is ``start[l] + (y*W + x)*A + a``.

Integer inputs: with ``exponents`` (output name → po2 exponent ``e``, value = code · 2**e)
the outputs are integer codes, as the accelerator stores them. Boxes are then decoded from
the dequantized values, and for the ``ssd`` decoder each level also keeps ``codes``
(H, W, A, C, int64): the score logits as integers, which ``psrr_nms`` pools exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import UsageError
from .heads import GRID_FIELDS, HeadSpec, Level, OutputRef, validate_against


class DetectionInputError(UsageError):
    """Raw outputs, boxes or scores that cannot be decoded or suppressed (NaN, wrong type)."""


@dataclass(frozen=True)
class LevelMaps:
    """One level's decoded maps. ``logits``: (H, W, A, C) float32 score logits (for ``grid``,
    the logit of ``sigmoid(obj) * sigmoid(cls)``); ``boxes``: (H, W, A, 4) float32 xyxy;
    ``codes``: (H, W, A, C) int64 integer score logits, or None (float inputs, ``grid``);
    ``code_exponent``: the po2 exponent of ``codes`` (logit = code · 2**e)."""
    level: Level
    start: int
    logits: np.ndarray
    boxes: np.ndarray
    codes: np.ndarray | None = None
    code_exponent: int = 0


@dataclass(frozen=True)
class Decoded:
    """All levels of one image's decoded outputs; flat views follow the fixed box index."""
    spec: HeadSpec
    levels: tuple[LevelMaps, ...]

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) float32 xyxy boxes in model-input pixels."""
        return np.concatenate([lv.boxes.reshape(-1, 4) for lv in self.levels])

    @property
    def logits(self) -> np.ndarray:
        """(N, C) float32 score logits."""
        return np.concatenate([lv.logits.reshape(-1, lv.logits.shape[-1]) for lv in self.levels])

    @property
    def scores(self) -> np.ndarray:
        """(N, C) float32 scores: sigmoid of ``logits``."""
        return sigmoid(self.logits)

    @property
    def integer(self) -> bool:
        """Whether every level carries integer score codes (``psrr_nms`` then pools integers)."""
        return all(lv.codes is not None for lv in self.levels)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32, overflow-free for large |x|."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _read(outputs: dict, exponents: dict | None, ref: OutputRef, lv: Level, k: int, where: str):
    """The (H, W, A, K) slice of ``ref``'s output for ``lv``, and the output's exponent."""
    arr = np.asarray(outputs[ref.output])
    exp = None
    if exponents is not None:
        if not np.issubdtype(arr.dtype, np.integer):
            raise DetectionInputError(f"output {ref.output!r} must hold integer codes when exponents are "
                                      f"given, found dtype {arr.dtype}")
        if ref.output not in exponents:
            raise DetectionInputError(f"no po2 exponent given for integer output {ref.output!r}")
        exp = int(exponents[ref.output])
    elif not np.issubdtype(arr.dtype, np.floating):
        raise DetectionInputError(f"output {ref.output!r} must be float (or integer codes with an "
                                  f"exponent), found dtype {arr.dtype}")
    elif not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DetectionInputError(f"output {ref.output!r} ({where}) must be finite, found {bad} NaN/inf values")
    h, w = lv.grid
    a = len(lv.anchors)
    if ref.layout == "nchw":
        kk = arr.shape[1] // a
        maps = arr.reshape(a, kk, h, w).transpose(2, 3, 0, 1)
    else:
        maps = arr[0, ref.offset:ref.offset + lv.size].reshape(h, w, a, arr.shape[2])
    return maps[..., :k], exp


def _dequant(codes: np.ndarray, exp: int | None) -> np.ndarray:
    if exp is None:
        return codes.astype(np.float32)
    return (codes.astype(np.float64) * 2.0 ** exp).astype(np.float32)


def _centres(lv: Level):
    """Cell-centre coordinates (H, W, 1) in input pixels, and anchor sizes (A,)."""
    h, w = lv.grid
    ay = ((np.arange(h, dtype=np.float32) + 0.5) * lv.stride)[:, None, None]
    ax = ((np.arange(w, dtype=np.float32) + 0.5) * lv.stride)[None, :, None]
    anchors = np.asarray(lv.anchors, dtype=np.float32)
    return ax, ay, anchors[:, 0], anchors[:, 1]


def _xyxy(cx, cy, bw, bh) -> np.ndarray:
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1).astype(np.float32)


def _decode_ssd(spec: HeadSpec, lv: Level, outputs, exponents, i: int):
    raw, exp_s = _read(outputs, exponents, lv.scores, lv, spec.num_classes, f"levels[{i}].scores")
    reg, exp_b = _read(outputs, exponents, lv.boxes, lv, 4, f"levels[{i}].boxes")
    codes = raw.astype(np.int64) if exp_s is not None else None
    return _dequant(raw, exp_s), ssd_boxes(spec, _dequant(reg, exp_b), *_centres(lv)), codes, exp_s or 0


def ssd_boxes(spec: HeadSpec, d: np.ndarray, ax, ay, aw, ah) -> np.ndarray:
    """SSD box regressions ``d`` (..., 4) against anchors (centres ``ax, ay``, sizes
    ``aw, ah``, broadcast against ``d[..., k]``) → corners (..., 4) float32, with the spec's
    variances and size encoding; the one float32 arithmetic every decoder of these heads uses."""
    v0, v1, v2, v3 = (np.float32(v) for v in spec.variances)
    cx = ax + d[..., 0] * v0 * aw
    cy = ay + d[..., 1] * v1 * ah
    if spec.size == "exp":
        bw, bh = aw * np.exp(d[..., 2] * v2), ah * np.exp(d[..., 3] * v3)
    else:
        bw, bh = aw * d[..., 2] * v2, ah * d[..., 3] * v3
    return _xyxy(cx, cy, bw, bh)


def _decode_grid(spec: HeadSpec, lv: Level, outputs, exponents, i: int):
    raw, exp = _read(outputs, exponents, lv.head, lv, GRID_FIELDS + spec.num_classes, f"levels[{i}].head")
    t = _dequant(raw, exp).astype(np.float64)
    ax, ay, aw, ah = _centres(lv)
    s = lv.stride
    # cx = (sigmoid(tx) + gx) * s with gx the cell's column: equal to the cell centre
    # (ax = (gx + 0.5) * s) plus (sigmoid(tx) - 0.5) * s.
    cx = ax + (sigmoid(t[..., 0]) - 0.5) * s
    cy = ay + (sigmoid(t[..., 1]) - 0.5) * s
    bw, bh = aw * np.exp(t[..., 2]), ah * np.exp(t[..., 3])
    # score = sigmoid(obj) * sigmoid(cls); its logit log p - log(1 - p), from log-sigmoids so
    # that confident cells do not round to p = 1.
    log_p = -(_softplus(-t[..., 4:5]) + _softplus(-t[..., GRID_FIELDS:]))
    logits = log_p - np.log(-np.expm1(np.minimum(log_p, -1e-12)))
    return logits.astype(np.float32), _xyxy(cx, cy, bw, bh), None, 0


def decode(spec: HeadSpec, outputs: dict[str, np.ndarray], exponents: dict[str, int] | None = None) -> Decoded:
    """Decode one image's raw head outputs (name → array with batch 1, as onnxruntime or the
    simulator give them) per ``spec``. Float outputs must be finite. With ``exponents``,
    outputs are integer codes (value = code · 2**exponent); score codes of all levels are
    shifted to the smallest score exponent so they compare exactly. Raises ``HeadSpecError`` when the
    outputs do not match the spec, ``DetectionInputError`` for NaN or wrong dtypes."""
    validate_against(spec, {name: np.shape(v) for name, v in outputs.items()})
    levels, start = [], 0
    for i, lv in enumerate(spec.levels):
        fn = _decode_ssd if spec.decoder == "ssd" else _decode_grid
        logits, boxes, codes, exp = fn(spec, lv, outputs, exponents, i)
        levels.append(LevelMaps(lv, start, np.ascontiguousarray(logits), np.ascontiguousarray(boxes),
                                None if codes is None else np.ascontiguousarray(codes), exp))
        start += lv.size
    if spec.decoder == "ssd" and exponents is not None:
        # Codes compare across levels only at one exponent: shift all to the smallest (exact).
        low = min(lm.code_exponent for lm in levels)
        levels = [replace(lm, codes=lm.codes << (lm.code_exponent - low), code_exponent=low) for lm in levels]
    return Decoded(spec, tuple(levels))
