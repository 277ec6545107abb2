"""Rendering (report/render.py): prose placement, numbering, escaping, links, exports, filters."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest

from report.render import (ProseError, SectionView, anchor_headings, cell, megabytes, num, pct,
                           pm, reduced_text, render_site, seconds, setting, slug, split_title)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
BUILD = {"title": "Toy report", "profile": "quick", "seed": 7,
         "device": "cpu", "device_name": "x86_64", "cpu_count": 2, "versions": {"torch": "2"},
         "commit": "abc", "dataset": {"source": "toy", "md5": {"f": "0" * 32}},
         "built": "2024-01-01T00:00:00+00:00", "wall_seconds": 1.5,
         "analyses": [{"name": "first", "status": "run", "seconds": 0.1, "peak_rss_bytes": 1e6,
                       "peak_gpu_bytes": None, "key": "k", "error": ""}],
         "config": {"first": {"epochs": 1}}, "reduced": {}}


@dataclass(frozen=True)
class Cfg:
    epochs: int = 3


# Items as the Context records them: no caption, no alt (the prose gives both).


def figure(name: str) -> dict:
    return {"kind": "figure", "name": name, "file": f"{name}.png", "width": 10, "height": 10}


def gif(name: str, sprite: bool = False) -> dict:
    item = {"kind": "gif", "name": name, "file": f"{name}.gif", "fps": 2.0, "frames": 3,
            "width": 6, "height": 4}
    if sprite:
        item.update(sprite=f"{name}.frames.png", sprite_columns=2)
    return item


def table(name: str, rows: list[dict]) -> dict:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"kind": "table", "name": name, "columns": columns, "rows": rows}


def fig_(name: str, caption: str = "A caption.", alt: str | None = None) -> str:
    """Prose placing figure `name` with a caption and alt text."""
    return f'{{{{ fig("{name}", caption="{caption}", alt="{alt or "alt of " + name}") }}}}'


def table_(name: str, caption: str = "A table.") -> str:
    """Prose placing table `name` with a caption."""
    return f'{{{{ table("{name}", caption="{caption}") }}}}'


def view(tmp_path: Path, name: str, prose: str, items: list[dict], metrics: dict | None = None,
         status: str = "run", error: str = "", reduced: list[dict] | None = None
         ) -> SectionView:
    files = tmp_path / "entries" / name
    files.mkdir(parents=True, exist_ok=True)
    for item in items:
        if "file" in item:
            (files / item["file"]).write_bytes(b"\x89PNG fake " + item["name"].encode())
        if "sprite" in item:
            (files / item["sprite"]).write_bytes(b"\x89PNG sprite")
    return SectionView(name=name, prose=prose, cfg=Cfg(), metrics=metrics or {}, items=items,
                       files=files, status=status, error=error, reduced=reduced or [],
                       title=name)


def render(tmp_path: Path, views: list[SectionView], build: dict | None = None,
           **kwargs) -> str:
    site = tmp_path / "site"
    site.mkdir()
    index = render_site(site, TEMPLATES, views, build or BUILD, **kwargs)
    return index.read_text()


def section_html(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    return page[start:page.index("</section>", start)]


# --- titles ------------------------------------------------------------------------------------


def test_title_is_the_first_line_of_the_prose_rendered_with_jinja(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "\n# Maps of {{ m.n | num }} digits\n\nBody text.\n", [],
               metrics={"n": 70000})
    page = render(tmp_path, [one])
    assert one.title == "Maps of 70,000 digits"
    assert "<h2>1. Maps of 70,000 digits</h2>" in section_html(page, "one")
    toc = page[page.index('<nav class="toc"'):page.index("</nav>")]
    assert '<a href="#one">Maps of 70,000 digits</a>' in toc
    # The title line is not repeated as a heading in the body.
    assert "<h1>" not in section_html(page, "one") and "Body text." in page


def test_prose_without_a_title_line_is_titled_by_its_name(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "Just text, # not a title.\n", [])
    render(tmp_path, [one])
    assert one.title == "one"


def test_split_title() -> None:
    assert split_title("# A title\n\nText.\n") == ("A title", "\nText.\n")
    assert split_title("\n\n#  Spaced  \nText") == ("Spaced", "Text")
    assert split_title("## Not the title\nText") == ("", "## Not the title\nText")
    assert split_title("") == ("", "")


def test_an_error_in_the_title_names_the_prose_file(tmp_path: Path) -> None:
    with pytest.raises(ProseError, match=r"analyses/sec\.md: .*missing"):
        render(tmp_path, [view(tmp_path, "sec", "# Title {{ m.missing }}\n\nText.\n", [])])


# --- placing items: numbering, captions, alt text ---------------------------------------------


def test_numbering_across_sections_with_forward_refs(tmp_path: Path) -> None:
    first = view(tmp_path, "first",
                 f'See {{{{ ref("late") }}}} and {{{{ ref("counts") }}}}.\n\n{fig_("early")}\n\n'
                 f'{table_("counts")}\n\nThen {fig_("late")}\n',
                 [figure("late"), figure("early"), table("counts", [{"a": 1}])])
    second = view(tmp_path, "second",
                  f'Here is {{{{ ref("more") }}}}.\n\n{fig_("more")}\n\n{table_("extra")}\n',
                  [figure("more"), table("extra", [{"b": 2}])])
    page = render(tmp_path, [first, second])
    # Numbers follow the order of appearance in the article, not of creation.
    assert first.numbers == {"early": 1, "counts": 1, "late": 2}
    assert second.numbers == {"more": 3, "extra": 2}
    assert "See Figure 2 and Table 1." in page  # a forward reference
    assert "Here is Figure 3." in page
    labels = re.findall(r'<span class="label">([^<]+)</span>', page)
    assert labels == ["Figure 1.", "Table 1.", "Figure 2.", "Figure 3.", "Table 2."]


def test_items_appear_where_the_prose_places_them(tmp_path: Path) -> None:
    one = view(tmp_path, "one",
               f"Intro text.\n\n{fig_('b')}\n\nMiddle text.\n\n{table_('t')}\n\n{fig_('a')}\n\n"
               "Outro text.\n",
               [figure("a"), figure("b"), table("t", [{"x": 1}])])
    html = section_html(render(tmp_path, [one]), "one")
    order = [html.index(s) for s in ("Intro text.", 'id="one-b"', "Middle text.", 'id="one-t"',
                                     'id="one-a"', "Outro text.")]
    assert order == sorted(order)
    assert one.numbers == {"b": 1, "t": 1, "a": 2}


def test_unplaced_items_are_a_prose_error_naming_the_file_and_the_item(tmp_path: Path) -> None:
    one = view(tmp_path, "one", f"Intro.\n\n{fig_('b')}\n",
               [figure("a"), figure("b"), table("t", [{"x": 1}])])
    with pytest.raises(ProseError, match=r"analyses/one\.md: .*\['a', 't'\].*does not place"):
        render(tmp_path, [one])


def test_assets_need_no_placing(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "Text.\n",
               [{"kind": "asset", "name": "data.json", "file": "data.json", "bytes": 2}])
    (tmp_path / "entries" / "one" / "data.json").write_text("{}")
    render(tmp_path, [one])
    assert (tmp_path / "site" / "assets" / "one" / "data.json").read_text() == "{}"


@pytest.mark.parametrize("prose, match", [
    ('{{ fig("f", alt="a") }}', r"analyses/sec\.md: figure\('f'\) needs a caption"),
    ('{{ fig("f", caption="  ", alt="a") }}', r"analyses/sec\.md: figure\('f'\) needs a caption"),
    ('{% call fig("f", alt="a") %}  {% endcall %}', r"figure\('f'\) needs a caption"),
    ('{{ fig("f", caption="c") }}', r"analyses/sec\.md: figure\('f'\) needs alt text"),
    ('{{ fig("f", caption="c", alt=" ") }}', r"figure\('f'\) needs alt text"),
    ('{% call gif("g") %}A caption.{% endcall %}', r"analyses/sec\.md: gif\('g'\) needs alt text"),
    ('{{ table("t") }}', r"analyses/sec\.md: table\('t'\) needs a caption"),
])
def test_missing_caption_or_alt_is_a_prose_error(tmp_path: Path, prose: str, match: str) -> None:
    items = [figure("f"), gif("g"), table("t", [{"a": 1}])]
    with pytest.raises(ProseError, match=match):
        render(tmp_path, [view(tmp_path, "sec", prose, items)])


def test_captions_and_alt_text_come_from_the_prose(tmp_path: Path) -> None:
    prose = ('{% call fig("f", alt="Ten blurred digits.") %}\n'
             "The mean of *all* {{ m.n | num }} images.\n{% endcall %}\n\n"
             '{% call gif("g", alt="Weights changing.") %}Weights over {{ cfg.epochs }} epochs.'
             "{% endcall %}\n\n"
             '{{ table("t", caption="Images per **class**.") }}\n')
    one = view(tmp_path, "one", prose, [figure("f"), gif("g", sprite=True),
                                        table("t", [{"a": 1}])], metrics={"n": 60000})
    html = section_html(render(tmp_path, [one]), "one")
    assert 'alt="Ten blurred digits."' in html and 'alt="Weights changing."' in html
    assert ('<span class="label">Figure 1.</span> The mean of <em>all</em> 60,000 images.'
            in html)
    assert '<span class="label">Figure 2.</span> Weights over 3 epochs.' in html
    assert '<span class="label">Table 1.</span> Images per <strong>class</strong>.' in html
    assert 'data-sprite="assets/one/g.frames.png"' in html
    # A caption is inline: no paragraph inside the figcaption.
    assert not re.search(r"<figcaption>[^/]*<p>", html)


def test_an_item_of_another_kind_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ProseError, match=r"table\('f'\) but the analysis made no such table"):
        render(tmp_path, [view(tmp_path, "sec", table_("f"), [figure("f")])])


def test_failed_sections_take_no_numbers_and_show_their_error(tmp_path: Path) -> None:
    broken = view(tmp_path, "broken", fig_("never"), [], status="failed",
                  error="RuntimeError: <b>boom</b>")
    after = view(tmp_path, "after", fig_("f"), [figure("f")])
    page = render(tmp_path, [broken, after])
    assert after.numbers == {"f": 1}
    html = section_html(page, "broken")
    assert "could not be built" in html and "RuntimeError: &lt;b&gt;boom&lt;/b&gt;" in html
    assert not (tmp_path / "site" / "data" / "broken").exists()


def test_keep_going_marks_a_section_with_bad_prose_failed(tmp_path: Path) -> None:
    bad = view(tmp_path, "bad", "Forgot the figure.\n", [figure("f")])
    good = view(tmp_path, "good", fig_("g"), [figure("g")])
    page = render(tmp_path, [bad, good], keep_going=True)
    assert bad.status == "failed" and "analyses/bad.md" in bad.error and "'f'" in bad.error
    assert "could not be built" in section_html(page, "bad")
    assert good.numbers == {"g": 1} and 'id="good-g"' in page


def test_item_names_with_underscores_survive_markdown(tmp_path: Path) -> None:
    one = view(tmp_path, "one", f"{fig_('a_b_c')}\n\n{fig_('x__y__z')}\n",
               [figure("a_b_c"), figure("x__y__z")])
    page = render(tmp_path, [one])
    assert 'id="one-a_b_c"' in page and 'id="one-x__y__z"' in page
    assert "@@ITEM" not in page


# --- prose errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("prose, match", [
    (fig_("nope"), r"analyses/sec\.md: figure\('nope'\)"),
    ('{{ table("f", caption="c") }}', r"analyses/sec\.md: table\('f'\)"),  # f is a figure
    ('{{ ref("nope") }}', r"analyses/sec\.md: ref\('nope'\)"),
])
def test_unknown_items_raise_prose_error_naming_the_file(tmp_path: Path, prose: str,
                                                         match: str) -> None:
    with pytest.raises(ProseError, match=match):
        render(tmp_path, [view(tmp_path, "sec", f"{prose}\n\n{fig_('f')}", [figure("f")])])


def test_undefined_metric_is_a_prose_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProseError, match=r"analyses/sec\.md: .*missing"):
        render(tmp_path, [view(tmp_path, "sec", "{{ m.missing }}", [])])


# --- escaping and links ------------------------------------------------------------------------


def test_metric_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    one = view(tmp_path, "one",
               "Winner: {{ m.winner }}; also {{ metrics.one.winner }}.\n\n"
               '{{ table("t", caption=m.winner) }}\n\n'
               '{% call fig("f", alt=m.winner) %}Caption {{ m.winner }}.{% endcall %}\n',
               [table("t", [{"name": evil}]), figure("f")], metrics={"winner": evil})
    page = render(tmp_path, [one], {**BUILD, "title": evil})
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_raw_html_in_prose_is_kept(tmp_path: Path) -> None:
    one = view(tmp_path, "one", '<div class="widget" id="w1"></div>\n\nText.\n', [])
    assert '<div class="widget" id="w1"></div>' in render(tmp_path, [one])


def test_every_link_is_relative_and_exists(tmp_path: Path) -> None:
    one = view(tmp_path, "one", f"[anchor](#one)\n\n{fig_('f')}\n\n{table_('t')}\n\n"
               '{% call gif("g", alt="moving") %}A GIF.{% endcall %}\n\n'
               "<a href=\"{{ asset_url('data.json') }}\">data</a>\n",
               [figure("f"), table("t", [{"a": 1}]), gif("g", sprite=True),
                {"kind": "asset", "name": "data.json", "file": "data.json", "bytes": 2},
                {"kind": "asset", "name": "g.frames.png", "file": "g.frames.png", "bytes": 2}])
    (tmp_path / "entries" / "one" / "data.json").write_text("{}")
    page = render(tmp_path, [one])
    site = tmp_path / "site"
    links = re.findall(r'(?:src|href|data-sprite)="([^"]*)"', page)
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


# --- the page around the sections -------------------------------------------------------------


def test_page_has_the_abstract_and_the_comparison_rule(tmp_path: Path) -> None:
    data = view(tmp_path, "dataset", "Text.\n", [], metrics={"n_train": 60000, "n_test": 10000})
    page = render(tmp_path, [data])
    abstract = page[page.index('<section class="abstract"'):]
    abstract = abstract[:abstract.index("</section>")]
    assert "(all 70,000 images)" in abstract  # the count is this build's, not typed
    rule = page[page.index('<aside class="rule" id="rule"'):]
    assert "cannot be separated" in rule[:rule.index("</aside>")]
    # The abstract and the rule come before the first section.
    assert page.index('class="abstract"') < page.index('id="rule"') < page.index('id="dataset"')


def test_abstract_without_the_dataset_section_names_no_count(tmp_path: Path) -> None:
    page = render(tmp_path, [view(tmp_path, "one", "Text.\n", [])])
    assert 'class="abstract"' in page and "(all " not in page


def test_reduced_settings_box_and_note(tmp_path: Path) -> None:
    reduced = [{"key": "epochs", "value": 2, "full": 5},
               {"key": "train_size", "value": 6000, "full": 60000},
               {"key": "train_subset", "value": 6000, "full": 0, "zero": "all"},
               {"key": "lr", "value": 0.002, "full": 0.0002},
               {"key": "download", "value": False, "full": True}]
    prose = ('{% call fig("f", alt="a") %}Loss. {{ reduced_note("epochs") }}{% endcall %}\n\n'
             'All: {{ reduced_note() }}\n\nNone: [{{ reduced_note("seeds") }}]\n\n'
             "{% if reduced %}Some settings were reduced.{% endif %}\n")
    one = view(tmp_path, "one", prose, [figure("f")], reduced=reduced)
    full = view(tmp_path, "two", "{% if not reduced %}Nothing reduced.{% endif %}\n", [])
    page = render(tmp_path, [one, full])
    html = section_html(page, "one")
    assert ("Loss. Settings that differ from the full profile: <code>epochs</code> 2 "
            "(full: 5).") in html
    assert ("All: Settings that differ from the full profile: <code>epochs</code> 2 (full: 5); "
            "<code>train_size</code> 6,000 (full: 60,000); <code>train_subset</code> 6,000 "
            "(full: all); <code>lr</code> 0.002 (full: 0.0002); <code>download</code> off "
            "(full: on).") in html
    assert "None: []" in html and "Some settings were reduced." in html
    box = html[html.index('<p class="reduced"'):]
    box = box[:box.index("</p>")]
    # Not "reduced": a larger learning rate differs, it is not smaller.
    assert "Settings that differ from the full profile." in box and "Reduced" not in box
    assert "<code>epochs</code> 2 (full: 5);" in box
    assert "<code>train_size</code> 6,000 (full: 60,000);" in box
    assert "<code>train_subset</code> 6,000 (full: all);" in box  # never "(full: 0)"
    assert "<code>download</code> off (full: on)." in box  # never "False"
    other = section_html(page, "two")
    assert 'class="reduced"' not in other and "Nothing reduced." in other


def test_appendix_lists_the_reduced_settings_of_every_section(tmp_path: Path) -> None:
    reduced = {"one": [{"key": "epochs", "value": 2, "full": 5}]}
    page = render(tmp_path, [view(tmp_path, "one", "Text.\n", [])], {**BUILD, "reduced": reduced})
    appendix = page[page.index('<section id="appendix"'):]
    assert '<a href="#one">one</a>: <code>epochs</code> 2 (full: 5)' in appendix
    (tmp_path / "site").rename(tmp_path / "first")
    page = render(tmp_path, [view(tmp_path, "one", "Text.\n", [])])
    assert "none: every analysis ran with the full profile" in page


def test_reduced_text() -> None:
    v = SectionView(name="x", prose="", cfg=None, metrics={}, items=[], files=None,
                    status="run", reduced=[{"key": "seeds", "value": (1,), "full": (1, 2, 3)}])
    assert reduced_text(v, ["seeds"]) == ("Settings that differ from the full profile: `seeds` 1 "
                                          "(full: 1, 2, 3).")
    assert reduced_text(v, ["epochs"]) == ""
    assert reduced_text(v, []) == reduced_text(v, ["seeds"])


def test_prose_globals_reach_every_prose_and_the_page(tmp_path: Path) -> None:
    one = view(tmp_path, "one", "The original trained {{ original.batches | num }} batches.\n",
               [])
    page = render(tmp_path, [one], prose_globals={"original": {"batches": 12000}})
    assert "The original trained 12,000 batches." in page


def test_prose_globals_are_optional_and_undefined_names_fail(tmp_path: Path) -> None:
    with pytest.raises(ProseError, match="original"):
        render(tmp_path, [view(tmp_path, "one", "{{ original.batches }}\n", [])])


# --- exports -----------------------------------------------------------------------------------


def test_data_is_exported_as_json_and_csv(tmp_path: Path) -> None:
    rows = [{"digit": 0, "share": 0.1, "note": None}, {"digit": 1, "share": 0.25, "note": "x,y"}]
    one = view(tmp_path, "one", f"{table_('counts', 'Counts.')}\n\n{fig_('f')}\n",
               [table("counts", rows), figure("f")], metrics={"acc": 0.5, "name": "cnn"})
    render(tmp_path, [one])
    data = tmp_path / "site" / "data"
    assert json.loads((data / "one" / "metrics.json").read_text()) == {"acc": 0.5, "name": "cnn"}
    exported = json.loads((data / "one" / "counts.json").read_text())
    # The exported caption is the prose's.
    assert exported == {"caption": "Counts.", "columns": ["digit", "share", "note"], "rows": rows}
    parsed = list(csv.DictReader(io.StringIO((data / "one" / "counts.csv").read_text())))
    assert parsed == [{"digit": "0", "share": "0.1", "note": ""},
                      {"digit": "1", "share": "0.25", "note": "x,y"}]
    assert json.loads((data / "manifest.json").read_text())["title"] == BUILD["title"]
    assert (tmp_path / "site" / "figures" / "one" / "f.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "site" / "static" / "style.css").is_file()


def test_table_cells_are_formatted(tmp_path: Path) -> None:
    rows = [{"params": 2770634, "acc": 0.987654, "loss": 12345.6, "name": "cnn", "gap": None}]
    one = view(tmp_path, "one", table_("t"), [table("t", rows)])
    html = section_html(render(tmp_path, [one]), "one")
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells == ["2,770,634", "0.9877", "12,346", "cnn", "—"]
    assert '<td class="num">2,770,634</td>' in html and "<td>cnn</td>" in html
    # The exports keep the raw numbers.
    exported = json.loads((tmp_path / "site" / "data" / "one" / "t.json").read_text())
    assert exported["rows"] == rows


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


def test_timings_name_the_machine_that_made_the_section_not_the_one_that_built_the_page(
        tmp_path: Path) -> None:
    prose = "Trained on {{ made_on }}.\n"
    frozen = view(tmp_path, "frozen", prose, [], status="frozen")
    frozen.provenance = {"profile": "full", "device": "cuda", "device_name": "NVIDIA H200",
                         "created": "2026-12-05T00:00:00+00:00"}
    fresh = view(tmp_path, "fresh", prose, [])  # records nothing: this build made it
    page = render(tmp_path, [frozen, fresh])  # a CPU build (BUILD)
    assert "Trained on NVIDIA H200." in section_html(page, "frozen")
    assert "Trained on x86_64." in section_html(page, "fresh")


def test_no_prose_times_a_section_with_the_page_builds_device() -> None:
    # A frozen section's timings were measured on the machine that froze it: `made_on` says
    # which; `build.device` is the machine rendering the page (the byline and appendix only).
    uses = [p.name for p in (REPO / "analyses").glob("*.md") if "build.device" in p.read_text()]
    assert uses == []


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


@pytest.mark.parametrize("value, text", [
    (2770634, "2,770,634"),
    (7, "7"),
    (-1200, "-1,200"),
    (0.987654, "0.9877"),
    (0.00012345, "0.0001234"),
    (1234.5, "1,234"),  # large floats: thousands separators, no decimals (round half to even)
    (98765.4, "98,765"),
    (True, "True"),  # a bool is not a number here
    ("cnn", "cnn"),
    (float("nan"), "nan"),
    (float("inf"), "inf"),
])
def test_cell(value: object, text: str) -> None:
    assert cell(value) == text


def test_setting() -> None:
    assert setting(60000) == "60,000"
    assert setting((1, 2, 3)) == "1, 2, 3"
    assert setting([1000, 2000]) == "1,000, 2,000"
    assert setting(0.01) == "0.01" and setting(None) == "none"
    assert setting(True) == "on" and setting(False) == "off"  # never Python's True/False
    assert setting("adam") == "adam"
    # 0 where the setting declares what it means (report.engine.reduced_settings' "zero").
    assert setting(0, "all") == "all" and setting(6000, "all") == "6,000"
    assert setting((10, 100, 0), "all") == "10, 100, all"
    assert setting(0) == "0"


def test_plural() -> None:
    from report.render import plural

    assert plural(2, "epoch") == "2 epochs" and plural(1, "epoch") == "1 epoch"
    assert plural(6000, "image") == "6,000 images" and plural(3, "class", "classes") == (
        "3 classes")


# --- the first screen: summary, contents, anchors, zoom, page basics --------------------------


class Outline(HTMLParser):
    """Headings, images, ids, links and meta tags of a page, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.images: list[dict] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.meta: dict[str, str] = {}
        self.html_lang = ""
        self.icons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "img":
            self.images.append(a)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "meta" and ("property" in a or "name" in a):
            self.meta[a.get("property") or a["name"]] = a.get("content", "")
        if tag == "html":
            self.html_lang = a.get("lang", "")
        if tag == "link" and a.get("rel") == "icon":
            self.icons.append(a["href"])


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    return parser


