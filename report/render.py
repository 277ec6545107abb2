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

from report.compare import (AHEAD, BEHIND, BY_SPREAD, NOT_COMPARABLE, NOT_REPEATS, ONE_RUN,
                            UNITS_DIFFER, ZERO_SPREAD)
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
    # Whether the section's own numbers depend on the profile (its analysis has quick
    # overrides), and the analyses it requires (whose profile its numbers inherit).
    varies: bool = True
    requires: Sequence[str] = ()


def profile_label(view: SectionView, build_profile: str = "") -> str:
    """Which settings made a section's own numbers: 'full profile' when none differs from the
    full profile, else the profile that made them ('quick profile'), or 'changed settings' for
    a full-profile build with settings changed by --set. (ProfileLabels adds the upstream.)"""
    if not view.reduced:
        return "full profile"
    made = view.provenance.get("profile") or build_profile
    return f"{made} profile" if made and made != "full" else "changed settings"


class ProfileLabels:
    """The profile label of every section of a page, and whether the page mixes them.

    A number taken from another section whose label differs from the reader's section must say
    which profile made it: the prose calls `across(name)` (' (full profile)' or '') or
    `profile_of(name)` next to it, and `Tracked` checks that it did (a ProseError otherwise).
    """

    def __init__(self, views: Sequence[SectionView], build_profile: str = "") -> None:
        shown = {v.name: v for v in views if v.status not in ("failed", "skipped")}
        self.labels: dict[str, str] = {}
        self.varies: dict[str, bool] = {}

        def visit(name: str) -> None:
            # A section's numbers are its own settings' and its upstream's: a section with
            # nothing reduced, built on quick-profile results, is a quick-profile section.
            if name in self.labels or name not in shown:
                return
            view = shown[name]
            upstream = [u for u in view.requires if u in shown]
            for u in upstream:
                visit(u)
            own = profile_label(view, build_profile)
            inherited = [self.labels[u] for u in upstream if self.labels[u] != "full profile"]
            self.labels[name] = own if own != "full profile" or not inherited else inherited[0]
            self.varies[name] = (view.varies or bool(view.reduced)
                                 or any(self.varies[u] for u in upstream))

        self.order = list(shown)  # page order (labels fill in upstream first)
        for name in shown:
            visit(name)
        found = {self.labels[n] for n in self.labels if self.varies[n]}
        self.mixed = len(found) > 1
        # The banner's lead: what every section whose numbers depend on the profile shares,
        # else the quick profile where any section has it (the reader's main caveat). Not the
        # build's profile: a CPU build that reuses frozen full-profile results for every
        # section is a full-profile page. With nothing shown, the quick build's stays quick;
        # with nothing that varies, every number is the full profile's.
        self.lead = (found.pop() if len(found) == 1
                     else "quick profile" if "quick profile" in found
                     else "changed settings" if found
                     else "quick profile" if build_profile == "quick" and not shown
                     else "full profile")

    def apart(self) -> list[tuple[str, list[str]]]:
        """The sections whose numbers carry another label than the banner's lead, grouped by
        label in page order: [("full profile", ["dataset", ...]), ...]."""
        groups: dict[str, list[str]] = {}
        for name in self.order:
            if self.varies[name] and self.labels[name] != self.lead:
                groups.setdefault(self.labels[name], []).append(name)
        return list(groups.items())

    def differs(self, other: str, reader: str) -> bool:
        """Whether numbers of section `other`, read in section `reader`, need their label."""
        return (other in self.labels and other != reader and self.varies.get(other, False)
                and self.labels[other] != self.labels.get(reader))


class Tracked(dict):
    """The `metrics` of every section, as a prose reads them: records which sections it used."""

    def __init__(self, metrics: Mapping[str, Any], used: set[str]) -> None:
        super().__init__(metrics)
        self.used = used

    def __getitem__(self, name: str) -> Any:
        self.used.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        if name in self:
            self.used.add(name)
        return super().get(name, default)


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


def _count(n: int, singular: str, many: str) -> str:
    """'one seed', '3 seeds': `plural` with a word for one."""
    return f"one {singular}" if n == 1 else plural(n, singular, many)


