"""Frozen results: analyses' entries committed to the repository and reused while the code matches.

The idea of Quarto's `freeze`, split into DVC-like stages. A cache entry's key includes the
machine (device type, torch and numpy versions), so a GPU's results never match a laptop's key.
A frozen entry is matched by its *code key* instead (report/keys.py): the code its compute
stage can run, the config of the profile that made it, the code keys of its upstream analyses
and the seed and dataset, but not the machine. A fresh clone therefore
renders a GPU's full-profile article in seconds, and an analysis whose code or config changed
since it was frozen no longer matches and runs again with the profile the machine allows.

Layout: `frozen/<analysis>/` holds one entry: the compute results (`manifest.json` with the
metrics, the code key and the inputs it hashes, profile, device and versions; `arrays/*.npy`;
`objects/*.pt`, e.g. model weights) and, in `drawn/`, what the draw stage made from them
(figures, GIFs, tables, assets, its own `manifest.json` with its draw key). The drawn items are
used while the draw key matches; after a change to how they are drawn they are drawn again from
the frozen results on any machine, in seconds, and `--freeze` stores the new drawing. Every
part is checked against its manifest's file sizes and SHA-256s before use.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from report.cache import damage, file_inventory, read_manifest, write_manifest

# The environment fields a frozen entry is matched on; the machine's (device, versions) are not.
CODE_ENVIRONMENT = ("seed", "dataset")


def code_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The part of the cache environment that a frozen entry must share with the build."""
    return {k: environment[k] for k in CODE_ENVIRONMENT if k in environment}


DRAWN = "drawn"  # the drawn items' sub-folder of a frozen entry


class FrozenStore:
    """The committed store under `frozen/`: at most one entry per analysis."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, name: str) -> Path:
        """Folder of an analysis's frozen entry (may not exist)."""
        return self.root / name

    def drawn(self, name: str) -> Path:
        """Folder of the drawn items of an analysis's frozen entry (may not exist)."""
        return self.root / name / DRAWN

    def check(self, name: str) -> tuple[dict | None, str | None]:
        """(manifest, None) for a readable, undamaged compute entry; (None, why) when damaged;
        else both None (no entry)."""
        folder = self.entry(name)
        if not folder.is_dir():
            return None, None
        manifest = read_manifest(folder)
        if manifest is None or "code_key" not in manifest:
            return None, "its manifest is missing or unreadable"
        problem = damage(folder, manifest)
        return (None, problem) if problem else (manifest, None)

    def check_drawn(self, name: str, key: str) -> dict | None:
        """The drawn items' manifest when it was drawn under `key` and is undamaged, else None."""
        manifest = read_manifest(self.drawn(name))
        if manifest is None or manifest.get("key") != key or damage(self.drawn(name), manifest):
            return None
        return manifest

    def write(self, name: str, source: Path, manifest: Mapping[str, Any], code: Mapping[str, Any],
              drawn: tuple[Path, Mapping[str, Any]] | None) -> bool:
        """Freeze compute results from `source` under `code` (code_key and its inputs) with their
        drawn items (folder, manifest with the frozen draw key); False when nothing changed.

        Written beside the old entry and renamed into place, so a killed freeze leaves the old
        entry or the new one, never a mix.
        """
        current = read_manifest(self.entry(name))
        same_results = bool(current) and current.get("code_key") == code["code_key"] and \
            current.get("cache_key") == manifest.get("key") and \
            damage(self.entry(name), current) is None
        if same_results:
            return drawn is not None and self.write_drawn(name, *drawn)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, staging)
            (staging / "manifest.json").unlink(missing_ok=True)
            frozen = {k: v for k, v in manifest.items() if k not in ("key", "files")}
            frozen.update(code, cache_key=manifest.get("key"), files=file_inventory(staging))
            write_manifest(staging, frozen)
            if drawn is not None:
                _copy_drawn(*drawn, staging / DRAWN)
            self._swap(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def write_drawn(self, name: str, source: Path, manifest: Mapping[str, Any]) -> bool:
        """Replace only the drawn items of a frozen entry; False when they are already these."""
        if self.check_drawn(name, manifest["key"]) is not None:
            return False
        staging = self.entry(name) / f".tmp-{DRAWN}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _copy_drawn(source, manifest, staging)
            old = self.entry(name) / f".old-{DRAWN}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            if self.drawn(name).exists():
                os.rename(self.drawn(name), old)
            os.rename(staging, self.drawn(name))
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _swap(self, name: str, staging: Path) -> None:
        old = self.root / f".old-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if self.entry(name).exists():
            os.rename(self.entry(name), old)
        os.rename(staging, self.entry(name))
        shutil.rmtree(old, ignore_errors=True)

    def names(self) -> list[str]:
        """Analyses that have a frozen entry folder."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def size(self) -> dict[str, int]:
        """Bytes per frozen entry, for the freeze report."""
        return {name: sum(p.stat().st_size for p in self.entry(name).rglob("*") if p.is_file())
                for name in self.names()}


def _copy_drawn(source: Path, manifest: Mapping[str, Any], target: Path) -> None:
    """Copy a draw entry's files to `target` with `manifest` (its key, items, metrics)."""
    shutil.copytree(source, target)
    (target / "manifest.json").unlink(missing_ok=True)
    write_manifest(target, {**{k: v for k, v in manifest.items() if k != "files"},
                            "files": file_inventory(target)})
