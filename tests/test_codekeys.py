"""Keys that see code, not text (report/codekeys.py), on a small package in a temporary root."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from report.codekeys import CodeIndex, changed_code, digest

FILES = {
    "pkgx/__init__.py": "from pkgx.core import helper as reexported\n",
    "pkgx/core.py": '''
        """Core module."""
        import numpy as np

        from . import consts
        from .sub import deep

        SCALE = 3


        def helper(x: int) -> int:
            """Scale x."""
            return x * SCALE + consts.OFFSET


        def unused() -> int:
            return 1


        class Model:
            """A class: its methods are part of it."""

            def forward(self, x):
                return deep.twice(x)
        ''',
    "pkgx/consts.py": "OFFSET = 1\nOTHER = 2\n",
    "pkgx/sub/__init__.py": "",
    "pkgx/sub/deep.py": "def twice(x):\n    return 2 * x\n",
    "pkgx/show.py": "def colour():\n    return 'red'\n",
    "pkgx/stage.py": '''
        from pkgx import core, reexported
        import pkgx.sub.deep


        def compute(ctx):
            """Entry point."""
            from pkgx.consts import OTHER
            return core.helper(1) + reexported(2) + pkgx.sub.deep.twice(OTHER)


        def draw(ctx):
            from pkgx import show
            return show.colour(), core.Model()
        ''',
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root holding the package `pkgx`."""
    for name, text in FILES.items():
        path = tmp_path / "root" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return tmp_path / "root"


def symbols(root: Path, entry: str = "compute", exclude: tuple[str, ...] = ()) -> dict:
    return dict(CodeIndex(root).closure([("pkgx.stage", entry)], exclude).symbols)


def edit(root: Path, path: str, old: str, new: str) -> None:
    file = root / path
    text = file.read_text()
    assert old in text, old
    file.write_text(text.replace(old, new))


def test_closure_follows_names_across_modules_and_nothing_else(root: Path) -> None:
    found = set(symbols(root))
    assert found == {
        "pkgx/stage.py:compute",
        "pkgx/core.py:helper", "pkgx/core.py:SCALE",  # through `core.helper` and the re-export
        "pkgx/consts.py:OFFSET", "pkgx/consts.py:OTHER",  # `consts.OFFSET`; a local import
        "pkgx/sub/deep.py:twice",  # through the attribute chain pkgx.sub.deep.twice
    }
    assert "pkgx/core.py:unused" not in found and "pkgx/show.py:colour" not in found
    drawn = set(symbols(root, "draw"))
    assert {"pkgx/show.py:colour", "pkgx/core.py:Model", "pkgx/sub/deep.py:twice"} <= drawn


@pytest.mark.parametrize("path, old, new", [
    ("pkgx/core.py", '"""Scale x."""', '"""Multiply x by the scale, then offset it."""'),
    ("pkgx/core.py", "def helper(x: int) -> int:", "def helper(x: float) -> float:"),
    ("pkgx/core.py", "    return x * SCALE",
     "    # a comment\n    return (x *\n            SCALE)"),
    ("pkgx/stage.py", "def compute(ctx):", "\n\ndef compute(ctx):  # spaced out"),
    ("pkgx/core.py", "def unused() -> int:\n    return 1", "def unused() -> int:\n    return 5"),
    ("pkgx/consts.py", "OTHER = 2\n", "OTHER = 2\nNEW = 9\n"),  # a new, unused constant
])
def test_text_and_unreached_code_change_no_digest(root: Path, path: str, old: str,
                                                  new: str) -> None:
    before = symbols(root)
    edit(root, path, old, new)
    assert symbols(root) == before


@pytest.mark.parametrize("path, old, new, named", [
    ("pkgx/core.py", "return x * SCALE", "return x * SCALE * 2", "pkgx/core.py: helper"),
    ("pkgx/core.py", "SCALE = 3", "SCALE = 4", "pkgx/core.py: SCALE"),
    ("pkgx/consts.py", "OTHER = 2", "OTHER = 3", "pkgx/consts.py: OTHER"),
    ("pkgx/sub/deep.py", "2 * x", "3 * x", "pkgx/sub/deep.py: twice"),
])
def test_a_reached_edit_changes_exactly_that_symbol(root: Path, path: str, old: str, new: str,
                                                   named: str) -> None:
    before = symbols(root)
    edit(root, path, old, new)
    after = symbols(root)
    assert changed_code(before, after) == [named]


def test_a_method_edit_changes_its_class(root: Path) -> None:
    before = symbols(root, "draw")
    edit(root, "pkgx/core.py", "return deep.twice(x)", "return deep.twice(x) + 1")
    assert changed_code(before, symbols(root, "draw")) == ["pkgx/core.py: Model"]
    assert symbols(root) == symbols(root)  # compute never names Model


def test_changed_code_reports_new_and_dropped_symbols() -> None:
    assert changed_code({"a.py:f": "1", "a.py:g": "2"}, {"a.py:f": "1", "b.py:h": "3"}) == [
        "a.py: g (no longer used)", "b.py: h (new)"]


def test_excluded_modules_are_reported_not_hashed(root: Path) -> None:
    closure = CodeIndex(root).closure([("pkgx.stage", "draw")], exclude=("pkgx.show",))
    assert closure.excluded == {"pkgx/show.py:colour"}  # imported inside draw itself
    assert not any(s.startswith("pkgx/show.py") for s in closure.symbols)
    before = dict(closure.symbols)
    edit(root, "pkgx/show.py", "'red'", "'blue'")
    assert dict(CodeIndex(root).closure([("pkgx.stage", "draw")], ("pkgx.show",)).symbols) \
        == before


def test_digests_do_not_depend_on_where_the_project_lives(root: Path, tmp_path: Path) -> None:
    before = symbols(root)
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert symbols(moved) == before


def test_third_party_names_are_ignored(root: Path) -> None:
    edit(root, "pkgx/core.py", "return x * SCALE", "return np.float64(x) * SCALE")
    assert not any(s.startswith("numpy") for s in symbols(root))


def test_digest_ignores_docstrings_and_hints_but_not_defaults() -> None:
    import ast

    def dig(text: str) -> str:
        return digest(ast.parse(textwrap.dedent(text)).body)

    base = dig("def f(a: int = 1) -> int:\n    'doc'\n    return a\n")
    assert dig("def f(a: str = 1):\n    return a\n") == base
    assert dig("def f(a: int = 2) -> int:\n    return a\n") != base


def test_imports_for_annotations_only_change_no_key(root: Path) -> None:
    edit(root, "pkgx/core.py", "SCALE = 3\n",
         "SCALE = 3\n\nif TYPE_CHECKING:\n    from pkgx.consts import OTHER\n")
    edit(root, "pkgx/core.py", "import numpy as np\n",
         "import numpy as np\nfrom typing import TYPE_CHECKING\n")
    before = symbols(root)
    edit(root, "pkgx/core.py", "    from pkgx.consts import OTHER\n",
         "    from pkgx.consts import OFFSET, OTHER\n")
    assert symbols(root) == before
    assert "pkgx/core.py:<module>" not in before