CLASSIFIERS = {"best_test_acc_mean": 0.9921, "best_test_acc_std": 0.0005,
               "best_test_accs": [0.9916, 0.9921, 0.9926]}


def comparison(verdict: str, mean: float, std: float, n: int, unit: str = "seed",
               reason: str = "spreads", why: str = "") -> dict:
    side = {"mean": mean, "std": std, "min": mean - std, "max": mean + std, "n": n}
    return {"verdict": verdict, "difference": 0.01, "margin": 0.005, "a": side, "b": side,
            "unit": unit, "units": unit + "s", "b_unit": unit, "b_units": unit + "s",
            "reason": reason, "against": None, "why": why}


EMBEDDINGS = {"knn_tsne": 0.9512, "knn_raw": 0.9401,
              "tsne_vs_raw": comparison("ahead", 0.9512, 0.0031, 5, "fold")}
OPTIMIZERS = {"winner": None, "winner_name": None, "best": "adam", "best_name": "Adam",
              "tied_text": "Adam and RMSprop", "fair_test_mean": {"adam": 0.9812},
              "fair_test_std": {"adam": 0.0011}, "best_optimizer_name": "RMSprop"}
GAN = {"corrected_cond_acc": 0.873, "corrected_recall": 0.6123, "real_recall": 0.95,
       "learnt_digits": True}
