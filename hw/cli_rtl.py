"""Body of the ``shiftflow verilog`` command (cli.py parses): deterministic Verilog of
:class:`hw.top.AcceleratorTop` plus a file list, optionally synthesized. (``rtlsim`` runs a
build on the RTL bench: ``hw/tb/rtlsim.py``.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def top_name(cfg) -> str:
    return "shiftflow_" + "".join(c if c.isalnum() else "_" for c in cfg.name)


def write_rtl(target: str, out_dir: str | Path, synth: str | None = None,
              progress: Callable[[str], object] | None = None) -> dict:
    """Write ``<out_dir>/shiftflow_<target>.v`` and its ``.f`` file list; with ``synth``, the
    synthesis counts. The same target gives the same bytes. ``progress`` (optional) is called
    with each phase's name as it starts: ``Verilog``, ``synthesis``."""
    from ..ir.config import load_target
    from .synth import synthesize
    from .top import AcceleratorTop
    from .verilog import write_verilog

    cfg = load_target(target)
    name = top_name(cfg)
    if progress:
        progress("Verilog")
    design = write_verilog(AcceleratorTop(cfg), name, out_dir)
    out = {"target": cfg.name, "top": name, "files": [str(f) for f in design.files],
           "file_list": str(Path(out_dir) / f"{name}.f"), "sha256": design.digest}
    if synth:
        if progress:
            progress("synthesis")
        # Per-part counts are kept under RTLDIR/synth (a rerun synthesizes only changed
        # modules); parts run on every core.
        r = synthesize(design, synth, work_dir=Path(out_dir) / "synth", jobs=os.cpu_count() or 1)
        out["synth"] = {"family": r.family, "lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram": r.bram}
        if cfg.budget and synth == "xilinx":
            used = {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram36": r.bram}
            out["synth"]["budget"] = cfg.budget
            out["synth"]["fits"] = all(used[k] <= v for k, v in cfg.budget.items() if k in used)
    return out