def repeats(comparison: Mapping[str, Any]) -> str:
    """What a comparison's sides repeat: 'over 3 seeds each', 'over 3 and 2 seeds', 'over 10
    disjoint test parts' (a fixed number on the other side)."""
    unit, units = comparison["unit"], comparison["units"]
    na, nb = comparison["a"]["n"], comparison["b"]["n"]
    if comparison.get("against"):
        return f"over {_count(na, unit, units)}"
    if comparison.get("b_unit") not in (None, unit):
        return (f"over {_count(na, unit, units)} against "
                f"{_count(nb, comparison['b_unit'], comparison['b_units'])}")
    if na == nb:
        return f"over {na:,} {units} each" if na > 1 else f"over one {unit} each"
    return f"over {na:,} and {nb:,} {units}"


def why_unseparated(comparison: Mapping[str, Any]) -> str:
    """Why the spreads could not decide a comparison, in a few words ('' when they did)."""
    reason, name, names = comparison.get("reason"), comparison["unit"], comparison["units"]
    if reason == ONE_RUN:
        both = comparison["a"]["n"] == 1 and (comparison.get("against")
                                              or comparison["b"]["n"] == 1)
        return (f"one {name}{'' if comparison.get('against') else ' each'}, so the noise is "
                "unknown" if both else f"one side rests on one {name}, so its noise is unknown")
    if reason == ZERO_SPREAD:
        return f"every {name} gave the same value: a spread of zero measures no noise"
    if reason == UNITS_DIFFER:
        return f"one side repeats {names}, the other {comparison['b_units']}"
    if reason in (NOT_REPEATS, NOT_COMPARABLE):
        return comparison["why"]
    return ""


def claim(comparison: Mapping[str, Any], a: str, b: str, percent: bool = True,
          digits: int = 2) -> str:
    """A `Comparison.as_metric()` as a sentence that names what was repeated: 'A is ahead of B
    by ... over 3 seeds each, ...', a tie within the spreads, or why the runs cannot separate
    (one run, zero spread, different units, not independent repeats, not comparable).

    Differences of fractions are given in percentage points (`percent`), else as they are.
    """
    scale, unit = (100, " percentage points") if percent else (1, "")
    diff = f"{scale * abs(comparison['difference']):.{digits}f}{unit}"
    margin = f"{scale * comparison['margin']:.{digits}f}{unit}"
    fixed = bool(comparison.get("against"))
    spread = "its spread" if fixed else "their combined spread"
    over = repeats(comparison)
    reason = comparison.get("reason", BY_SPREAD)
    if comparison["verdict"] in (AHEAD, BEHIND):
        side = "ahead of" if comparison["verdict"] == AHEAD else "behind"
        return f"{a} is {side} {b} by {diff} {over}, more than {spread} of {margin}"
    if reason == NOT_COMPARABLE:
        return f"{a} and {b} are not compared: {comparison['why']}"
    tie = f"{a} and {b} cannot be separated"
    name, names = comparison["unit"], comparison["units"]
    if reason == ONE_RUN:
        na, nb = comparison["a"]["n"], comparison["b"]["n"]
        if fixed:
            return f"{tie}: one {name}, so its noise is unknown (difference {diff})"
        if na == nb == 1:
            return f"{tie}: one {name} each, so their noise is unknown (difference {diff})"
        single = a if na == 1 else b
        return f"{tie}: {single} rests on one {name}, so its noise is unknown (difference {diff})"
    if reason == ZERO_SPREAD:
        flat = [label for label, side in ((a, "a"), (b, "b"))
                if comparison[side]["n"] > 1 and comparison[side]["min"] == comparison[side]["max"]]
        n = comparison["a"]["n"] if flat[0] == a else comparison["b"]["n"]
        who = f"{a} and {b} are each the same" if len(flat) == 2 else f"{flat[0]} is the same"
        return (f"{tie}: {who} on all {n:,} {names}, and a spread of zero measures no noise "
                f"(difference {diff})")
    if reason == UNITS_DIFFER:
        return (f"{tie}: one side repeats {names}, the other {comparison['b_units']}, so their "
                f"spreads measure different noise (difference {diff})")
    if reason == NOT_REPEATS:
        return f"{tie}: {comparison['why']} (difference {diff})"
    return f"{tie} {over}: the difference of {diff} is within {spread} of {margin}"


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


