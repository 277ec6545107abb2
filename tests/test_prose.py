"""Every word and number a reader sees is earned: no typed numbers in prose or templates.

Numbers on the page are rendered from metrics, config or the original's published facts
(`{{ m.x | pct }}`, `{{ cfg.epochs }}`, `{{ original.batch_size }}`), never typed, so that they
are always those of the build that made the page. The scan below strips what is not prose
(Jinja tags, code, HTML markup) and reports every digit token left that is not glued to a word
(conv1, fc2, PCA-50, t-SNE-2, 2-D and 8-bit are names, not numbers). Captions and alt text
written as string arguments of `fig`/`gif`/`table` are prose too and are scanned.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# --- the scanner -------------------------------------------------------------------------------

JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
WORDS_ARGUMENT = re.compile(r"\b(?:alt|caption)\s*=\s*")  # caption=..., alt=... in a tag
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', re.S)
NOT_PROSE = [
    re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.S | re.M),  # fenced code blocks
    re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S),  # code spans
    re.compile(r"<!--.*?-->", re.S),  # HTML comments
    re.compile(r"</?[A-Za-z][^<>]*>", re.S),  # HTML tags with their attributes
    re.compile(r"&#?\w+;"),  # HTML entities (&#215;)
    re.compile(r"(?<=\])\([^()\s]*\)"),  # Markdown link targets: [text](#target-2)
    re.compile(r"\{:[^}]*\}"),  # Markdown attribute lists
    re.compile(r"^[ \t]*\d+\.(?=[ \t])", re.M),  # ordered-list markers: markup, not claims
]
# Typed numbers that are allowed, each with its reason.
ALLOWED = [
    (re.compile(r"\b[Mm]odel [12]\b"), "the names of the original post's two models"),
    (re.compile(r"\[0, 1\]"), "the pixel scale [0, 1]: a definition, not a result"),
]
# A digit token not glued to a word: not preceded by a letter/digit/underscore or by a hyphen,
# dot or slash that follows one (PCA-50, t-SNE-2, v1.2), not followed by a letter or hyphen
# (conv1, 2-D, 8-bit). Subscripts such as log₁₀ are not decimal digits and never match.
NUMBER = re.compile(r"(?<!\w)(?<!\w[-./])\d+(?:[.,]\d+)*(?![\w\-])")


def _blank(match: re.Match) -> str:
    """Spaces in place of the match, keeping its newlines so line numbers stay right."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _argument_end(text: str, start: int) -> int:
    """Where the keyword argument starting at `start` ends (a top-level ',' or ')')."""
    depth, quote, i = 0, "", start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1
    return len(text)


def _keep_words(match: re.Match) -> str:
    """A Jinja tag blanked, except the string literals of its caption= and alt= arguments."""
    tag = match.group(0)
    kept = [c if c == "\n" else " " for c in tag]
    for argument in WORDS_ARGUMENT.finditer(tag):
        end = _argument_end(tag, argument.end())
        for literal in STRING.finditer(tag, argument.end(), end):
            group = 1 if literal.group(1) is not None else 2
            a, b = literal.span(group)
            kept[a:b] = tag[a:b]
    return "".join(kept)


def prose_text(text: str) -> str:
    """What a reader reads as typed text: no Jinja, code or markup, same line numbers."""
    text = JINJA.sub(_keep_words, text)
    for pattern in NOT_PROSE:
        text = pattern.sub(_blank, text)
    for pattern, _reason in ALLOWED:
        text = pattern.sub(_blank, text)
    return text


def typed_numbers(text: str) -> list[tuple[int, str]]:
    """(line number, number) of every typed number in a prose or template text."""
    stripped = prose_text(text)
    return [(stripped.count("\n", 0, m.start()) + 1, m.group(0))
            for m in NUMBER.finditer(stripped)]