TRANSFER = {"head_test_mean": 0.9634, "head_test_std": 0.0021, "head_test_accs": [0.96, 0.97],
            "backbone_label": "EfficientNet-Lite0",
            "head_vs_best": comparison("behind", 0.9634, 0.0021, 2)}
HEADLINES = {"classifiers": CLASSIFIERS, "embeddings": EMBEDDINGS, "optimizers": OPTIMIZERS,
             "gan": GAN, "transfer": TRANSFER}


def summary_html(page: str) -> str:
    if 'id="summary"' not in page:
        return ""
    start = page.index('<section class="summary" id="summary"')
    return page[start:page.index("</section>", start)]


def headline_views(tmp_path: Path, metrics: dict[str, dict] | None = None,
                   status: dict[str, str] | None = None) -> list[SectionView]:
    metrics = HEADLINES if metrics is None else metrics
    return [view(tmp_path, name, f"# Title of {name}\n\nText.\n", [], metrics=m,
                 status=(status or {}).get(name, "cached")) for name, m in metrics.items()]


def test_summary_renders_the_headline_numbers_from_metrics(tmp_path: Path) -> None:
    page = render(tmp_path, headline_views(tmp_path))
    summary = summary_html(page)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", summary))
    assert "99.21 ± 0.05 %" in text and "over 3 seeds" in text
    assert "95.12 ± 0.31 %" in text and "over 5 folds" in text
    assert "ahead of all raw pixels (94.01 %) over 5 folds each" in text
    assert "No clear winner" in text and "Adam and RMSprop cannot be separated" in text
    assert "98.12 ± 0.11 %" in text and "Later sections train with RMSprop" in text
    assert "87.3 %" in text and "0.612" in text and "0.950" in text
    assert "96.34 ± 0.21 %" in text and "EfficientNet-Lite0" in text
    assert "behind the stronger CNN trained from scratch" in text
    # Each headline links to its section, in article order; the summary opens the page.
    links = re.findall(r'<a class="headline-what" href="#([^"]+)"', summary)
    assert links == ["classifiers", "embeddings", "optimizers", "gan", "transfer"]
    assert page.index('id="summary"') < page.index('<nav class="toc"') < page.index('id="main"')


