"""Rendering: prose (Markdown + Jinja over metrics) and templates into a static site folder.

Every word a reader sees is prose. A section's prose starts with its title (`# Title`), and
places each figure, GIF and table with its caption and alt text:

    {% call fig("name", alt="What the image shows.") %}Caption, with {{ m.x | pct }}.{% endcall %}
    {{ table("name", caption="A short caption.") }}

and refers to them with `{{ ref("name") }}` (forward references work: rendering runs twice, the
first pass only counts). An item the analysis made but the prose does not place, or places
without its caption or alt text, is an error naming the prose file. Comparative sentences use
the `claim` filter over a `report.compare.Comparison`; `reduced_note(...)` says which settings
of this build differ from the full profile. Every heading of the prose gets an id
(`section-slug`) and a self-link, and is listed for the table of contents.
"""

from __future__ import annotations

import html as html_lib
import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markdown
from jinja2 import (
    ChainableUndefined,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)
from markupsafe import Markup, escape

from report.compare import AHEAD, BEHIND
from report.context import table_csv

PLACEHOLDER = re.compile(r"(?:<p>)?@@ITEM:([A-Za-z0-9_.-]+)@@(?:</p>)?")
KIND_LABEL = {"figure": "Figure", "gif": "Figure", "table": "Table"}


@dataclass
class SectionView:
    """What the renderer needs of one analysis: its identity, results and prose."""

    name: str
    prose: str
    cfg: Any
    metrics: Mapping[str, Any]
    items: Sequence[Mapping[str, Any]]
    files: Path | None  # folder holding the artifact files (the cache entry)
    status: str  # "run", "cached", "frozen", "failed" or "skipped"
    error: str = ""
    reduced: Sequence[Mapping[str, Any]] = ()  # settings differing from the full profile
    title: str = ""  # rendered from the prose's first line
    prose_file: str = ""  # where the prose lives, for error messages (default analyses/<name>.md)
    html: str = ""
    numbers: dict[str, int] = field(default_factory=dict)
    captions: dict[str, dict[str, str]] = field(default_factory=dict)
    headings: list[dict[str, str]] = field(default_factory=list)  # the prose's own, for the TOC
    # Who made the results: profile, device, device_name, created, and frozen_state (none,
    # frozen, stale: re-run because the code changed since it was frozen, damaged, unused).
    provenance: Mapping[str, Any] = field(default_factory=dict)


# --- filters for prose ------------------------------------------------------------------------


def pct(value: float | None, digits: int = 2) -> str:
    """0.98123 -> '98.12 %' (a fraction shown as a percentage)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f} %"


def num(value: float | int | None, digits: int = 0) -> str:
    """70000 -> '70,000'; 3.14159 with digits=2 -> '3.14'."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def seconds(value: float | None) -> str:
    """A duration: '0.42 s', '68 s', '3.1 min' (up to two hours), '2.5 h'."""
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def pm(mean: float, std: float, digits: int = 2, percent: bool = True) -> str:
    """Mean ± std, as percentages by default: '99.61 ± 0.03 %'."""
    scale, unit = (100, " %") if percent else (1, "")
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}{unit}"


def megabytes(value: float | None) -> str:
    """Bytes as MB with one decimal."""
    return "n/a" if value is None else f"{value / 1e6:.1f} MB"


def claim(comparison: Mapping[str, Any], a: str, b: str, percent: bool = True,
          digits: int = 2) -> str:
    """A `Comparison.as_metric()` as a sentence: 'A is ahead of B by ...' or a tie.

    Differences of fractions are given in percentage points (`percent`), else as they are.
    """
    scale, unit = (100, " percentage points") if percent else (1, "")
    diff = f"{scale * abs(comparison['difference']):.{digits}f}{unit}"
    margin = f"{scale * comparison['margin']:.{digits}f}{unit}"
    if comparison["verdict"] == AHEAD:
        return f"{a} is ahead of {b} by {diff}, more than their combined spread of {margin}"
    if comparison["verdict"] == BEHIND:
        return f"{a} is behind {b} by {diff}, more than their combined spread of {margin}"
    if comparison["a"]["n"] == 1 and comparison["b"]["n"] == 1:
        return (f"{a} and {b} cannot be separated: one result each, so their noise is "
                f"unknown (difference {diff})")
    return (f"{a} and {b} cannot be separated: the difference of {diff} is within their "
            f"combined spread of {margin}")


