"""The zoo's public API: cached model files for tests and tools, and the bulk build.

Importing this module is cheap; torch and Brevitas are imported only when a model has to be
built, so a warm cache answers :func:`zoo_model` without them.
"""

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UsageError
from .spec import ALL_NETWORKS, FORMS, NETWORKS, TRAINED, VARIANTS, check_choice, resolve_hw, variants_of

__all__ = ["NETWORKS", "TRAINED", "ALL_NETWORKS", "VARIANTS", "FORMS", "ZOO_VERSION", "default_cache_dir",
           "model_filename", "zoo_model", "build_zoo", "count_macs"]

# Part of every file name: bump it whenever a change alters any exported file (widths,
# seeds, calibration, export settings). A digest of the zoo's own sources is part of the
# name too, so an edit that forgets the bump still never picks up a stale cached file.
ZOO_VERSION = 1
_SOURCES = ("nets.py", "export.py", "spec.py")
# A trained network's files also depend on its own sources and its committed weights.
_TRAINED_SOURCES = {"shapesdet": ("shapesdet.py", "shapesdet_export.py", "shapes_data.py",
                                  "weights/shapesdet-w8a8.pt", "weights/shapesdet-pow2.pt")}


def _source_digest(name: str) -> str:
    h = hashlib.sha256()
    for source in _SOURCES + _TRAINED_SOURCES.get(name, ()):
        h.update((Path(__file__).parent / source).read_bytes())
    return h.hexdigest()[:8]


def default_cache_dir() -> Path:
    """``$SHIFTFLOW_ZOO_DIR`` if set, else ``~/.cache/shiftflow/zoo``."""
    env = os.environ.get("SHIFTFLOW_ZOO_DIR")
    return Path(env) if env else Path.home() / ".cache" / "shiftflow" / "zoo"


def model_filename(name: str, variant: str, form: str,
                   input_hw: tuple[int, int] | None = None) -> str:
    """``{name}-{variant}-{H}x{W}-v{ZOO_VERSION}-{digest}.{form}.onnx``; validates every argument."""
    h, w = resolve_hw(name, input_hw)
    check_choice("variant", variant, VARIANTS)
    check_choice(f"variant of '{name}'", variant, variants_of(name))
    check_choice("form", form, FORMS)
    return f"{name}-{variant}-{h}x{w}-v{ZOO_VERSION}-{_source_digest(name)}.{form}.onnx"


def _build(name: str, variant: str, hw: tuple[int, int]):
    """The network ready to export: trained weights loaded, or seeded init calibrated."""
    if name in TRAINED:
        from .shapesdet_export import load_trained

        return load_trained(variant, hw)
    from .export import build_calibrated

    return build_calibrated(name, variant, hw)


def _export(net, name: str, form: str, hw: tuple[int, int], path: Path) -> None:
    if name in TRAINED:
        from .shapesdet_export import export_shapesdet

        export_shapesdet(net, form, hw, path)
    else:
        from .export import export

        export(net, name, form, hw, path)


def zoo_model(name: str, variant: str, form: str, *, input_hw: tuple[int, int] | None = None,
              cache_dir: str | Path | None = None) -> Path:
    """Path of the exported ONNX file for (name, variant, form, input size), built if absent.

    The file lives in ``cache_dir`` (default :func:`default_cache_dir`) under
    :func:`model_filename`, so the version and input size are part of the key. Files are
    written to a temporary name and renamed, so concurrent callers (pytest workers) never see
    a partial file; two racing builds write identical bytes. Raises ``UsageError`` for an
    unknown name/variant/form or an input size the network cannot take.
    """
    cache = Path(cache_dir if cache_dir is not None else default_cache_dir())
    path = cache / model_filename(name, variant, form, input_hw)
    if not path.exists():
        hw = resolve_hw(name, input_hw)
        net = _build(name, variant, hw)
        # Calibration is most of a build: export the other forms of the same model with it.
        for other in FORMS:
            target = cache / model_filename(name, variant, other, input_hw)
            if other == form or not target.exists():
                _export(net, name, other, hw, target)
    return path


def build_zoo(out_dir: str | Path | None = None, names: Iterable[str] | None = None,
              variants: Iterable[str] | None = None, forms: Iterable[str] | None = None,
              input_hw: tuple[int, int] | None = None,
              log: Callable[[str], None] = print) -> list[Path]:
    """(Re)build every requested model into ``out_dir`` and return the files' paths.

    ``None`` selects everything (all networks, variants, forms; default input sizes; the
    cache directory). A trained network (``TRAINED``) is loaded from its committed weights
    and built only in its own variants; naming it with none of them is a UsageError. Each (network, variant) is calibrated once and exported in every
    requested form. Logs one line per file: path, MACs, packed weight bytes, and seconds
    spent calibrating (shared by the forms) and exporting. Arguments are validated before
    anything is built.
    """
    out = Path(out_dir if out_dir is not None else default_cache_dir())
    explicit = names is not None
    names = _select(names, ALL_NETWORKS)
    variants = _select(variants, VARIANTS)
    forms = _select(forms, FORMS)
    for v in variants:
        check_choice("variant", v, VARIANTS)
    plan = {n: [v for v in variants if v in variants_of(n)] for n in names}
    for n in names:
        if explicit and not plan[n]:
            raise UsageError(f"network '{n}' exists in variants {', '.join(variants_of(n))}, "
                             f"none of which was requested ({', '.join(variants)})")
    # Validate everything (and learn the file names) before the first slow build.
    filenames = {(n, v, f): model_filename(n, v, f, input_hw)
                 for n in names for v in plan[n] for f in forms}
    from .export import weight_bytes

    paths = []
    for name in names:
        hw = resolve_hw(name, input_hw)
        macs = count_macs(name, hw)
        for variant in plan[name]:
            start = time.perf_counter()
            net = _build(name, variant, hw)
            calib = time.perf_counter() - start
            for form in forms:
                filename = filenames[name, variant, form]
                start = time.perf_counter()
                _export(net, name, form, hw, out / filename)
                secs = time.perf_counter() - start
                paths.append(out / filename)
                log(f"{out / filename}  {macs / 1e6:.1f} MMAC  "
                    f"{weight_bytes(net, variant)} weight bytes  "
                    f"calibrate {calib:.1f} s  export {secs:.1f} s")
    return paths


def _select(chosen: Iterable[str] | None, every: tuple[str, ...]) -> tuple[str, ...]:
    """``chosen`` without repeats, in order; everything if ``None``."""
    return every if chosen is None else tuple(dict.fromkeys(chosen))


def count_macs(name: str, input_hw: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one inference of ``name`` (batch 1), conv and linear layers.

    Computed from a float forward pass of a fresh network; nothing is exported.
    """
    hw = resolve_hw(name, input_hw)
    from . import nets

    if name in TRAINED:
        from .shapesdet import ShapesDet

        with nets.quiet():
            return nets.count_macs(ShapesDet(nets.WEIGHT_QUANT["w8a8"], hw), hw, 3)
    return nets.count_macs(nets.build_net(name, "w8a8", hw), hw, nets.in_channels(name))
