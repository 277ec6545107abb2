"""Local preview (report/serve.py): the site is served on 127.0.0.1 and rebuilt on edits."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from report.serve import snapshot, start_server, watch


def test_serves_the_site_on_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest's no_network patches sockets through this same monkeypatch; this test talks to
    # 127.0.0.1 only (the server binds nowhere else), so lift it.
    monkeypatch.undo()
    (tmp_path / "index.html").write_text("<h1>hello</h1>")
    server = start_server(tmp_path, port=0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as reply:
            assert reply.read() == b"<h1>hello</h1>"
    finally:
        server.shutdown()
        server.server_close()


def test_an_edit_triggers_one_rebuild_and_a_failed_rebuild_keeps_watching(tmp_path: Path) -> None:
    prose = tmp_path / "prose"
    prose.mkdir()
    (prose / "a.md").write_text("# A")
    calls: list[int] = []
    logs: list[str] = []
    stop = threading.Event()

    def rebuild() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad prose")
        stop.set()

    thread = threading.Thread(target=watch, args=([prose], rebuild, stop),
                              kwargs={"poll": 0.01, "log": logs.append})
    thread.start()
    threading.Event().wait(0.3)  # the watcher's first snapshot comes before the first edit
    try:
        for text in ("# A, edited", "# A, fixed"):
            before = len(calls)
            (prose / "a.md").write_text(text)
            for _ in range(500):
                if len(calls) > before:
                    break
                threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(calls) == 2
    assert logs[0] == "changed: a.md; rebuilding"
    assert "rebuild failed: bad prose" in logs[1]


def test_snapshot_sees_new_files_and_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")
    assert snapshot([tmp_path]) == {}
    (tmp_path / "b.html").write_text("x")
    assert list(snapshot([tmp_path])) == [tmp_path / "b.html"]
