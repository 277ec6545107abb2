"""Local preview: serve the built site on 127.0.0.1 and rebuild when prose or templates change.

Editing words re-renders in seconds because prose and templates are outside every cache key;
the server keeps answering from the folder `site/` while a rebuild swaps a new one in.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def snapshot(paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """Modification time (ns) and size of every file under the watched paths (the size too:
    some file systems keep whole seconds, and two saves can fall in one)."""
    seen: dict[Path, tuple[int, int]] = {}
    for root in paths:
        files = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                seen[path] = (stat.st_mtime_ns, stat.st_size)
    return seen


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without a log line per request (a page loads dozens of images)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Only failed requests are logged (a missing file is worth a line)."""
        if str(getattr(code, "value", code)).startswith(("4", "5")):
            super().log_request(code, size)


def start_server(out: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for `out` on 127.0.0.1 (port 0 = any free one), answering in a daemon thread."""
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def watch(paths: Iterable[Path], rebuild: Callable[[], None], stop: threading.Event,
          poll: float = 0.5, log: Callable[[str], None] = print) -> None:
    """Call `rebuild` whenever a file under `paths` changes, until `stop` is set.

    Polls modification times every `poll` seconds: the watched tree is a few dozen files, so a
    poll costs well under a millisecond and needs no platform-specific notification library.
    """
    paths = list(paths)
    before = snapshot(paths)
    while not stop.wait(poll):
        now = snapshot(paths)
        if now == before:
            continue
        changed = sorted({p.name for p in set(now) ^ set(before)} |
                         {p.name for p in now if p in before and now[p] != before[p]})
        log(f"changed: {', '.join(changed)}; rebuilding")
        before = now  # an edit saved during the rebuild triggers the next one
        start = time.perf_counter()
        try:
            rebuild()
        except Exception as exc:  # noqa: BLE001 - a broken edit must not stop the preview
            log(f"rebuild failed: {exc}; fix it and save again")
        else:
            log(f"rebuilt in {time.perf_counter() - start:.1f} s; reload the page")
