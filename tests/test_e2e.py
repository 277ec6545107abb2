"""End-to-end: builds of the whole project on the real MNIST (minutes on 2 CPU cores).

Run with `python -m pytest -m e2e`; the list of analyses comes from analyses.ANALYSES, so new
sections are covered without editing this file. Two session fixtures in conftest.py build the
site: `computed_site` computes every analysis on the real data with tiny settings and no frozen
entry (the whole pipeline, whatever is frozen), `published_site` is what `python build.py` makes
here from the committed frozen results (shared with the browser tests, tests/test_browser.py).
That two builds give identical results is checked on tiny synthetic data for every analysis in
tests/test_choices.py (a second build of the whole site here cost minutes).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import computed_args, quick_args as args
from conftest import site_statuses as statuses
from test_render import section_html

import build
from analyses import ANALYSES

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e

NAMES = [module.ANALYSIS.name for module in ANALYSES]


def frozen_profile(name: str) -> str | None:
    """The profile of `name`'s committed frozen entry, if it has one."""
    manifest = REPO / "frozen" / name / "manifest.json"
    return json.loads(manifest.read_text()).get("profile") if manifest.is_file() else None


SITES = ["computed_site", "published_site"]


def test_every_analysis_was_computed_on_the_real_data(computed_site: dict) -> None:
    assert computed_site["first"] == {name: "run" for name in NAMES}


def test_the_published_page_reuses_every_frozen_entry(published_site: dict) -> None:
    """Every committed frozen entry matches the committed code (else refreeze it), and what is
    not frozen is computed here."""
    first = published_site["first"]
    assert set(first) == set(NAMES)
    assert {n for n, status in first.items() if status == "frozen"} == \
        {n for n in NAMES if frozen_profile(n)}, "a frozen entry is stale: refreeze it"
    assert all(first[n] == "run" for n in NAMES if not frozen_profile(n))


@pytest.mark.parametrize("site", SITES)
def test_page_and_sections(site: str, request: pytest.FixtureRequest) -> None:
    built = request.getfixturevalue(site)
    page = (built["out"] / "index.html").read_text()
    assert len(page) > 1000
    positions = []
    for name in NAMES:
        status = built["first"][name]
        match = re.search(f'<section id="{name}" class="section status-{status}">', page)
        assert match, name
        positions.append(match.start())
    assert positions == sorted(positions)  # the article's order
    assert "@@ITEM" not in page and "could not be built" not in page
    assert 'id="rule"' in page  # the comparison rule is stated once, on the page
    text = re.sub(r"<[^>]+>", "", page)
    assert not re.search(r"\bnan\b|\bn/a\b|\bNone\b", text), "a metric is missing"
    # No sentence broken across paragraphs: a paragraph never starts with a lower-case word
    # (names such as t-SNE are written that way: a hyphen after the first letters is allowed).
    broken = re.findall(r"<p>\s*([a-z]+(?![\w-])[^<]{0,60})", page)
    assert not broken, broken


@pytest.mark.parametrize("site", SITES)
def test_the_banner_agrees_with_the_sections_notes(site: str,
                                                   request: pytest.FixtureRequest) -> None:
    """The banner leads with the quick profile exactly when a section's own note says its
    numbers are quick-profile ones (the build's profile plays no part: on a CPU it is quick)."""
    page = (request.getfixturevalue(site)["out"] / "index.html").read_text()
    quick = [name for name in NAMES if re.search(
        r"\(quick profile\)|<strong>Quick profile\.</strong>", section_html(page, name))]
    lead = "quick" if quick else "full"
    assert f'<p class="profile profile-{lead}"' in page, quick
    if site == "computed_site":
        assert quick, "the tiny build's numbers are quick-profile ones"


@pytest.mark.parametrize("site", SITES)
def test_every_image_and_link_exists(site: str, request: pytest.FixtureRequest) -> None:
    site = request.getfixturevalue(site)["out"]
    page = (site / "index.html").read_text()
    images = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert images
    for src in images:
        assert not re.match(r"^([a-z]+:|//|/)", src, re.I), src
        assert (site / src).is_file() and (site / src).stat().st_size > 0, src
    for link in re.findall(r'(?:src|href)="([^"#][^"]*)"', page):
        assert not re.match(r"^([a-z]+:|//|/)", link, re.I), link
        assert (site / link.split("#")[0]).exists(), link
    assert not re.search(r"(?:src|href)=\"https?:", page)


