"""The pages stand on their own and their measured figures cannot go stale.

Every ``<!-- fig:KEY -->`` span in README.md and docs/*.md must equal what ``docs_figures``
computes from ``benchmarks/results/*.json``; the headline figures must be marked (not typed
in); relative links must point at files that exist; nothing cites a design guide outside
the repository."""

import json
import re

import pytest

from shiftflow import docs_figures as figs
from shiftflow.docs_figures import ROOT, FigureError, pages

#: Figures that must be generated, not typed: the README's detector and zu3eg paragraph,
#: docs/hardware.md's synthesis table and Fmax.
HEADLINE = {
    "README.md": ["detector_accel_zu3eg.runs.auto.compile_s", "detector_accel_zu3eg.runs.auto.simulate_s",
                  "detector_accel_zu3eg.runs.auto.fps", "detector_accel_zu3eg.runs.auto.conv_utilization",
                  "hw_resources.targets.zu3eg.total.lut", "hw_resources.targets.zu3eg.total.ff",
                  "hw_resources.targets.zu3eg.total.dsp", "hw_resources.targets.zu3eg.total.bram36"],
    "docs/hardware.md": ["hw_resources.targets.tiny.total.lut", "hw_resources.targets.zu3eg.total.lut",
                         "hw_resources.targets.zu3eg.fraction.lut", "hw_resources.fmax_ecp5_tiny.mhz",
                         "hw_resources.targets.zu3eg.parts[compute.mac].lut"],
    "docs/backend.md": ["detector_accel_zu3eg.runs.auto.total_cycles", "detector_accel_zu3eg.runs.channel.fps",
                        "detector_accel_zu3eg.runs.auto.instructions"],
    "docs/quantize.md": ["quantize_digits.settings.w8a8.top1"],
}


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_marked_figures_equal_the_results(page):
    bad = figs.stale(page.read_text(), figs.load_results())
    assert not bad, (f"{page.name}: figures disagree with benchmarks/results/*.json "
                     f"(rerun the benchmark, then `python -m shiftflow.docs_figures --write`): {bad}")


@pytest.mark.parametrize("page, prefixes", HEADLINE.items())
def test_headline_figures_are_marked(page, prefixes):
    keys = figs.keys((ROOT / page).read_text())
    missing = [p for p in prefixes if not any(k.startswith(p) for k in keys)]
    assert not missing, f"{page} quotes these without a fig span: {missing}"


def test_the_checker_finds_a_stale_figure_and_the_writer_fixes_it(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps({"a": {"b": [1.5, 12345]}, "parts": [
        {"module": "top.x.one", "instances": 2, "lut": 10}, {"module": "top.x.two", "lut": 3},
        {"module": "top.y", "lut": 100}]}))
    results = figs.load_results(tmp_path)
    text = ("<!-- fig:r.a.b.1 -->12,345<!-- /fig --> <!-- fig:r.a.b.0|pct:.0f -->150<!-- /fig --> "
            "<!-- fig:r.parts[x.*].lut -->0<!-- /fig --> <!-- fig:r.parts|len -->3<!-- /fig -->")
    assert figs.stale(text, results) == [("r.parts[x.*].lut", "0", "23")]
    assert figs.stale(figs.render(text, results), results) == []
    for key in ("nope.a", "r.a.c", "r.a.b.7", "r.a.b.0|cube", "r.parts[z*].lut"):
        with pytest.raises(FigureError, match=re.escape(key.split("|")[0])):
            figs.value(key, results)


def test_the_command_checks_the_real_pages(capsys):
    assert figs.main([]) == 0
    assert capsys.readouterr().out == ""


def test_design_guide_is_in_the_repository():
    design = ROOT / "docs" / "design.md"
    assert design.is_file()
    assert "(docs/design.md)" in (ROOT / "README.md").read_text()
    for path in [*ROOT.rglob("*.md"), *ROOT.rglob("*.py")]:
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p.endswith(".egg-info") or p == "build" for p in parts) \
                or path.name == "test_docs.py":
            continue
        assert not re.search(r"\bDESIGN\.md\b", path.read_text(errors="replace")), \
            f"{path.relative_to(ROOT)} cites DESIGN.md, which is not in the repository: cite docs/design.md"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