def with_article(value: Any) -> str:
    """A number with its indefinite article, as it is read aloud: 'an 8', 'an 11', 'a 7'."""
    text = str(value)
    spoken_vowel = text.startswith("8") or text in ("11", "18") or text.startswith(("11,", "18,"))
    return f"{'an' if spoken_vowel else 'a'} {text}"


# Columns whose integers are identifiers, not quantities: no thousands separators.
ID_COLUMNS = ("index", "seed", "digit", "step")


def cell(value: Any, column: str = "") -> str:
    """A table cell: integers with thousands separators (2,770,634), floats to 4 digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value) if column in ID_COLUMNS else f"{value:,}"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def setting(value: Any) -> str:
    """A config value for the page: thousands separators, tuples as lists."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (tuple, list)):
        return ", ".join(setting(v) for v in value)
    return str(value)


FILTERS = {"pct": pct, "num": num, "seconds": seconds, "pm": pm, "mb": megabytes,
           "claim": claim, "setting": setting, "cell": cell, "a": with_article}


def make_environment(templates: Path) -> Environment:
    """The Jinja environment: autoescape on, undefined names are errors, our filters."""
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(enabled_extensions=("html", "md"), default=True,
                                     default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


# --- sections ---------------------------------------------------------------------------------


class ProseError(RuntimeError):
    """Prose refers to something that does not exist; names the file and the item."""


def split_title(prose: str) -> tuple[str, str]:
    """(title line without '# ', the rest) of a prose file; ('', prose) without a title."""
    text = prose.lstrip()
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return first[2:].strip(), rest
    return "", prose


def listing_title(prose: str, name: str, metrics: Mapping[str, Any] | None = None,
                  cfg: Any = None) -> str:
    """A section's title as plain text for `--list`: rendered from its metrics when they are
    known, else with each expression shown as '…' and every condition taken as false."""
    title, _ = split_title(prose)
    if not title:
        return name
    if metrics:
        strict = Environment(undefined=StrictUndefined)
        strict.filters.update(FILTERS)
        try:
            return strict.from_string(title).render(m=metrics, cfg=cfg).strip() or name
        except Exception:  # noqa: BLE001 - a title that needs more than the metrics
            pass
    loose = Environment(undefined=ChainableUndefined)
    return loose.from_string(re.sub(r"\{\{.*?\}\}", "…", title)).render().strip() or name


def reduced_text(view: SectionView, keys: Sequence[str]) -> str:
    """'Reduced settings: epochs 2 (full profile: 10).' for those of `keys` that differ."""
    known = {r["key"]: r for r in view.reduced}
    parts = [f"{k} {setting(known[k]['value'])} (full profile: {setting(known[k]['full'])})"
             for k in (keys or known) if k in known]
    return f"Reduced settings: {'; '.join(parts)}." if parts else ""


def _inline_markdown(text: str) -> Markup:
    """Markdown of a caption, without the paragraph around it."""
    html = markdown.markdown(str(text).strip())
    html = re.sub(r"^<p>(.*)</p>$", r"\1", html, flags=re.S)
    return Markup(html)


def _prose_html(env: Environment, view: SectionView, context: Mapping[str, Any],
                placed: list[str]) -> str:
    items = {item["name"]: item for item in view.items if item["kind"] != "asset"}
    where = view.prose_file or f"analyses/{view.name}.md"

    def place(kind: str):
        def inner(name: str, caption: str | None = None, alt: str | None = None,
                  caller: Any = None) -> Markup:
            item = items.get(name)
            if item is None or KIND_LABEL[item["kind"]] != KIND_LABEL[kind]:
                raise ProseError(f"{where}: {kind}({name!r}) but the analysis "
                                 f"made no such {kind}; it made {sorted(items)}")
            if caller is not None:
                caption = caller()
            if caption is None or not str(caption).strip():
                raise ProseError(f"{where}: {kind}({name!r}) needs a caption (caption=... or "
                                 "a {% call %} block)")
            if kind != "table" and not (alt and str(alt).strip()):
                raise ProseError(f"{where}: {kind}({name!r}) needs alt text (alt=...) that "
                                 "describes the image for readers who cannot see it")
            view.captions[name] = {"caption": _inline_markdown(
                caption if isinstance(caption, Markup) else escape(caption)),
                "alt": str(alt or "")}
            if name in placed:
                raise ProseError(f"{where}: {kind}({name!r}) is placed twice")
            placed.append(name)
            return Markup(f"\n\n@@ITEM:{name}@@\n\n")
        return inner

    def ref(name: str) -> str:
        item = items.get(name)
        if item is None:
            raise ProseError(f"{where}: ref({name!r}) names no figure or table")
        number = view.numbers.get(name)
        return f"{KIND_LABEL[item['kind']]} {number if number else '?'}"

    def asset_url(name: str) -> str:
        return f"assets/{view.name}/{name}"

    def reduced_note(*keys: str) -> str:
        return reduced_text(view, keys)

    title, body = split_title(view.prose)
    names = dict(**context, m=view.metrics, cfg=view.cfg, fig=place("figure"),
                 gif=place("gif"), table=place("table"), ref=ref, asset_url=asset_url,
                 reduced=view.reduced, reduced_note=reduced_note)
    view.title = env.from_string(title).render(**names).strip() if title else view.name
    text = env.from_string(body).render(**names)
    missing = [name for name in items if name not in placed]
    if missing:
        raise ProseError(f"{where}: the analysis made {missing} but the prose does not place "
                         "them; add {{ fig/gif/table(name, ...) }} with a caption")
    return markdown.markdown(text, extensions=["tables", "admonition", "attr_list",
                                               "fenced_code", "sane_lists"])


def _item_html(env: Environment, view: SectionView, item: Mapping[str, Any]) -> str:
    number = view.numbers[item["name"]]
    label = f"{KIND_LABEL[item['kind']]} {number}"
    partial = env.get_template(f"partials/{item['kind']}.html")
    return partial.render(item=item, label=label, section=view.name,
                          caption=view.captions[item["name"]]["caption"],
                          alt=view.captions[item["name"]]["alt"],
                          anchor=f"{view.name}-{item['name']}",
                          src=f"figures/{view.name}/{item.get('file', '')}",
                          data_base=f"data/{view.name}/{item['name']}")


def _checked_prose(env: Environment, view: SectionView, context: Mapping[str, Any],
                   placed: list[str]) -> str:
    """_prose_html, with any template error reported as a ProseError naming the prose file."""
    try:
        return _prose_html(env, view, context, placed)
    except ProseError:
        raise
    except Exception as exc:  # noqa: BLE001 - Jinja and filters raise many types
        where = view.prose_file or f"analyses/{view.name}.md"
        raise ProseError(f"{where}: {type(exc).__name__}: {exc}") from exc


def render_sections(env: Environment, views: Sequence[SectionView],
                    context: Mapping[str, Any], keep_going: bool = False) -> None:
    """Fill `view.html` for each section, numbering figures and tables across the article.

    A section whose prose fails raises ProseError, or with `keep_going` is marked failed.
    """
    # Pass 1: learn the order in which items are shown, to number them.
    counters = {"Figure": 0, "Table": 0}
    for view in views:
        if view.status in ("failed", "skipped"):
            continue
        placed: list[str] = []
        try:
            _checked_prose(env, view, context, placed)
        except ProseError as exc:
            if not keep_going:
                raise
            view.status, view.error = "failed", str(exc)
            continue
        kinds = {i["name"]: i["kind"] for i in view.items}
        for name in placed:
            label = KIND_LABEL[kinds[name]]
            counters[label] += 1
            view.numbers[name] = counters[label]
    # Pass 2: render with numbers known, anchor the headings, swap placeholders for partials.
    # Ids the templates use (templates/article.html, partials/, static/lightbox.js).
    taken = {"main", "contents", "contents-title", "summary", "summary-title", "abstract",
             "rule", "appendix", "appendix-title", "lightbox-caption",
             *(v.name for v in views), *(f"{v.name}-{i['name']}" for v in views for i in v.items)}
    for view in views:
        if view.status in ("failed", "skipped"):
            continue
        placed = []
        html = _checked_prose(env, view, context, placed)
        html, view.headings = anchor_headings(html, view.name, taken)
        by_name = {i["name"]: i for i in view.items}
        view.html = PLACEHOLDER.sub(lambda m: _item_html(env, view, by_name[m.group(1)]), html)


def preview_image(views: Sequence[SectionView]) -> dict[str, str] | None:
    """The article's first figure (its Figure 1), for social previews: {"src", "alt"}."""
    for view in views:
        if view.status in ("failed", "skipped"):
            continue
        kinds = {i["name"]: i for i in view.items}
        for name, _number in sorted(view.numbers.items(), key=lambda kv: kv[1]):
            item = kinds[name]
            if item["kind"] == "figure" and item.get("file"):
                return {"src": f"figures/{view.name}/{item['file']}",
                        "alt": view.captions[name]["alt"]}
    return None


# --- anchors on headings --------------------------------------------------------------------

HEADING = re.compile(r"<h([1-6])((?:\s[^>]*)?)>(.*?)</h\1>", re.S)
ID_ATTRIBUTE = re.compile(r"""\sid=["']([^"']+)["']""")
TAG = re.compile(r"<[^>]+>")


def slug(text: str) -> str:
    """'The original's <em>two</em> models' -> 'the-original-s-two-models' (for an id)."""
    plain = TAG.sub("", text)
    plain = re.sub(r"&#?\w+;", " ", plain)
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-") or "heading"


def anchor_link(target: str, label: str) -> str:
    """A self-link: empty text (CSS draws its mark), so the heading's own text is unchanged."""
    return (f'<a class="anchor" href="#{escape(target)}" '
            f'aria-label="Link to {escape(label)}"></a>')


def anchor_headings(html: str, prefix: str, taken: set[str]) -> tuple[str, list[dict[str, str]]]:
    """Give every heading in `html` an id (`prefix-slug`, unique in `taken`) and a self-link.

    An id the prose set itself ({: #id }) is kept. Returns the new HTML and, in order,
    {"level", "id", "html", "text"} of each heading (for the table of contents; "text" is
    plain text, not HTML).
    """
    headings: list[dict[str, str]] = []

    def replace(match: re.Match) -> str:
        level, attrs, inner = match.group(1), match.group(2), match.group(3)
        text = " ".join(html_lib.unescape(TAG.sub("", inner)).split())
        found = ID_ATTRIBUTE.search(attrs)
        if found:
            ident = found.group(1)
        else:
            base = ident = f"{prefix}-{slug(inner)}"
            n = 1
            while ident in taken:
                n += 1
                ident = f"{base}-{n}"
            attrs = f' id="{ident}"{attrs}'
        taken.add(ident)
        headings.append({"level": level, "id": ident, "html": inner.strip(), "text": text})
        return f"<h{level}{attrs}>{inner}{anchor_link(ident, text)}</h{level}>"

    return HEADING.sub(replace, html), headings


# --- the site ---------------------------------------------------------------------------------


def export_data(view: SectionView, site: Path) -> None:
    """site/data/<name>/: metrics.json plus each table as JSON and CSV."""
    folder = site / "data" / view.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(view.metrics, indent=1, sort_keys=True))
    for item in view.items:
        if item["kind"] == "table":
            caption = str(view.captions.get(item["name"], {}).get("caption", ""))
            (folder / f"{item['name']}.json").write_text(
                json.dumps({"caption": caption, "columns": item["columns"],
                            "rows": item["rows"]}, indent=1))
            (folder / f"{item['name']}.csv").write_text(table_csv(item["columns"], item["rows"]))