def test_summary_says_why_a_comparison_was_not_made(tmp_path: Path) -> None:
    transfer = {**TRANSFER, "head_vs_best": comparison(
        "cannot separate", 0.9, 0.01, 2, reason="not comparable",
        why="different test sets (500 against 10,000 images)")}
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", summary_html(render(
        tmp_path, headline_views(tmp_path, {"transfer": transfer})))))
    assert ("not compared with the stronger CNN trained from scratch: different test sets "
            "(500 against 10,000 images)") in text
    assert "behind" not in text


def test_summary_labels_each_card_with_its_profile_when_the_page_mixes_them(
        tmp_path: Path) -> None:
    views = headline_views(tmp_path)
    for v in views:
        v.reduced = [] if v.name == "embeddings" else [{"key": "epochs", "value": 1, "full": 2}]
        v.provenance = {"profile": "full" if v.name == "embeddings" else "quick"}
    summary = summary_html(render(tmp_path, views))
    labels = re.findall(r'<span class="headline-profile">([^<]+)</span>', summary)
    assert labels == ["quick profile", "full profile", "quick profile", "quick profile",
                      "quick profile"]
    (tmp_path / "site").rename(tmp_path / "mixed")
    for v in views:  # one profile throughout: no labels
        v.reduced, v.provenance = [], {"profile": "full"}
    assert "headline-profile" not in summary_html(render(tmp_path, views))


