"""Content-hash cache: what a stage's results depend on decides whether it runs again.

One store per stage (`.cache/compute/`, `.cache/draw/`), an entry per analysis and key
(report/keys.py says what each key hashes). Results are written to a private temporary folder
that is renamed into `<store>/<name>/<key>/` only after `manifest.json` is in it, so a killed build
leaves either nothing or a complete entry, and two concurrent builds cannot mix their files.
The manifest lists every file's size and SHA-256; an entry whose files no longer match (a figure
deleted or edited by hand) is reported as damaged and run again instead of failing the render.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def file_inventory(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under `folder` but the manifest, by relative POSIX path."""
    inventory = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(f".{MANIFEST}"):
            inventory[rel] = {"bytes": path.stat().st_size,
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return inventory


def damage(folder: Path, manifest: Mapping[str, Any]) -> str | None:
    """Why the files under `folder` do not match `manifest["files"]`, or None when they do."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "its manifest lists no files (written by an older version of the engine)"
    for rel, info in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != info.get("bytes"):
            return f"{rel} has {size:,} bytes, its manifest says {info.get('bytes'):,}"
        # Hashing is cheap next to a run: the full profile's largest entry is a few MB.
        if hashlib.sha256(path.read_bytes()).hexdigest() != info.get("sha256"):
            return f"{rel} differs from the SHA-256 in its manifest"
    return None


def read_manifest(folder: Path) -> dict | None:
    """The parsed manifest of an entry folder, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write `manifest.json` durably and atomically (a temporary file renamed over it)."""
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)


class Cache:
    """The on-disk store under `.cache/`: one folder per analysis and key."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, name: str, key: str) -> Path:
        """Folder of a completed entry (may not exist)."""
        return self.root / name / key[:20]

    def lookup(self, name: str, key: str) -> dict | None:
        """The manifest of a complete, undamaged entry, or None (a miss)."""
        return self.check(name, key)[0]

    def check(self, name: str, key: str) -> tuple[dict | None, str | None]:
        """(manifest, None) for a usable entry; (None, why) for a damaged one; (None, None)."""
        manifest = read_manifest(self.entry(name, key))
        if manifest is None or manifest.get("key") != key:
            return None, None
        problem = damage(self.entry(name, key), manifest)
        return (None, problem) if problem else (manifest, None)

    def staging(self, name: str) -> Path:
        """A fresh private folder to write a new entry into."""
        path = self.root / name / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, name: str, key: str, manifest: dict,
               replace: bool = False) -> Path:
        """Write the manifest last, then rename the folder into place (atomic on one filesystem).

        If a concurrent build committed the same key first, keep theirs and drop ours; with
        `replace` (a forced re-run) move the existing entry aside first so ours wins.
        """
        manifest = {**manifest, "key": key, "files": file_inventory(staging)}
        write_manifest(staging, manifest)
        final = self.entry(name, key)
        if replace and final.exists():
            # Renaming the old entry away is atomic: readers see the old or the new, never a mix.
            trash = self.root / name / f".old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(OSError):
                os.rename(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
        if final.exists() and self.lookup(name, key) is None:
            # An incomplete entry cannot exist by construction, but a damaged one can.
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(staging, final)
        except OSError:
            if self.lookup(name, key) is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def discard(self, staging: Path) -> None:
        """Remove a staging folder after a failure."""
        shutil.rmtree(staging, ignore_errors=True)

    def sweep(self) -> list[Path]:
        """Delete staging folders left by builds that were killed (their process is gone)."""
        removed = []
        for staging in [*self.root.glob("*/.tmp-*"), *self.root.glob("*/.old-*")]:
            pid = staging.name.split("-")[1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
        return removed

    def latest(self, name: str) -> dict | None:
        """The manifest of the most recent entry of `name` (to say what changed since), or None."""
        # Staging (.tmp-*) and trash (.old-*) folders belong to builds still running: a
        # concurrent build renames or deletes them at any moment, so only committed entries
        # count, and an entry that vanishes while we look is skipped rather than fatal.
        dated = []
        for folder in (self.root / name).glob("[!.]*"):
            try:
                dated.append(((folder / MANIFEST).stat().st_mtime, folder))
            except OSError:
                continue
        for _, folder in sorted(dated, reverse=True):
            manifest = read_manifest(folder)
            if manifest is not None:
                return manifest
        return None

    def state(self, name: str, key: str) -> str:
        """'cached' or 'stale' for `--list`."""
        return "cached" if self.lookup(name, key) is not None else "stale"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
