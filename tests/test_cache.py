"""The content-hash cache (report/cache.py): keys, imports followed, atomic commit, sweep."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from report.cache import MANIFEST, Cache, cache_key, pid_alive, project_imports

ENV = {"torch": "2", "numpy": "2", "dataset": "abc"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """root/pkgx (a package with two modules and a subpackage), root/stray.py, importable."""
    root = tmp_path / "root"
    (root / "pkgx" / "sub").mkdir(parents=True)
    (root / "pkgx" / "__init__.py").write_text("")
    (root / "pkgx" / "sub" / "__init__.py").write_text("")
    (root / "pkgx" / "sub" / "deep.py").write_text("VALUE = 1\n")
    (root / "pkgx" / "util.py").write_text("from .sub import deep\nimport json\n")
    (root / "pkgx" / "other.py").write_text("X = 2\n")
    (root / "pkgx" / "main.py").write_text(
        "import os\nimport numpy\nfrom pkgx import util\n\n\ndef run(ctx):\n    pass\n")
    for name in [n for n in sys.modules if n == "pkgx" or n.startswith("pkgx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root))
    return root


def rel(paths: set[Path], root: Path) -> set[str]:
    return {str(p.relative_to(root.resolve())) for p in paths}


def test_project_imports_follow_project_modules_only(project: Path) -> None:
    found = rel(project_imports(project / "pkgx" / "main.py", project), project)
    # main -> pkgx (package) -> util -> .sub -> deep; numpy, os and json are not project code.
    assert found == {"pkgx/__init__.py", "pkgx/util.py", "pkgx/sub/__init__.py",
                     "pkgx/sub/deep.py"}


def key_of(project: Path, config: str = "{}", upstream: dict | None = None,
           env: dict | None = None) -> str:
    return cache_key(project / "pkgx" / "main.py", project, config, upstream or {}, env or ENV)


def test_key_is_stable_and_sensitive_to_each_input(project: Path) -> None:
    base = key_of(project)
    assert base == key_of(project) and len(base) == 64
    assert key_of(project, config='{"epochs": 2}') != base
    assert key_of(project, upstream={"data": "k1"}) != key_of(project, upstream={"data": "k2"})
    assert key_of(project, env={**ENV, "torch": "3"}) != base
    assert key_of(project, env={**ENV, "dataset": "other"}) != base


@pytest.mark.parametrize("path, changes", [
    ("pkgx/main.py", True),
    ("pkgx/sub/deep.py", True),  # imported through util's relative import
    ("pkgx/other.py", False),  # in the package, but not imported
])
def test_key_follows_source_edits(project: Path, path: str, changes: bool) -> None:
    before = key_of(project)
    target = project / path
    target.write_text(target.read_text() + "# edit\n")
    assert (key_of(project) != before) is changes


def test_key_ignores_the_prose_beside_the_module(project: Path) -> None:
    """Words (titles, captions, alt text) live in <name>.md: editing them re-runs nothing."""
    prose = project / "pkgx" / "main.md"
    prose.write_text("# A title\n\nSome words.\n")
    before = key_of(project)
    prose.write_text("# Another title\n\nOther words, {{ m.x }}.\n")
    assert key_of(project) == before
    prose.unlink()
    assert key_of(project) == before


def test_key_does_not_depend_on_where_the_project_lives(project: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first = key_of(project)
    moved = tmp_path / "elsewhere"
    project.rename(moved)
    for name in [n for n in sys.modules if n == "pkgx" or n.startswith("pkgx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(moved))
    assert key_of(moved) == first


def test_commit_writes_manifest_last_and_lookup_checks_key(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = "a" * 64
    assert cache.lookup("x", key) is None and cache.state("x", key) == "stale"
    staging = cache.staging("x")
    assert staging.name.startswith(f".tmp-{os.getpid()}-")
    (staging / "fig.png").write_bytes(b"png")
    entry = cache.commit(staging, "x", key, {"metrics": {"m": 1}})
    assert not staging.exists() and (entry / "fig.png").read_bytes() == b"png"
    files = {"fig.png": {"bytes": 3, "sha256": hashlib.sha256(b"png").hexdigest()}}
    assert cache.lookup("x", key) == {"metrics": {"m": 1}, "key": key, "files": files}
    assert cache.state("x", key) == "cached"
    # Another key sharing the 20-character folder prefix is not this entry.
    assert cache.lookup("x", "a" * 20 + "b" * 44) is None


def test_unreadable_manifest_is_a_miss(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = "b" * 64
    entry = cache.entry("x", key)
    entry.mkdir(parents=True)
    (entry / MANIFEST).write_text("{ truncated")
    assert cache.lookup("x", key) is None
    # Committing over it replaces the broken entry.
    staging = cache.staging("x")
    cache.commit(staging, "x", key, {"metrics": {}})
    assert cache.lookup("x", key) == {"metrics": {}, "key": key, "files": {}}


def test_second_commit_of_same_key_keeps_the_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = "c" * 64
    first, second = cache.staging("x"), cache.staging("x")
    (first / "who").write_text("first")
    (second / "who").write_text("second")
    cache.commit(first, "x", key, {"n": 1})
    entry = cache.commit(second, "x", key, {"n": 2})
    assert (entry / "who").read_text() == "first"
    assert json.loads((entry / MANIFEST).read_text())["n"] == 1
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [entry.name]


def test_discard_and_sweep(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    mine = cache.staging("x")
    cache.discard(mine)
    assert not mine.exists()
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True).stdout)
    dead = tmp_path / "y" / f".tmp-{dead_pid}-0123abcd"
    dead.mkdir(parents=True)
    alive = cache.staging("y")
    assert cache.sweep() == [dead]
    assert not dead.exists() and alive.exists()


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


@pytest.mark.parametrize("harm, expected", [
    (lambda entry: (entry / "fig.png").unlink(), "fig.png is missing"),
    (lambda entry: (entry / "fig.png").write_bytes(b"PNG!"), "fig.png has 4 bytes"),
    (lambda entry: (entry / "sub" / "t.csv").write_text("b,a"), "sub/t.csv differs"),
])
def test_damaged_entry_is_reported_and_missed(tmp_path: Path, harm, expected: str) -> None:
    cache = Cache(tmp_path)
    key = "d" * 64
    staging = cache.staging("x")
    (staging / "fig.png").write_bytes(b"png")
    (staging / "sub").mkdir()
    (staging / "sub" / "t.csv").write_text("a,b")
    entry = cache.commit(staging, "x", key, {"metrics": {}})
    assert cache.check("x", key)[1] is None
    harm(entry)
    manifest, problem = cache.check("x", key)
    assert manifest is None and expected in problem
    assert cache.lookup("x", key) is None and cache.state("x", key) == "stale"


def test_manifest_without_file_list_is_not_trusted(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = "e" * 64
    entry = cache.entry("x", key)
    entry.mkdir(parents=True)
    (entry / MANIFEST).write_text(json.dumps({"key": key, "metrics": {}}))
    assert cache.check("x", key) == (None, "its manifest lists no files (written by an older "
                                           "version of the engine)")
