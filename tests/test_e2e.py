"""End-to-end: quick builds of the whole project on the real MNIST (minutes on 2 CPU cores).

Run with `python -m pytest -m e2e`; the list of analyses comes from analyses.ANALYSES, so new
sections are covered without editing this file. The quick build (`quick_site`) is a session
fixture in conftest.py, shared with the browser tests (tests/test_browser.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import quick_args as args
from conftest import site_statuses as statuses

import build
from analyses import ANALYSES

pytestmark = pytest.mark.e2e

NAMES = [module.ANALYSIS.name for module in ANALYSES]


def test_every_analysis_ran(quick_site: dict) -> None:
    assert quick_site["first"] == dict.fromkeys(NAMES, "run")


def test_page_and_sections(quick_site: dict) -> None:
    page = (quick_site["out"] / "index.html").read_text()
    assert len(page) > 1000
    positions = []
    for name in NAMES:
        match = re.search(f'<section id="{name}" class="section status-run">', page)
        assert match, name
        positions.append(match.start())
    assert positions == sorted(positions)  # the article's order
    assert "@@ITEM" not in page and "could not be built" not in page
    assert "Quick profile." in page
    assert 'id="rule"' in page  # the comparison rule is stated once, on the page
    text = re.sub(r"<[^>]+>", "", page)
    assert not re.search(r"\bnan\b|\bn/a\b|\bNone\b", text), "a metric is missing"
    # No sentence broken across paragraphs: a paragraph never starts with a lower-case word
    # (names such as t-SNE are written that way: a hyphen after the first letters is allowed).
    broken = re.findall(r"<p>\s*([a-z]+(?![\w-])[^<]{0,60})", page)
    assert not broken, broken


def test_every_image_and_link_exists(quick_site: dict) -> None:
    site = quick_site["out"]
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


def test_figures_and_data_exports(quick_site: dict) -> None:
    site = quick_site["out"]
    for name in NAMES:
        metrics = json.loads((site / "data" / name / "metrics.json").read_text())
        assert metrics, f"{name} recorded no metric"
        for path in (site / "data" / name).iterdir():
            assert path.stat().st_size > 0, path
    figures = [p for p in (site / "figures").rglob("*") if p.is_file()]
    assert figures and all(p.stat().st_size > 0 for p in figures)
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert manifest["profile"] == "quick" and set(manifest["config"]) == set(NAMES)


def test_second_build_reuses_every_analysis(quick_site: dict) -> None:
    out, cache = quick_site["out"], quick_site["cache"]
    assert build.main(args(out, cache)) == 0
    assert statuses(out) == dict.fromkeys(NAMES, "cached")
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


TIMING = re.compile(r"seconds|per_second|overhead|hook_share")


def without_timings(value: object) -> object:
    """Drop wall-clock measurements (names matching TIMING), which differ between runs."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_two_quick_builds_give_identical_metrics(quick_site: dict, tmp_path: Path) -> None:
    """A second build from an empty cache reproduces every metric but the timings."""
    out = tmp_path / "site"
    assert build.main(args(out, tmp_path / "cache")) == 0
    assert statuses(out) == dict.fromkeys(NAMES, "run")
    for name in NAMES:
        first = json.loads((quick_site["out"] / "data" / name / "metrics.json").read_text())
        second = json.loads((out / "data" / name / "metrics.json").read_text())
        assert without_timings(first) == without_timings(second), name