def offences(path: Path) -> list[str]:
    """'file:line: text' for each line of `path` holding a typed number."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found: dict[int, list[str]] = {}
    for line, number in typed_numbers(text):
        found.setdefault(line, []).append(number)
    where = path.relative_to(REPO)
    return [f"{where}:{line}: {', '.join(numbers)} in: {lines[line - 1].strip()}"
            for line, numbers in sorted(found.items())]


# --- the scanner on examples -------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "conv1 and fc2 feed PCA-50 and t-SNE-2 maps in 2-D and 3-D.",
    "Pixels are 8-bit grey; the axis is log₁₀ of the loss.",
    "Model 1 and model 2 of the original; pixels on the scale [0, 1].",
    "{{ m.n | num }} images of {{ m.size[0] }}×{{ m.size[1] }} pixels ({{ m.share | pct(1) }}).",
    "{% if m.x > 2 %}more{% endif %}{# 42 is a comment #}",
    "Run `build.py --set dataset.grid=6` or ``--profile quick 2``.",
    "```\npython build.py --seed 7\n```",
    '<img src="a.png" width="28" height="28" alt="{{ alt }}"> &#215; <!-- 3 -->',
    "See [the map](#embeddings-2) and the ranks {: #rank-2 }.",
    "1. First item\n2. Second item",
    '{% call fig("f2", alt="A " ~ cfg.grid ~ " by " ~ cfg.grid ~ " grid.") %}Text.{% endcall %}',
    '{{ table("t", caption="Images per class.") }}',
    '{{ m.c | claim("Model 2", "Model 1") }}',
])
def test_the_scanner_passes_numbers_that_are_names_or_markup(text: str) -> None:
    assert typed_numbers(text) == [], prose_text(text)


@pytest.mark.parametrize("text, numbers", [
    ("Each image has 28×28 pixels.", ["28", "28"]),
    ("It reaches 90 % accuracy.", ["90"]),
    ("There are 45 pairs, about 10 %.", ["45", "10"]),
    ("Below the 0.1st percentile.", ["0"]),
    ("Published in 2013.", ["2013"]),
    ("Loss falls by 1,000 times, -1 or 3.5.", ["1,000", "1", "3.5"]),
    ("log<sub>10</sub> of the loss", ["10"]),
    ("### 3. A numbered heading", ["3"]),
    ("Models 1 and 2 differ.", ["1", "2"]),
    ('{% call fig("f", alt="The top 3 digits.") %}Caption.{% endcall %}', ["3"]),
    ("{{ fig('f', caption='between about 9 and 11 percent', alt=\"x\") }}", ["9", "11"]),
    ('{{ table("t", caption="Top " ~ k ~ " of 10 classes.") }}', ["10"]),
    ("`code 1` but 2 outside", ["2"]),
])
def test_the_scanner_finds_typed_numbers(text: str, numbers: list[str]) -> None:
    assert [n for _, n in typed_numbers(text)] == numbers


def test_the_scanner_reports_the_right_line() -> None:
    text = ("# Title\n\n{% call fig('f',\n  alt='Seven\nor 7 digits.') %}\n"
            "{{ m.x }}\n{% endcall %}\nText with 12 items.\n")
    assert typed_numbers(text) == [(5, "7"), (8, "12")]


# --- the repository ----------------------------------------------------------------------------


def prose_files() -> list[Path]:
    """Every analysis prose file and every HTML/Markdown template."""
    templates = [p for p in sorted((REPO / "templates").rglob("*"))
                 if p.suffix in (".html", ".md") and p.is_file()]
    return sorted((REPO / "analyses").glob("*.md")) + templates


def test_there_is_prose_to_scan() -> None:
    names = {p.name for p in prose_files()}
    assert {"dataset.md", "article.html", "appendix.html", "rule.html"} <= names


def test_no_typed_numbers_in_prose_or_templates() -> None:
    found = [offence for path in prose_files() for offence in offences(path)]
    assert not found, ("typed numbers (render them from metrics, cfg or original, or "
                       "rephrase):\n" + "\n".join(found))


def test_every_analysis_prose_starts_with_a_title_line() -> None:
    for path in sorted((REPO / "analyses").glob("*.md")):
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        assert first.startswith("# ") and first[2:].strip(), \
            f"{path.relative_to(REPO)} must start with '# Title', starts with {first!r}"


def test_every_analysis_has_its_prose() -> None:
    from analyses import ANALYSES

    for module in ANALYSES:
        assert Path(module.__file__).with_suffix(".md").is_file(), module.__name__


def test_analyses_pass_no_words_to_figures_gifs_or_tables() -> None:
    """Captions and alt text are written in the prose, outside the cache key."""
    found = []
    for path in sorted((REPO / "analyses").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("figure", "gif", "table")):
                words = [k.arg for k in node.keywords if k.arg in ("caption", "alt", "title")]
                if words:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: "
                                 f".{node.func.attr}(..., {', '.join(words)}=...)")
    assert not found, "\n".join(found)


# Build outputs and caches that are not the repository's text (see .gitignore).
SKIPPED_DIRS = {".git", ".venv", ".scratch", "site", ".cache", "__pycache__", ".pytest_cache",
                "data"}


def repository_files() -> list[Path]:
    """Every text file of the repository, build outputs and caches left out."""
    files = []
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
                   and not d.startswith(("site.tmp-", "site.old-"))
                   and not (Path(folder) / d).relative_to(REPO).as_posix() == "bench/results"]
        files += [Path(folder) / n for n in names]
    return sorted(files)


def test_no_file_points_outside_the_repository() -> None:
    """The repository stands alone: no links to a sibling folder or to a design note."""
    banned = ["../" + "shared", "DESIGN" + ".md"]  # split so this file does not match itself
    found = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (PNGs, fonts)
        for number, line in enumerate(text.splitlines(), 1):
            if any(word in line for word in banned):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


# --- the whole article in both profiles ----------------------------------------------------------
#
# The article is rendered from the metrics of each profile (tests/fixtures/prose_*.json, made
# by tests/prose_fixtures.py: a quick build's; the frozen full-profile sections' and the others
# scaled to the full profile's settings) and from pages that mix them, and read as a sceptical
# reviewer would: every verdict rests on two or more independent repeats with some spread and
# names them; no sentence ranks by a mean where the runs cannot rank; a "most frequent" is
# unique; a collapsed class keeps its precision; absolute counts are those of the whole data;
# a full-profile page never defers to "the full profile"; every failed run is named; a number
# from another profile says so (the renderer refuses the page otherwise).

# The plural names of report.compare's units, and those that are not independent repeats.
REPEAT_UNITS = ("seeds", "folds", "probes", "timed runs", "disjoint test parts",
                "disjoint samples", "images")
PSEUDO_UNITS = ("classes", "noise draws", "snapshots")
SEPARATED = re.compile(r"\bis (?:ahead of|behind) (?P<b>(?:[^.;]|\.(?=\d))+?) by [\d.,]+(?: "
                       r"percentage points)?(?P<over>[^;]*?), more than (?:their combined|its) "
                       r"spread of (?P<margin>[\d.,]+)")
OVER = re.compile(r"^ over (?P<n>[\d,]+|one)(?: and (?P<m>[\d,]+))? (?P<unit>[a-z ]+?)"
                  r"(?: each)?$")
SENTENCE_END = re.compile(r"(?<=[.;])\s+(?=[A-Z(])")
UNSEPARATED_REASONS = ("over ", "noise is unknown", "same on all", "repeats ", "independent",
                       "rests on one", "are not compared")
RULE_BOX = "How this page calls a difference"
# Sentences that rank or explain without a verdict to rest on.
OVERREACH = [re.compile(p, re.I) for p in (
    r"\bby mean alone\b", r"\btheir means rank\b", r"\bmatters most\b",
    r"\bthe likely causes?\b", r"\bmorphing smoothly\b")]
TOP_CONFUSION = re.compile(r"most frequent confusion is an? (\d) read as an? (\d) \((\d+) "
                           r"times?\)(?P<rest>[^.]*)\.")
COLLAPSED = re.compile(r"(?P<who>the original's setup|the corrected run) has\s+\d+ collapsed "
                       r"class(?:es)?\s*\(digits? (?P<digits>[\d, ]+)")
ALL_IMAGES = re.compile(r"\ball ([\d,]+) (training |test )?images\b")
WHOLE = {"training ": 60_000, "test ": 10_000, "": 70_000}
DEFERS = re.compile(r"\bthe full profile (?:does|makes|adds|answers|trains|uses)\b")


def page_text(html: str) -> str:
    """What a reader reads: text and alt text, one paragraph per line."""
    import html as html_lib

    alts = "\n".join(re.findall(r'\balt="([^"]*)"', html))
    html = re.sub(r"<script.*?</script>|<style.*?</style>", "", html, flags=re.S)
    html = " ".join(html.split())
    html = re.sub(r"<(?:p|li|h[1-6]|tr|figcaption|caption|div|section|aside)\b[^>]*>", "\n",
                  html)
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", html)) + "\n" + html_lib.unescape(alts)
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def verdict_offences(text: str) -> list[str]:
    """Separated verdicts without two independent repeats a side, a unit or a spread; ties that
    give no reason."""
    found = []
    for match in SEPARATED.finditer(text):
        sentence, over = match.group(0), OVER.match(match.group("over"))
        if not over:
            found.append(f"a verdict that names no repeats: {sentence}")
            continue
        counts = [over.group("n"), over.group("m") or over.group("n")]
        if any(c == "one" or int(c.replace(",", "")) < 2 for c in counts):
            found.append(f"a verdict on fewer than two repeats: {sentence}")
        if over.group("unit") not in REPEAT_UNITS:
            found.append(f"a verdict on {over.group('unit')}, not independent repeats: "
                         f"{sentence}")
        if float(match.group("margin").replace(",", "")) == 0:
            found.append(f"a verdict on zero spread: {sentence}")
    for line in text.splitlines():
        if line.startswith(RULE_BOX):
            continue
        for sentence in SENTENCE_END.split(line):
            if "cannot be separated" in sentence and not any(
                    r in sentence for r in UNSEPARATED_REASONS):
                found.append(f"a tie that says neither what was repeated nor why: {sentence}")
    return found


def overreach_offences(text: str) -> list[str]:
    """Rankings by a mean, causes without a verdict, a shared top count called the top."""
    found = [f"{p.pattern}: {line}" for line in text.splitlines() for p in OVERREACH
             if p.search(line)]
    for match in TOP_CONFUSION.finditer(text):
        top = int(match.group(3))
        if any(int(n) >= top for n in re.findall(r"\((\d+)\)", match.group("rest"))):
            found.append(f"a 'most frequent' shared with others: {match.group(0)}")
    return found


def collapse_offences(text: str, gan: Mapping[str, Any], threshold: float) -> list[str]:
    """A class called collapsed must keep its precision (low recall alone)."""
    rows = next((i["rows"] for i in gan.get("items", []) if i["name"] == "per_class"), [])
    runs = gan.get("metrics", {}).get("runs") or []
    found = []
    for match in COLLAPSED.finditer(text):
        run = runs[0] if match.group("who").startswith("the original") else runs[-1]
        for digit in (int(d) for d in re.findall(r"\d", match.group("digits"))):
            precision = rows[digit].get(f"{run} precision") if digit < len(rows) else None
            if precision is not None and precision < threshold:
                found.append(f"digit {digit} called collapsed with precision {precision}: "
                             f"{match.group(0)}")
    return found


def count_offences(text: str, all_full: bool) -> list[str]:
    """'all N images' that are not all of them; a full-profile page deferring to itself."""
    found = [f"'all' for a part: {m.group(0)}" for m in ALL_IMAGES.finditer(text)
             if int(m.group(1).replace(",", "")) != WHOLE[m.group(2) or ""]]
    if all_full:
        found += [f"a full-profile page defers to the full profile: {line}"
                  for line in text.splitlines() if DEFERS.search(line)]
    return found


def article(tmp_path: Path, profiles: Mapping[str, str]) -> tuple[str, dict[str, dict]]:
    """The article rendered with each section from the fixture of `profiles[name]`; its HTML
    and the fixture data used."""
    import copy

    import prose_fixtures

    from analyses import ANALYSES
    from digits import original
    from report.analysis import sections_from_modules
    from report.config import make_config
    from report.engine import reduced_settings
    from report.render import SectionView, render_site

    configs = {p: make_config([m.ANALYSIS for m in ANALYSES], p) for p in set(profiles.values())}
    fixtures = {p: prose_fixtures.load(p) for p in set(profiles.values())}
    views, used = [], {}
    for section in sections_from_modules(ANALYSES):
        profile = profiles[section.name]
        data = used[section.name] = fixtures[profile][section.name]
        cfg = configs[profile].section(section.name)
        views.append(SectionView(
            name=section.name, prose=section.prose, cfg=cfg, metrics=data["metrics"],
            items=copy.deepcopy(data["items"]), files=None,
            status="frozen" if profile == "full" else "run",
            reduced=reduced_settings(section.analysis.config, cfg, section.analysis.zero_means),
            provenance={"profile": profile, "device": "cpu", "device_name": "fixture",
                        "created": ""},
            varies=bool(section.analysis.quick), requires=section.analysis.requires,
            prose_file=f"analyses/{section.name}.md", title=section.raw_title))
    build = {"title": "MNIST, explored", "profile": "quick" if "quick" in profiles.values()
             else "full", "seed": 7, "device": "cpu", "device_name": "fixture", "cpu_count": 2,
             "versions": {}, "commit": "fixture", "dataset": {}, "built": "", "wall_seconds": 0,
             "analyses": [], "config": {}, "reduced": {v.name: v.reduced for v in views
                                                       if v.reduced}}
    site = tmp_path / "_".join(sorted(set(profiles.values()))) / "site"
    site.mkdir(parents=True)
    index = render_site(site, REPO / "templates", views, build,
                        prose_globals={"original": original.facts(), "site_url": None})
    return index.read_text(encoding="utf-8"), used


def offences_of(html: str, used: Mapping[str, dict], all_full: bool) -> list[str]:
    """Every rule on the rendered page."""
    from analyses.gan import Config as GanConfig

    text = page_text(html)
    found = verdict_offences(text) + overreach_offences(text) + count_offences(text, all_full)
    found += collapse_offences(text, used.get("gan", {}), GanConfig().collapse_recall)
    optimizers = used.get("optimizers", {}).get("metrics", {})
    from report.render import setting

    for study, runs in optimizers.get("failed_runs", {}).items():
        for r in runs if study != "grid" else []:
            named = f"{r['name']} at rate {setting(r['lr'])}, seed {r['seed']}"
            if named not in text:
                found.append(f"a failed run the page does not name: {named}")
    return found


SECTIONS = ("dataset", "embeddings", "classifiers", "optimizers", "dynamics", "hidden_layers",
            "gan", "transfer")
# The sections frozen with the full profile so far (made on two CPU cores).
FROZEN = ("dataset", "embeddings", "classifiers", "hidden_layers")


@pytest.mark.parametrize("profiles", [
    dict.fromkeys(SECTIONS, "quick"),
    dict.fromkeys(SECTIONS, "full"),
    # What a CPU build of the repository shows today: the frozen sections full, the rest quick.
    {n: "full" if n in FROZEN else "quick" for n in SECTIONS},
    # A GPU run cut short: everything full but the two sections that train last.
    {n: "quick" if n in ("gan", "transfer") else "full" for n in SECTIONS},
], ids=["quick", "full", "frozen-and-quick", "gpu-cut-short"])
def test_every_sentence_holds_in_both_profiles(tmp_path: Path, profiles: dict) -> None:
    html, used = article(tmp_path, profiles)
    all_full = set(profiles.values()) == {"full"}
    found = offences_of(html, used, all_full)
    assert not found, "sentences the numbers do not support:\n" + "\n".join(found)


def test_a_page_that_mixes_profiles_labels_its_numbers(tmp_path: Path) -> None:
    html, _ = article(tmp_path, {n: "full" if n in FROZEN else "quick" for n in SECTIONS})
    summary = html[html.index('id="summary"'):html.index("</section>", html.index('id="summary"'))]
    labels = re.findall(r'<span class="headline-profile">([^<]+)</span>', summary)
    assert labels and set(labels) == {"full profile", "quick profile"}
    text = page_text(html)
    # Transfer (quick) sets its head beside the classifiers' runs (full): said, and not compared.
    assert "the classifiers section's runs (full profile)" in text or \
        "classifiers section's models (full profile)" in text
    assert "are not compared: different training sets" in text


@pytest.mark.parametrize("sentence", [
    # From the page before report.compare knew what a repeat is (a quick build):
    "its accuracy is behind always answering the most common class of those test images (11.7 %) "
    "by 1.35 percentage points, more than their combined spread of 0.00 percentage points.",
    "the corrected run's Fréchet distance is behind the original's by 23.45, more than their "
    "combined spread of 0.79",
    "the stronger network is ahead of model 2 by 9.42 percentage points, more than their "
    "combined spread of 2.84 percentage points;",
    "By mean alone, the order of the original's 5 optimizers changes: it ranked them",
    "Its most frequent confusion is a 4 read as a 9 (7 times), followed by 7 → 2 (7) and "
    "7 → 9 (7).",
    "Two details of its setup are the likely causes: its real images were in [0, 1]",
    "Tuning matters most for RMSprop: from 44.30 % at the shared rate to 90.67 %",
    "the ReLU network is ahead of the sigmoid network by 82.15 percentage points over 2 seeds "
    "each, more than their combined spread of 0.00 percentage points.",
    "its FD is behind the original's by 23.45 over 3 noise draws each, more than their combined "
    "spread of 0.79",
    "the corrected run's recall and the original's cannot be separated: the difference of "
    "0.006 is within their combined spread of 0.066;",
    "In this build it was trained on all 6,000 training images.",
])
def test_the_reviewer_catches_what_the_old_page_said(sentence: str) -> None:
    """Each sentence here was on the page (or is one the rules exist for): caught."""
    found = verdict_offences(sentence) + overreach_offences(sentence) + count_offences(
        sentence, all_full=False)
    assert found, sentence


def test_the_reviewer_catches_collapse_without_precision_and_deferral() -> None:
    gan = {"metrics": {"runs": ["original", "smoothing"]},
           "items": [{"name": "per_class", "rows": [{"original precision": 0.0}] * 10}]}
    text = "Mode collapse, counted: the original's setup has 9 collapsed classes (digits 0, 1, 2"
    assert collapse_offences(text, gan, 0.1)
    assert count_offences("This build does not fine-tune the last block; the full profile does.",
                          all_full=True)