def test_summary_names_a_winner_and_a_single_seed_without_spread(tmp_path: Path) -> None:
    optimizers = {**OPTIMIZERS, "winner": "adam", "winner_name": "Adam"}
    classifiers = {"best_test_acc_mean": 0.99, "best_test_acc_std": 0.0,
                   "best_test_accs": [0.99]}
    page = render(tmp_path, headline_views(tmp_path, {"classifiers": classifiers,
                                                      "optimizers": optimizers}))
    text = re.sub(r"<[^>]+>", "", summary_html(page))
    assert "Adam ahead" in text and "No clear winner" not in text
    assert "99.00 %" in text and "one seed, so no spread" in text and "±" not in text.split(
        "Optimizers")[0]


def test_summary_skips_absent_failed_and_incomplete_sections(tmp_path: Path) -> None:
    metrics = {**HEADLINES, "gan": {**GAN, "corrected_cond_acc": None},  # a stopped run
               "transfer": {"backbone_label": "x"}}  # no accuracy recorded
    views = headline_views(tmp_path, metrics, status={"embeddings": "failed"})
    views = [v for v in views if v.name != "optimizers"]  # absent from this build
    summary = summary_html(render(tmp_path, views))
    assert re.findall(r'class="headline-what" href="#([^"]+)"', summary) == ["classifiers"]


