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
    with each phase's name as it starts: ``Verilog``, ``synthesis``. For ``xilinx`` the synthesis
    also gives ``lut_levels`` and each part's depth (``hw/logic_depth.py``)."""
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
        if r.lut_levels is not None:  # xilinx: the deepest part's; paths are cut at module boundaries
            out["synth"]["lut_levels"] = r.lut_levels
            out["synth"]["parts"] = [{"module": p.name, "instances": p.instances, "lut": p.lut,
                                      **p.depth.as_dict()} for p in r.parts]
        if cfg.budget and synth == "xilinx":
            used = {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram36": r.bram}
            out["synth"]["budget"] = cfg.budget
            out["synth"]["fits"] = all(used[k] <= v for k, v in cfg.budget.items() if k in used)
    return out


def fmax_rtl(target: str, family: str, log_dir: str | Path | None = None) -> dict:
    """The whole accelerator's post-route Fmax for ``target`` (``family``: ``ecp5``, the only
    one with place-and-route here): ``{"target", "fmax_mhz", "device", "seconds",
    "critical_path": [{"cell", "ns"}, ...], "critical_path_ns", "logic_ns", "routing_ns"}``
    (``hw.fmax.accelerator_fmax``; nextpnr's log kept in ``log_dir`` when given)."""
    from ..errors import ShiftflowError
    from ..ir.config import load_target
    from .fmax import ACCEL_DEVICE_NAME, accelerator_fmax

    if family != "ecp5":
        raise ShiftflowError(f"--fmax needs a family with place-and-route here: ecp5, got {family!r}")
    cfg = load_target(target)
    r = accelerator_fmax(cfg, log_dir=log_dir)
    cp = r.critical_path
    return {"target": cfg.name, "fmax_mhz": r.mhz, "device": ACCEL_DEVICE_NAME, "seconds": r.seconds,
            "critical_path": [{"cell": cell, "ns": ns} for cell, ns in cp.steps] if cp else [],
            "critical_path_ns": cp.ns if cp else None, "logic_ns": cp.logic_ns if cp else None,
            "routing_ns": cp.routing_ns if cp else None}
