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
from pathlib import Path

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