@pytest.mark.parametrize("site", SITES)
def test_figures_and_data_exports(site: str, request: pytest.FixtureRequest) -> None:
    site = request.getfixturevalue(site)["out"]
    for name in NAMES:
        metrics = json.loads((site / "data" / name / "metrics.json").read_text())
        assert metrics, f"{name} recorded no metric"
        for path in (site / "data" / name).iterdir():
            assert path.stat().st_size > 0, path
    figures = [p for p in (site / "figures").rglob("*") if p.is_file()]
    assert figures and all(p.stat().st_size > 0 for p in figures)
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert manifest["profile"] == "quick" and set(manifest["config"]) == set(NAMES)


def test_second_build_reuses_every_analysis(computed_site: dict) -> None:
    out, cache = computed_site["out"], computed_site["cache"]
    assert build.main(computed_args(out, cache)) == 0
    assert statuses(out) == {n: "cached" for n in NAMES}
    assert (out / "index.html").stat().st_size > 0


def test_dataset_metrics_are_deterministic(tmp_path: Path) -> None:
    metrics = []
    for run in ("a", "b"):
        out = tmp_path / run / "site"
        code = build.main(args(out, tmp_path / run / "cache", "--only", "dataset",
                               "--force", "dataset"))
        assert code == 0
        metrics.append((out / "data" / "dataset" / "metrics.json").read_text())
    assert metrics[0] == metrics[1]
    assert json.loads(metrics[0])["n_train"] == 60_000


def test_a_fresh_clone_renders_from_frozen_and_a_plot_change_only_redraws(
        tmp_path: Path) -> None:
    """The durable-results promise on the real project: a copy of the repository renders every
    frozen section without computing it; after an edit to digits/plots.py (how every figure is
    laid out) it draws them again from the frozen results and they stay frozen, none computed.
    The builds take `--only` the frozen sections: a quick result that stands on another
    profile's frozen results is never frozen (Builder.freeze), and computing it here would only
    repeat the published build (`published_site`).
    (How long drawing takes on two cores is measured by `python -m bench --only redraw`.)"""
    clone = tmp_path / "clone"
    for name in ("analyses", "digits", "report", "templates", "frozen", "bench"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "build.py", clone / "build.py")
    frozen = sorted(p.name for p in (clone / "frozen").iterdir() if p.is_dir())
    assert {"dataset", "embeddings"} <= set(frozen)

    def build_clone(cache: str, *extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, "build.py", "--device", "cpu", "--out", str(tmp_path / "site"),
             "--cache-dir", str(tmp_path / cache), "--only", *frozen, *extra], cwd=clone,
            capture_output=True, text=True, timeout=1800,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        manifest = json.loads((tmp_path / "site" / "data" / "manifest.json").read_text())
        return {a["name"]: a for a in manifest["analyses"]}

    # Drawings committed before a presentation change are drawn again here; --freeze stores them.
    first = build_clone("cache-1", "--freeze")
    assert {n for n, a in first.items() if a["status"] == "frozen"} == set(frozen), \
        "a frozen entry was computed again: refreeze it (python build.py --freeze)"
    fresh = build_clone("cache-2")
    assert {n for n, a in fresh.items() if a["status"] == "frozen"} == set(frozen)
    assert {fresh[n]["drawn"] for n in frozen} == {"frozen"}  # nothing computed, nothing drawn
    plots = clone / "digits" / "plots.py"
    tree = ast.parse(plots.read_text())
    new_figure = next(n for n in tree.body if getattr(n, "name", "") == "new_figure")
    new_figure.body.insert(1, ast.parse("height = height * 1.01").body[0])  # taller figures
    plots.write_text(ast.unparse(tree) + "\n")
    again = build_clone("cache-3")
    assert {n for n, a in again.items() if a["status"] == "frozen"} == set(frozen)
    redrawn = {n for n in frozen if again[n]["drawn"] == "drawn"}
    assert redrawn, "a change to how figures are laid out redrew no frozen section"
    assert {again[n]["profile"] for n in frozen} == {first[n]["profile"] for n in frozen}
