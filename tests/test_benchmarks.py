"""Benchmarks fail loudly on a run that is not exact, without running them.

Every ``benchmarks/bench_*.py`` writes its result file only through ``guard.write_result``
with its verdicts (or, comparing nothing, says why in ``NOTHING_TO_COMPARE``); the guard
exits 1 with a message on stderr and leaves the file alone when a verdict is false."""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def guard(tmp_path, monkeypatch):
    module = _load("guard")
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setitem(sys.modules, "guard", module)  # what the benchmarks import
    return module


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_benchmark_writes_through_the_guard(script):
    tree = ast.parse(script.read_text())
    writes = _calls(tree, "write_result")
    assert writes, f"{script.name} never calls guard.write_result"
    for bad in ("write_text", "write_bytes", "dump"):
        assert not _calls(tree, bad), f"{script.name} writes a file itself ({bad}): use guard.write_result"
    assert not any(getattr(c.func, "id", None) == "open" and len(c.args) > 1 for c in _calls(tree, "open"))
    constants = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for call in writes:
        checks = call.args[2] if len(call.args) > 2 else None
        assert checks is not None, f"{script.name}:{call.lineno}: write_result without verdicts"
        if isinstance(checks, ast.Dict) and not checks.keys:
            assert "NOTHING_TO_COMPARE" in constants, \
                f"{script.name}:{call.lineno} writes with no verdicts: compare, or say why in NOTHING_TO_COMPARE"


def test_a_false_verdict_fails_loudly_and_writes_nothing(guard, tmp_path, capsys):
    (tmp_path / "x.json").write_text("old\n")
    with pytest.raises(guard.BenchmarkFailed) as failed:
        guard.write_result("x.json", {"a": 1}, {"outputs bit-exact": True, "cycles equal": False})
    assert failed.value.code == 1
    err = capsys.readouterr().err
    assert "benchmark FAILED: x.json: cycles equal" in err and "bit-exact" not in err
    assert (tmp_path / "x.json").read_text() == "old\n"
    with pytest.raises(guard.BenchmarkFailed):
        guard.write_result("x.json", {}, {"a check that did not run": None})


def test_true_verdicts_write_the_result(guard, tmp_path):
    path = guard.write_result("y.json", {"a": [1, 2]}, {"bit-exact": True})
    assert path == tmp_path / "y.json" and path.read_text() == '{\n "a": [\n  1,\n  2\n ]\n}\n'


def test_detector_check_fails_on_a_mismatch(guard, tmp_path, monkeypatch, capsys):
    bench = _load("bench_detector_check")
    row = {"model": "m.onnx", "macs": 1, "bit_exact": False, "max_abs_diff": 0.5, "repeats": 1,
           "median": {"import_s": 0.0, "interpreter_s": 0.0, "onnxruntime_s": 0.0, "total_s": 0.0}}
    monkeypatch.setattr(bench, "zoo_model", lambda *a, **k: Path("m.onnx"))
    monkeypatch.setattr(bench, "measure", lambda path, repeats: dict(row))
    with pytest.raises(SystemExit) as failed:
        bench.main(["--variants", "w8a8", "--forms", "qcdq"])
    assert failed.value.code == 1
    assert "m.onnx bit-exact" in capsys.readouterr().err
    assert not (tmp_path / "detector_check.json").exists()