def test_without_any_headline_there_is_no_summary(tmp_path: Path) -> None:
    data = view(tmp_path, "dataset", "Text.\n", [], metrics={"n_train": 6, "n_test": 1})
    page = render(tmp_path, [data])
    assert 'id="summary"' not in page and 'id="dataset"' in page
    (tmp_path / "b").mkdir()
    page = render(tmp_path / "b", [])
    assert 'id="summary"' not in page and "<h1>" in page


def full_page(tmp_path: Path) -> str:
    """A page with every kind of heading, figure, GIF and table, and a failed section."""
    prose = (f"# Data\n\nIntro.\n\n### Class balance\n\n{fig_('f')}\n\n"
             "### Pixel `values`\n\n{% call gif(\"g\", alt=\"moving\") %}A GIF.{% endcall %}\n\n"
             f"{table_('t')}\n\n### Class balance\n\nAgain.\n\n#### A detail\n\nText.\n\n"
             "### Custom {: #my-id }\n\nText.\n")
    data = view(tmp_path, "dataset", prose, [figure("f"), gif("g", sprite=True),
                                             table("t", [{"a": 1}])])
    second = view(tmp_path, "classifiers", f"# Models\n\n### Class balance\n\n{fig_('h')}\n",
                  [figure("h")], metrics=CLASSIFIERS)
    broken = view(tmp_path, "gan", "# GAN\n", [], status="failed", error="boom")
    return render(tmp_path, [data, second, broken])


def test_exactly_one_h1_and_no_skipped_heading_levels(tmp_path: Path) -> None:
    levels = outline(full_page(tmp_path)).headings
    assert levels.count(1) == 1 and levels[0] == 1
    for before, after in pairwise(levels):
        assert after <= before + 1, levels


def test_every_image_has_alt_text(tmp_path: Path) -> None:
    images = outline(full_page(tmp_path)).images
    assert len(images) == 3
    assert all(img.get("alt", "").strip() for img in images), images


def test_headings_figures_and_tables_have_anchors(tmp_path: Path) -> None:
    page = full_page(tmp_path)
    parsed = outline(page)
    assert len(parsed.ids) == len(set(parsed.ids)), "ids must be unique"
    for link in parsed.links:  # every in-page link has its target
        if link.startswith("#") and link != "#":
            assert link[1:] in parsed.ids, link
    for target in ("dataset", "classifiers", "gan", "summary", "abstract", "appendix",
                   "dataset-f", "dataset-g", "dataset-t", "classifiers-h",
                   "dataset-class-balance", "dataset-pixel-values", "dataset-class-balance-2",
                   "dataset-a-detail", "my-id", "classifiers-class-balance"):
        assert re.search(rf'<a class="anchor" href="#{target}" aria-label="Link to [^"]+">'
                         r"</a>", page), target
    assert '<h3 id="dataset-pixel-values">Pixel <code>values</code><a class="anchor"' in page
    # The section heading's own text is unchanged (no text in the self-link).
    assert "<h2>1. Data</h2>" in page


def test_contents_lists_each_section_with_its_subheadings(tmp_path: Path) -> None:
    page = full_page(tmp_path)
    toc = page[page.index('<nav class="toc"'):page.index("</nav>")]
    assert re.findall(r'href="#([^"]+)"', toc) == [
        "dataset", "dataset-class-balance", "dataset-pixel-values", "dataset-class-balance-2",
        "my-id", "classifiers", "classifiers-class-balance", "gan", "appendix"]
    assert "<code>values</code>" in toc and '<span class="badge">failed</span>' in toc
    # Every section of the article with an id is in the contents (the browser test clicks them).
    main = page[page.index('<main id="main">'):page.index("</main>")]
    assert set(re.findall(r'<section[^>]*\sid="([^"]+)"', main)) == {
        "dataset", "classifiers", "gan", "appendix"}


def test_figures_zoom_by_linking_their_image(tmp_path: Path) -> None:
    page = full_page(tmp_path)
    for name in ("f", "h"):
        section = "dataset" if name == "f" else "classifiers"
        src = f"figures/{section}/{name}.png"
        assert f'<a class="zoom" href="{src}"><img src="{src}"' in page
    scripts = re.findall(r'<script src="static/([^"]+)" defer>', page)
    assert {"lightbox.js", "toc.js"} <= set(scripts)


