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


# --- the same keys under every Python -------------------------------------------------------

PROJECT = Path(__file__).resolve().parent.parent
CLASS_TEXT = '''
class A(B, metaclass=M):
    def f(self, a, b=None, *, c=1):
        return g(a, key=b, text=f"{a!r:>4}")
'''
# Python 3.11's ast.dump of CLASS_TEXT: optional fields left empty are not written (no
# `returns=None`), required ones are even when None (`Constant(value=None)`), lists always.
CLASS_DUMP = (
    "ClassDef(name='A', bases=[Name(id='B', ctx=Load())], keywords=[keyword(arg='metaclass', "
    "value=Name(id='M', ctx=Load()))], body=[FunctionDef(name='f', args=arguments(posonlyargs="
    "[], args=[arg(arg='self'), arg(arg='a'), arg(arg='b')], kwonlyargs=[arg(arg='c')], "
    "kw_defaults=[Constant(value=1)], defaults=[Constant(value=None)]), body=[Return(value="
    "Call(func=Name(id='g', ctx=Load()), args=[Name(id='a', ctx=Load())], keywords=[keyword("
    "arg='key', value=Name(id='b', ctx=Load())), keyword(arg='text', value=JoinedStr(values=["
    "FormattedValue(value=Name(id='a', ctx=Load()), conversion=114, format_spec=JoinedStr("
    "values=[Constant(value='>4')]))]))]))], decorator_list=[])], decorator_list=[])")


def test_the_dump_is_python_3_11s_whichever_python_runs_it() -> None:
    """3.12's ast.dump adds `type_params=[]` and 3.13's drops empty lists: neither may reach a
    key, or every frozen entry made on the GPU machine's Python reads stale here."""
    import ast

    from report.codekeys import canonical_dump

    assert canonical_dump(ast.parse(CLASS_TEXT).body[0]) == CLASS_DUMP


def other_pythons() -> list[str]:
    """Interpreters 3.10 and newer other than this one: python3.N on PATH, else pyenv's."""
    import shutil
    import subprocess
    import sys

    found = {}
    pyenv = shutil.which("pyenv")
    versions = Path(subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout
                    .strip(), "versions") if pyenv else None
    for minor in range(10, 16):
        if minor == sys.version_info.minor:
            continue
        candidates = [shutil.which(f"python3.{minor}")]
        if versions and versions.is_dir():
            candidates += sorted(str(p) for p in versions.glob(f"3.{minor}.*/bin/python3"))
        for candidate in filter(None, candidates):
            works = subprocess.run([candidate, "-c", "print(1)"], capture_output=True, text=True)
            if works.returncode == 0:  # a pyenv shim of a version not selected fails here
                found[minor] = candidate
                break
    return list(found.values())


# Every symbol of every project module, digested by report/codekeys.py loaded on its own (it
# needs only the standard library, so a bare interpreter runs it).
DIGEST_ALL = '''
import importlib.util, json, sys
from pathlib import Path
root = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("codekeys", root / "report" / "codekeys.py")
codekeys = importlib.util.module_from_spec(spec)
sys.modules["codekeys"] = codekeys
spec.loader.exec_module(codekeys)
index = codekeys.CodeIndex(root)
modules = [".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
           for package in sorted(index.packages) for p in sorted((root / package).rglob("*.py"))]
print(json.dumps(dict(index.closure([(m, codekeys.WHOLE_MODULE) for m in modules]).symbols)))
'''


def test_every_python_found_gives_the_project_the_same_keys() -> None:
    """The GPU machine runs Python 3.12, this project 3.11: a key must not depend on which."""
    import json
    import subprocess
    import sys

    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other Python 3.10+ found (python3.N on PATH or pyenv)")
    here = subprocess.run([sys.executable, "-c", DIGEST_ALL, str(PROJECT)], capture_output=True,
                          text=True, check=True)
    mine = json.loads(here.stdout)
    assert len(mine) > 500  # every module's symbols, not a few
    for python in pythons:
        there = subprocess.run([python, "-c", DIGEST_ALL, str(PROJECT)], capture_output=True,
                               text=True)
        assert there.returncode == 0, f"{python}: {there.stderr}"
        theirs = json.loads(there.stdout)
        differ = sorted(name for name in mine if theirs.get(name) != mine[name])
        assert not differ and theirs.keys() == mine.keys(), f"{python}: {differ[:10]}"
