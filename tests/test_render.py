"""Rendering (report/render.py): numbering, escaping, relative links, exports, filters."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from report.render import (ProseError, SectionView, megabytes, num, pct, pm, render_site,
                           seconds)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
BUILD = {"title": "Toy report", "abstract": "An abstract.", "profile": "quick", "seed": 7,
         "device": "cpu", "device_name": "x86_64", "cpu_count": 2, "versions": {"torch": "2"},
         "commit": "abc", "dataset": {"source": "toy", "md5": {"f": "0" * 32}},
         "built": "2024-01-01T00:00:00+00:00", "wall_seconds": 1.5,
         "analyses": [{"name": "first", "status": "run", "seconds": 0.1, "peak_rss_bytes": 1e6,
                       "peak_gpu_bytes": None, "key": "k", "error": ""}],
         "config": {"first": {"epochs": 1}}}


@dataclass(frozen=True)
class Cfg:
    epochs: int = 3


def figure(name: str, caption: str = "A caption.") -> dict:
    return {"kind": "figure", "name": name, "file": f"{name}.png", "caption": caption,
            "alt": f"alt of {name}", "width": 10, "height": 10}


def table(name: str, rows: list[dict], caption: str = "A table.") -> dict:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"kind": "table", "name": name, "caption": caption, "columns": columns, "rows": rows}


def view(tmp_path: Path, name: str, prose: str, items: list[dict], metrics: dict | None = None,
         status: str = "run", error: str = "") -> SectionView:
    files = tmp_path / "entries" / name
    files.mkdir(parents=True, exist_ok=True)
    for item in items:
        if "file" in item:
            (files / item["file"]).write_bytes(b"\x89PNG fake " + item["name"].encode())
    return SectionView(name=name, title=name.title(), prose=prose, cfg=Cfg(),
                       metrics=metrics or {}, items=items, files=files, status=status,
                       error=error)


def render(tmp_path: Path, views: list[SectionView], build: dict | None = None) -> str:
    site = tmp_path / "site"
    site.mkdir()
    index = render_site(site, TEMPLATES, views, build or BUILD)
    return index.read_text()


def section_html(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    return page[start:page.index("</section>", start)]


# --- numbering ---------------------------------------------------------------------------------


def test_numbering_across_sections_with_forward_refs(tmp_path: Path) -> None:
    first = view(tmp_path, "first",
                 'See {{ ref("late") }} and {{ ref("counts") }}.\n\n{{ fig("early") }}\n\n'
                 '{{ table("counts") }}\n\nThen {{ fig("late") }}\n',
                 [figure("late"), figure("early"), table("counts", [{"a": 1}])])
    second = view(tmp_path, "second", 'Here is {{ ref("more") }}.\n\n{{ fig("more") }}\n',
                  [figure("more"), table("extra", [{"b": 2}])])
    page = render(tmp_path, [first, second])
    # Numbers follow the order of appearance in the article, not of creation.
    assert first.numbers == {"early": 1, "counts": 1, "late": 2}
    assert second.numbers == {"more": 3, "extra": 2}
    assert "See Figure 2 and Table 1." in page  # a forward reference
    assert "Here is Figure 3." in page
    labels = re.findall(r'<span class="label">([^<]+)</span>', page)
    assert labels == ["Figure 1.", "Table 1.", "Figure 2.", "Figure 3.", "Table 2."]


def test_failed_sections_take_no_numbers_and_show_their_error(tmp_path: Path) -> None:
    broken = view(tmp_path, "broken", '{{ fig("never") }}', [], status="failed",
                  error="RuntimeError: <b>boom</b>")
    after = view(tmp_path, "after", '{{ fig("f") }}', [figure("f")])
    page = render(tmp_path, [broken, after])
    assert after.numbers == {"f": 1}
    html = section_html(page, "broken")
    assert "could not be built" in html and "RuntimeError: &lt;b&gt;boom&lt;/b&gt;" in html
    assert not (tmp_path / "site" / "data" / "broken").exists()


def test_unplaced_items_are_appended_in_creation_order(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "Intro text.\n\n{{ fig('b') }}\n\nOutro text.\n",
               [figure("a"), figure("b"), table("t", [{"x": 1}]), figure("c")])
    page = render(tmp_path, [one])
    html = section_html(page, "one")
    order = [html.index(s) for s in ("Intro text.", 'id="one-b"', "Outro text.", 'id="one-a"',
                                     'id="one-t"', 'id="one-c"')]
    assert order == sorted(order)
    assert one.numbers == {"b": 1, "a": 2, "t": 1, "c": 3}


def test_item_names_with_underscores_survive_markdown(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "{{ fig('a_b_c') }}\n\n{{ fig('x__y__z') }}\n",
               [figure("a_b_c"), figure("x__y__z")])
    page = render(tmp_path, [one])
    assert 'id="one-a_b_c"' in page and 'id="one-x__y__z"' in page
    assert "@@ITEM" not in page


# --- prose errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("prose, match", [
    ('{{ fig("nope") }}', r"analyses/sec\.md: figure\('nope'\)"),
    ('{{ table("f") }}', r"analyses/sec\.md: table\('f'\)"),  # f is a figure, not a table
    ('{{ ref("nope") }}', r"analyses/sec\.md: ref\('nope'\)"),
])
def test_unknown_items_raise_prose_error_naming_the_file(tmp_path: Path, prose: str,
                                                         match: str) -> None:
    with pytest.raises(ProseError, match=match):
        render(tmp_path, [view(tmp_path, "sec", prose, [figure("f")])])


def test_undefined_metric_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="missing"):
        render(tmp_path, [view(tmp_path, "sec", "{{ m.missing }}", [])])


# --- escaping and links ------------------------------------------------------------------------


def test_metric_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    one = view(tmp_path, "one", "Winner: {{ m.winner }}; also {{ metrics.one.winner }}.\n",
               [table("t", [{"name": evil}], caption=evil), figure("f", caption=evil)],
               metrics={"winner": evil})
    page = render(tmp_path, [one], {**BUILD, "title": evil, "abstract": evil})
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_raw_html_in_prose_is_kept(tmp_path: Path) -> None:
    one = view(tmp_path, "one", '<div class="widget" id="w1"></div>\n\nText.\n', [])
    assert '<div class="widget" id="w1"></div>' in render(tmp_path, [one])


def test_every_link_is_relative_and_exists(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "[anchor](#one)\n\n{{ fig('f') }}\n\n"
               "<a href=\"{{ asset_url('data.json') }}\">data</a>\n",
               [figure("f"), table("t", [{"a": 1}]),
                {"kind": "asset", "name": "data.json", "file": "data.json", "bytes": 2}])
    (tmp_path / "entries" / "one" / "data.json").write_text("{}")
    page = render(tmp_path, [one])
    site = tmp_path / "site"
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links
    for link in links:
        assert not re.match(r"^([a-z]+:|//|/)", link, re.I), link
        target = link.split("#")[0]
        if target:
            assert (site / target).is_file(), link
    assert "http://" not in page and "https://" not in page


def test_static_files_have_no_external_urls() -> None:
    for path in (TEMPLATES / "static").rglob("*"):
        if path.suffix in (".css", ".js"):
            text = path.read_text()
            assert not re.search(r"https?://|@import|url\(\s*['\"]?//", text), path
    for path in TEMPLATES.rglob("*.html"):
        assert not re.search(r"https?://", path.read_text()), path


# --- exports -----------------------------------------------------------------------------------


def test_data_is_exported_as_json_and_csv(tmp_path: Path) -> None:
    rows = [{"digit": 0, "share": 0.1, "note": None}, {"digit": 1, "share": 0.25, "note": "x,y"}]
    one = view(tmp_path, "one", "", [table("counts", rows, caption="Counts."), figure("f")],
               metrics={"acc": 0.5, "name": "cnn"})
    render(tmp_path, [one])
    data = tmp_path / "site" / "data"
    assert json.loads((data / "one" / "metrics.json").read_text()) == {"acc": 0.5, "name": "cnn"}
    exported = json.loads((data / "one" / "counts.json").read_text())
    assert exported == {"caption": "Counts.", "columns": ["digit", "share", "note"], "rows": rows}
    parsed = list(csv.DictReader(io.StringIO((data / "one" / "counts.csv").read_text())))
    assert parsed == [{"digit": "0", "share": "0.1", "note": ""},
                      {"digit": "1", "share": "0.25", "note": "x,y"}]
    assert json.loads((data / "manifest.json").read_text())["title"] == BUILD["title"]
    assert (tmp_path / "site" / "figures" / "one" / "f.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "site" / "static" / "style.css").is_file()


def test_scripts_in_static_are_loaded_deferred(tmp_path: Path) -> None:
    page = render(tmp_path, [view(tmp_path, "one", "", [])])
    scripts = sorted(p.name for p in (TEMPLATES / "static").glob("*.js"))
    found = re.findall(r'<script src="static/([^"]+)" defer></script>', page)
    assert found == scripts


def test_prose_sees_config_build_and_filters(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "{{ cfg.epochs }} epochs, {{ m.acc | pct }}, "
               "{{ m.n | num }} images, {{ build.profile }} profile.\n", [],
               metrics={"acc": 0.98, "n": 70000})
    assert "3 epochs, 98.00 %, 70,000 images, quick profile." in render(tmp_path, [one])


# --- filters -----------------------------------------------------------------------------------


def test_pct() -> None:
    assert pct(0.98) == "98.00 %"
    assert pct(0.98765, 1) == "98.8 %"
    assert pct(1) == "100.00 %"
    assert pct(None) == "n/a" and pct(float("nan")) == "n/a"


def test_num() -> None:
    assert num(70000) == "70,000"
    assert num(3.14159, 2) == "3.14"
    assert num(1234567.891, 1) == "1,234,567.9"
    assert num(None) == "n/a"


def test_seconds() -> None:
    assert seconds(0.42) == "0.42 s"
    assert seconds(68) == "68 s"
    assert seconds(186) == "3.1 min"
    assert seconds(4320) == "72.0 min"  # minutes up to two hours
    assert seconds(9000) == "2.5 h"
    assert seconds(None) == "n/a"


def test_pm_and_megabytes() -> None:
    assert pm(0.9961, 0.0003) == "99.61 ± 0.03 %"
    assert pm(0.9961, 0.0003, 1) == "99.6 ± 0.0 %"
    assert pm(1.5, 0.25, percent=False) == "1.50 ± 0.25"
    assert megabytes(18_800_000) == "18.8 MB" and megabytes(None) == "n/a"
