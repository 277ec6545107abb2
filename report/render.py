"""Rendering: prose (Markdown + Jinja over metrics) and templates into a static site folder.

Figures, GIFs and tables are numbered in the order the article shows them. Prose places them with
`{{ fig("name") }}`, `{{ gif("name") }}`, `{{ table("name") }}` and refers to them with
`{{ ref("name") }}` (forward references work: rendering runs twice, the first pass only counts).
Items an analysis made but its prose does not place are appended to the end of its section.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markdown
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from report.context import table_csv

PLACEHOLDER = re.compile(r"(?:<p>)?@@ITEM:([A-Za-z0-9_.-]+)@@(?:</p>)?")
KIND_LABEL = {"figure": "Figure", "gif": "Figure", "table": "Table"}


@dataclass
class SectionView:
    """What the renderer needs of one analysis: its identity, results and prose."""

    name: str
    title: str
    prose: str
    cfg: Any
    metrics: Mapping[str, Any]
    items: Sequence[Mapping[str, Any]]
    files: Path | None  # folder holding the artifact files (the cache entry)
    status: str  # "run", "cached", "failed" or "skipped"
    error: str = ""
    html: str = ""
    numbers: dict[str, int] = field(default_factory=dict)


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


FILTERS = {"pct": pct, "num": num, "seconds": seconds, "pm": pm, "mb": megabytes}


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


def _prose_html(env: Environment, view: SectionView, context: Mapping[str, Any],
                placed: list[str]) -> str:
    items = {item["name"]: item for item in view.items if item["kind"] != "asset"}

    def place(kind: str):
        def inner(name: str) -> Markup:
            item = items.get(name)
            if item is None or (kind != "any" and KIND_LABEL[item["kind"]] != KIND_LABEL[kind]):
                raise ProseError(f"analyses/{view.name}.md: {kind}({name!r}) but the analysis "
                                 f"made no such {kind}; it made {sorted(items)}")
            if name not in placed:
                placed.append(name)
            return Markup(f"\n\n@@ITEM:{name}@@\n\n")
        return inner

    def ref(name: str) -> str:
        item = items.get(name)
        if item is None:
            raise ProseError(f"analyses/{view.name}.md: ref({name!r}) names no figure or table")
        number = view.numbers.get(name)
        return f"{KIND_LABEL[item['kind']]} {number if number else '?'}"

    def asset_url(name: str) -> str:
        return f"assets/{view.name}/{name}"

    template = env.from_string(view.prose)
    text = template.render(**context, m=view.metrics, cfg=view.cfg, fig=place("figure"),
                           gif=place("gif"), table=place("table"), ref=ref,
                           asset_url=asset_url)
    return markdown.markdown(text, extensions=["tables", "admonition", "attr_list",
                                               "fenced_code", "sane_lists"])


def _item_html(env: Environment, view: SectionView, item: Mapping[str, Any]) -> str:
    number = view.numbers[item["name"]]
    label = f"{KIND_LABEL[item['kind']]} {number}"
    partial = env.get_template(f"partials/{item['kind']}.html")
    return partial.render(item=item, label=label, section=view.name,
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
        raise ProseError(f"analyses/{view.name}.md: {type(exc).__name__}: {exc}") from exc


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
        shown = placed + [i["name"] for i in view.items
                          if i["kind"] != "asset" and i["name"] not in placed]
        kinds = {i["name"]: i["kind"] for i in view.items}
        for name in shown:
            label = KIND_LABEL[kinds[name]]
            counters[label] += 1
            view.numbers[name] = counters[label]
    # Pass 2: render with numbers known, swap placeholders for partials.
    for view in views:
        if view.status in ("failed", "skipped"):
            continue
        placed = []
        html = _checked_prose(env, view, context, placed)
        by_name = {i["name"]: i for i in view.items}
        html = PLACEHOLDER.sub(lambda m: _item_html(env, view, by_name[m.group(1)]), html)
        rest = [i for i in view.items if i["kind"] != "asset" and i["name"] not in placed]
        html += "".join(_item_html(env, view, item) for item in rest)
        view.html = html


# --- the site ---------------------------------------------------------------------------------


def export_data(view: SectionView, site: Path) -> None:
    """site/data/<name>/: metrics.json plus each table as JSON and CSV."""
    folder = site / "data" / view.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(view.metrics, indent=1, sort_keys=True))
    for item in view.items:
        if item["kind"] == "table":
            (folder / f"{item['name']}.json").write_text(
                json.dumps({"caption": item["caption"], "columns": item["columns"],
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
                build: Mapping[str, Any], keep_going: bool = False) -> Path:
    """Write index.html, static files and data exports into `site` (an empty folder)."""
    env = make_environment(templates)
    all_metrics = {v.name: v.metrics for v in views}
    render_sections(env, views, {"metrics": all_metrics, "build": build}, keep_going)
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
    html = env.get_template("article.html").render(sections=views, build=build, scripts=scripts)
    index = site / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
