"""Head specs: what a detector's raw output maps mean (docs/heads.md, ``shiftflow.heads.v1``).

``load_heads(path)`` finds and parses the spec of a model or build directory; ``parse_heads``
validates a JSON document (text or dict) into a frozen ``HeadSpec``; ``validate_against``
checks it against the model's output shapes. Every problem is a one-line ``HeadSpecError``
naming the field (``levels[1].scores.output``) and what must hold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

FORMAT = "shiftflow.heads.v1"
METADATA_KEY = "shiftflow.heads"
DECODERS = ("ssd", "grid", "nms")
# Box layouts a model's own NonMaxSuppression reads (decoder ``nms``): ONNX's [y1, x1, y2, x2]
# (center_point_box 0), the same corners x first, or [x_center, y_center, w, h] (1).
BOX_FORMATS = ("yxyx", "xyxy", "cxcywh")
LAYOUTS = ("nchw", "rows")
RESIZES = ("letterbox", "stretch")
SIZES = ("exp", "linear")
# Per-anchor channels of a ``grid`` head before the class logits: x, y, w, h, objectness.
GRID_FIELDS = 5


class HeadSpecError(UsageError):
    """A head spec that is missing, malformed, or does not match its model."""


@dataclass(frozen=True)
class InputSpec:
    """The model input and the pre stage's mapping of an RGB image ``p`` (0..255) to it:
    ``(p * scale - mean) / std`` per channel, after ``resize`` (letterbox pads ``pad_value``)."""
    name: str
    height: int
    width: int
    channels: int = 3
    resize: str = "letterbox"
    pad_value: float = 0.0
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class OutputRef:
    """One model output read by a level: ``layout`` ``nchw`` is a (1, A*K, H, W) map (channel
    ``a*K + k``); ``rows`` is a (1, N, K) tensor whose rows ``offset .. offset + H*W*A``
    belong to the level, ordered (y, x, a)."""
    output: str
    layout: str = "nchw"
    offset: int = 0


@dataclass(frozen=True)
class Level:
    """One head scale: ``grid`` (H, W) cells at ``stride`` input pixels, ``anchors`` (w, h) in
    input pixels. ``ssd`` levels read ``scores`` and ``boxes``; ``grid`` levels read ``head``."""
    stride: int
    grid: tuple[int, int]
    anchors: tuple[tuple[float, float], ...]
    scores: OutputRef | None = None
    boxes: OutputRef | None = None
    head: OutputRef | None = None

    @property
    def size(self) -> int:
        """Number of boxes (cells × anchors) of the level."""
        return self.grid[0] * self.grid[1] * len(self.anchors)


@dataclass(frozen=True)
class HeadSpec:
    """A validated ``shiftflow.heads.v1`` document (field meanings: docs/heads.md)."""
    input: InputSpec
    classes: tuple[str, ...]
    decoder: str
    levels: tuple[Level, ...]
    score: str = "sigmoid"
    variances: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    size: str = "exp"
    box_format: str = "yxyx"
    normalized: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_boxes(self) -> int:
        """Total boxes over all levels (the length of the flat box index)."""
        return sum(lv.size for lv in self.levels)

    def to_json(self) -> str:
        """The spec as ``shiftflow.heads.v1`` JSON text (``parse_heads`` reads it back equal)."""
        def ref(r: OutputRef | None):
            if r is None:
                return None
            d = {"output": r.output, "layout": r.layout}
            if r.layout == "rows":
                d["offset"] = r.offset
            return d

        levels = []
        for lv in self.levels:
            d = {"stride": lv.stride, "grid": list(lv.grid), "anchors": [list(a) for a in lv.anchors]}
            for key in ("scores", "boxes", "head"):
                if getattr(lv, key) is not None:
                    d[key] = ref(getattr(lv, key))
            levels.append(d)
        inp = self.input
        doc = {"format": FORMAT,
               "input": {"name": inp.name, "height": inp.height, "width": inp.width,
                         "channels": inp.channels, "resize": inp.resize, "pad_value": inp.pad_value,
                         "scale": inp.scale, "mean": list(inp.mean), "std": list(inp.std)},
               "classes": list(self.classes), "decoder": self.decoder, "score": self.score}
        if self.decoder == "nms":
            doc["box"] = {"format": self.box_format, "normalized": self.normalized}
        else:
            doc.update(box={"variances": list(self.variances), "size": self.size}, levels=levels)
        return json.dumps(doc, indent=1)


def _err(where: str, what: str) -> HeadSpecError:
    return HeadSpecError(f"head spec {where}: {what}")


def _get(d: dict, key: str, where: str, kind, default=None, required: bool = True):
    if key not in d:
        if required:
            raise _err(f"{where}.{key}".lstrip("."), "is missing")
        return default
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _err(f"{where}.{key}".lstrip("."), f"must be {names}, found {value!r}")
    return value


def _choice(value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise _err(where, f"must be one of {', '.join(choices)}, found {value!r}")
    return value


def _numbers(value, n: int | None, where: str, positive: bool = False) -> tuple[float, ...]:
    ok = isinstance(value, list) and (n is None or len(value) == n) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if ok and positive:
        ok = all(v > 0 for v in value)
    if not ok:
        count = f"{n} " if n is not None else ""
        sign = "positive " if positive else ""
        raise _err(where, f"must be a list of {count}{sign}numbers, found {value!r}")
    return tuple(float(v) for v in value)


def _ref(d: dict, key: str, where: str, required: bool) -> OutputRef | None:
    if key not in d:
        if required:
            raise _err(f"{where}.{key}", "is missing")
        return None
    r = _get(d, key, where, dict)
    w = f"{where}.{key}"
    layout = _choice(_get(r, "layout", w, str, "nchw", required=False), LAYOUTS, f"{w}.layout")
    offset = _get(r, "offset", w, int, 0, required=layout == "rows")
    if offset < 0:
        raise _err(f"{w}.offset", f"must be >= 0, found {offset}")
    return OutputRef(_get(r, "output", w, str), layout, offset)


def _level(d, i: int, decoder: str) -> Level:
    where = f"levels[{i}]"
    if not isinstance(d, dict):
        raise _err(where, f"must be an object, found {d!r}")
    stride = _get(d, "stride", where, int)
    if stride <= 0:
        raise _err(f"{where}.stride", f"must be > 0, found {stride}")
    grid = _get(d, "grid", where, list)
    if len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        raise _err(f"{where}.grid", f"must be [H, W] with positive integers, found {grid!r}")
    anchors = _get(d, "anchors", where, list)
    if not anchors:
        raise _err(f"{where}.anchors", "must list at least one [w, h]")
    anchors = tuple(_numbers(a, 2, f"{where}.anchors[{j}]", positive=True) for j, a in enumerate(anchors))
    ssd = decoder == "ssd"
    return Level(stride, (grid[0], grid[1]), anchors, scores=_ref(d, "scores", where, ssd),
                 boxes=_ref(d, "boxes", where, ssd), head=_ref(d, "head", where, not ssd))


def parse_heads(doc: str | dict) -> HeadSpec:
    """Validate a ``shiftflow.heads.v1`` document (JSON text or a parsed dict)."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as exc:
            raise HeadSpecError(f"head spec is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HeadSpecError(f"head spec must be a JSON object, found {type(doc).__name__}")
    fmt = _get(doc, "format", "", str)
    if fmt != FORMAT:
        raise _err("format", f"must be {FORMAT!r}, found {fmt!r}")
    i = _get(doc, "input", "", dict)
    channels = _get(i, "channels", "input", int, 3, required=False)
    inp = InputSpec(
        name=_get(i, "name", "input", str), height=_get(i, "height", "input", int),
        width=_get(i, "width", "input", int), channels=channels,
        resize=_choice(_get(i, "resize", "input", str, "letterbox", False), RESIZES, "input.resize"),
        pad_value=float(_get(i, "pad_value", "input", (int, float), 0, False)),
        scale=float(_get(i, "scale", "input", (int, float), 1.0 / 255.0, False)),
        mean=_numbers(i.get("mean", [0.0] * channels), channels, "input.mean"),
        std=_numbers(i.get("std", [1.0] * channels), channels, "input.std", positive=True))
    if inp.height <= 0 or inp.width <= 0 or channels <= 0:
        raise _err("input", f"height, width and channels must be > 0, found "
                   f"{inp.height}, {inp.width}, {channels}")
    classes = _get(doc, "classes", "", list)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise _err("classes", f"must be a non-empty list of names, found {classes!r}")
    decoder = _choice(_get(doc, "decoder", "", str), DECODERS, "decoder")
    score = _choice(_get(doc, "score", "", str, "sigmoid", False), ("sigmoid",), "score")
    box = _get(doc, "box", "", dict, {}, required=False)
    if decoder == "nms":  # boxes and scores are the model's own NonMaxSuppression's inputs
        if "levels" in doc:
            raise _err("levels", "must be absent for decoder 'nms' (the model's NonMaxSuppression reads "
                       "its boxes and scores)")
        fmt = _choice(_get(box, "format", "box", str, "yxyx", False), BOX_FORMATS, "box.format")
        return HeadSpec(inp, tuple(classes), decoder, (), score, box_format=fmt,
                        normalized=_get(box, "normalized", "box", bool, False, False))
    variances = _numbers(box.get("variances", [1.0] * 4), 4, "box.variances", positive=True)
    size = _choice(_get(box, "size", "box", str, "exp", False), SIZES, "box.size")
    levels = _get(doc, "levels", "", list)
    if not levels:
        raise _err("levels", "must list at least one level")
    return HeadSpec(inp, tuple(classes), decoder, tuple(_level(lv, j, decoder) for j, lv in enumerate(levels)),
                    score, variances, size)


def heads_from_onnx(model) -> HeadSpec | None:
    """The spec in an ONNX model's ``metadata_props`` (key ``shiftflow.heads``), or None."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return parse_heads(prop.value)
    return None


def embed_heads(model, spec: HeadSpec) -> None:
    """Write ``spec`` into ``model.metadata_props`` (replacing an earlier one)."""
    for j in reversed(range(len(model.metadata_props))):
        if model.metadata_props[j].key == METADATA_KEY:
            del model.metadata_props[j]
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, spec.to_json()


def find_heads(path: str | os.PathLike) -> HeadSpec | None:
    """The head spec of ``path`` as ``load_heads`` finds it, or None when there is none at all
    (a model that is not a detector). A spec that exists but is malformed still raises."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "heads.json"]
    elif path.suffix == ".json":
        candidates = [path]
    else:
        if path.suffix == ".onnx" and path.is_file():
            import onnx

            try:
                model = onnx.load(os.fspath(path), load_external_data=False)
            except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
                raise HeadSpecError(f"cannot read {os.fspath(path)!r} for its head spec: {exc}") from None
            spec = heads_from_onnx(model)
            if spec is not None:
                return spec
        candidates = [path.with_suffix(".heads.json")]
    for cand in candidates:
        if cand.is_file():
            try:
                return parse_heads(cand.read_text())
            except HeadSpecError as exc:
                raise HeadSpecError(f"{os.fspath(cand)}: {exc}") from None
    return None


def load_heads(path: str | os.PathLike) -> HeadSpec:
    """Find and parse the head spec of ``path``: a ``.json`` spec itself; an ONNX model (its
    metadata, else ``MODEL.heads.json`` beside ``MODEL.onnx``); or a build directory
    (``heads.json`` in it). Raises ``HeadSpecError`` when there is none."""
    spec = find_heads(path)
    if spec is None:
        path = Path(path)
        where = (path / "heads.json" if path.is_dir() else path if path.suffix == ".json"
                 else path.with_suffix(".heads.json"))
        raise HeadSpecError(f"no head spec for {os.fspath(path)!r}: expected metadata key "
                            f"{METADATA_KEY!r} or a file {os.fspath(where)!r}")
    return spec


def _channels(spec: HeadSpec, lv: Level, key: str) -> int | None:
    """The K (values per anchor) a level's output must have; None for boxes (K >= 4)."""
    if key == "scores":
        return spec.num_classes
    if key == "head":
        return GRID_FIELDS + spec.num_classes
    return None


def validate_against(spec: HeadSpec, output_shapes: dict[str, tuple[int, ...]]) -> None:
    """Check that every output a level names exists in ``output_shapes`` and that its shape
    matches the level's grid, anchors and classes for its layout; rows levels sharing one
    output must not overlap. Raises ``HeadSpecError`` naming the field."""
    rows_used: dict[str, list[tuple[int, int, str]]] = {}
    for i, lv in enumerate(spec.levels):
        for key in ("scores", "boxes", "head"):
            ref = getattr(lv, key)
            if ref is None:
                continue
            where = f"levels[{i}].{key}"
            if ref.output not in output_shapes:
                raise _err(f"{where}.output", f"names {ref.output!r}, which the model does not output "
                           f"(outputs: {', '.join(sorted(output_shapes))})")
            shape = tuple(int(d) for d in output_shapes[ref.output])
            k = _channels(spec, lv, key)
            a = len(lv.anchors)
            h, w = lv.grid
            if ref.layout == "nchw":
                ok = len(shape) == 4 and shape[0] == 1 and shape[2:] == (h, w) and shape[1] % a == 0
                ok = ok and (shape[1] // a == k if k is not None else shape[1] // a >= 4)
                need = f"(1, {a}*{k if k is not None else 'K>=4'}, {h}, {w})"
            else:
                ok = len(shape) == 3 and shape[0] == 1 and ref.offset + lv.size <= shape[1]
                ok = ok and (shape[2] == k if k is not None else shape[2] >= 4)
                need = (f"(1, N >= offset {ref.offset} + {h}*{w}*{a}, "
                        f"{k if k is not None else 'K>=4'})")
                rows_used.setdefault(ref.output, []).append((ref.offset, ref.offset + lv.size, where))
            if not ok:
                raise _err(where, f"output {ref.output!r} must have shape {need} for layout "
                           f"{ref.layout!r}, found {shape}")
    for name, spans in rows_used.items():
        spans.sort()
        for (s0, e0, w0), (s1, e1, w1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise _err(f"{w1}.offset", f"rows {s1}..{e1} of {name!r} overlap {w0}'s rows {s0}..{e0}")
