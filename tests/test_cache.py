"""The content-hash cache (report/cache.py): atomic commit, lookups, damage, sweep, latest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import report.cache
from report.cache import MANIFEST, Cache, pid_alive


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


def test_latest_reads_only_committed_entries_and_survives_one_vanishing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path)
    assert cache.latest("x") is None
    for n, key in enumerate(["d" * 64, "e" * 64]):
        staging = cache.staging("x")
        cache.commit(staging, "x", key, {"n": n})
        os.utime(cache.entry("x", key) / MANIFEST, (1_000 + n, 1_000 + n))
    assert cache.latest("x")["n"] == 1
    # A concurrent build's staging folder already holds its manifest just before its rename;
    # it is newer than every entry, yet not an entry (CI once failed stat-ing one that had
    # been renamed away between the listing and the stat).
    pending = cache.staging("x")
    (pending / MANIFEST).write_text(json.dumps({"n": 99}))
    assert cache.latest("x")["n"] == 1
    # The newest entry disappears (a forced re-run moved it aside) between the listing and
    # its read: the next newest answers.
    newest = cache.entry("x", "e" * 64)
    real_read = report.cache.read_manifest

    def read_after_removal(folder: Path) -> dict | None:
        if folder == newest:
            shutil.rmtree(newest)
        return real_read(folder)

    monkeypatch.setattr(report.cache, "read_manifest", read_after_removal)
    assert cache.latest("x")["n"] == 0