def test_page_basics_and_social_preview(tmp_path: Path) -> None:
    page = full_page(tmp_path)
    parsed = outline(page)
    assert parsed.html_lang == "en"
    assert parsed.meta["viewport"].startswith("width=device-width")
    assert parsed.icons == ["static/favicon.svg"]
    assert (tmp_path / "site" / "static" / "favicon.svg").is_file()
    assert parsed.meta["og:title"] == BUILD["title"] == parsed.meta["twitter:title"]
    assert parsed.meta["og:description"] and parsed.meta["description"]
    # The preview image is the article's first figure, relative and present.
    assert parsed.meta["og:image"] == "figures/dataset/f.png"
    assert parsed.meta["og:image:alt"] == "alt of f"
    assert (tmp_path / "site" / parsed.meta["og:image"]).is_file()
    assert parsed.meta["twitter:card"] == "summary_large_image"
    # Without a figure there is no image to preview.
    (tmp_path / "b").mkdir()
    bare = outline(render(tmp_path / "b", [view(tmp_path / "b", "one", "Text.\n", [])]))
    assert "og:image" not in bare.meta and bare.meta["twitter:card"] == "summary"


def test_pictures_keep_their_colours_in_the_dark_theme(tmp_path: Path) -> None:
    samples = view(tmp_path, "dataset", f"{fig_('samples')}\n\n{fig_('class_balance')}\n",
                   [figure("samples"), figure("class_balance")])
    page = render(tmp_path, [samples])
    assert '<figure class="figure picture" id="dataset-samples">' in page
    assert '<figure class="figure" id="dataset-class_balance">' in page
    css = (TEMPLATES / "static" / "style.css").read_text()
    dark = css[css.index("@media screen and (prefers-color-scheme: dark)"):]
    assert "invert(" in dark and "hue-rotate(180deg)" in dark and ":not(.picture)" in dark


def test_anchor_headings() -> None:
    taken = {"one-intro"}
    html, headings = anchor_headings("<h3>Intro</h3><p>x</p><h4 id=\"own\">Own &amp; <em>b</em>"
                                     "</h4><h3>Intro</h3>", "one", taken)
    assert [h["id"] for h in headings] == ["one-intro-2", "own", "one-intro-3"]
    assert headings[1]["text"] == "Own & b" and headings[1]["level"] == "4"
    assert ('<h4 id="own">Own &amp; <em>b</em><a class="anchor" href="#own" '
            'aria-label="Link to Own &amp; b"></a></h4>') in html
    assert slug("The original's <em>two</em> models") == "the-original-s-two-models"
    assert slug("(a) One rate &amp; more") == "a-one-rate-more"
    assert slug("<code></code>") == "heading"


BENCHMARKS = {
    "command": "python -m bench --device cpu --size small", "date": "2026-01-01 00:00 UTC",
    "machine": {"cpu": "Test CPU", "cpu_count": 2, "gpu": None, "versions": {"torch": "2"}},
    "benchmarks": [
        {"name": "training", "title": "training core vs DataLoader", "status": "ok", "rows": [
            {"what": "training core vs DataLoader", "device": "cpu",
             "ours": {"label": "tensors", "value": 1234.5, "unit": "img/s"},
             "theirs": {"label": "DataLoader", "value": 617.25, "unit": "img/s"},
             "ratio": 2.0, "detail": "median of 3", "skipped": ""}]},
        {"name": "tsne", "title": "openTSNE vs scikit-learn", "status": "skipped",
         "reason": "openTSNE is not installed", "rows": []}]}


def test_appendix_shows_the_committed_benchmarks_and_links_them(tmp_path: Path) -> None:
    page = render(tmp_path, [view(tmp_path, "first", "# First\n\nText.\n", [])],
                  {**BUILD, "benchmarks": BENCHMARKS})
    table = page[page.index('id="benchmarks"'):]
    assert 'href="#benchmarks"' in page
    assert "tensors: 1,234.5 img/s" in table and "DataLoader: 617.2 img/s" in table
    assert "2.00×" in table
    assert "skipped: openTSNE is not installed" in table


def test_appendix_without_benchmarks_has_no_table(tmp_path: Path) -> None:
    page = render(tmp_path, [view(tmp_path, "first", "# First\n\nText.\n", [])],
                  {**BUILD, "benchmarks": None})
    assert 'id="benchmarks"' not in page and 'href="#benchmarks"' not in page


# --- numbers from another section made with another profile -----------------------------------


def mixed_views(tmp_path: Path, prose: str) -> list[SectionView]:
    """'up' frozen with the full profile, 'down' re-run with the quick one, reading up's."""
    up = view(tmp_path, "up", "Text.\n", [], metrics={"n": 60000})
    up.provenance = {"profile": "full"}
    down = view(tmp_path, "down", prose, [], metrics={"n": 6000},
                reduced=[{"key": "epochs", "value": 1, "full": 2}])
    down.provenance, down.requires = {"profile": "quick"}, ("up",)
    return [up, down]


def test_a_number_from_a_section_of_another_profile_must_say_so(tmp_path: Path) -> None:
    with pytest.raises(ProseError, match=r"analyses/down\.md: uses numbers of \['up'\].*"
                                         r"across\(name\)"):
        render(tmp_path, mixed_views(tmp_path, "Up used {{ metrics.up.n | num }} images.\n"))
    shutil.rmtree(tmp_path / "site")
    page = render(tmp_path, mixed_views(
        tmp_path, 'Up used {{ metrics.up.n | num }} images{{ across("up") }}; we used '
                  '{{ m.n | num }} ({{ profile_of("down") }}).\n'))
    assert "Up used 60,000 images (full profile); we used 6,000 (quick profile)." in page


