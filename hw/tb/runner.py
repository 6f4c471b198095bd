"""cocotb 2.x + Verilator: build a model of a top once, run cocotb test modules against it.

``build_model`` turns Verilog (usually ``hw.verilog.write_verilog`` output) into a Verilator
executable with cocotb's VPI library, through ``cocotb_tools.runner``. Builds are cached under
``$SHIFTFLOW_HW_CACHE`` (default ``~/.cache/shiftflow/hw``) in a directory named by a digest of
the Verilog bytes, the top name and the Verilator/cocotb versions, so a model is compiled
once (~15 s for a small design) and reused by every test and every later run.

``run_cocotb`` runs one or more cocotb test modules (importable Python modules; pass a
module's ``__name__``) against a built model and raises :class:`CocotbFailure` (an
``AssertionError``, so pytest reports a plain failure) naming each failing cocotb test with its
message, or saying that no cocotb test ran (a misspelt module or ``testcase`` passes nothing). Benches take their parameters from environment variables given in ``env``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..tools import require_cocotb, verilator_environment, verilator_version
from ..verilog import VerilogDesign


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed, none ran, or the simulator died before writing results."""


@dataclass(frozen=True)
class Model:
    """A built Verilator model: its top module and build directory."""
    top: str
    build_dir: Path


def cache_root() -> Path:
    env = os.environ.get("SHIFTFLOW_HW_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "shiftflow" / "hw"


def _key(design: VerilogDesign) -> str:
    h = hashlib.sha256(design.digest.encode())
    h.update(repr((verilator_version(), importlib.metadata.version("cocotb"))).encode())
    return h.hexdigest()[:24]


def build_model(design: VerilogDesign, *, log=None) -> Model:
    """The Verilator model of ``design``, built now or taken from the cache.

    A build goes to a temporary directory that is renamed into place when complete, so an
    interrupted build never leaves a half-built cache entry."""
    require_cocotb()
    from cocotb_tools.runner import get_runner

    final = cache_root() / "verilator" / f"{design.top}-{_key(design)}"
    if (final / design.top).is_file():
        return Model(design.top, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{design.top}-", dir=final.parent))
    try:
        with verilator_environment():
            runner = get_runner("verilator")
            # Amaranth output is lint-clean under hw.verilog's waivers; lint warnings must not
            # abort a simulation build.
            runner.build(sources=[str(f) for f in design.files], hdl_toplevel=design.top,
                         build_dir=tmp, build_args=["-Wno-fatal"], log_file=log or tmp / "build.log")
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Model(design.top, final)


def _outcomes(results: Path) -> tuple[int, list[str]]:
    """(cocotb tests run, one line per failed one) from a results XML."""
    cases = list(ET.parse(results).getroot().iter("testcase"))
    out = []
    for case in cases:
        for bad in (*case.findall("failure"), *case.findall("error")):
            msg = (bad.get("message") or bad.text or "").strip().splitlines()
            out.append(f"{case.get('classname')}.{case.get('name')}: {msg[0] if msg else 'failed'}")
    return len(cases), out


def run_cocotb(model: Model, test_modules: str | list[str], *, testcase: str | None = None,
               env: dict[str, str] | None = None, seed: int = 1, test_dir: Path | None = None) -> Path:
    """Run cocotb ``test_modules`` on ``model``; returns the results XML. Raises
    :class:`CocotbFailure` listing each failing test, or saying that none ran or that the
    simulator died."""
    require_cocotb()
    from cocotb_tools.runner import get_runner

    modules = [test_modules] if isinstance(test_modules, str) else list(test_modules)
    work = Path(test_dir or tempfile.mkdtemp(prefix=f"cocotb-{model.top}-"))
    results = work / "results.xml"
    log = work / "sim.log"
    with verilator_environment():
        runner = get_runner("verilator")
        try:
            # An absolute results path; the runner exits the process (SystemExit) on failures
            # when it sees pytest, which is turned into a readable failure below.
            runner.test(test_module=modules, hdl_toplevel=model.top, hdl_toplevel_lang="verilog",
                        build_dir=model.build_dir, test_dir=work, testcase=testcase, seed=seed,
                        extra_env=dict(env or {}), results_xml=str(results), log_file=log)
        except SystemExit:
            pass
    if not results.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.is_file() else []
        raise CocotbFailure(f"simulation of {model.top} wrote no results; log tail:\n" + "\n".join(tail))
    ran, failed = _outcomes(results)
    if not ran:
        raise CocotbFailure(f"no cocotb test ran on {model.top} (modules {modules}, testcase {testcase!r}; log {log})")
    if failed:
        raise CocotbFailure(f"{len(failed)} cocotb test(s) failed on {model.top} (log {log}):\n" + "\n".join(failed))
    return results