def copy_files(view: SectionView, site: Path) -> None:
    """Copy figure, GIF and asset files from the cache entry into the site."""
    if view.files is None:
        return
    for item in view.items:
        if "file" not in item:
            continue
        target_dir = site / ("assets" if item["kind"] == "asset" else "figures") / view.name
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(view.files / item["file"], target_dir / item["file"])


def render_site(site: Path, templates: Path, views: Sequence[SectionView],
                build: Mapping[str, Any], keep_going: bool = False,
                prose_globals: Mapping[str, Any] | None = None) -> Path:
    """Write index.html, static files and data exports into `site` (an empty folder).

    `prose_globals` are names every prose file and the article template can use (the build
    passes the original post's published numbers as `original`).
    """
    env = make_environment(templates)
    all_metrics = {v.name: v.metrics for v in views}
    context = {"metrics": all_metrics, "build": build, **(prose_globals or {})}
    render_sections(env, views, context, keep_going)
    for view in views:
        if view.status in ("failed", "skipped"):
            continue
        copy_files(view, site)
        export_data(view, site)
    (site / "data").mkdir(parents=True, exist_ok=True)
    (site / "data" / "manifest.json").write_text(json.dumps(build, indent=1, sort_keys=True))
    shutil.copytree(templates / "static", site / "static")
    # Every script in templates/static/ is loaded (deferred); each one looks for its own
    # elements, so a page without them costs nothing but the download.
    scripts = sorted(p.name for p in (templates / "static").glob("*.js"))
    html = env.get_template("article.html").render(sections=views, scripts=scripts,
                                                   preview=preview_image(views), **context)
    index = site / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
