"""Verilog from Amaranth components: deterministic text, file lists, Verilator lint.

``to_verilog`` wraps ``amaranth.back.verilog.convert`` without source locations, so the output
depends only on the design (and the Amaranth/Yosys versions): the same component gives the
same bytes, which is what keys the Verilator build cache (``hw/tb/runner.py``).

Lint runs ``verilator --lint-only -Wall`` with the waivers in :data:`LINT_WAIVERS`; each is
there because Amaranth's generated Verilog triggers it by construction, not because of a
design problem. Anything else Verilator reports fails the lint with its full message.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog as _amaranth_verilog
from amaranth.lib import wiring

from ..errors import ShiftflowError
from .tools import verilator_env

#: Verilator warning classes waived for generated code, each with the reason.
LINT_WAIVERS = {
    "PROCASSINIT": "Amaranth gives every register its reset value as a declaration initializer "
                   "(the FPGA power-up value) and also assigns it in a clocked process",
    "UNUSEDSIGNAL": "Amaranth emits named debug wires for every field of a data.View and keeps "
                    "port bits a component ignores (e.g. the unused lanes of a payload)",
    "WIDTHEXPAND": "Amaranth's Verilog backend writes operands at their own widths and relies on "
                   "Verilog's context-determined extension; Amaranth's shape rules already fix "
                   "every width, so these are by design",
    "WIDTHTRUNC": "same cause as WIDTHEXPAND: assignments to narrower wires where Amaranth "
                  "truncates by definition",
    "DECLFILENAME": "one generated file holds the top and all its submodules, so module and "
                    "file names differ",
    "CASEINCOMPLETE": "Amaranth writes an FSM (m.FSM) as a case over its defined states' codes and a "
                      "Switch without Default as a case over its patterns; an uncovered code keeps "
                      "every signal at its Amaranth-defined value, so there is no latch or X",
}


class LintError(ShiftflowError):
    """Verilator lint reported something that is not waived."""


@dataclass(frozen=True)
class VerilogDesign:
    """Generated Verilog of one top module: its name, its files (all written), and a digest of
    their bytes (the cache key of anything built from them)."""
    top: str
    files: tuple[Path, ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.top.encode())
        for f in self.files:
            h.update(f.read_bytes())
        return h.hexdigest()

    def file_list(self) -> str:
        """A ``.f`` file list (one path a line), as simulators and synthesis scripts read."""
        return "".join(f"{f}\n" for f in self.files)


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as module ``name`` (ports from its signature).

    Deterministic: no ``src`` attributes (they carry file paths and line numbers)."""
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected an amaranth wiring.Component, got {type(component).__name__}")
    if not name.isidentifier():
        raise ShiftflowError(f"Verilog module name must be an identifier, got {name!r}")
    return _amaranth_verilog.convert(component, name=name, emit_src=False)


def write_verilog(component: wiring.Component, name: str, out_dir: str | Path) -> VerilogDesign:
    """Write ``<out_dir>/<name>.v`` and ``<out_dir>/<name>.f``; the file is rewritten only when
    its text changed (keeps timestamps stable for make-based tools)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    text = to_verilog(component, name)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    design = VerilogDesign(name, (path,))
    (out_dir / f"{name}.f").write_text(design.file_list())
    return design


def lint(design: VerilogDesign, extra_waivers: tuple[str, ...] = ()) -> None:
    """``verilator --lint-only -Wall`` on the design; raises :class:`LintError` on any report.

    ``extra_waivers`` adds warning classes for one call (a caller that needs one should say why
    next to the call)."""
    waive = [f"-Wno-{w}" for w in (*LINT_WAIVERS, *extra_waivers)]
    cmd = ["verilator", "--lint-only", "-Wall", *waive, "--top-module", design.top,
           *map(str, design.files)]
    res = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True)
    if res.returncode != 0 or "%Warning" in res.stderr or "%Error" in res.stderr:
        first = next((ln for ln in res.stderr.splitlines() if ln.startswith("%")), res.stderr.strip())
        raise LintError(f"verilator lint of {design.top} failed: {first}\n{res.stderr}")