def setting(value: Any, zero: str | None = None) -> str:
    """A config value for the page: thousands separators, tuples as lists, booleans as on/off,
    and 0 as `zero` where the setting declares what 0 means (e.g. 'all' for a subset size;
    see `reduced_settings` in report/engine.py)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ", ".join(setting(v, zero) for v in value)
    if zero is not None and isinstance(value, (int, float)) and value == 0:
        return zero
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def plural(n: int | float, singular: str, many: str | None = None) -> str:
    """A count with its noun: 2 -> '2 epochs', 1 -> '1 epoch', 6000 -> '6,000 images'."""
    word = singular if n == 1 else (many or singular + "s")
    return f"{n:,} {word}"


FILTERS = {"pct": pct, "num": num, "seconds": seconds, "pm": pm, "mb": megabytes,
           "claim": claim, "repeats": repeats, "why_unseparated": why_unseparated,
           "setting": setting, "plural": plural,
           "cell": cell, "a": with_article}


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
    """'Settings that differ from the full profile: `epochs` 2 (full: 10).' for those of `keys`
    that differ (all of them without `keys`); '' when none does."""
    known = {r["key"]: r for r in view.reduced}
    parts = [f"`{k}` {setting(known[k]['value'], known[k].get('zero'))} "
             f"(full: {setting(known[k]['full'], known[k].get('zero'))})"
             for k in (keys or known) if k in known]
    return f"Settings that differ from the full profile: {'; '.join(parts)}." if parts else ""


def made_on(view: SectionView, build: Mapping[str, Any]) -> str:
    """The machine that made a section's results ('NVIDIA H200'), for its timings: a frozen
    section's may differ from this build's; the build's when the section records none."""
    own = view.provenance
    return (own.get("device_name") or own.get("device") or build.get("device_name")
            or build.get("device") or "")


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

    profiles: ProfileLabels = context.get("profiles") or ProfileLabels([view])
    used: set[str] = set()
    labelled: set[str] = set()

    def profile_of(name: str) -> str:
        """'full profile' / 'quick profile': which settings made section `name`'s numbers."""
        labelled.add(name)
        return profiles.labels.get(name, "")

    def across(name: str) -> str:
        """' (full profile)' after a number from section `name` when another profile than
        this section's made it, else ''."""
        labelled.add(name)
        return f" ({profiles.labels[name]})" if profiles.differs(name, view.name) else ""

    title, body = split_title(view.prose)
    names = {**context, **dict(m=view.metrics, cfg=view.cfg, fig=place("figure"),
                               gif=place("gif"), table=place("table"), ref=ref,
                               asset_url=asset_url, reduced=view.reduced,
                               reduced_note=reduced_note, profile_of=profile_of, across=across,
                               made_on=made_on(view, context.get("build", {})),
                               metrics=Tracked(context.get("metrics", {}), used))}
    view.title = env.from_string(title).render(**names).strip() if title else view.name
    text = env.from_string(body).render(**names)
    missing = [name for name in items if name not in placed]
    if missing:
        raise ProseError(f"{where}: the analysis made {missing} but the prose does not place "
                         "them; add {{ fig/gif/table(name, ...) }} with a caption")
    unlabelled = sorted(n for n in used - labelled if profiles.differs(n, view.name))
    if unlabelled:
        raise ProseError(
            f"{where}: uses numbers of {unlabelled}, made with another profile than this "
            f"section's ({profiles.labels.get(view.name)}: "
            f"{', '.join(f'{n}: {profiles.labels[n]}' for n in unlabelled)}); say which, "
            "with across(name) or profile_of(name) beside them")
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
    profiles = ProfileLabels(views, build.get("profile", ""))
    context = {"metrics": all_metrics, "build": build, "profiles": profiles,
               **(prose_globals or {})}
    render_sections(env, views, context, keep_going)
    # Again for the banner and the summary: a section whose prose failed (--keep-going) is
    # no longer shown and must not be named there.
    context["profiles"] = ProfileLabels(views, build.get("profile", ""))
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
