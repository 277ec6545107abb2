"""Frozen results: analyses' entries committed to the repository and reused while the code matches.

The idea of Quarto's `freeze`. A cache entry's key includes the machine (device type, torch and
numpy versions), so a GPU's results never match a laptop's key. A frozen entry is matched by its
*code key* instead: the module sources, the config of the profile that made it, the code keys of
its upstream analyses and the seed and dataset, but not the machine. A fresh clone therefore
renders a GPU's full-profile article in seconds, and an analysis whose code or config changed
since it was frozen no longer matches and runs again with the profile the machine allows.

Layout: `frozen/<analysis>/` holds one entry (figures, GIFs, tables, assets, `manifest.json`
with its code key, profile, device and versions). Saved objects (`objects/*.pt`, e.g. model
weights) are kept only for analyses that others require, since only those are ever loaded.
Every entry is checked against its manifest's file sizes and SHA-256s before use.
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


class FrozenStore:
    """The committed store under `frozen/`: at most one entry per analysis."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, name: str) -> Path:
        """Folder of an analysis's frozen entry (may not exist)."""
        return self.root / name

    def check(self, name: str) -> tuple[dict | None, str | None]:
        """(manifest, None) for a readable, undamaged entry; (None, why) when damaged; else both
        None (no entry)."""
        folder = self.entry(name)
        if not folder.is_dir():
            return None, None
        manifest = read_manifest(folder)
        if manifest is None or "code_key" not in manifest:
            return None, "its manifest is missing or unreadable"
        problem = damage(folder, manifest)
        return (None, problem) if problem else (manifest, None)

    def write(self, name: str, source: Path, manifest: Mapping[str, Any], code_key: str,
              keep_objects: bool) -> bool:
        """Freeze one entry from `source`; returns False when an identical one is already there.

        Written beside the old entry and renamed into place, so a killed freeze leaves the old
        entry or the new one, never a mix.
        """
        current = read_manifest(self.entry(name))
        if current and current.get("code_key") == code_key and \
                current.get("cache_key") == manifest.get("key") and \
                damage(self.entry(name), current) is None:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        ignore = None if keep_objects else shutil.ignore_patterns("objects")
        try:
            shutil.copytree(source, staging, ignore=ignore)
            (staging / "manifest.json").unlink(missing_ok=True)
            frozen = {k: v for k, v in manifest.items() if k not in ("key", "files")}
            frozen.update(code_key=code_key, cache_key=manifest.get("key"),
                          files=file_inventory(staging))
            write_manifest(staging, frozen)
            old = self.root / f".old-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            if self.entry(name).exists():
                os.rename(self.entry(name), old)
            os.rename(staging, self.entry(name))
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

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