def test_same_profile_numbers_need_no_label_and_get_none(tmp_path: Path) -> None:
    views = mixed_views(tmp_path, 'Up used {{ metrics.up.n | num }} images{{ across("up") }}.\n')
    views[0].reduced, views[0].provenance = views[1].reduced, {"profile": "quick"}
    assert "Up used 60,000 images." in render(tmp_path, views)
    # A section whose numbers never depend on the profile (no quick overrides) needs none.
    views = mixed_views(tmp_path / "b", "Up used {{ metrics.up.n | num }} images.\n")
    views[0].varies = False
    (tmp_path / "b").mkdir(exist_ok=True)
    assert "Up used 60,000 images." in render(tmp_path / "b", views)


def banner(page: str) -> str:
    """The page's profile banner as text: tags dropped, spaces collapsed."""
    part = page[page.index('<p class="profile'):page.index("Seed ")]
    return " ".join(re.sub(r"<[^>]+>", "", part).split())


def test_a_page_of_frozen_full_results_built_on_a_cpu_is_a_full_profile_page(
        tmp_path: Path) -> None:
    """A CPU build's profile is quick, but when every section reuses frozen full-profile
    results (the published page once a GPU run froze them all), the banner says full."""
    up = view(tmp_path, "up", "Text.\n", [], metrics={"n": 60000}, status="frozen")
    up.provenance = {"profile": "full", "device_name": "NVIDIA H200", "created": ""}
    down = view(tmp_path, "down", "Text.\n", [], metrics={"n": 10}, status="frozen")
    down.provenance = {"profile": "full", "device_name": "AMD EPYC", "created": ""}
    down.requires = ("up",)
    reused = [{**BUILD["analyses"][0], "name": n, "status": "frozen"} for n in ("up", "down")]
    page = render(tmp_path, [up, down], {**BUILD, "profile": "quick", "analyses": reused})
    assert 'class="profile profile-full"' in page
    appendix = " ".join(re.sub(r"<[^>]+>", " ", page[page.index('id="appendix"'):]).split())
    assert "Profile quick on this machine, though nothing was computed: every analysis reused " \
           "frozen results" in appendix
    text = banner(page)
    assert text.startswith("Full profile. The full data and training budgets.")
    assert "Quick" not in text and "quick" not in text and "Except" not in text
    assert ("Every section reuses frozen results, made earlier (on NVIDIA H200; on AMD EPYC) "
            "and kept while the code that made them is unchanged") in text


def test_a_mixed_banner_leads_with_the_quick_profile_and_names_the_rest(tmp_path: Path) -> None:
    views = mixed_views(tmp_path, "Text.\n")
    views[0].status = "frozen"
    views[0].provenance = {"profile": "full", "device_name": "NVIDIA H200", "created": ""}
    page = render(tmp_path, views, {**BUILD, "profile": "quick"})
    assert 'class="profile profile-quick"' in page
    text = banner(page)
    assert text.startswith("Quick profile.")
    assert "Except up, made with the full profile. 1 of 2 sections reuse frozen results, " \
           "made earlier (on NVIDIA H200)" in text


def test_a_section_whose_prose_failed_is_not_named_in_the_banner(tmp_path: Path) -> None:
    """--keep-going: the full-profile section whose prose failed is not shown, so the banner
    leads with the quick profile of what is left and names no section apart (no empty link)."""
    views = mixed_views(tmp_path, "Text.\n")
    views[0].prose = "Forgot the figure.\n"
    views[0].items = [figure("f")]
    views[0].status = "frozen"
    views[0].provenance = {"profile": "full", "device": "cuda", "device_name": "", "created": ""}
    page = render(tmp_path, views, {**BUILD, "profile": "quick"}, keep_going=True)
    assert views[0].status == "failed"
    text = banner(page)
    assert text.startswith("Quick profile.") and "Except" not in text and "frozen" not in text


def test_a_frozen_section_without_a_device_name_is_placed_by_its_device(tmp_path: Path) -> None:
    views = mixed_views(tmp_path, "Text.\n")
    views[0].status = "frozen"
    views[0].provenance = {"profile": "full", "device": "cuda", "device_name": "", "created": ""}
    text = banner(render(tmp_path, views, {**BUILD, "profile": "quick"}))
    assert "1 of 2 sections reuse frozen results, made earlier (on cuda)" in text


def test_a_page_with_no_section_shown_keeps_the_builds_profile(tmp_path: Path) -> None:
    broken = view(tmp_path, "broken", "Text.\n", [], status="failed", error="boom")
    text = banner(render(tmp_path, [broken], {**BUILD, "profile": "quick"}))
    assert text.startswith("Quick profile.") and "frozen" not in text


def test_a_full_build_with_changed_settings_says_so_in_its_banner(tmp_path: Path) -> None:
    """On a GPU (profile full) with a setting changed by --set, the page is not the full
    profile's: the banner leads with the changed settings and names the section that has none."""
    views = mixed_views(tmp_path, "Text.\n")
    views[1].provenance = {"profile": "full"}
    page = render(tmp_path, views, {**BUILD, "profile": "full"})
    assert 'class="profile profile-changed"' in page
    text = banner(page)
    assert text.startswith("Changed settings.") and "Except up, made with the full profile." in text
    assert "frozen" not in text


def test_a_section_inherits_the_profile_of_the_results_it_builds_on(tmp_path: Path) -> None:
    from report.render import ProfileLabels

    up = view(tmp_path, "up", "", [], reduced=[{"key": "epochs", "value": 1, "full": 2}])
    up.provenance = {"profile": "quick"}
    down = view(tmp_path, "down", "", [])
    down.requires, down.varies = ("up",), False
    labels = ProfileLabels([up, down], "quick")
    assert labels.labels == {"up": "quick profile", "down": "quick profile"}
    page = render(tmp_path, [up, down])
    note = section_html(page, "down")
    assert "Quick profile." in note and '<a href="#up">up</a> (quick profile)' in note
